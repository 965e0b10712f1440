//! `strongroom offline sign`: signs a PSBT on an air-gapped machine with
//! keys derived from a BIP-39 mnemonic — no configuration, no database, no
//! network — as a BIP-174 signer should:
//!
//! - the keys are the one at `--path` and every key an input's
//!   `PSBT_IN_BIP32_DERIVATION` / `PSBT_IN_TAP_BIP32_DERIVATION` places under
//!   this seed's master fingerprint (each derived and compared; a claim
//!   that does not derive is refused);
//! - only `SIGHASH_ALL` (ECDSA) and `SIGHASH_DEFAULT` (Taproot) are signed:
//!   an input asking for anything else is refused, never signed otherwise;
//! - an output whose derivation names this seed is change only if it pays
//!   exactly that key; one that claims the seed and pays another key is
//!   refused (a swapped change output);
//! - what is paid, the change and the fee are shown; a fee above 1 % of
//!   what is paid or 100 sat/vB is refused without `--accept-fee`;
//! - the output keeps the input's encoding (base64 in, base64 out), and
//!   `--finalize` finalises and extracts the transaction (Bitcoin Core's
//!   interpreter verifies it).
//!
//! The server accepts the result only if it is the approved transaction
//! (`chain_btc::accept_signed`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use bitcoin::bip32::{DerivationPath, Fingerprint, KeySource};
use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::{ScriptBuf, TxOut};
use chain_btc::{SigningTask, add_ecdsa, add_schnorr, tasks_for_key};
use domain::BitcoinNetwork;
use keys::{
    Algorithm, KeyRef, PublicKey, SignRequest, Signature, Signer, SoftwareSigner, TapTweak,
};
use zeroize::Zeroizing;

use crate::Failure;
use crate::config::ConfigError;

fn usage(key: &str, message: impl Into<String>) -> Failure {
    Failure::Config(ConfigError {
        key: key.into(),
        message: message.into(),
    })
}

/// What `offline sign` was asked to do.
pub(crate) struct SignArgs<'a> {
    pub psbt: &'a Path,
    pub mnemonic_file: &'a Path,
    /// A BIP-39 passphrase ("25th word"), if the seed has one.
    pub passphrase_file: Option<&'a Path>,
    /// A key to sign with besides those the PSBT's derivations name.
    pub path: Option<&'a str>,
    pub network: &'a str,
    pub out: &'a Path,
    pub trust_input_amounts: bool,
    pub accept_fee: bool,
    pub finalize: bool,
}

/// How a PSBT file was written, so that it is written back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Binary,
    Base64,
}

/// Reads a PSBT file: binary (BIP-174) or base64 text.
fn read_psbt_encoded(path: &Path) -> Result<(Psbt, Encoding), Failure> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (raw, encoding) = match std::str::from_utf8(&bytes) {
        Ok(text) if !bytes.starts_with(b"psbt\xff") => (
            data_encoding::BASE64
                .decode(text.trim().as_bytes())
                .map_err(|_| usage("--psbt", "neither a binary PSBT nor base64"))?,
            Encoding::Base64,
        ),
        _ => (bytes, Encoding::Binary),
    };
    let psbt = Psbt::deserialize(&raw).map_err(|e| usage("--psbt", format!("not a PSBT: {e}")))?;
    Ok((psbt, encoding))
}

fn network_arg(network: &str) -> Result<BitcoinNetwork, Failure> {
    Ok(match network {
        "mainnet" => BitcoinNetwork::Mainnet,
        "testnet" => BitcoinNetwork::Testnet,
        "signet" => BitcoinNetwork::Signet,
        "regtest" => BitcoinNetwork::Regtest,
        _ => return Err(usage("--network", "mainnet, testnet, signet or regtest")),
    })
}

/// The keys of one seed, derived on demand inside the software signer.
struct Keyring {
    seed: keys::hd::Seed,
    signer: SoftwareSigner,
    rt: tokio::runtime::Runtime,
    /// Path → (ECDSA key, Schnorr key, compressed public key).
    derived: BTreeMap<String, (KeyRef, KeyRef, [u8; 33])>,
}

impl Keyring {
    fn derive(&mut self, path: &str) -> Result<[u8; 33], Failure> {
        if let Some((_, _, pk)) = self.derived.get(path) {
            return Ok(*pk);
        }
        let secret = || {
            keys::hd::derive_secp256k1(&self.seed, path).map_err(|e| usage("--path", e.to_string()))
        };
        let ecdsa = self
            .signer
            .import(Algorithm::EcdsaSecp256k1, secret()?)
            .map_err(anyhow::Error::from)?;
        let schnorr = self
            .signer
            .import(Algorithm::SchnorrBip340, secret()?)
            .map_err(anyhow::Error::from)?;
        let PublicKey::Secp256k1(pk) = self
            .rt
            .block_on(self.signer.public_key(&ecdsa))
            .map_err(anyhow::Error::from)?
        else {
            return Err(Failure::Runtime(anyhow::anyhow!("not an ECDSA key")));
        };
        self.derived.insert(path.to_owned(), (ecdsa, schnorr, pk));
        Ok(pk)
    }

    fn fingerprint(&mut self) -> Result<Fingerprint, Failure> {
        let master = self.derive("m")?;
        let pk = bitcoin::PublicKey::from_slice(&master).map_err(anyhow::Error::from)?;
        let hash = pk.pubkey_hash().to_byte_array();
        Ok(Fingerprint::from([hash[0], hash[1], hash[2], hash[3]]))
    }

    fn keys_of(&self, pubkey: &[u8; 33]) -> Option<(&KeyRef, &KeyRef)> {
        self.derived
            .values()
            .find(|(_, _, pk)| pk == pubkey)
            .map(|(e, s, _)| (e, s))
    }

    fn forget(&self) {
        for (ecdsa, schnorr, _) in self.derived.values() {
            let _ = self.signer.remove(ecdsa);
            let _ = self.signer.remove(schnorr);
        }
    }
}

fn path_text(p: &DerivationPath) -> String {
    format!("m/{p}").replace("m/m", "m")
}

/// Derives every key the PSBT's derivation records attribute to this seed
/// and checks each is the key claimed. Returns the claimed keys that are
/// ours, as `(compressed key, path)`.
fn our_claims(
    ring: &mut Keyring,
    ours: Fingerprint,
    ecdsa: impl Iterator<Item = ([u8; 33], KeySource)>,
    xonly: impl Iterator<Item = ([u8; 32], KeySource)>,
    whose: &str,
) -> Result<Vec<([u8; 33], String)>, Failure> {
    let mut found = Vec::new();
    for (claimed, (fp, path)) in ecdsa {
        if fp != ours {
            continue;
        }
        let p = path_text(&path);
        let pk = ring.derive(&p)?;
        if pk != claimed {
            return Err(usage(
                "--psbt",
                format!("{whose} claims this seed's key at {p}, but that is not the key it names"),
            ));
        }
        found.push((pk, p));
    }
    for (claimed, (fp, path)) in xonly {
        if fp != ours {
            continue;
        }
        let p = path_text(&path);
        let pk = ring.derive(&p)?;
        if pk[1..] != claimed {
            return Err(usage(
                "--psbt",
                format!("{whose} claims this seed's key at {p}, but that is not the key it names"),
            ));
        }
        found.push((pk, p));
    }
    Ok(found)
}

/// The scripts a key of ours may be paid to as change: the key alone
/// (P2WPKH, P2PKH, BIP-86 Taproot). A script that merely names the key
/// (a multisig, or one another key could satisfy) is shown as a payment:
/// someone else may be able to spend it.
fn change_scripts(pk: &[u8; 33]) -> Result<Vec<ScriptBuf>, Failure> {
    let key = bitcoin::PublicKey::from_slice(pk).map_err(anyhow::Error::from)?;
    let compressed = bitcoin::CompressedPublicKey(key.inner);
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let (xonly, _) = key.inner.x_only_public_key();
    Ok(vec![
        ScriptBuf::new_p2wpkh(&compressed.wpubkey_hash()),
        ScriptBuf::new_p2pkh(&key.pubkey_hash()),
        ScriptBuf::new_p2tr(&secp, xonly, None),
    ])
}

/// An estimate of the signed transaction's virtual size, for the fee rate
/// shown and checked (the unsigned transaction plus typical witnesses).
fn estimated_vsize(psbt: &Psbt, prevouts: &[TxOut]) -> u64 {
    let mut weight = psbt.unsigned_tx.weight().to_wu() + 2;
    for (input, prev) in psbt.inputs.iter().zip(prevouts) {
        let s = &prev.script_pubkey;
        weight += if s.is_p2wpkh() {
            108
        } else if s.is_p2tr() {
            66
        } else if s.is_p2pkh() {
            4 * 107
        } else if let Some(ws) = &input.witness_script {
            // Signatures (at most one per key) and the script.
            let keys = ws
                .instructions()
                .flatten()
                .filter(|i| i.push_bytes().is_some())
                .count();
            (2 + 73 * keys + 3 + ws.len()) as u64
        } else {
            0
        };
    }
    weight.div_ceil(4)
}

/// Refuses an input whose requested signature hash is not the one signed.
fn check_sighash(psbt: &Psbt, task: &SigningTask) -> Result<(), Failure> {
    let input = task.input();
    let Some(asked) = psbt.inputs[input].sighash_type else {
        return Ok(());
    };
    let ok = match task {
        SigningTask::Ecdsa { .. } => asked.ecdsa_hash_ty() == Ok(bitcoin::EcdsaSighashType::All),
        _ => asked.taproot_hash_ty() == Ok(bitcoin::TapSighashType::Default),
    };
    if ok {
        return Ok(());
    }
    Err(usage(
        "--psbt",
        format!(
            "input {input} asks for signature hash type {asked}; this signer signs \
             SIGHASH_ALL (Taproot: SIGHASH_DEFAULT) only, which commits to every input and output"
        ),
    ))
}

pub(crate) fn sign(a: SignArgs<'_>) -> Result<(), Failure> {
    let network = network_arg(a.network)?;
    let (mut psbt, encoding) = read_psbt_encoded(a.psbt)?;
    let words = Zeroizing::new(
        std::fs::read_to_string(a.mnemonic_file)
            .with_context(|| format!("reading {}", a.mnemonic_file.display()))?,
    );
    let mnemonic = keys::hd::Mnemonic::parse(words.trim())
        .map_err(|e| usage("--mnemonic-file", e.to_string()))?;
    let passphrase = match a.passphrase_file {
        Some(p) => Zeroizing::new(
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => Zeroizing::new(String::new()),
    };
    // A trailing line ending is the file's, not the passphrase's.
    let passphrase = passphrase.trim_end_matches(['\r', '\n']);
    let mut ring = Keyring {
        seed: mnemonic.to_seed(passphrase),
        signer: SoftwareSigner::new(),
        rt: crate::serve::runtime()?,
        derived: BTreeMap::new(),
    };
    let result = sign_with(&mut ring, &mut psbt, network, &a);
    ring.forget();
    let (count, tx) = result?;
    let bytes = psbt.serialize();
    let written = match encoding {
        Encoding::Binary => bytes,
        Encoding::Base64 => data_encoding::BASE64.encode(&bytes).into_bytes(),
    };
    std::fs::write(a.out, written).with_context(|| format!("writing {}", a.out.display()))?;
    println!("signed {count} input(s); wrote {}", a.out.display());
    if let Some(tx) = tx {
        println!("finalized transaction {}", tx.compute_txid());
        println!("raw {}", bitcoin::consensus::encode::serialize_hex(&tx));
    }
    Ok(())
}

fn sign_with(
    ring: &mut Keyring,
    psbt: &mut Psbt,
    network: BitcoinNetwork,
    a: &SignArgs<'_>,
) -> Result<(usize, Option<bitcoin::Transaction>), Failure> {
    let ours = ring.fingerprint()?;
    let mut keys: Vec<[u8; 33]> = Vec::new();
    if let Some(path) = a.path {
        keys.push(ring.derive(path)?);
    }
    for (i, input) in psbt.inputs.clone().iter().enumerate() {
        let claims = our_claims(
            ring,
            ours,
            input
                .bip32_derivation
                .iter()
                .map(|(k, s)| (k.serialize(), s.clone())),
            input
                .tap_key_origins
                .iter()
                .map(|(k, (_, s))| (k.serialize(), s.clone())),
            &format!("input {i}"),
        )?;
        keys.extend(claims.into_iter().map(|(pk, _)| pk));
    }
    keys.sort_unstable();
    keys.dedup();
    let prevouts = chain_btc::prevouts_of(psbt).map_err(|e| usage("--psbt", e.to_string()))?;
    let mut tasks = Vec::new();
    for pk in &keys {
        tasks.extend(tasks_for_key(psbt, pk).map_err(|e| usage("--psbt", e.to_string()))?);
    }
    if tasks.is_empty() {
        if let Some(i) = psbt.inputs.iter().zip(&prevouts).position(|(input, prev)| {
            prev.script_pubkey.is_p2tr() && input.tap_internal_key.is_none()
        }) {
            return Err(usage(
                "--psbt",
                format!(
                    "input {i} spends a Taproot output but the PSBT has no internal key for it \
                     (PSBT_IN_TAP_INTERNAL_KEY, BIP-371): ask its creator to include it"
                ),
            ));
        }
        return Err(usage(
            "--path",
            "this seed's keys spend none of the PSBT's inputs",
        ));
    }
    for t in &tasks {
        check_sighash(psbt, t)?;
    }
    // A segwit v0 signature commits only to its own input's amount: shown
    // amounts (and so the fee) can lie across signing rounds (CVE-2020-14199)
    // unless each input's previous transaction proves its amount.
    for t in &tasks {
        let SigningTask::Ecdsa { input, .. } = *t else {
            continue;
        };
        let i = &psbt.inputs[input];
        let outpoint = psbt.unsigned_tx.input[input].previous_output;
        let proven = i.non_witness_utxo.as_ref().is_some_and(|prev| {
            prev.compute_txid() == outpoint.txid
                && prev.output.get(outpoint.vout as usize) == Some(&prevouts[input])
        });
        if !proven && !a.trust_input_amounts {
            return Err(usage(
                "--psbt",
                format!(
                    "input {input} spends a segwit v0 output whose amount only its previous \
                     transaction (non_witness_utxo) proves; add it, or pass --trust-input-amounts \
                     if the amounts come from a source you trust"
                ),
            ));
        }
    }

    // What is signed, shown before it is: payments, change, fee.
    let tx = psbt.unsigned_tx.clone();
    let mut change = vec![false; tx.output.len()];
    for (n, output) in psbt.outputs.iter().enumerate() {
        let claims = our_claims(
            ring,
            ours,
            output
                .bip32_derivation
                .iter()
                .map(|(k, s)| (k.serialize(), s.clone())),
            output
                .tap_key_origins
                .iter()
                .map(|(k, (_, s))| (k.serialize(), s.clone())),
            &format!("output {n}"),
        )?;
        for (pk, path) in claims {
            if !change_scripts(&pk)?.contains(&tx.output[n].script_pubkey) {
                return Err(usage(
                    "--psbt",
                    format!(
                        "output {n} claims this seed's key at {path} as change but pays another \
                         script: refusing to sign"
                    ),
                ));
            }
            change[n] = true;
        }
    }
    let inputs = sum(prevouts.iter().map(|o| o.value.to_sat()))?;
    let outputs = sum(tx.output.iter().map(|o| o.value.to_sat()))?;
    let paid = sum(tx
        .output
        .iter()
        .zip(&change)
        .filter(|(_, c)| !**c)
        .map(|(o, _)| o.value.to_sat()))?;
    let fee = inputs
        .checked_sub(outputs)
        .ok_or_else(|| usage("--psbt", "the outputs exceed the inputs"))?;
    let vsize = estimated_vsize(psbt, &prevouts);
    println!(
        "transaction {} ({} inputs)",
        tx.compute_txid(),
        tx.input.len()
    );
    for (o, is_change) in tx.output.iter().zip(&change) {
        let to = bitcoin::Address::from_script(&o.script_pubkey, address_net(network))
            .ok()
            .and_then(|addr| chain_btc::BtcAddress::parse(&addr.to_string(), network).ok())
            .map_or_else(
                || format!("script {}", o.script_pubkey.to_hex_string()),
                |x| x.to_string(),
            );
        let what = if *is_change {
            " (change, this seed)"
        } else {
            ""
        };
        println!("  pays {} sat to {to}{what}", o.value.to_sat());
    }
    println!(
        "  fee {fee} sat (about {} sat/vB)",
        fee.div_ceil(vsize.max(1))
    );
    let high_share = paid > 0 && u128::from(fee) * 100 > u128::from(paid);
    let high_rate = fee > vsize.saturating_mul(100);
    if high_share || high_rate {
        let why = if high_share {
            format!("more than 1 % of the {paid} sat paid")
        } else {
            "above 100 sat/vB".to_owned()
        };
        if !a.accept_fee {
            return Err(usage(
                "--accept-fee",
                format!("the fee of {fee} sat is {why}; pass --accept-fee if it is meant"),
            ));
        }
        eprintln!("warning: the fee of {fee} sat is {why} (accepted with --accept-fee)");
    }

    for t in &tasks {
        let pubkey = match *t {
            SigningTask::Ecdsa { pubkey, .. } => pubkey,
            SigningTask::Schnorr { internal_key, .. } => {
                let Some(pk) = keys.iter().find(|k| k[1..] == internal_key) else {
                    return Err(Failure::Runtime(anyhow::anyhow!("no key for a task")));
                };
                *pk
            }
            SigningTask::SchnorrOutput { input, .. } => {
                return Err(anyhow::anyhow!(
                    "input {input} is a threshold key's: its signer nodes sign it"
                )
                .into());
            }
        };
        let Some((ecdsa, schnorr)) = ring.keys_of(&pubkey) else {
            return Err(Failure::Runtime(anyhow::anyhow!("no key for a task")));
        };
        let (key, req) = match *t {
            SigningTask::Ecdsa { digest, .. } => (ecdsa, SignRequest::EcdsaDigest(digest)),
            SigningTask::Schnorr { digest, .. } | SigningTask::SchnorrOutput { digest, .. } => (
                schnorr,
                SignRequest::SchnorrDigest {
                    digest,
                    tweak: Some(TapTweak::NoScripts),
                },
            ),
        };
        let sig = ring
            .rt
            .block_on(ring.signer.sign(key, req.clone()))
            .map_err(anyhow::Error::from)?;
        let pk = ring
            .rt
            .block_on(ring.signer.public_key(key))
            .map_err(anyhow::Error::from)?;
        keys::verify::verify(&pk, &req, &sig).map_err(|e| anyhow::anyhow!("{e}"))?;
        match sig {
            Signature::Ecdsa(e) => {
                let mut rs = [0u8; 64];
                rs[..32].copy_from_slice(&e.r);
                rs[32..].copy_from_slice(&e.s);
                add_ecdsa(psbt, t, &rs).map_err(anyhow::Error::from)?;
            }
            Signature::Schnorr(s) => add_schnorr(psbt, t, &s).map_err(anyhow::Error::from)?,
            Signature::Ed25519(_) => {
                return Err(Failure::Runtime(anyhow::anyhow!("unexpected key")));
            }
        }
    }
    let finalized = if a.finalize {
        Some(
            chain_btc::finalize_in_place(psbt)
                .map_err(|e| usage("--finalize", format!("{e} (other signatures missing?)")))?,
        )
    } else {
        None
    };
    Ok((tasks.len(), finalized))
}

fn sum(mut values: impl Iterator<Item = u64>) -> Result<u64, Failure> {
    values
        .try_fold(0u64, u64::checked_add)
        .ok_or_else(|| usage("--psbt", "amounts overflow"))
}

fn address_net(n: BitcoinNetwork) -> bitcoin::Network {
    match n {
        BitcoinNetwork::Mainnet => bitcoin::Network::Bitcoin,
        BitcoinNetwork::Testnet => bitcoin::Network::Testnet,
        BitcoinNetwork::Signet => bitcoin::Network::Signet,
        BitcoinNetwork::Regtest => bitcoin::Network::Regtest,
    }
}

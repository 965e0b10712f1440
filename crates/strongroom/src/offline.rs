//! `strongroom offline sign`: signs a PSBT on an air-gapped machine with a
//! key derived from a BIP-39 mnemonic — no configuration, no database, no
//! network. It shows what it signs (outputs, amounts, fee) and signs only
//! the inputs its key can spend; the server accepts the result only if it
//! is the approved transaction (`chain_btc::accept_signed`).

use std::path::Path;

use anyhow::Context;
use chain_btc::{SigningTask, add_ecdsa, add_schnorr, tasks_for_key};
use domain::BitcoinNetwork;
use keys::{Algorithm, PublicKey, SignRequest, Signature, Signer, SoftwareSigner, TapTweak};
use zeroize::Zeroizing;

use crate::Failure;
use crate::config::ConfigError;

fn usage(key: &str, message: impl Into<String>) -> Failure {
    Failure::Config(ConfigError {
        key: key.into(),
        message: message.into(),
    })
}

/// Reads a PSBT file: binary (BIP-174) or base64 text.
pub(crate) fn read_psbt(path: &Path) -> Result<bitcoin::Psbt, Failure> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let raw = match std::str::from_utf8(&bytes) {
        Ok(text) if !bytes.starts_with(b"psbt\xff") => data_encoding::BASE64
            .decode(text.trim().as_bytes())
            .map_err(|_| usage("--psbt", "neither a binary PSBT nor base64"))?,
        _ => bytes,
    };
    bitcoin::Psbt::deserialize(&raw).map_err(|e| usage("--psbt", format!("not a PSBT: {e}")))
}

pub(crate) fn sign(
    psbt_path: &Path,
    mnemonic_file: &Path,
    path: &str,
    network: &str,
    out: &Path,
    trust_input_amounts: bool,
) -> Result<(), Failure> {
    let network: BitcoinNetwork = match network {
        "mainnet" => BitcoinNetwork::Mainnet,
        "testnet" => BitcoinNetwork::Testnet,
        "signet" => BitcoinNetwork::Signet,
        "regtest" => BitcoinNetwork::Regtest,
        _ => return Err(usage("--network", "mainnet, testnet, signet or regtest")),
    };
    let mut psbt = read_psbt(psbt_path)?;
    let words = Zeroizing::new(
        std::fs::read_to_string(mnemonic_file)
            .with_context(|| format!("reading {}", mnemonic_file.display()))?,
    );
    let mnemonic = keys::hd::Mnemonic::parse(words.trim())
        .map_err(|e| usage("--mnemonic-file", e.to_string()))?;
    let seed = mnemonic.to_seed("");
    let signer = SoftwareSigner::new();
    let derive =
        || keys::hd::derive_secp256k1(&seed, path).map_err(|e| usage("--path", e.to_string()));
    let ecdsa = signer
        .import(Algorithm::EcdsaSecp256k1, derive()?)
        .map_err(anyhow::Error::from)?;
    let schnorr = signer
        .import(Algorithm::SchnorrBip340, derive()?)
        .map_err(anyhow::Error::from)?;
    let rt = crate::serve::runtime()?;
    let public = rt
        .block_on(signer.public_key(&ecdsa))
        .map_err(anyhow::Error::from)?;
    let PublicKey::Secp256k1(pubkey) = public else {
        return Err(Failure::Runtime(anyhow::anyhow!("not an ECDSA key")));
    };
    let tasks = tasks_for_key(&psbt, &pubkey).map_err(|e| usage("--psbt", e.to_string()))?;
    if tasks.is_empty() {
        return Err(usage("--path", "this key spends none of the PSBT's inputs"));
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
                && prev.output.get(outpoint.vout as usize) == i.witness_utxo.as_ref()
        });
        if !proven && !trust_input_amounts {
            return Err(usage(
                "--psbt",
                format!(
                    "input {input} spends a segwit v0 output whose amount only its previous                      transaction (non_witness_utxo) proves; add it, or pass --trust-input-amounts                      if the amounts come from a source you trust"
                ),
            ));
        }
    }

    // What is signed, shown before it is.
    let tx = &psbt.unsigned_tx;
    let inputs: u64 = psbt
        .inputs
        .iter()
        .filter_map(|i| i.witness_utxo.as_ref())
        .map(|o| o.value.to_sat())
        .sum();
    let outputs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    println!(
        "transaction {} ({} inputs)",
        tx.compute_txid(),
        tx.input.len()
    );
    for o in &tx.output {
        let to = chain_btc::BtcAddress::parse(
            &bitcoin::Address::from_script(&o.script_pubkey, address_net(network))
                .map(|a| a.to_string())
                .unwrap_or_default(),
            network,
        )
        .map_or_else(
            |_| format!("script {}", o.script_pubkey.to_hex_string()),
            |a| a.to_string(),
        );
        println!("  pays {} sat to {to}", o.value.to_sat());
    }
    println!("  fee {} sat", inputs.saturating_sub(outputs));

    for t in &tasks {
        let (key, req) = match *t {
            SigningTask::Ecdsa { digest, .. } => (&ecdsa, SignRequest::EcdsaDigest(digest)),
            SigningTask::Schnorr { digest, .. } => (
                &schnorr,
                SignRequest::SchnorrDigest {
                    digest,
                    tweak: Some(TapTweak::NoScripts),
                },
            ),
            SigningTask::SchnorrOutput { input, .. } => {
                return Err(anyhow::anyhow!(
                    "input {input} is a threshold key's: its signer nodes sign it"
                )
                .into());
            }
        };
        let sig = rt
            .block_on(signer.sign(key, req.clone()))
            .map_err(anyhow::Error::from)?;
        let pk = rt
            .block_on(signer.public_key(key))
            .map_err(anyhow::Error::from)?;
        keys::verify::verify(&pk, &req, &sig).map_err(|e| anyhow::anyhow!("{e}"))?;
        match sig {
            Signature::Ecdsa(e) => {
                let mut rs = [0u8; 64];
                rs[..32].copy_from_slice(&e.r);
                rs[32..].copy_from_slice(&e.s);
                add_ecdsa(&mut psbt, t, &rs).map_err(anyhow::Error::from)?;
            }
            Signature::Schnorr(s) => add_schnorr(&mut psbt, t, &s).map_err(anyhow::Error::from)?,
            Signature::Ed25519(_) => {
                return Err(Failure::Runtime(anyhow::anyhow!("unexpected key")));
            }
        }
    }
    signer.remove(&ecdsa).map_err(anyhow::Error::from)?;
    signer.remove(&schnorr).map_err(anyhow::Error::from)?;
    std::fs::write(out, psbt.serialize()).with_context(|| format!("writing {}", out.display()))?;
    println!("signed {} input(s); wrote {}", tasks.len(), out.display());
    Ok(())
}

fn address_net(n: BitcoinNetwork) -> bitcoin::Network {
    match n {
        BitcoinNetwork::Mainnet => bitcoin::Network::Bitcoin,
        BitcoinNetwork::Testnet => bitcoin::Network::Testnet,
        BitcoinNetwork::Signet => bitcoin::Network::Signet,
        BitcoinNetwork::Regtest => bitcoin::Network::Regtest,
    }
}

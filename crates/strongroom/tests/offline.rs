//! `strongroom offline sign` as a BIP-174 signer: the keys a PSBT's
//! derivation records name, change recognised and a swapped change output
//! refused, only SIGHASH_ALL / DEFAULT signed, a high fee refused without
//! `--accept-fee`, base64 kept, `--finalize` (verified by Bitcoin Core's
//! interpreter), BIP-44 P2PKH inputs, a BIP-39 passphrase, and a clear
//! word for a Taproot input without its internal key. Keys and
//! fingerprints are computed here with rust-bitcoin's BIP-32, a second
//! implementation beside the signer's.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

use bitcoin::bip32::{DerivationPath, Fingerprint, Xpriv};
use bitcoin::psbt::{Psbt, PsbtSighashType};
use bitcoin::secp256k1::{PublicKey, Secp256k1};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, CompressedPublicKey, EcdsaSighashType, Network, OutPoint, ScriptBuf, Sequence,
    Transaction, TxIn, TxOut, Witness, absolute::LockTime,
};

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");
const WORDS: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

struct Seed {
    master: Xpriv,
}

impl Seed {
    fn new(passphrase: &str) -> Seed {
        let seed = keys::hd::Mnemonic::parse(WORDS)
            .unwrap()
            .to_seed(passphrase);
        Seed {
            master: Xpriv::new_master(Network::Testnet, seed.expose()).unwrap(),
        }
    }
    fn fingerprint(&self) -> Fingerprint {
        self.master.fingerprint(&Secp256k1::new())
    }
    fn key(&self, path: &str) -> PublicKey {
        let secp = Secp256k1::new();
        let p = DerivationPath::from_str(path).unwrap();
        self.master
            .derive_priv(&secp, &p)
            .unwrap()
            .private_key
            .public_key(&secp)
    }
    fn source(&self, path: &str) -> (Fingerprint, DerivationPath) {
        (self.fingerprint(), DerivationPath::from_str(path).unwrap())
    }
}

fn p2wpkh(pk: &PublicKey) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&CompressedPublicKey(*pk).wpubkey_hash())
}

fn foreign() -> ScriptBuf {
    chain_btc::BtcAddress::parse(
        "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
        domain::BitcoinNetwork::Testnet,
    )
    .unwrap()
    .script_pubkey()
}

/// A previous transaction paying `script`, so the PSBT proves amounts.
fn funding(script: ScriptBuf, value: u64, tag: u32) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus(tag),
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: script,
        }],
    }
}

/// A PSBT spending `prevs` (each with its previous transaction; segwit
/// ones also with `witness_utxo`) to `outputs`.
fn psbt(prevs: &[(Transaction, bool)], outputs: &[(ScriptBuf, u64)]) -> Psbt {
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: prevs
            .iter()
            .map(|(p, _)| TxIn {
                previous_output: OutPoint {
                    txid: p.compute_txid(),
                    vout: 0,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs
            .iter()
            .map(|(s, v)| TxOut {
                value: Amount::from_sat(*v),
                script_pubkey: s.clone(),
            })
            .collect(),
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    for (input, (prev, segwit)) in psbt.inputs.iter_mut().zip(prevs) {
        input.non_witness_utxo = Some(prev.clone());
        if *segwit {
            input.witness_utxo = Some(prev.output[0].clone());
        }
    }
    psbt
}

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("words.txt"), WORDS).unwrap();
        Run { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn sign(&self, psbt: &Psbt, base64: bool, extra: &[&str]) -> Output {
        let input = self.path("in.psbt");
        let bytes = psbt.serialize();
        if base64 {
            std::fs::write(&input, data_encoding::BASE64.encode(&bytes)).unwrap();
        } else {
            std::fs::write(&input, bytes).unwrap();
        }
        let _ = std::fs::remove_file(self.path("out.psbt"));
        let mut args: Vec<String> = [
            "offline",
            "sign",
            "--psbt",
            input.to_str().unwrap(),
            "--mnemonic-file",
            self.path("words.txt").to_str().unwrap(),
            "--network",
            "testnet",
            "--out",
            self.path("out.psbt").to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Command::new(BIN).args(&args).output().unwrap()
    }
    fn signed(&self) -> Psbt {
        read(&self.path("out.psbt")).0
    }
}

fn read(path: &Path) -> (Psbt, bool) {
    let bytes = std::fs::read(path).unwrap();
    if bytes.starts_with(b"psbt\xff") {
        (Psbt::deserialize(&bytes).unwrap(), false)
    } else {
        let raw = data_encoding::BASE64.decode(&bytes).unwrap();
        (Psbt::deserialize(&raw).unwrap(), true)
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const RECEIVE: &str = "m/84'/1'/0'/0/7";
const CHANGE: &str = "m/84'/1'/0'/1/2";

/// One P2WPKH input of 100 000 sat at RECEIVE (named by its derivation),
/// paying 60 000 away and 39 000 back to CHANGE (1 000 sat fee, 1.7 %).
fn spend_with_change(seed: &Seed, change_script: ScriptBuf) -> Psbt {
    let mine = seed.key(RECEIVE);
    let mut p = psbt(
        &[(funding(p2wpkh(&mine), 100_000, 1), true)],
        &[(foreign(), 60_000), (change_script, 39_000)],
    );
    p.inputs[0]
        .bip32_derivation
        .insert(mine, seed.source(RECEIVE));
    p.outputs[1]
        .bip32_derivation
        .insert(seed.key(CHANGE), seed.source(CHANGE));
    p
}

#[test]
fn keys_from_derivations_change_recognised_fee_checked_base64_kept_finalized() {
    let run = Run::new();
    let seed = Seed::new("");
    let p = spend_with_change(&seed, p2wpkh(&seed.key(CHANGE)));
    // 1 000 sat is more than 1 % of the 60 000 paid: refused without consent.
    let o = run.sign(&p, true, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--accept-fee"), "{}", text(&o));
    assert!(!run.path("out.psbt").exists());

    let o = run.sign(&p, true, &["--accept-fee", "--finalize"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("pays 60000 sat to tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx\n"),
        "{out}"
    );
    assert!(out.contains("pays 39000 sat to"), "{out}");
    assert!(out.contains("(change, this seed)"), "{out}");
    assert!(out.contains("fee 1000 sat"), "{out}");
    assert!(out.contains("warning: the fee"), "{out}");
    // Base64 in, base64 out; finalised, and the raw transaction is Core-valid.
    let (signed, base64) = read(&run.path("out.psbt"));
    assert!(base64, "the input's encoding is kept");
    assert!(signed.inputs[0].final_script_witness.is_some());
    let raw = out
        .lines()
        .find_map(|l| l.strip_prefix("raw "))
        .expect("the finalised transaction is printed");
    let tx: Transaction = bitcoin::consensus::encode::deserialize_hex(raw).expect("a transaction");
    chain_btc::verify_with_core(&tx, &[p.inputs[0].witness_utxo.clone().unwrap()]).unwrap();

    // Binary in, binary out; without --finalize, a partial signature.
    let o = run.sign(&p, false, &["--accept-fee"]);
    assert!(o.status.success(), "{}", text(&o));
    let (signed, base64) = read(&run.path("out.psbt"));
    assert!(!base64);
    assert_eq!(signed.inputs[0].partial_sigs.len(), 1);
    assert!(signed.inputs[0].final_script_witness.is_none());
}

#[test]
fn change_that_claims_this_seed_but_pays_another_key_is_refused() {
    let run = Run::new();
    let seed = Seed::new("");
    // The derivation names CHANGE, the script pays an attacker's key.
    let attacker = Seed::new("someone else").key(CHANGE);
    let p = spend_with_change(&seed, p2wpkh(&attacker));
    let o = run.sign(&p, false, &["--accept-fee"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("output 1 claims this seed's key"),
        "{}",
        text(&o)
    );
    assert!(!run.path("out.psbt").exists());

    // A 1-of-2 between the attacker and this seed's change key: it names
    // the key, but the attacker alone can spend it. Not change.
    let ours = seed.key(CHANGE).serialize();
    let theirs = attacker.serialize();
    let script = bitcoin::script::Builder::new()
        .push_int(1)
        .push_slice(ours)
        .push_slice(theirs)
        .push_int(2)
        .push_opcode(bitcoin::opcodes::all::OP_CHECKMULTISIG)
        .into_script();
    let mut p = spend_with_change(&seed, ScriptBuf::new_p2wsh(&script.wscript_hash()));
    p.outputs[1].witness_script = Some(script);
    let o = run.sign(&p, false, &["--accept-fee"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("output 1 claims this seed's key"),
        "{}",
        text(&o)
    );

    // A derivation record whose key is not what this seed derives there.
    let mut p = spend_with_change(&seed, p2wpkh(&seed.key(CHANGE)));
    p.outputs[1].bip32_derivation.clear();
    p.outputs[1]
        .bip32_derivation
        .insert(attacker, seed.source(CHANGE));
    let o = run.sign(&p, false, &["--accept-fee"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not the key it names"), "{}", text(&o));
}

#[test]
fn only_sighash_all_is_signed() {
    let run = Run::new();
    let seed = Seed::new("");
    for asked in [
        EcdsaSighashType::None,
        EcdsaSighashType::AllPlusAnyoneCanPay,
        EcdsaSighashType::Single,
    ] {
        let mut p = spend_with_change(&seed, p2wpkh(&seed.key(CHANGE)));
        p.inputs[0].sighash_type = Some(PsbtSighashType::from(asked));
        let o = run.sign(&p, false, &["--accept-fee"]);
        assert_eq!(o.status.code(), Some(2), "{asked}: {}", text(&o));
        assert!(text(&o).contains("signature hash type"), "{}", text(&o));
        assert!(!run.path("out.psbt").exists());
    }
    let mut p = spend_with_change(&seed, p2wpkh(&seed.key(CHANGE)));
    p.inputs[0].sighash_type = Some(PsbtSighashType::from(EcdsaSighashType::All));
    let o = run.sign(&p, false, &["--accept-fee"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn bip44_p2pkh_input_with_its_previous_transaction() {
    let run = Run::new();
    let seed = Seed::new("");
    let path = "m/44'/1'/0'/0/0";
    let key = seed.key(path);
    let script = ScriptBuf::new_p2pkh(&bitcoin::PublicKey::new(key).pubkey_hash());
    let prev = funding(script, 50_000, 2);
    let p = psbt(&[(prev.clone(), false)], &[(foreign(), 49_800)]);
    let o = run.sign(&p, false, &["--path", path, "--finalize"]);
    assert!(o.status.success(), "{}", text(&o));
    let signed = run.signed();
    assert!(signed.inputs[0].final_script_sig.is_some());
    let tx = signed.extract_tx().unwrap();
    chain_btc::verify_with_core(&tx, &[prev.output[0].clone()]).unwrap();

    // A witness_utxo that disagrees with the previous transaction given
    // (an amount lie): refused, whichever the signer would have read.
    let seg = "m/84'/1'/0'/0/0";
    let prev_seg = funding(p2wpkh(&seed.key(seg)), 70_000, 5);
    let mut lying = psbt(&[(prev_seg, true)], &[(foreign(), 69_800)]);
    lying.inputs[0].witness_utxo.as_mut().unwrap().value = bitcoin::Amount::from_sat(700_000);
    let o = run.sign(&lying, false, &["--path", seg]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("disagrees"), "{}", text(&o));

    // Without the previous transaction the input names no output at all.
    let mut p = p;
    p.inputs[0].non_witness_utxo = None;
    let o = run.sign(&p, false, &["--path", path]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("PSBT_IN_NON_WITNESS_UTXO"),
        "{}",
        text(&o)
    );
}

#[test]
fn passphrase_and_taproot_without_internal_key() {
    let run = Run::new();
    let with = Seed::new("TREZOR");
    let path = "m/84'/1'/0'/0/0";
    let prev = funding(p2wpkh(&with.key(path)), 30_000, 3);
    let p = psbt(&[(prev, true)], &[(foreign(), 29_900)]);
    // Without the passphrase the seed's keys spend nothing here.
    let o = run.sign(&p, false, &["--path", path]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    std::fs::write(run.path("pass.txt"), "TREZOR\n").unwrap();
    let pass = run.path("pass.txt");
    let o = run.sign(
        &p,
        false,
        &["--path", path, "--passphrase-file", pass.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !text(&o).contains("TREZOR"),
        "the passphrase is shown nowhere"
    );

    // A Taproot input whose PSBT lacks PSBT_IN_TAP_INTERNAL_KEY.
    let seed = Seed::new("");
    let tr = "m/86'/1'/0'/0/0";
    let (xonly, _) = seed.key(tr).x_only_public_key();
    let script = ScriptBuf::new_p2tr(&Secp256k1::new(), xonly, None);
    let p = psbt(
        &[(funding(script, 20_000, 4), true)],
        &[(foreign(), 19_900)],
    );
    let o = run.sign(&p, false, &["--path", tr]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("PSBT_IN_TAP_INTERNAL_KEY"),
        "{}",
        text(&o)
    );
    // With it, the key path is signed and finalises under Core's rules.
    let mut p = p;
    p.inputs[0].tap_internal_key = Some(xonly);
    let o = run.sign(&p, false, &["--path", tr, "--finalize"]);
    assert!(o.status.success(), "{}", text(&o));
}

//! Official vectors: BIP-173 and BIP-350 (Bech32 / Bech32m and segwit
//! addresses) and the BIP-341 wallet vectors (Taproot outputs, key-path
//! sighashes and signatures, a fully signed transaction checked by Core).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::str::FromStr;

use bitcoin::bech32::primitives::decode::CheckedHrpstring;
use bitcoin::bech32::{Bech32, Bech32m};
use bitcoin::hashes::Hash;
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{Address, Amount, ScriptBuf, Transaction, TxOut};
use chain_btc::{BtcAddress, verify_with_core};
use domain::BitcoinNetwork;
use keys::{Algorithm, PublicKey, Secret32, SignRequest, Signature, Signer, TapTweak};

/// Lines of a vector file as (kind, fields), with `\xNN` escapes decoded.
fn lines(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split(' ').map(unescape);
            (parts.next().unwrap(), parts.collect())
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        let code = u8::from_str_radix(&rest[i + 2..i + 4], 16).unwrap();
        out.push(char::from(code));
        rest = &rest[i + 4..];
    }
    out.push_str(rest);
    out
}

fn network_of(address: &str) -> BitcoinNetwork {
    if address.to_lowercase().starts_with("bc1") {
        BitcoinNetwork::Mainnet
    } else {
        BitcoinNetwork::Testnet
    }
}

fn check_bech32_file(text: &str, expect_counts: (usize, usize, usize, usize)) {
    let mut counts = (0, 0, 0, 0);
    for (kind, f) in lines(text) {
        match kind.as_str() {
            "valid-bech32" => {
                assert!(CheckedHrpstring::new::<Bech32>(&f[0]).is_ok(), "{f:?}");
                assert!(CheckedHrpstring::new::<Bech32m>(&f[0]).is_err(), "{f:?}");
                counts.0 += 1;
            }
            "valid-bech32m" => {
                assert!(CheckedHrpstring::new::<Bech32m>(&f[0]).is_ok(), "{f:?}");
                assert!(CheckedHrpstring::new::<Bech32>(&f[0]).is_err(), "{f:?}");
                counts.0 += 1;
            }
            "invalid-bech32" => {
                assert!(CheckedHrpstring::new::<Bech32>(&f[0]).is_err(), "{f:?}");
                counts.1 += 1;
            }
            "invalid-bech32m" => {
                assert!(CheckedHrpstring::new::<Bech32m>(&f[0]).is_err(), "{f:?}");
                counts.1 += 1;
            }
            "valid-address" => {
                let (text, spk) = (&f[0], &f[1]);
                // rust-bitcoin accepts every valid address with its script…
                let a = Address::from_str(text).unwrap().assume_checked();
                assert_eq!(hex::encode(a.script_pubkey().as_bytes()), *spk, "{text}");
                // …and Strongroom pays only to the types it knows: witness v0
                // and Taproot; future witness versions are refused, not misread.
                match BtcAddress::parse(text, network_of(text)) {
                    Ok(ours) => assert_eq!(hex::encode(ours.script_pubkey().as_bytes()), *spk),
                    Err(chain_btc::AddressError::Unsupported(_)) => {
                        let version = ScriptBuf::from_hex(spk).unwrap().witness_version();
                        assert!(version.is_some_and(|v| v.to_num() >= 1), "{text}");
                    }
                    Err(e) => panic!("{text}: {e}"),
                }
                counts.2 += 1;
            }
            "invalid-address" => {
                for n in [BitcoinNetwork::Mainnet, BitcoinNetwork::Testnet] {
                    assert!(BtcAddress::parse(&f[0], n).is_err(), "{f:?}");
                }
                counts.3 += 1;
            }
            other => panic!("unknown line kind {other}"),
        }
    }
    assert_eq!(counts, expect_counts);
}

#[test]
fn bip173_vectors() {
    check_bech32_file(include_str!("vectors/bip173.txt"), (7, 12, 3, 0));
}

#[test]
fn bip350_vectors() {
    check_bech32_file(include_str!("vectors/bip350.txt"), (7, 14, 8, 15));
}

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("vectors/bip341-wallet-test-vectors.json")).unwrap()
}

fn h32(v: &serde_json::Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn bip341_outputs_tweak_and_address() {
    let v = vectors();
    let cases = v["scriptPubKey"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for c in cases {
        let internal = h32(&c["given"]["internalPubkey"]);
        let tweak = match c["intermediary"]["merkleRoot"].as_str() {
            None => TapTweak::NoScripts,
            Some(_) => TapTweak::MerkleRoot(h32(&c["intermediary"]["merkleRoot"])),
        };
        // The tweak as libsecp256k1 computes it through the signer seam's verifier.
        let output = keys::verify::output_key(&internal, Some(tweak)).unwrap();
        assert_eq!(output, h32(&c["intermediary"]["tweakedPubkey"]));
        let spk = format!("5120{}", hex::encode(output));
        assert_eq!(spk, c["expected"]["scriptPubKey"].as_str().unwrap());
        let address = c["expected"]["bip350Address"].as_str().unwrap();
        let parsed = BtcAddress::parse(address, BitcoinNetwork::Mainnet).unwrap();
        assert_eq!(hex::encode(parsed.script_pubkey().as_bytes()), spk);
    }
}

#[tokio::test]
async fn bip341_key_path_sighashes_and_signatures() {
    let v = vectors();
    let k = &v["keyPathSpending"][0];
    let tx: Transaction = bitcoin::consensus::deserialize(
        &hex::decode(k["given"]["rawUnsignedTx"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let prevouts: Vec<TxOut> = k["given"]["utxosSpent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| TxOut {
            script_pubkey: ScriptBuf::from_hex(u["scriptPubKey"].as_str().unwrap()).unwrap(),
            value: Amount::from_sat(u["amountSats"].as_u64().unwrap()),
        })
        .collect();
    let mut cache = SighashCache::new(&tx);
    let inputs = k["inputSpending"].as_array().unwrap();
    assert_eq!(inputs.len(), 7);
    for i in inputs {
        let index = i["given"]["txinIndex"].as_u64().unwrap() as usize;
        let hash_type =
            TapSighashType::from_consensus_u8(i["given"]["hashType"].as_u64().unwrap() as u8)
                .unwrap();
        let sighash = cache
            .taproot_key_spend_signature_hash(index, &Prevouts::All(&prevouts), hash_type)
            .unwrap();
        assert_eq!(
            sighash.to_byte_array(),
            h32(&i["intermediary"]["sigHash"]),
            "input {index}"
        );

        let tweak = match i["given"]["merkleRoot"].as_str() {
            None => TapTweak::NoScripts,
            Some(_) => TapTweak::MerkleRoot(h32(&i["given"]["merkleRoot"])),
        };
        // Our signer, given the internal private key, signs for the tweaked key.
        let signer = keys::SoftwareSigner::new();
        let key = signer
            .import(
                Algorithm::SchnorrBip340,
                Secret32::from_bytes(&mut h32(&i["given"]["internalPrivkey"])),
            )
            .unwrap();
        let public = signer.public_key(&key).await.unwrap();
        assert_eq!(
            public,
            PublicKey::XOnly(h32(&i["intermediary"]["internalPubkey"]))
        );
        let req = SignRequest::SchnorrDigest {
            digest: sighash.to_byte_array(),
            tweak: Some(tweak),
        };
        let sig = signer.sign(&key, req.clone()).await.unwrap();
        keys::verify::verify(&public, &req, &sig).unwrap();
        // The vector's own signature verifies the same way.
        let witness = hex::decode(i["expected"]["witness"][0].as_str().unwrap()).unwrap();
        let theirs: [u8; 64] = witness[..64].try_into().unwrap();
        keys::verify::verify(&public, &req, &Signature::Schnorr(theirs)).unwrap();
    }
    // The fully signed transaction passes Bitcoin Core's interpreter.
    let signed: Transaction = bitcoin::consensus::deserialize(
        &hex::decode(k["auxiliary"]["fullySignedTx"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    verify_with_core(&signed, &prevouts).unwrap();
    let mut broken = signed.clone();
    broken.output[0].value = Amount::from_sat(broken.output[0].value.to_sat() + 1);
    assert!(verify_with_core(&broken, &prevouts).is_err());
}

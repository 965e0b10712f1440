//! BIP-32, BIP-39 and SLIP-10 official vectors, read from data files.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use bip32::Prefix;
use keys::hd::{self, Mnemonic, Purpose, Seed};
use serde_json::Value;

fn vectors(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn seed(v: &Value) -> Seed {
    Seed::from_bytes(&hex::decode(v["seed"].as_str().unwrap()).unwrap()).unwrap()
}

#[test]
fn bip32_vectors_1_to_4() {
    let data = vectors("bip32.json");
    let mut chains = 0;
    for v in data["vectors"].as_array().unwrap() {
        let seed = seed(v);
        for c in v["chains"].as_array().unwrap() {
            let path = c["path"].as_str().unwrap();
            let xprv = hd::xprv(&seed, path, Prefix::XPRV).unwrap();
            assert_eq!(
                xprv.as_str(),
                c["xprv"].as_str().unwrap(),
                "{} {path}",
                v["name"]
            );
            let xpub = hd::xpub(&seed, path, Prefix::XPUB).unwrap();
            assert_eq!(xpub, c["xpub"].as_str().unwrap(), "{} {path}", v["name"]);
            chains += 1;
        }
    }
    assert_eq!(chains, 17, "BIP-32 vectors 1-4 have 17 chains");
}

#[test]
fn bip32_vector_5_invalid_keys_are_refused() {
    let data = vectors("bip32.json");
    let invalid = data["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 16);
    for k in invalid {
        let key = k["key"].as_str().unwrap();
        assert!(
            hd::parse_xprv(key).is_err() && hd::parse_xpub(key).is_err(),
            "accepted {key}: {}",
            k["reason"]
        );
    }
}

#[test]
fn bip39_reference_vectors() {
    let data = vectors("bip39.json");
    let passphrase = data["passphrase"].as_str().unwrap();
    let english = data["english"].as_array().unwrap();
    assert_eq!(english.len(), 24);
    for v in english {
        let (phrase, seed_hex, xprv) = (
            v[1].as_str().unwrap(),
            v[2].as_str().unwrap(),
            v[3].as_str().unwrap(),
        );
        let m = Mnemonic::parse(phrase).unwrap();
        let seed = m.to_seed(passphrase);
        let expected = Seed::from_bytes(&hex::decode(seed_hex).unwrap()).unwrap();
        assert_eq!(
            hd::xprv(&seed, "m", Prefix::XPRV).unwrap().as_str(),
            xprv,
            "{phrase}"
        );
        assert_eq!(
            hd::xprv(&expected, "m", Prefix::XPRV).unwrap().as_str(),
            xprv
        );
    }
    assert!(Mnemonic::parse("abandon abandon abandon").is_err());
    let bad_checksum = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon";
    assert!(Mnemonic::parse(bad_checksum).is_err());
}

#[test]
fn slip10_ed25519_vectors() {
    let data = vectors("slip10-ed25519.json");
    let mut chains = 0;
    for v in data["vectors"].as_array().unwrap() {
        let seed = seed(v);
        for c in v["chains"].as_array().unwrap() {
            let path = c["path"].as_str().unwrap();
            let (key, chain) = hd::derive_ed25519(&seed, path).unwrap();
            assert_eq!(
                hex::encode(key.expose()),
                c["private"].as_str().unwrap(),
                "{path}"
            );
            assert_eq!(
                hex::encode(chain),
                c["chain_code"].as_str().unwrap(),
                "{path}"
            );
            let public = ed25519_dalek::SigningKey::from_bytes(key.expose()).verifying_key();
            assert_eq!(
                format!("00{}", hex::encode(public.as_bytes())),
                c["public"].as_str().unwrap(),
                "{path}"
            );
            chains += 1;
        }
    }
    assert_eq!(chains, 12, "SLIP-10 ed25519 vectors have 12 chains");
    assert_eq!(
        hd::derive_ed25519(&seed(&data["vectors"][0]), "m/0H/1").unwrap_err(),
        hd::HdError::UnhardenedEd25519
    );
}

#[test]
fn account_paths_and_watch_only_derivation() {
    assert_eq!(
        hd::account_path(Purpose::Bip84, 0, 0).unwrap(),
        "m/84'/0'/0'"
    );
    assert_eq!(
        hd::account_path(Purpose::Bip86, 1, 3).unwrap(),
        "m/86'/1'/3'"
    );
    assert_eq!(
        hd::account_path(Purpose::Bip44, 60, 0).unwrap(),
        "m/44'/60'/0'"
    );
    assert!(hd::account_path(Purpose::Bip44, 1 << 31, 0).is_err());

    // The xpub of an account derives the same receive keys as the seed.
    let m = Mnemonic::generate().unwrap();
    assert_eq!(m.phrase().split(' ').count(), 24);
    let seed = m.to_seed("");
    let account = hd::account_path(Purpose::Bip84, 0, 0).unwrap();
    let xpub = hd::xpub(&seed, &account, Prefix::XPUB).unwrap();
    for i in [0u32, 1, 7] {
        let watch = hd::derive_from_xpub(&xpub, &[0, i]).unwrap();
        let secret = hd::derive_secp256k1(&seed, &format!("{account}/0/{i}")).unwrap();
        let full = k256::ecdsa::SigningKey::from_bytes(secret.expose().into())
            .unwrap()
            .verifying_key()
            .to_encoded_point(true);
        assert_eq!(&watch[..], full.as_bytes());
    }
    assert_eq!(format!("{m:?}"), "Mnemonic(<redacted>)");
    assert_eq!(format!("{seed:?}"), "Seed(<redacted>)");
}

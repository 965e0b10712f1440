//! Wallet descriptors: BIP-84/86 addresses from an account xpub, multisig,
//! checksums, and the shapes refused.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use chain_btc::*;
use domain::BitcoinNetwork;
use keys::hd;

const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

fn account_xpub(purpose: u32, account: u32) -> String {
    let seed = hd::Mnemonic::parse(ABANDON).unwrap().to_seed("");
    hd::xpub(
        &seed,
        &format!("m/{purpose}'/0'/{account}'"),
        bip32::Prefix::XPUB,
    )
    .unwrap()
}

#[test]
fn bip84_and_bip86_addresses_from_account_descriptors() {
    let mut n = 0;
    for line in include_str!("vectors/bip84-bip86.txt").lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let (purpose, chain, index, address): (u32, u32, u32, &str) = (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3],
        );
        let xpub = account_xpub(purpose, 0);
        let text = match purpose {
            84 => format!("wpkh([73c5da0a/84h/0h/0h]{xpub}/{chain}/*)"),
            _ => format!("tr([73c5da0a/86h/0h/0h]{xpub}/{chain}/*)"),
        };
        let d = WalletDescriptor::parse(&text).unwrap();
        assert_eq!(
            d.address_at(index, BitcoinNetwork::Mainnet)
                .unwrap()
                .to_string(),
            address,
            "{line}"
        );
        // The spend description derives the same output.
        let spend = d.spend_at(index).unwrap();
        let parsed = BtcAddress::parse(address, BitcoinNetwork::Mainnet).unwrap();
        assert_eq!(spend.script_pubkey().unwrap(), parsed.script_pubkey());
        // Exported with a checksum, and read back to the same wallet.
        let exported = d.to_string();
        assert!(exported.contains('#'), "{exported}");
        assert_eq!(WalletDescriptor::parse(&exported).unwrap(), d);
        n += 1;
    }
    assert_eq!(n, 6);
}

#[test]
fn multisig_wallets_and_refused_shapes() {
    let keys: Vec<String> = (0..3).map(|a| account_xpub(48, a)).collect();
    let text = format!(
        "wsh(sortedmulti(2,{}/0/*,{}/0/*,{}/0/*))",
        keys[0], keys[1], keys[2]
    );
    let d = WalletDescriptor::parse(&text).unwrap();
    let Spend::P2wshMulti { threshold, pubkeys } = d.spend_at(5).unwrap() else {
        panic!("not a multisig")
    };
    assert_eq!((threshold, pubkeys.len()), (2, 3));
    assert_eq!(
        d.address_at(5, BitcoinNetwork::Mainnet).unwrap().kind(),
        AddressKind::P2wsh
    );
    // A damaged checksum is refused.
    let exported = d.to_string();
    let (body, sum) = exported.split_once('#').unwrap();
    let bad = format!(
        "{body}#{}",
        if sum.starts_with('a') { "b" } else { "a" }.to_owned() + &sum[1..]
    );
    assert!(matches!(
        WalletDescriptor::parse(&bad),
        Err(DescriptorError::Parse(_))
    ));
    // Shapes Strongroom does not sign for.
    for shape in [
        format!("pkh({}/0/*)", keys[0]),
        format!("wsh(multi(2,{}/0/*,{}/0/*))", keys[0], keys[1]),
        format!("wpkh({}/0/0)", keys[0]),
        format!("sh(wpkh({}/0/*))", keys[0]),
        format!("wpkh({}/<0;1>/*)", keys[0]),
    ] {
        assert!(WalletDescriptor::parse(&shape).is_err(), "{shape}");
    }
    assert!(WalletDescriptor::parse("wpkh(nonsense)").is_err());
    // A cosigner listed twice, or a threshold above the number of keys.
    for bad in [
        format!(
            "wsh(sortedmulti(2,{}/0/*,{}/0/*,{}/0/*))",
            keys[0], keys[0], keys[1]
        ),
        format!(
            "wsh(sortedmulti(2,{}/0/*,{}/1/*,{}/0/*))",
            keys[0], keys[0], keys[1]
        ),
        format!("wsh(sortedmulti(3,{}/0/*,{}/0/*))", keys[0], keys[1]),
        format!("wsh(sortedmulti(0,{}/0/*,{}/0/*))", keys[0], keys[1]),
    ] {
        assert!(WalletDescriptor::parse(&bad).is_err(), "{bad}");
    }
}

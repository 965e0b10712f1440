//! Text a client or an operator hands in: amounts, addresses, descriptors,
//! policy documents, and the request message an API key signs.

use domain::amount::{format_units, parse_units};
use domain::request as signed;
use domain::{BitcoinNetwork, Decimals};

/// The input as text, if it is UTF-8.
fn utf8(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A decimal amount under every number of decimals an asset may have: a
/// value parsed formats back to a string that parses to the same value.
pub fn amount(data: &[u8]) {
    let Some(s) = utf8(data) else { return };
    for d in 0..=36u8 {
        let Ok(decimals) = Decimals::new(d) else {
            continue;
        };
        let Ok(units) = parse_units(s, decimals) else {
            continue;
        };
        for fixed in [false, true] {
            let text = format_units(units, decimals, fixed);
            assert_eq!(
                parse_units(&text, decimals),
                Ok(units),
                "{s:?} at {d} decimals formats as {text:?}"
            );
        }
    }
}

const NETWORKS: [BitcoinNetwork; 4] = [
    BitcoinNetwork::Mainnet,
    BitcoinNetwork::Testnet,
    BitcoinNetwork::Signet,
    BitcoinNetwork::Regtest,
];

/// A Bitcoin address on each network: one parsed shows as text that
/// parses to the same address, and pays a script.
pub fn btc_address(data: &[u8]) {
    let Some(s) = utf8(data) else { return };
    for n in NETWORKS {
        let Ok(a) = chain_btc::BtcAddress::parse(s, n) else {
            continue;
        };
        let shown = a.to_string();
        assert_eq!(
            chain_btc::BtcAddress::parse(&shown, n).as_ref(),
            Ok(&a),
            "{s:?} shows as {shown:?}"
        );
        assert!(!a.script_pubkey().is_empty(), "{s:?} pays no script");
    }
}

/// An Ethereum address: the same address whichever way it was written,
/// its EIP-55 form checksummed, its lower-case form not.
pub fn eth_address(data: &[u8]) {
    use chain_eth::{Casing, EthAddress};
    let Some(s) = utf8(data) else { return };
    let Ok((a, casing)) = EthAddress::parse(s) else {
        assert!(
            EthAddress::parse_checksummed(s).is_err(),
            "{s:?}: refused, yet checksummed"
        );
        return;
    };
    let checksummed = a.to_string();
    assert_eq!(
        EthAddress::parse(&checksummed),
        Ok((a, Casing::Checksummed)),
        "{s:?}"
    );
    let lower = a.to_lower_hex();
    assert_eq!(EthAddress::parse(&lower).map(|p| p.0), Ok(a), "{s:?}");
    if casing == Casing::Checksummed {
        assert_eq!(s, checksummed, "{s:?} accepted as EIP-55");
    }
    // The destination rules see the same address or refuse it.
    let rules = chain_eth::DestinationRules {
        allow_unchecksummed: true,
        whitelist: &[],
    };
    if let Ok(d) = rules.check(s) {
        assert_eq!(d, a, "{s:?}");
    }
}

/// A wallet descriptor (BIP-380 and its checksum): one parsed shows as
/// text that parses to the same descriptor.
pub fn descriptor(data: &[u8]) {
    let Some(s) = utf8(data) else { return };
    let Ok(d) = chain_btc::WalletDescriptor::parse(s) else {
        return;
    };
    let shown = d.to_string();
    assert_eq!(
        chain_btc::WalletDescriptor::parse(&shown).as_ref(),
        Ok(&d),
        "{s:?} shows as {shown:?}"
    );
}

/// A policy document (TOML, or JSON): one accepted reads back from its
/// canonical JSON as the same policy.
pub fn policy(data: &[u8]) {
    let Some(s) = utf8(data) else { return };
    let Ok(p) = policy::Policy::parse(s) else {
        return;
    };
    let json = p.canonical_json();
    assert_eq!(policy::Policy::parse(&json).as_ref(), Ok(&p), "{json}");
}

/// The message an API key signs: the parts of a request (split at 0xff)
/// that HTTP lets through — no line breaks — are each recovered from it,
/// so two different requests never share a signature; v1 and v2 never
/// make the same message.
pub fn request_message(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0xff);
    let mut next = || parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let (Some(method), Some(path), Some(query), Some(ts), Some(nonce), Some(key)) =
        (next(), next(), next(), next(), next(), next())
    else {
        return;
    };
    let body = parts.next().unwrap_or_default();
    let v2 = signed::request_message(method, path, query, body, ts, nonce, key);
    let v1 = signed::request_message_v1(method, path, query, body, ts, nonce);
    assert_ne!(v1, v2);
    let fields = [method, path, query, ts, nonce, key];
    if fields.iter().any(|f| f.contains('\n')) {
        return;
    }
    let text = String::from_utf8(v2).unwrap_or_default();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 8, "{text:?}");
    assert_eq!(lines[0], "strongroom-request-v2");
    assert_eq!(
        [lines[1], lines[2], lines[3], lines[5], lines[6], lines[7]],
        fields,
        "{text:?}"
    );
    assert_eq!(lines[4].len(), 64, "the body's SHA-256");
}

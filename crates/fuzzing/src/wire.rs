//! Messages between processes: a signer node's requests and answers (its
//! first byte says which), a protocol round's envelope, and an audit
//! checkpoint line.

use keys_mpc::Envelope;
use keys_mpc::wire::{Request, Response};

use crate::known;

/// Re-encodes what parsed and checks it reads back the same.
fn stable<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let once = serde_json::to_vec(&v).unwrap_or_default();
    let again = serde_json::from_slice::<T>(&once)
        .map(|w| serde_json::to_vec(&w).unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(once, again, "{}", String::from_utf8_lossy(data));
}

/// A request to a signer node, or its answer: one parsed re-encodes to a
/// message that parses to the same.
pub fn signer_wire(data: &[u8]) {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        stable::<Request>(rest);
    } else {
        stable::<Response>(rest);
    }
}

/// Seeds for [`signer_wire`]: one of every request and answer kind, each
/// a line `request` or `response`, a tab, and the message's JSON
/// (`data/signer_wire.txt`; lines starting with `#` are notes).
pub const SIGNER_WIRE_SEEDS: &str = include_str!("../data/signer_wire.txt");

/// [`SIGNER_WIRE_SEEDS`] as [`signer_wire`] inputs: 0 then a request, 1
/// then an answer.
pub fn signer_wire_seeds() -> Vec<Vec<u8>> {
    SIGNER_WIRE_SEEDS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (kind, json) = l.split_once('\t')?;
            let mut v = vec![u8::from(kind == "response")];
            v.extend_from_slice(json.as_bytes());
            Some(v)
        })
        .collect()
}

/// A protocol round's envelope from a party (the first two bytes): one
/// read is from that party and reads back as itself.
pub fn envelope(data: &[u8]) {
    let [a, b, rest @ ..] = data else { return };
    let from = u16::from_be_bytes([*a, *b]);
    let Ok(e) = Envelope::from_bytes(from, rest) else {
        return;
    };
    assert_eq!(e.from, from);
    assert!(Envelope::from_bytes(from, &e.to_bytes()).ok() == Some(e));
}

/// A checkpoint line: only the one the audit key signed verifies under it.
pub fn checkpoint(data: &[u8]) {
    let Ok(c) = serde_json::from_slice::<audit::Checkpoint>(data) else {
        return;
    };
    if c.verify(&known::audit_key().public()).is_ok() {
        assert_eq!(c, known::checkpoint(), "a checkpoint nobody signed");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use super::*;

    /// Every seed parses, and together they hold every kind of request,
    /// of answer and of finished ECDSA step.
    #[test]
    fn the_seeds_hold_every_message_kind() {
        let mut kinds = BTreeSet::new();
        for seed in signer_wire_seeds() {
            let (which, json) = seed.split_first().unwrap();
            let v: serde_json::Value = serde_json::from_slice(json).unwrap();
            if *which == 0 {
                serde_json::from_slice::<Request>(json).unwrap_or_else(|e| panic!("{e}: {v}"));
                kinds.insert(format!("request {}", v["op"].as_str().unwrap()));
            } else {
                serde_json::from_slice::<Response>(json).unwrap_or_else(|e| panic!("{e}: {v}"));
                kinds.insert(format!("response {}", v["result"].as_str().unwrap()));
                if let Some(made) = v["output"]["made"].as_str() {
                    kinds.insert(format!("step {made}"));
                }
            }
            signer_wire(&seed);
        }
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        assert_eq!(
            kinds,
            [
                "request commit",
                "request dkg_round1",
                "request dkg_round2",
                "request dkg_start",
                "request ecdsa_aux",
                "request ecdsa_keygen",
                "request ecdsa_presign",
                "request ecdsa_sign",
                "request epoch",
                "request hello",
                "request info",
                "request paid_intents",
                "request refresh_commit",
                "request refresh_start",
                "request sign",
                "request step",
                "response commitment",
                "response epoch",
                "response hello",
                "response info",
                "response key",
                "response messages",
                "response paid_intents",
                "response partial",
                "response refused",
                "response share",
                "response step",
                "step aux",
                "step key",
                "step presignature",
            ]
        );
    }
}

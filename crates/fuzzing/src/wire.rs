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

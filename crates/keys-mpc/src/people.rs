//! Who holds the approver keys a node enrolled (`[[policy.people]]` in
//! `signer.toml`): one person's keys (an Ed25519 key and a passkey, say)
//! supply one approval of `min_approvals`, never two. A key no person lists
//! is a person of its own.

use serde::Deserialize;

/// One person and the enrolled approver keys they hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// A name, unique among the node's people.
    pub name: String,
    /// Their keys, as enrolled: an Ed25519 key of `approvers`, or a
    /// passkey approver's `public_key` (hex).
    pub keys: Vec<String>,
}

fn bytes(hex_key: &str) -> Option<Vec<u8>> {
    hex::decode(hex_key.trim()).ok()
}

/// Who holds the key whose point is `point`: the person listing it, or the
/// key itself (hex).
pub(crate) fn person_of(people: &[Person], point: &[u8]) -> String {
    people
        .iter()
        .find(|p| p.keys.iter().any(|k| bytes(k).as_deref() == Some(point)))
        .map_or_else(
            || format!("key:{}", hex::encode(point)),
            |p| format!("person:{}", p.name),
        )
}

/// The people are well formed: named once each, each key enrolled (one of
/// `enrolled`, the points of the node's approver keys) and held by one
/// person. Returns how many distinct people the enrolled keys are.
pub(crate) fn check_people(people: &[Person], enrolled: &[Vec<u8>]) -> Result<usize, String> {
    let mut names: Vec<&str> = Vec::new();
    let mut held: Vec<Vec<u8>> = Vec::new();
    for p in people {
        if p.name.trim().is_empty() || names.contains(&p.name.as_str()) {
            return Err(format!("people: {:?} is empty or named twice", p.name));
        }
        names.push(&p.name);
        if p.keys.is_empty() {
            return Err(format!("people: {} holds no key", p.name));
        }
        for k in &p.keys {
            let Some(point) = bytes(k).filter(|b| enrolled.contains(b)) else {
                return Err(format!(
                    "people: {}'s key {k} is not an enrolled approver key",
                    p.name
                ));
            };
            if held.contains(&point) {
                return Err(format!("people: key {k} is held by two people"));
            }
            held.push(point);
        }
    }
    let mut distinct: Vec<String> = enrolled.iter().map(|k| person_of(people, k)).collect();
    distinct.sort();
    distinct.dedup();
    Ok(distinct.len())
}

//! Misbehaviour armed from the environment, for the crash and fault tests
//! (feature `test-hooks`: test builds only, never a release build):
//! `STRONGROOM_SIGNER_CRASH_AT` kills the node after it answers a request,
//! `STRONGROOM_SIGNER_FAULT=bad_share` makes it send bad signature shares,
//! and `STRONGROOM_SIGNER_TEST_PRIMES` gives it published Paillier primes.

use super::{ANSWERS, Fault, Node};

/// Arms the crash point and fault the environment names, if any.
pub fn arm_from_env(node: Node, kill: fn(&'static str) -> !) -> Result<Node, String> {
    let mut node = node;
    if let Ok(at) = std::env::var("STRONGROOM_SIGNER_CRASH_AT") {
        let Some(&point) = ANSWERS.iter().find(|p| **p == at) else {
            return Err(format!(
                "STRONGROOM_SIGNER_CRASH_AT: one of {}",
                ANSWERS.join(", ")
            ));
        };
        tracing::error!(
            point,
            "CRASH POINT ARMED: this node kills itself there (tests only)"
        );
        node = node.with_crash_hook(move |op| {
            if op == point {
                kill(op);
            }
        });
    }
    match std::env::var("STRONGROOM_SIGNER_FAULT").as_deref() {
        Err(_) => {}
        Ok("bad_share") => {
            tracing::error!("FAULT ARMED: this node sends bad signature shares (tests only)");
            node = node.with_fault(Fault::BadShare);
        }
        Ok(other) => {
            return Err(format!(
                "STRONGROOM_SIGNER_FAULT: {other:?} is not bad_share"
            ));
        }
    }
    Ok(node)
}

/// Takes published primes from the file `STRONGROOM_SIGNER_TEST_PRIMES`
/// names (JSON, four per party), if set: `true` if it did. Never for real
/// keys: anyone who has read them knows this node's Paillier secret.
pub fn test_primes_from_env(node: &Node) -> Result<bool, String> {
    let Ok(path) = std::env::var("STRONGROOM_SIGNER_TEST_PRIMES") else {
        return Ok(false);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let all: Vec<Vec<String>> =
        serde_json::from_str(&text).map_err(|e| format!("{path}: JSON arrays of primes: {e}"))?;
    let index = usize::from(node.public().index);
    let mine = index
        .checked_sub(1)
        .and_then(|i| all.get(i))
        .ok_or_else(|| format!("{path}: no primes for party {index}"))?;
    tracing::error!("TEST PRIMES: this node's Paillier key is published (tests only)");
    node.use_test_primes(mine)
        .map_err(|e| format!("test primes: {e}"))?;
    Ok(true)
}

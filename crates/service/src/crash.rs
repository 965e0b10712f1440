//! Labelled crash points on the way from a request to the chain, for the
//! crash tests: the binary installs a hook (only when it is asked to, by
//! `STRONGROOM_CRASH_AT`) that kills the process at the named point. With no
//! hook installed a point does nothing.
//!
//! | label                 | reached when                                            |
//! |-----------------------|---------------------------------------------------------|
//! | `after_intent_insert` | the judged transfer is committed, before the response  |
//! | `after_claim`         | a worker holds the transfer's lease, nothing planned    |
//! | `after_reservation`   | the nonce and plan are committed, nothing signed        |
//! | `after_signing`       | the signature exists in memory only                     |
//! | `after_persist`       | the signed bytes are committed, not yet broadcast       |
//! | `after_broadcast`     | the node took the bytes, that is not yet recorded       |
//! | `after_inclusion`     | the block is recorded, the depth not yet reached        |

use std::sync::OnceLock;

type Hook = Box<dyn Fn(&'static str) + Send + Sync>;

static HOOK: OnceLock<Hook> = OnceLock::new();

/// Every label a crash point carries.
pub const POINTS: [&str; 7] = [
    "after_intent_insert",
    "after_claim",
    "after_reservation",
    "after_signing",
    "after_persist",
    "after_broadcast",
    "after_inclusion",
];

/// Installs the hook every crash point calls; once per process (a second
/// call is refused).
pub fn install(hook: impl Fn(&'static str) + Send + Sync + 'static) -> Result<(), &'static str> {
    HOOK.set(Box::new(hook))
        .map_err(|_| "a crash hook is already installed")
}

/// A crash point: calls the hook, if one is installed.
pub(crate) fn point(label: &'static str) {
    debug_assert!(POINTS.contains(&label), "{label}");
    if let Some(h) = HOOK.get() {
        h(label);
    }
}

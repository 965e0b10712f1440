//! Labelled crash points on the way from a request to the chain, for the
//! crash tests. In a build with the `test-hooks` feature (tests only; never
//! a release build) the binary arms one from the environment
//! ([`arm_from_env`]) and the process kills itself at that point; without
//! the feature nothing can arm one and a point does nothing.
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
//! | `after_approval`      | an approval is committed (and its transfer moved on), not yet answered |
//! | `after_webhook_post`  | a webhook receiver took a delivery, that is not yet recorded |

#[cfg(feature = "test-hooks")]
mod hooks;
#[cfg(feature = "test-hooks")]
pub use hooks::arm_from_env;

/// Without the `test-hooks` feature nothing is read and nothing is armed.
#[cfg(not(feature = "test-hooks"))]
pub fn arm_from_env(_kill: fn(&'static str) -> !) -> Result<Option<&'static str>, String> {
    Ok(None)
}

/// Every label a crash point carries.
pub const POINTS: [&str; 9] = [
    "after_intent_insert",
    "after_claim",
    "after_reservation",
    "after_signing",
    "after_persist",
    "after_broadcast",
    "after_inclusion",
    "after_approval",
    "after_webhook_post",
];

/// A crash point: kills the process if it is the one armed (test builds).
pub(crate) fn point(label: &'static str) {
    debug_assert!(POINTS.contains(&label), "{label}");
    #[cfg(feature = "test-hooks")]
    hooks::fire(label);
}

//! Fuzz targets for every parser of untrusted input, each a function of
//! bytes that panics only when a property breaks (a parse that does not
//! read back as itself, a signed transaction that is not the plan, a
//! panic inside a parser). `fuzz/` runs them under libFuzzer
//! (`scripts/fuzz`); `tests/corpus.rs` replays every file of the checked-in
//! corpus through them on each `scripts/test`, and a crash found once is
//! kept under `fuzz/regressions/<target>/` for good.
//!
//! The fixed plans, keys and statements the targets check input against
//! are in [`known`]; `cargo run -p fuzzing --bin fuzz-seeds` writes the
//! seed inputs (a correctly signed PSBT and transaction among them, so the
//! fuzzer starts past the signature checks).

pub mod chains;
pub mod known;
pub mod settings;
pub mod statements;
pub mod stored;
pub mod text;
pub mod wire;

/// A target: its name (the directory of its corpus) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("amount", text::amount),
    ("btc_address", text::btc_address),
    ("eth_address", text::eth_address),
    ("descriptor", text::descriptor),
    ("policy", text::policy),
    ("request_message", text::request_message),
    ("intent", statements::intent),
    ("approval", statements::approval),
    ("psbt", chains::psbt),
    ("eth_tx", chains::eth_tx),
    ("signer_wire", wire::signer_wire),
    ("envelope", wire::envelope),
    ("checkpoint", wire::checkpoint),
    ("backup_manifest", stored::backup_manifest),
    ("config", settings::config),
    ("webhook_url", settings::webhook_url),
];

/// The body of the target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

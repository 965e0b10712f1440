//! Strongroom's policy: the rules that decide whether money may move.
//!
//! Pure: no I/O, no clock, no randomness. The service gathers the [`Facts`]
//! (who, from where, to where, how much, the rolling-window totals the
//! policy asks for, a price snapshot, the time) and calls [`evaluate`],
//! which returns a [`Decision`] with its explanation. Rules are tried in
//! order, the first match wins, no match blocks, and any error blocks.
//!
//! ## What is where
//!
//! policy documents (`document.rs`: TOML/JSON, `deny_unknown_fields`, checked at load into a
//! `Policy` with the rule named in every error), the evaluator (`eval.rs`: `evaluate(&Policy,
//! &Facts) -> Decision`: circuit breakers first, then rules in order, first match wins, no match
//! blocks, any error blocks; every step explained in the trace; `Policy::window_specs` tells the
//! service which rolling windows to total), and approvals (`approval.rs`: `Resolved` requirements
//! with each group's members pinned at judgment, the tally, and `ApprovalStatement` (`SRAP` v1)
//! verified strictly with Ed25519), and approver keys of either kind (`passkey.rs`: Ed25519 or a
//! passkey, whose WebAuthn assertion over the statement's digest is verified with `p256`). Data-driven tests (`tests/evaluate.rs`), properties
//! (`tests/properties.rs`), bench `evaluate`.

pub mod approval;
pub mod document;
pub mod eval;
pub mod governance;
pub mod passkey;
pub mod terms;

pub use approval::{ApprovalStatement, Resolved, StatementError, Vote};
pub use document::{
    ActionKind, DestinationKind, Policy, PolicyDocument, PolicyError, Tier, TxType, WindowPer,
    WindowSpec, WindowUnit,
};
pub use eval::{
    Decision, Destination, Facts, Outcome, Price, Step, StepResult, WindowTotal, evaluate,
};
pub use governance::{GovernanceStatement, RecordFields};
pub use passkey::{ApprovalSignature, ApproverKey, Assertion, KeyError, RelyingParty};

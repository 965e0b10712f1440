//! Strongroom's policy: the rules that decide whether money may move.
//!
//! Pure: no I/O, no clock, no randomness. The service gathers the [`Facts`]
//! (who, from where, to where, how much, the rolling-window totals the
//! policy asks for, a price snapshot, the time) and calls [`evaluate`],
//! which returns a [`Decision`] with its explanation. Rules are tried in
//! order, the first match wins, no match blocks, and any error blocks.

pub mod approval;
pub mod document;
pub mod eval;

pub use approval::{ApprovalStatement, Resolved, StatementError, Vote};
pub use document::{
    ActionKind, DestinationKind, Policy, PolicyDocument, PolicyError, Tier, TxType, WindowPer,
    WindowSpec, WindowUnit,
};
pub use eval::{
    Decision, Destination, Facts, Outcome, Price, Step, StepResult, WindowTotal, evaluate,
};

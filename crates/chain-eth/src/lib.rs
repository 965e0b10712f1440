//! Ethereum without I/O: addresses (EIP-55), transactions built, signed and
//! decoded with alloy's consensus types (EIP-1559, and legacy EIP-155 where a
//! network needs it), ERC-20 calldata and call classification, fee estimates,
//! replacement bumps and fee caps — and [`approve`], the one check that
//! turns a built plan into the [`Approved`] value a key may sign.
//!
//! Pure: no I/O, no clock, no randomness. Node I/O lives in
//! `chain-eth-client`; keys are reached through the signer seam by `service`.
//!
//! ## What is where
//!
//! EIP-55 addresses and destination rules (zero address, precompiles and system contracts refused;
//! unchecksummed only where allowed or whitelisted byte for byte), `TxPlan` (what is approved)
//! with its signing hash, signed EIP-2718 bytes, `decode` back to a plan and its signer, ERC-20
//! calldata, `classify` (payments vs. admin surface: upgrades, ownership, unknown-spender
//! approvals, delegatecall, multisig config), fee estimates by urgency, replacement bumps and
//! `FeeCaps`. `approved.rs`: `approve(intended, sender, caps, kind, plan) -> Approved` — the one
//! check that a plan pays exactly one approved intent (recipient, amount, asset, chain, ERC-20
//! calldata byte for byte, the sender's wallet) or replaces its payment (speed-up: same payment,
//! same nonce, higher fee; cancel: nothing to the sender itself); `Approved` has no other
//! constructor. Vectors in `tests/vectors/`.

pub mod address;
pub mod approved;
pub mod calls;
pub mod fees;
pub mod tx;

pub use address::{AddressError, Casing, DestinationRules, EthAddress, check_destination};
pub use approved::{Approved, ApprovedKind, Intended, Kind, Refusal, Sender, approve};
pub use calls::{AdminKind, CallClass, CallError, Classified, ContractRules, classify};
pub use fees::{FeeCaps, FeeError, FeeHistory, Urgency};
pub use tx::{DecodedTx, EcdsaParts, Fees, SignedTx, TxError, TxPlan, decode};

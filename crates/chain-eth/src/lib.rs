//! Ethereum without I/O: addresses (EIP-55), transactions built, signed and
//! decoded with alloy's consensus types (EIP-1559, and legacy EIP-155 where a
//! network needs it), ERC-20 calldata and call classification, fee estimates,
//! replacement bumps and fee caps — and [`approve`], the one check that
//! turns a built plan into the [`Approved`] value a key may sign.
//!
//! Pure: no I/O, no clock, no randomness. Node I/O lives in
//! `chain-eth-client`; keys are reached through the signer seam by `service`.

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

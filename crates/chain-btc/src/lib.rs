//! Bitcoin without I/O: addresses of the five standard types with network
//! checks (BIP-173/350), PSBTs for P2WPKH, P2TR key path and P2WSH
//! multisig, signing digests for the signer seam, combining cosigners,
//! finalising with miniscript, and verification of every signed
//! transaction by Bitcoin Core's interpreter (`bitcoinconsensus`) — and
//! [`approve`], the one check that turns an unsigned transaction into the
//! [`Approved`] value a key may sign.
//!
//! Pure: no I/O, no clock, no randomness.
//!
//! ## What is where
//!
//! `BtcAddress` (P2PKH, P2SH, P2WPKH, P2WSH, P2TR on the right network; other witness versions
//! refused as destinations), `WalletDescriptor` (`wpkh`, `tr` key path, `wsh(sortedmulti)` via
//! miniscript, with checksums), `BtcPlan` → PSBT, signing tasks (digests for the seam),
//! `add_ecdsa`/`add_schnorr` (each checked before it enters), `combine`, `finalize` (miniscript)
//! and `verify_with_core` (`bitcoinconsensus`, every input against all spent outputs),
//! `accept_signed` (a PSBT signed elsewhere must be the approved transaction), `tasks_for_key` (an
//! offline signer's view), coin selection (branch and bound in quarter-satoshis, largest-first
//! fallback), fee caps, BIP-125 bumps, CPFP; `approved.rs`: `approve(intended, paying, caps,
//! unsigned) -> Approved` — only outputs reserved for the send and of the wallet, the approved
//! payouts in order, at most one change output to the wallet's own scripts, fee caps, at most 256
//! payouts. Vectors (BIP-173/350/341/84/86) in `tests/vectors/` with `SOURCES.md`.

pub mod address;
pub mod approved;
pub mod descriptor;
pub mod psbt;
pub mod select;

pub use address::{AddressError, AddressKind, BtcAddress};
pub use approved::{Approved, Intended, MAX_PAYOUTS, Paying, Refusal, approve};
pub use descriptor::{DescriptorError, WalletDescriptor, checksummed};
pub use psbt::{
    BtcError, BtcPlan, Payout, SigningTask, Spend, Summary, Utxo, accept_signed, add_ecdsa,
    add_schnorr, combine, finalize, finalize_in_place, prevouts_of, signing_tasks, summarize,
    tasks_for_key, verify_with_core,
};
pub use select::{FeeCaps, FeeError, bump, consolidate, cpfp, fee_for_weight, fee_owed, select};

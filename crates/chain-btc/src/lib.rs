//! Bitcoin without I/O: addresses of the five standard types with network
//! checks (BIP-173/350), PSBTs for P2WPKH, P2TR key path and P2WSH
//! multisig, signing digests for the signer seam, combining cosigners,
//! finalising with miniscript, and verification of every signed
//! transaction by Bitcoin Core's interpreter (`bitcoinconsensus`) — and
//! [`approve`], the one check that turns an unsigned transaction into the
//! [`Approved`] value a key may sign.
//!
//! Pure: no I/O, no clock, no randomness.

pub mod address;
pub mod approved;
pub mod descriptor;
pub mod psbt;
pub mod select;

pub use address::{AddressError, AddressKind, BtcAddress};
pub use approved::{Approved, Intended, MAX_PAYOUTS, Paying, Refusal, approve};
pub use descriptor::{DescriptorError, WalletDescriptor};
pub use psbt::{
    BtcError, BtcPlan, Payout, SigningTask, Spend, Summary, Utxo, accept_signed, add_ecdsa,
    add_schnorr, combine, finalize, signing_tasks, summarize, tasks_for_key, verify_with_core,
};
pub use select::{FeeCaps, FeeError, bump, consolidate, cpfp, fee_for_weight, fee_owed, select};

//! Persistence: repositories and migrations on SQLite and PostgreSQL.
//!
//! The only crate that knows SQL. One code path serves both databases through
//! `sqlx`'s `Any` driver with portable SQL (`$1` parameters work on both);
//! each database has its own migrations. Every change is made inside a
//! [`WriteTx`], which can only commit together with at least one audit record,
//! appended under a lock on the chain head.

mod accounts;
mod audit_log;
mod btc;
mod deposits;
mod error;
mod eth;
mod governance;
mod identity;
mod keystore;
mod row;
mod store;
#[cfg(feature = "test-support")]
pub mod testing;
mod tx;
mod webhooks;

pub use btc::{BtcAddressRow, BtcSendRow, BtcUtxoRow};
pub use deposits::DepositRow;
pub use error::StorageError;
pub use eth::{EthAttemptRow, EthSendRow, EthSenderRow};
pub use governance::{
    ApprovalRow, ApproverKeyRow, BatchClaim, FreezeRow, HistoryRow, PolicyRow, ProposalRow,
    TransferMove, TransferRow, VoteRow, WhitelistRow, WindowItem, WindowOf,
};
pub use identity::{ApiKeyRow, SessionRow, UserRow, WalletRow};
pub use keystore::{KekRow, KeyRow, KeystoreRow};
pub use store::{Backend, DatabaseConfig, Store};
pub use tx::WriteTx;
pub use webhooks::{DeliveryRow, DueDelivery, WebhookRow};

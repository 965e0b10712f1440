//! Persistence: repositories and migrations on SQLite and PostgreSQL.
//!
//! The only crate that knows SQL. One code path serves both databases through
//! `sqlx`'s `Any` driver with portable SQL (`$1` parameters work on both);
//! each database has its own migrations. Every change is made inside a
//! [`WriteTx`], which can only commit together with at least one audit record,
//! appended under a lock on the chain head.
//!
//! ## What is where
//!
//! `store` (`Store` over sqlx's `Any` driver, migrations in `migrations/{sqlite,postgres}`),
//! `tx` (`WriteTx`: commits only with audit records, appended under a lock on the `audit_head`
//! row), `row` (typed column readers), and one repository file per topic: `accounts`,
//! `audit_log`, `keystore`, `identity` (users, sessions, API keys, wallets), `webhooks`, `eth`
//! (senders, sends one per nonce, signed attempts), `btc` (held outputs, whose reservation is
//! an all-or-nothing compare-and-set, and sends), `deposits`, `governance` (policy versions,
//! proposals and votes, approver keys, address book, freezes, wallet tiers, the governance
//! advisory lock), `govlog` (the governance log and its head: appended under a lock on the
//! head row, stored as the service computed it), `transfers` (judged transfers, `move_transfer` with its history
//! line, approvals, wallet locks, rolling windows, open outflows, the transfer list), `history`
//! (a transfer's `transfer_history` lines, several in one statement), `queue` (claims in claim
//! order with leases, Bitcoin batches, delays, the stuck view), `idempotency` (keys and
//! external ids), `prices`. A read needed both on the pool and inside a transaction is written
//! once, generic over `sqlx::Executor`, with two thin wrappers. The `test-support` feature
//! gives `TestDb` (fresh SQLite file or fresh PostgreSQL database) and `on_both!`, which runs
//! one test suite on both databases.

mod accounts;
mod audit_log;
mod broadcasts;
mod btc;
mod btc_chain;
pub mod context;
mod deposits;
mod destinations;
mod error;
mod eth;
mod eth_hd;
mod governance;
mod govlog;
mod history;
mod idempotency;
mod identity;
mod judgments;
mod keystore;
mod ledger;
mod ops;
mod passkeys;
mod prices;
mod queue;
mod reconciliation;
mod recoveries;
mod rotation;
mod row;
mod snapshot;
mod store;
#[cfg(feature = "test-support")]
pub mod testing;
mod transfers;
mod tx;
mod webhooks;

pub use broadcasts::BroadcastRow;
pub use btc::{BtcAddressRow, BtcSendRow, BtcUtxoRow};
pub use btc_chain::BtcBlockRow;
pub use deposits::DepositRow;
pub use error::StorageError;
pub use eth::{EthAttemptRow, EthSendRow, EthSenderRow};
pub use eth_hd::EthDepositAddressRow;
pub use governance::{ApproverKeyRow, FreezeRow, PolicyRow, ProposalRow, VoteRow, WhitelistRow};
pub use govlog::{GovRecordRow, GovernedRows};
pub use history::HistoryRow;
pub use identity::{ApiKeyRow, SessionRow, UserRow, WalletRow};
pub use keystore::{KekRow, KeyRow, KeystoreRow};
pub use ledger::{Balances, LedgerRow, Movement};
pub use ops::{OpsSnapshot, StateCount};
pub use passkeys::PasskeyRow;
pub use queue::BatchClaim;
pub use reconciliation::ReconciliationRunRow;
pub use recoveries::RecoveryRow;
pub use rotation::{KeyBtcAccountRow, KeySenderRow};
pub use store::{Backend, DatabaseConfig, Store};
pub use transfers::{ApprovalRow, Outflow, TransferMove, TransferRow, WindowItem, WindowOf};
pub use tx::WriteTx;
pub use webhooks::{DeliveryRow, DueDelivery, WebhookRow};

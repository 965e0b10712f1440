//! The application: wires domain, audit and storage, owns the clock, and
//! runs the background work (audit checkpoints).
//!
//! HTTP, SQL and configuration files are someone else's business: the API
//! crate calls into [`Service`], storage does the SQL, and the binary decides
//! which backends to build it with.

mod access;
mod audit_key;
pub mod btc;
pub mod btc_transfers;
mod checkpoints;
mod clock;
pub mod crash;
pub mod deposits;
mod error;
pub mod eth;
mod freezes;
mod gate;
pub mod governance;
pub mod identity;
mod keystore;
mod moves;
mod outbox;
mod queue;
mod record;
mod requests;
mod service;
mod settings;
#[cfg(feature = "testing")]
pub mod testing;
pub mod threshold;
pub mod totp;
pub mod transfers;
mod vault;
pub mod wallets;
pub mod webhooks;

pub use audit_key::{AuditKeyError, generate_audit_key, load_audit_key};
pub use checkpoints::{CheckpointFile, CheckpointPolicy, CheckpointSigner, Checkpointer};
pub use checkpoints::{VerifyError, verify_audit};
pub use clock::{Clock, SystemClock};
pub use keystore::{NewHdKey, NewKey, SealStatus, SelfTest};
pub use service::{DatabaseStatus, EthStatus, Service, ServiceError, Status};

pub use audit;
pub use domain;
pub use keys;
pub use storage;

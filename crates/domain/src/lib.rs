//! Strongroom's vocabulary: the types every other crate speaks in.
//!
//! Pure: no I/O, no clock, no randomness. Values that carry an invariant
//! (an [`Amount`] in its asset's base units, a [`TransferIntent`] with its
//! canonical digest) can only be built through constructors that check it.
//!
//! ## What is where
//!
//! `access` (roles, permissions, grants, scopes, `permits`), networks (`bitcoin:mainnet`,
//! `eip155:1`), assets and asset ids, `Amount` in integer base units (`u128`) with exact decimal
//! parsing and checked arithmetic, `DecimalString` (JSON numbers refused), typed ids, `Actor`,
//! `Account`, `Timestamp`, `TransferIntent` with its canonical encoding (`canonical.rs`) and
//! digest.

pub mod access;
pub mod account;
pub mod amount;
pub mod asset;
pub mod canonical;
pub mod id;
pub mod intent;
pub mod key;
pub mod network;
pub mod principal;
pub mod request;
pub mod time;

pub use access::{AccessError, Grant, Permission, Role, Scope, permits};
pub use account::{Account, AccountName, AccountNameError};
pub use amount::{Amount, AmountError, DecimalString};
pub use asset::{Asset, AssetError, AssetId, AssetKind, ContractAddress, Decimals, Symbol};
pub use id::{AccountId, ApiKeyId, IdError, KeyId, TransferId, UserId, WalletId};
pub use intent::{Address, IntentDigest, IntentError, TransferIntent, TransferKind};
pub use key::{KeyAlgorithm, KeyBackend, KeyPurpose, KeyState, KeyVocabError};
pub use network::{BitcoinNetwork, Network, NetworkError};
pub use principal::{Actor, ActorError, OperatorName};
pub use time::Timestamp;

//! Ethereum JSON-RPC for Strongroom: the only crate that talks to nodes.
//!
//! One [`EthClient`] per network holds several endpoints. Every endpoint's
//! chain id is checked when the client is made; calls go to the healthiest
//! endpoint and fail over on transport errors, timeouts and server errors
//! (a node's JSON-RPC error is an answer, not a failure). Broadcast is
//! idempotent: a node that already knows our transaction, or reports its
//! nonce used *by our own hash*, has accepted it.
//!
//! ## What is where
//!
//! `EthClient`: JSON-RPC over `reqwest`, chain-id check per endpoint, health scores and failover,
//! balances (ETH, ERC-20), nonces, fee history, idempotent `send_raw`, receipts, `tx_status` with
//! reorg detection by block hash. `testing` (feature `test-support`): `Anvil` (a real node per
//! test, no automine, bounded memory), `DevWallet`, `Proxy` (an endpoint to kill mid-test), the
//! test token's bytecode (`tests/contracts/`, compiled with solcjs as its README says).

mod error;
mod quantity;
mod rpc;
#[cfg(feature = "test-support")]
pub mod testing;

pub use error::ClientError;
pub use rpc::{
    ClientOptions, EndpointHealth, EthClient, NonceTag, Payment, Receipt, TokenTransfer, TxStatus,
};

//! Ethereum JSON-RPC for Strongroom: the only crate that talks to nodes.
//!
//! One [`EthClient`] per network holds several endpoints. Every endpoint's
//! chain id is checked when the client is made; calls go to the healthiest
//! endpoint and fail over on transport errors, timeouts and server errors
//! (a node's JSON-RPC error is an answer, not a failure). Broadcast is
//! idempotent: a node that already knows our transaction, or reports its
//! nonce used *by our own hash*, has accepted it.

mod rpc;
#[cfg(feature = "test-support")]
pub mod testing;

pub use rpc::{
    ClientError, ClientOptions, EndpointHealth, EthClient, NonceTag, Payment, Receipt,
    TokenTransfer, TxStatus,
};

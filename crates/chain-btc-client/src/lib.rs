//! Bitcoin node I/O for Strongroom: Bitcoin Core's JSON-RPC and Esplora's
//! REST API behind one [`BtcClient`], with several endpoints, health
//! scores and failover, a network check at start (the genesis block), fee
//! rates by urgency, idempotent broadcast, transaction status and the
//! outputs of an address.
//!
//! No Bitcoin node can run on the machines this was built on: the client
//! is tested against recorded real responses (`tests/fixtures/`, with
//! their sources) served from loopback, not against a live node.
//!
//! ## What is where
//!
//! `BtcClient`: Bitcoin Core JSON-RPC and Esplora REST endpoints behind one client, genesis-block
//! check at start, failover, fee rates read as decimal text, idempotent broadcast, transaction
//! state, address outputs.

mod client;
mod units;

pub use client::{
    BtcClient, ClientError, Endpoint, EndpointKind, MempoolEntry, TxState, UtxoEntry,
};

//! The nonce storm (see `storms.rs` for the others): two withdrawals from
//! one Ethereum sender planned at once — on SQLite by one server racing
//! itself, on PostgreSQL by two servers on one database — on a real anvil
//! node. Every round, each gets a nonce of its own, the nonces follow one
//! another with no gap, and none is handed out twice. Rounds:
//! `STRONGROOM_STORM_ROUNDS` (25 in CI).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;

use chain_eth::fees::Urgency;
use service::eth::{EthNetwork, EthNetworkConfig};
use service::{Checkpointer, Service};

#[path = "support/custody.rs"]
mod custody;
use custody::*;

storage::on_both!(
    fixture;
    storm_of_sends_racing_for_one_sender_uses_each_nonce_once,
);

async fn storm_of_sends_racing_for_one_sender_uses_each_nonce_once(f: Fixture) {
    let rounds: u64 = std::env::var("STRONGROOM_STORM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let started = std::time::Instant::now();
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    // Requested while unsealed (each judgment authenticated under the
    // keystore), two a round.
    let mut pairs = Vec::new();
    for _ in 0..rounds {
        let a = f.submit(&f.initiator, BOB, "0.001").await.unwrap();
        let b = f.submit(&f.initiator, BOB, "0.001").await.unwrap();
        pairs.push((a, b));
    }
    // Sealed: each plan reserves its nonce and waits for its signature.
    f.svc.seal(&console()).await.unwrap();
    let postgres = f.db.sqlite_path.is_none();
    let other = if postgres {
        let store = storage::Store::connect(&f.db.config()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let other = Service::new(
            store,
            f.clock.clone(),
            Checkpointer::for_tests(dir.path(), 8, 1000),
        );
        other.set_instance("second-server").unwrap();
        other.add_eth_network(EthNetwork {
            config: EthNetworkConfig {
                chain_id: chain_eth_client::testing::CHAIN_ID,
                legacy: false,
                confirmations: 1,
                bump_after_blocks: 3,
                fee_caps: chain_eth::FeeCaps {
                    max_fee_per_gas: 500_000_000_000,
                    max_total_fee: ETHER / 10,
                },
                min_priority_fee: 1_000_000_000,
                allow_unchecksummed: false,
                tokens: vec![],
            },
            client: f.client.clone(),
        });
        Arc::new((other, dir))
    } else {
        Arc::new((f.svc.clone(), tempfile::tempdir().unwrap()))
    };
    let mut nonces = Vec::new();
    for (round, (a, b)) in pairs.into_iter().enumerate() {
        let (x, y) = tokio::join!(
            f.svc.execute_transfer(a.id, Urgency::Normal),
            other.0.execute_transfer(b.id, Urgency::Normal)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_ne!(x.nonce, y.nonce, "round {round}: one nonce each");
        nonces.extend([x.nonce, y.nonce]);
    }
    nonces.sort_unstable();
    let expected: Vec<u64> = (0..2 * rounds).collect();
    assert_eq!(nonces, expected, "every nonce once, none skipped");
    eprintln!(
        "storm nonce on {}: {rounds} rounds, {rounds} single successes, 0 violations, {:.1} s",
        if postgres {
            "postgres, two servers"
        } else {
            "sqlite, one server"
        },
        started.elapsed().as_secs_f64()
    );
}

//! Ethereum throughput against one anvil, three ways in the same run:
//!
//! - **raw**: transactions signed beforehand, sent one after another — the
//!   rate anvil (and the HTTP round trip) allows;
//! - **client**: each transaction built, signed (software key) and sent
//!   through `EthClient`;
//! - **service**: each a whole withdrawal on SQLite (`testing::Payer`) — a
//!   signed request authenticated, the transfer judged and stored, then fee
//!   history, gas estimate, the plan approved against the intent, nonce
//!   from the database, plan and audit committed, the approved plan signed
//!   through the gate and its bytes decoded back, signed bytes and audit
//!   committed, broadcast and its audit committed.
//!
//! Each round sends a batch, mines one block, and counts the time until every
//! transaction is confirmed (receipts; `eth_poll` for the service), so the
//! rate is "submitted and confirmed". `cargo bench -p service --bench eth`.

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::sync::Arc;
use std::time::Instant;

use chain_eth::fees::Urgency;
use chain_eth::{EthAddress, Fees, TxPlan};
use chain_eth_client::testing::{Anvil, CHAIN_ID, DevWallet, mine};
use chain_eth_client::{ClientOptions, EthClient, TxStatus};
use domain::{AssetId, AssetKind, Network};
use service::eth::state;
use service::testing::Payer;

#[path = "support/mod.rs"]
mod support;

const FEES: Fees = Fees::Eip1559 {
    max_fee_per_gas: 100_000_000_000,
    max_priority_fee_per_gas: 1_000_000_000,
};

fn bob() -> EthAddress {
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        .parse()
        .unwrap()
}

async fn confirm_all(client: &EthClient, hashes: &[[u8; 32]]) {
    mine(client, 1).await;
    for h in hashes {
        assert!(matches!(
            client.tx_status(*h).await.unwrap(),
            TxStatus::Included { .. }
        ));
    }
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (batch, rounds) = if quick { (5, 1) } else { (100, 5) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let anvil = Anvil::start();
        let client = Arc::new(
            EthClient::connect(CHAIN_ID, &[anvil.url().to_owned()], ClientOptions::default())
                .await
                .unwrap(),
        );
        let raw_wallet = DevWallet::new(1).await;
        let client_wallet = DevWallet::new(2).await;
        let (mut raw_nonce, mut client_nonce) = (0u64, 0u64);

        // The service, with a keystore key funded by dev account 0.
        let b = support::service_on(client.clone(), 100_000).await;
        let (svc, actor) = (&b.svc, b.actor.clone());
        let sender = support::new_sender(&b).await;
        let from: EthAddress = sender.parse().unwrap();
        DevWallet::new(0)
            .await
            .transact(&client, |n, f| {
                TxPlan::native(CHAIN_ID, n, from, 1_000 * 10u128.pow(18), f)
            })
            .await;
        let ether = AssetId::new(Network::Evm { chain_id: CHAIN_ID }, AssetKind::Native).unwrap();

        let payer = Arc::new(Payer::open(svc, &actor, "bench", &[(CHAIN_ID, from)]).await);
        let to = bob().to_string();
        let (mut raw, mut through_client, mut through_service, mut concurrent) =
            (vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            // Raw: signed before the clock starts.
            let mut signed = Vec::new();
            for _ in 0..batch {
                let plan = TxPlan::native(CHAIN_ID, raw_nonce, bob(), 1, FEES);
                raw_nonce += 1;
                signed.push(raw_wallet.sign(&plan).await);
            }
            let t = Instant::now();
            for s in &signed {
                client.send_raw(&s.raw, s.hash).await.unwrap();
            }
            let hashes: Vec<_> = signed.iter().map(|s| s.hash).collect();
            confirm_all(&client, &hashes).await;
            raw.push(batch as f64 / t.elapsed().as_secs_f64());

            // Client: build, sign, send.
            let t = Instant::now();
            let mut hashes = Vec::new();
            for _ in 0..batch {
                let plan = TxPlan::native(CHAIN_ID, client_nonce, bob(), 1, FEES);
                client_nonce += 1;
                let s = client_wallet.sign(&plan).await;
                client.send_raw(&s.raw, s.hash).await.unwrap();
                hashes.push(s.hash);
            }
            confirm_all(&client, &hashes).await;
            through_client.push(batch as f64 / t.elapsed().as_secs_f64());

            // Service: the whole pipeline.
            let t = Instant::now();
            for _ in 0..batch {
                let s = payer
                    .pay_eth(&ether, &to, "0.000000000000000001", Urgency::Normal)
                    .await
                    .unwrap();
                assert_eq!(s.state, state::BROADCAST);
            }
            mine(&client, 1).await;
            let poll = svc.eth_poll(CHAIN_ID).await.unwrap();
            assert_eq!(poll.finalized, batch);
            through_service.push(batch as f64 / t.elapsed().as_secs_f64());

            // The same, four callers at once (one sender: nonces still queue).
            let t = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for w in 0..4 {
                let (payer, ether, to) = (payer.clone(), ether.clone(), to.clone());
                let n = batch / 4 + usize::from(w < batch % 4);
                tasks.spawn(async move {
                    for _ in 0..n {
                        payer
                            .pay_eth(&ether, &to, "0.000000000000000001", Urgency::Normal)
                            .await
                            .unwrap();
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
            mine(&client, 1).await;
            let poll = svc.eth_poll(CHAIN_ID).await.unwrap();
            assert_eq!(poll.finalized, batch);
            concurrent.push(batch as f64 / t.elapsed().as_secs_f64());
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (r, c, s, p) = (
            median(&mut raw),
            median(&mut through_client),
            median(&mut through_service),
            median(&mut concurrent),
        );
        println!("ethereum throughput, {batch} transfers per round, median of {rounds} rounds (one anvil):");
        println!("  raw pre-signed sends   {r:8.0} tx/s (anvil's rate, 100 %)");
        println!("  build+sign+send client {c:8.0} tx/s ({:.1} %)", 100.0 * c / r);
        println!("  withdrawal, whole      {s:8.0} tx/s ({:.1} %)", 100.0 * s / r);
        println!("  withdrawals, 4 callers {p:8.0} tx/s ({:.1} %)", 100.0 * p / r);
    });
}

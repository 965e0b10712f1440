//! A reconciliation pass over many Ethereum senders against one anvil: N
//! keystore keys registered as senders (on SQLite), then passes timed —
//! each asks the node for every sender's nonce (latest and pending) and
//! reads its sends from the database. One sender is then used outside
//! Strongroom (anvil impersonates it) and the next pass must find it.
//! `cargo bench -p service --bench reconcile` (10 000 senders; without
//! `--bench`, 50).

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::sync::Arc;
use std::time::Instant;

use chain_eth_client::testing::{Anvil, CHAIN_ID, mine};
use chain_eth_client::{ClientOptions, EthClient};

#[path = "support/mod.rs"]
mod support;

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = if quick { 50 } else { 10_000 };
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
        let b = support::service_on(client.clone(), 1_000_000).await;
        let svc = &b.svc;
        let setup = Instant::now();
        let mut last = String::new();
        for _ in 0..n {
            last = support::new_sender(&b).await;
        }
        println!(
            "{n} senders registered in {:.1} s",
            setup.elapsed().as_secs_f64()
        );

        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let run = svc.reconcile_chains().await.unwrap();
            times.push(t.elapsed().as_secs_f64());
            assert!(run.complete && run.findings.is_empty());
            assert_eq!(run.accounts as usize, n);
        }
        times.sort_by(f64::total_cmp);
        let median = times[1];
        println!(
            "reconciliation pass over {n} Ethereum senders: median {median:.2} s ({:.2} ms per sender; runs {times:?})",
            median * 1000.0 / n as f64
        );

        // One sender used outside Strongroom: found by the next pass.
        for (method, params) in [
            ("anvil_setBalance", serde_json::json!([last, "0xde0b6b3a7640000"])),
            ("anvil_impersonateAccount", serde_json::json!([last])),
            (
                "eth_sendTransaction",
                serde_json::json!([{ "from": last, "to": last, "value": "0x1" }]),
            ),
        ] {
            client.raw_call(method, params).await.unwrap();
        }
        mine(&client, 1).await;
        let t = Instant::now();
        let run = svc.reconcile_chains().await.unwrap();
        println!(
            "the pass that found the outflow: {:.2} s, {} finding",
            t.elapsed().as_secs_f64(),
            run.findings.len()
        );
        assert_eq!(run.findings.len(), 1);
    });
}

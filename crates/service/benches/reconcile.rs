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

use chain_eth::FeeCaps;
use chain_eth_client::testing::{Anvil, CHAIN_ID, mine};
use chain_eth_client::{ClientOptions, EthClient};
use domain::{Actor, KeyAlgorithm, KeyBackend, KeyPurpose};
use service::eth::{EthNetwork, EthNetworkConfig};
use service::{Checkpointer, NewKey, Service, SystemClock};
use storage::testing::TestDb;

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
        let db = TestDb::sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpointer::for_tests(dir.path(), 2, 1_000_000);
        let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
        let actor: Actor = "operator:bench".parse().unwrap();
        for s in &svc.init_keystore(&actor, 2, 2).await.unwrap() {
            svc.unseal(&Actor::Anonymous, s).await.unwrap();
        }
        svc.add_eth_network(EthNetwork {
            config: EthNetworkConfig {
                chain_id: CHAIN_ID,
                legacy: false,
                confirmations: 1,
                fee_caps: FeeCaps {
                    max_fee_per_gas: 1_000_000_000_000,
                    max_total_fee: 10u128.pow(18),
                },
                min_priority_fee: 1_000_000_000,
                allow_unchecksummed: false,
                tokens: vec![],
            },
            client: client.clone(),
        });
        let setup = Instant::now();
        let mut last = String::new();
        for _ in 0..n {
            let key = svc
                .create_key(
                    &actor,
                    NewKey {
                        purpose: KeyPurpose::TransferSigning,
                        algorithm: KeyAlgorithm::EcdsaSecp256k1,
                        backend: KeyBackend::Keystore,
                        cryptoperiod_days: 30,
                    },
                )
                .await
                .unwrap();
            last = svc
                .register_eth_sender(&actor, key.id, CHAIN_ID)
                .await
                .unwrap()
                .address;
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

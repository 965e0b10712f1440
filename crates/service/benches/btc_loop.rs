//! The Bitcoin operating loop's pass against a regtest chain served in
//! Bitcoin Core's shape on loopback (`tests/support/regtest.rs`): blocks
//! full of deposits to a wallet's address, read, checked (hash, proof of
//! work, merkle root, witness commitment), scanned and credited. What a
//! block costs the loop is the part of the lag from a block to its
//! detection that is not `poll_seconds`.
//! `cargo bench -p service --bench btc_loop` (50 blocks of 200 deposits;
//! without `--bench`, 5 of 20).

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

#[path = "../tests/support/regtest.rs"]
mod regtest;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bitcoin::{OutPoint, ScriptBuf};
use chain_btc_client::{BtcClient, Endpoint, EndpointKind};
use domain::{Actor, BitcoinNetwork, KeyAlgorithm, KeyBackend, KeyPurpose};
use regtest::{Chain, TestKey};
use service::btc::BtcNetwork;
use service::testing::Payer;
use service::{Checkpointer, NewKey, Service, SystemClock};
use storage::testing::TestDb;

const REGTEST: BitcoinNetwork = BitcoinNetwork::Regtest;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (blocks, per) = if full { (50usize, 200usize) } else { (5, 20) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = TestDb::sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpointer::for_tests(dir.path(), 9, 1_000_000);
        let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
        let alice: Actor = "operator:alice".parse().unwrap();
        for s in &svc.init_keystore(&alice, 2, 2).await.unwrap() {
            svc.unseal(&Actor::Anonymous, s).await.unwrap();
        }
        let key = svc
            .create_key(
                &alice,
                NewKey {
                    purpose: KeyPurpose::TransferSigning,
                    algorithm: KeyAlgorithm::EcdsaSecp256k1,
                    backend: KeyBackend::Keystore,
                    cryptoperiod_days: 30,
                },
            )
            .await
            .unwrap()
            .id;
        let payer = Payer::open(&svc, &alice, "bench", &[]).await;
        let network = |client| BtcNetwork {
            network: REGTEST,
            fee_caps: chain_btc::FeeCaps {
                max_fee_rate: 100,
                max_fee: 20_000,
            },
            fee_rate: 5,
            batch: Default::default(),
            confirmations: 1,
            bump_after_blocks: 2,
            consolidation: None,
            client,
        };
        svc.add_btc_network(network(None));
        let address = svc
            .register_btc_key(&alice, REGTEST, key, payer.wallet())
            .await
            .unwrap();
        let ours: ScriptBuf = address
            .parse::<bitcoin::Address<_>>()
            .unwrap()
            .require_network(bitcoin::Network::Regtest)
            .unwrap()
            .script_pubkey();
        // Coinbases to spend: one per deposit, mined before the loop starts.
        let outside = TestKey::new(7);
        let mut chain = Chain::default();
        // Each block: 20 transactions of per/20 outputs to us.
        let txs_per_block = 20.min(per);
        let outputs = per / txs_per_block;
        for _ in 0..blocks * txs_per_block + 100 {
            chain.mine(Vec::new(), &outside.script);
        }
        let chain = Arc::new(Mutex::new(chain));
        let url = regtest::serve(chain.clone()).await;
        let client = BtcClient::connect(
            REGTEST,
            vec![Endpoint {
                kind: EndpointKind::Core,
                url,
                auth: None,
            }],
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
        svc.add_btc_network(network(Some(Arc::new(client))));
        svc.btc_watch(REGTEST).await.unwrap(); // starts at the tip
        {
            let mut c = chain.lock().unwrap();
            for b in 0..blocks {
                let txs: Vec<_> = (0..txs_per_block)
                    .map(|i| {
                        let coinbase = &c.blocks[1 + b * txs_per_block + i].txdata[0];
                        outside.pay(
                            (
                                OutPoint {
                                    txid: coinbase.compute_txid(),
                                    vout: 0,
                                },
                                coinbase.output[0].value,
                            ),
                            &(0..outputs)
                                .map(|o| (ours.clone(), 10_000 + (i * outputs + o) as u64))
                                .collect::<Vec<_>>(),
                        )
                    })
                    .collect();
                c.mine(txs, &outside.script);
            }
        }
        let deposits = blocks * txs_per_block * outputs;
        let t = Instant::now();
        let mut pass = svc.btc_watch(REGTEST).await.unwrap();
        let scanned = t.elapsed().as_secs_f64();
        // Credits go 500 to a pass; the rest in the next ones.
        while pass.credited < deposits {
            let more = svc.btc_watch(REGTEST).await.unwrap();
            pass.scanned += more.scanned;
            pass.seen += more.seen;
            pass.credited += more.credited;
        }
        let took = t.elapsed().as_secs_f64();
        assert_eq!(pass.seen, deposits);
        println!(
            "Bitcoin loop: {blocks} blocks of {} deposits read, checked and scanned in one pass: \
             {scanned:.2} s ({:.1} ms per block); all {deposits} credited after {took:.2} s \
             ({:.2} ms per deposit)",
            txs_per_block * outputs,
            scanned * 1000.0 / blocks as f64,
            took * 1000.0 / deposits as f64
        );
        let _ = db;
    });
}

//! Unseal time: a 3-of-5 quorum opening a keystore of 1 000 keys (SQLite),
//! and a seal. `cargo bench -p service --bench unseal`.
//!
//! Shares carry full 256-bit entropy, so unsealing needs no password KDF:
//! the cost is combining shares, opening the KEK, then each key's data key
//! and material (XChaCha20-Poly1305), and parsing the keys.

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::{Actor, KeyAlgorithm, KeyBackend, KeyPurpose};
use service::{Checkpointer, NewKey, Service, SystemClock};
use storage::testing::TestDb;

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let keys = if quick { 10 } else { 1_000 };
    let rounds = if quick { 1 } else { 5 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = TestDb::sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpointer::for_tests(dir.path(), 1, 100_000);
        let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
        let actor: Actor = "operator:bench".parse().unwrap();
        let shares = svc.init_keystore(&actor, 3, 5).await.unwrap();
        for s in &shares[..3] {
            svc.unseal(&Actor::Anonymous, s).await.unwrap();
        }
        for i in 0..keys {
            let algorithm = [
                KeyAlgorithm::EcdsaSecp256k1,
                KeyAlgorithm::SchnorrBip340,
                KeyAlgorithm::Ed25519,
            ][i % 3];
            svc.create_key(
                &actor,
                NewKey {
                    purpose: KeyPurpose::TransferSigning,
                    algorithm,
                    backend: KeyBackend::Keystore,
                    cryptoperiod_days: 365,
                },
            )
            .await
            .unwrap();
        }
        let mut unseal = Duration::ZERO;
        let mut seal = Duration::ZERO;
        for _ in 0..rounds {
            let t = Instant::now();
            svc.seal(&actor).await.unwrap();
            seal += t.elapsed();
            let t = Instant::now();
            for s in &shares[2..5] {
                svc.unseal(&Actor::Anonymous, s).await.unwrap();
            }
            unseal += t.elapsed();
        }
        println!("keystore of {keys} keys, 3-of-5 shares, {rounds} rounds (SQLite, audited)");
        println!(
            "unseal (3 shares, open every key)  {:>8.1} ms",
            unseal.as_secs_f64() * 1e3 / f64::from(rounds)
        );
        println!(
            "seal (wipe)                        {:>8.1} ms",
            seal.as_secs_f64() * 1e3 / f64::from(rounds)
        );
    });
}

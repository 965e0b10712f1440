//! The ledger at scale: 1 000 000 movements over 10 000 wallets (100 each),
//! written as the service writes them (each in a write transaction with an
//! audit record, batched 1 000 to a transaction here); then the reads a
//! reconciliation pass makes (every wallet's balances), a statement's
//! (one wallet's movements and opening) and a balance history page.
//! `cargo bench -p storage --bench ledger`; set STRONGROOM_TEST_POSTGRES_URL
//! to include PostgreSQL. Without `--bench`: 10 000 movements.

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::time::Instant;

use audit::{Details, Entry};
use domain::{Actor, Timestamp, WalletId};
use storage::testing::{POSTGRES_ENV, TestDb};
use storage::{Balances, Movement, WalletRow};

const ASSET: &str = "bip122:000000000019d6689c085ae165831e93/slip44:0";

fn entry(what: &str) -> Entry {
    Entry::new(Actor::System, "bench.ledger", what, Details::none()).unwrap()
}

async fn database(name: &str, db: TestDb, wallets: usize, per: usize) {
    let s = &db.store;
    let mut ids = Vec::with_capacity(wallets);
    let mut tx = s.begin().await.unwrap();
    for i in 0..wallets {
        let id = WalletId::from_uuid(uuid::Uuid::now_v7());
        tx.insert_wallet(&WalletRow {
            id,
            name: format!("w{i}"),
            created_at: Timestamp::from_millis(1),
            created_by: Actor::System,
        })
        .await
        .unwrap();
        ids.push(id);
    }
    tx.commit(&[entry("wallets")], Timestamp::from_millis(1))
        .await
        .unwrap();

    let total = wallets * per;
    let t = Instant::now();
    let mut n = 0usize;
    let mut tx = s.begin().await.unwrap();
    for round in 0..per {
        for (w, id) in ids.iter().enumerate() {
            let at = Timestamp::from_millis(1_000 + (round * wallets + w) as i64);
            let m = Movement {
                wallet: *id,
                asset: ASSET.into(),
                kind: if round % 2 == 0 {
                    "deposit_credited"
                } else {
                    "fee"
                }
                .into(),
                delta: Balances {
                    available: if round % 2 == 0 { 1_000 } else { -10 },
                    pending: 0,
                    reserved: 0,
                },
                transfer: None,
                txid: Some(format!("{:064x}", round * wallets + w)),
                block: Some(round as u64),
                reference: format!("bench:{w}:{round}"),
            };
            assert!(tx.record_movement(&m, at).await.unwrap());
            n += 1;
            if n.is_multiple_of(1_000) {
                tx.commit(&[entry("batch")], at).await.unwrap();
                tx = s.begin().await.unwrap();
            }
        }
    }
    tx.commit(&[entry("batch")], Timestamp::from_millis(i64::MAX / 2))
        .await
        .unwrap();
    let write = t.elapsed();
    println!(
        "{name:<10} {total} movements over {wallets} wallets written in {:.1} s ({:.0}/s)",
        write.as_secs_f64(),
        total as f64 / write.as_secs_f64()
    );

    // A reconciliation pass's reads: every wallet's balances.
    let t = Instant::now();
    for id in &ids {
        let b = s.ledger_balances(*id).await.unwrap();
        assert_eq!(b.len(), 1);
    }
    let pass = t.elapsed();
    println!(
        "{name:<10} balances of all {wallets} wallets (a pass's ledger side): {:.2} s ({:.3} ms each)",
        pass.as_secs_f64(),
        pass.as_secs_f64() * 1000.0 / wallets as f64
    );

    // A statement: one wallet's opening and all its movements.
    let t = Instant::now();
    let one = ids[wallets / 2];
    let open = s
        .ledger_balances_before(
            one,
            Timestamp::from_millis(1_000 + (wallets * per / 2) as i64),
        )
        .await
        .unwrap();
    let rows = s
        .ledger_rows(
            one,
            None,
            Timestamp::from_millis(0),
            Timestamp::from_millis(i64::MAX),
            None,
            100_001,
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), per);
    assert_eq!(open.len(), 1);
    println!(
        "{name:<10} a statement of one wallet ({per} movements, its opening): {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let t = Instant::now();
    let page = s
        .ledger_rows(
            one,
            Some(ASSET),
            Timestamp::from_millis(0),
            Timestamp::from_millis(i64::MAX),
            None,
            1000,
        )
        .await
        .unwrap();
    assert!(!page.is_empty());
    println!(
        "{name:<10} a balance-history page (≤1000 points): {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (wallets, per) = if full { (10_000, 100) } else { (100, 100) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        database("sqlite", TestDb::sqlite().await, wallets, per).await;
        if std::env::var(POSTGRES_ENV).is_ok() {
            database("postgres", TestDb::postgres().await, wallets, per).await;
        }
    });
}

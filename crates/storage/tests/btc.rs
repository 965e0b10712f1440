//! Bitcoin output reservations: the database, not a process, keeps an
//! outpoint from being selected twice. On SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use audit::{Details, Entry};
use domain::{Actor, Timestamp};
use storage::testing::TestDb;
use storage::{BtcUtxoRow, StorageError};

storage::on_both!(db; overlapping_reservations_never_share_an_outpoint);

async fn db(db: TestDb) -> TestDb {
    db
}

fn entry(what: &str) -> Entry {
    Entry::new(Actor::System, "btc.test", what, Details::none()).unwrap()
}

const NET: &str = "bitcoin:regtest";

async fn overlapping_reservations_never_share_an_outpoint(db: TestDb) {
    let now = Timestamp::from_millis(1_000);
    let mut tx = db.store.begin().await.unwrap();
    for vout in 0..6u32 {
        tx.insert_btc_utxo(&BtcUtxoRow {
            network: NET.into(),
            txid: "aa".repeat(32),
            vout,
            value_sat: 10_000 + u64::from(vout),
            script_pubkey: "0014".to_owned() + &"11".repeat(20),
            spend: "{}".into(),
            state: "available".into(),
            reserved_by: None,
            wallet: None,
            created_at: now,
        })
        .await
        .unwrap();
    }
    tx.commit(&[entry("deposit")], now).await.unwrap();

    // Many transfers race for overlapping sets; each takes all of its set or nothing.
    let sets: Vec<Vec<u32>> = vec![
        vec![0, 1, 2],
        vec![2, 3],
        vec![3, 4, 5],
        vec![1, 5],
        vec![4],
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (i, set) in sets.iter().cloned().enumerate() {
        let store = db.store.clone();
        tasks.spawn(async move {
            let by = format!("transfer-{i}");
            let ops: Vec<(String, u32)> = set.iter().map(|v| ("aa".repeat(32), *v)).collect();
            let mut tx = store.begin().await.unwrap();
            match tx
                .reserve_btc_utxos(NET, &ops, &by, Timestamp::from_millis(9_000))
                .await
            {
                Ok(()) => {
                    tx.commit(&[entry(&by)], Timestamp::from_millis(2_000))
                        .await
                        .unwrap();
                    Some((by, set))
                }
                Err(StorageError::Conflict { .. }) => None,
                Err(e) => panic!("{e}"),
            }
        });
    }
    let mut won = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(w) = r.unwrap() {
            won.push(w);
        }
    }
    assert!(!won.is_empty());
    let mut taken: Vec<u32> = won.iter().flat_map(|(_, s)| s.clone()).collect();
    let n = taken.len();
    taken.sort_unstable();
    taken.dedup();
    assert_eq!(taken.len(), n, "no outpoint reserved twice: {won:?}");
    let reserved = db.store.btc_utxos(NET, "reserved").await.unwrap();
    assert_eq!(reserved.len(), n, "losers reserved nothing");
    for r in &reserved {
        let owner = won.iter().find(|(_, s)| s.contains(&r.vout)).unwrap();
        assert_eq!(r.reserved_by.as_deref(), Some(owner.0.as_str()));
    }

    // Release one winner's outputs, spend another's.
    let (first, _) = &won[0];
    let mut tx = db.store.begin().await.unwrap();
    assert!(tx.release_btc_utxos(first).await.unwrap() > 0);
    tx.commit(&[entry("release")], now).await.unwrap();
    if let Some((second, set)) = won.get(1) {
        let mut tx = db.store.begin().await.unwrap();
        assert_eq!(tx.spend_btc_utxos(second).await.unwrap(), set.len() as u64);
        tx.commit(&[entry("spent")], now).await.unwrap();
        // A spent output is never reserved again.
        let mut tx = db.store.begin().await.unwrap();
        let again = tx
            .reserve_btc_utxos(
                NET,
                &[("aa".repeat(32), set[0])],
                "late",
                Timestamp::from_millis(9_000),
            )
            .await;
        assert!(matches!(again, Err(StorageError::Conflict { .. })));
    }
    let available = db.store.btc_utxos(NET, "available").await.unwrap();
    assert!(
        available
            .windows(2)
            .all(|w| w[0].value_sat >= w[1].value_sat),
        "largest first"
    );
}

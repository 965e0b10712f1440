//! The ledger on SQLite and PostgreSQL: balances carried by each movement,
//! a movement written once, history by range and asset, a statement's
//! opening, and writers racing on one wallet's balances.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use audit::{Details, Entry};
use domain::{Actor, Timestamp, WalletId};
use storage::testing::TestDb;
use storage::{Balances, Movement, WalletRow};

storage::on_both!(db; movements_carry_the_balances_after_them, concurrent_movements_keep_the_balances_exact);

async fn db(db: TestDb) -> TestDb {
    db
}

fn entry(what: &str) -> Entry {
    Entry::new(Actor::System, "ledger.test", what, Details::none()).unwrap()
}

async fn wallet(db: &TestDb) -> WalletId {
    let id = WalletId::from_uuid(uuid::Uuid::now_v7());
    let mut tx = db.store.begin().await.unwrap();
    tx.insert_wallet(&WalletRow {
        id,
        name: format!("w-{id}"),
        created_at: Timestamp::from_millis(1),
        created_by: Actor::System,
    })
    .await
    .unwrap();
    tx.commit(&[entry("wallet")], Timestamp::from_millis(1))
        .await
        .unwrap();
    id
}

fn movement(wallet: WalletId, asset: &str, kind: &str, d: (i128, i128, i128), r: &str) -> Movement {
    Movement {
        wallet,
        asset: asset.into(),
        kind: kind.into(),
        delta: Balances {
            available: d.0,
            pending: d.1,
            reserved: d.2,
        },
        transfer: None,
        txid: Some("ab".repeat(32)),
        block: Some(7),
        reference: r.into(),
    }
}

const BTC: &str = "bip122:0f9188f13cb7b2c71f2a335e3a4fc328/slip44:1";
const ETH: &str = "eip155:31337/slip44:60";

async fn movements_carry_the_balances_after_them(db: TestDb) {
    let w = wallet(&db).await;
    let steps = [
        (10, BTC, "deposit_seen", (0, 500, 0), "a"),
        (20, BTC, "deposit_credited", (500, -500, 0), "b"),
        (30, ETH, "deposit_credited", (9, 0, 0), "c"),
        (40, BTC, "reserved", (-200, 0, 200), "d"),
        (50, BTC, "payout", (0, 0, -200), "e"),
        (60, BTC, "fee", (-3, 0, 0), "f"),
    ];
    for (at, asset, kind, d, r) in steps {
        let now = Timestamp::from_millis(at);
        let mut tx = db.store.begin().await.unwrap();
        assert!(
            tx.record_movement(&movement(w, asset, kind, d, r), now)
                .await
                .unwrap()
        );
        tx.commit(&[entry(r)], now).await.unwrap();
    }
    // Written once: the same reference again changes nothing.
    let mut tx = db.store.begin().await.unwrap();
    assert!(
        !tx.record_movement(
            &movement(w, BTC, "fee", (-3, 0, 0), "f"),
            Timestamp::from_millis(70)
        )
        .await
        .unwrap()
    );
    tx.commit(&[entry("again")], Timestamp::from_millis(70))
        .await
        .unwrap();
    let now = db.store.ledger_balances(w).await.unwrap();
    assert_eq!(
        now,
        vec![
            (
                BTC.to_owned(),
                Balances {
                    available: 297,
                    pending: 0,
                    reserved: 0
                }
            ),
            (
                ETH.to_owned(),
                Balances {
                    available: 9,
                    pending: 0,
                    reserved: 0
                }
            ),
        ]
    );
    let all = |from, to| {
        let store = db.store.clone();
        async move {
            store
                .ledger_rows(
                    w,
                    Some(BTC),
                    Timestamp::from_millis(from),
                    Timestamp::from_millis(to),
                    None,
                    100,
                )
                .await
                .unwrap()
        }
    };
    let btc = all(0, 1_000).await;
    assert_eq!(btc.len(), 5);
    assert_eq!(
        btc[3].after,
        Balances {
            available: 300,
            pending: 0,
            reserved: 0
        }
    );
    assert_eq!(
        btc[1].delta,
        Balances {
            available: 500,
            pending: -500,
            reserved: 0
        }
    );
    // By range, and paged by `seq`.
    assert_eq!(all(20, 50).await.len(), 2);
    let page = db
        .store
        .ledger_rows(
            w,
            None,
            Timestamp::from_millis(0),
            Timestamp::from_millis(1_000),
            Some(btc[1].seq),
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
        ["deposit_credited", "reserved"]
    );
    // A statement's opening: each asset's balances before its start.
    let opening = db
        .store
        .ledger_balances_before(w, Timestamp::from_millis(45))
        .await
        .unwrap();
    assert_eq!(
        opening,
        vec![
            (
                BTC.to_owned(),
                Balances {
                    available: 300,
                    pending: 0,
                    reserved: 200
                }
            ),
            (
                ETH.to_owned(),
                Balances {
                    available: 9,
                    pending: 0,
                    reserved: 0
                }
            ),
        ]
    );
    assert!(db.store.ledger_has("e").await.unwrap());
    assert!(!db.store.ledger_has("z").await.unwrap());
}

async fn concurrent_movements_keep_the_balances_exact(db: TestDb) {
    let w = wallet(&db).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let store = db.store.clone();
        tasks.spawn(async move {
            loop {
                let now = Timestamp::from_millis(100 + i);
                let mut tx = store.begin().await.unwrap();
                let m = movement(
                    w,
                    BTC,
                    "deposit_credited",
                    (i128::from(i as u8) + 1, 0, 0),
                    &format!("m{i}"),
                );
                let written = match tx.record_movement(&m, now).await {
                    Ok(w) => w,
                    Err(_) => continue, // a serialisation failure: try again
                };
                if tx.commit(&[entry("m")], now).await.is_ok() {
                    assert!(written);
                    break;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let b = db.store.ledger_balances(w).await.unwrap();
    assert_eq!(b[0].1.available, (1..=16).sum::<i128>());
    let rows = db
        .store
        .ledger_rows(
            w,
            Some(BTC),
            Timestamp::from_millis(0),
            Timestamp::from_millis(1_000),
            None,
            100,
        )
        .await
        .unwrap();
    // Each row's balance is the previous one's plus its delta.
    let mut running = 0;
    for r in &rows {
        running += r.delta.available;
        assert_eq!(r.after.available, running, "{rows:?}");
    }
}

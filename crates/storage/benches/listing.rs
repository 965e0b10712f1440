//! `GET /v1/transfers` at the storage layer: a page of 100 transfers,
//! newest first, with each of the list's filters, at 1 000 and 1 000 000
//! transfers. `cargo bench -p storage --bench listing -- --bench`; set
//! STRONGROOM_TEST_POSTGRES_URL to include PostgreSQL.
//!
//! The table is written in one statement. Every case reads a full page at
//! both sizes, so that the two figures differ only by the table's size:
//! two busy wallets share the transfers, a small one holds 200 of them at
//! every size; 25 % are `failed`, 200 at every size `pending_approval` (the
//! rare state an operator looks for), the rest `completed`.

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::time::Instant;

use domain::{TransferId, WalletId};
use storage::testing::{POSTGRES_ENV, TestDb};

const PAGE: u32 = 100;

/// What a case is called, and its filters: wallet, state, cursor.
type Case<'a> = (
    &'a str,
    Option<WalletId>,
    Option<&'a str>,
    Option<TransferId>,
);

fn wallet(i: u64) -> String {
    format!("00000000-0000-7000-8000-{i:012}")
}

/// Wallets 0 and 1 (busy) and 2 (small), and `n` transfers.
async fn fill(db: &TestDb, n: u64) {
    for i in 0..3 {
        db.store
            .execute_unchecked(&format!(
                "INSERT INTO wallets (id, name, created_at_ms, created_by) \
                 VALUES ('{}', 'w{i}', 1, 'operator:bench')",
                wallet(i)
            ))
            .await
            .unwrap();
    }
    let every = n / 200;
    let (small, busy0, busy1) = (wallet(2), wallet(0), wallet(1));
    let wallet_of = format!(
        "CASE WHEN x % {every} = 1 THEN '{small}' WHEN x % 2 = 0 THEN '{busy0}' ELSE '{busy1}' END"
    );
    let state = format!(
        "CASE WHEN x % {every} = 3 THEN 'pending_approval' WHEN x % 4 = 2 THEN 'failed' \
         ELSE 'completed' END"
    );
    let sql = match db.store.backend() {
        storage::Backend::Sqlite => format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) \
             INSERT INTO transfers (id, wallet_id, initiator, asset, amount, destination, intent, \
             digest, policy_version, decision_id, decision, state, created_at_ms, updated_at_ms) \
             SELECT '00000000-0000-7000-8000-' || printf('%012d', x), {wallet_of}, \
             'operator:bench', 'eip155:31337/native', '1', '0x00', X'00', 'd', 1, \
             'decision-' || x, '{{}}', {state}, x, x FROM c"
        ),
        storage::Backend::Postgres => format!(
            "INSERT INTO transfers (id, wallet_id, initiator, asset, amount, destination, intent, \
             digest, policy_version, decision_id, decision, state, created_at_ms, updated_at_ms) \
             SELECT '00000000-0000-7000-8000-' || lpad(x::text, 12, '0'), {wallet_of}, \
             'operator:bench', 'eip155:31337/native', '1', '0x00', '\\x00'::bytea, 'd', 1, \
             'decision-' || x, '{{}}', {state}, x, x FROM generate_series(1, {n}) AS x"
        ),
    };
    db.store.execute_unchecked(&sql).await.unwrap();
    db.store.execute_unchecked("ANALYZE").await.unwrap();
}

/// The median of `runs` reads of one page, in ms; asserts what it read.
async fn page(
    db: &TestDb,
    wallet: Option<WalletId>,
    state: Option<&str>,
    before: Option<TransferId>,
    runs: usize,
) -> f64 {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let rows = db
            .store
            .transfers_page(wallet, state, before, PAGE)
            .await
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(rows.len(), PAGE as usize, "a full page");
        assert!(rows.windows(2).all(|w| w[0].id > w[1].id), "newest first");
        assert!(rows.iter().all(|r| wallet.is_none_or(|w| r.wallet == w)));
        assert!(rows.iter().all(|r| state.is_none_or(|s| r.state == s)));
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

async fn database(name: &str, db: TestDb, n: u64, runs: usize) -> Vec<f64> {
    fill(&db, n).await;
    // Wallet 2 holds a failed transfer (x = 2) at every size.
    let busy: WalletId = wallet(0).parse().unwrap();
    let small: WalletId = wallet(2).parse().unwrap();
    // A cursor half way down the table: the page a client reaches by paging.
    let middle: TransferId = format!("00000000-0000-7000-8000-{:012}", n / 2)
        .parse()
        .unwrap();
    let cases: [Case; 6] = [
        ("every wallet, newest", None, None, None),
        ("every wallet, half way down", None, None, Some(middle)),
        ("a busy wallet (half)", Some(busy), None, None),
        ("a small wallet (200)", Some(small), None, None),
        ("a rare state (200)", None, Some("pending_approval"), None),
        (
            "a busy wallet, failed (1/4)",
            Some(busy),
            Some("failed"),
            None,
        ),
    ];
    let mut out = Vec::new();
    for (what, w, s, b) in cases {
        let ms = page(&db, w, s, b, runs).await;
        println!("  {name:8} {n:>9} transfers  {what:<32} {ms:8.2} ms");
        out.push(ms);
    }
    out
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (sizes, runs): (&[u64], usize) = if quick {
        (&[1_000], 3)
    } else {
        (&[1_000, 1_000_000], 21)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("a page of {PAGE} transfers, newest first: median of {runs} reads");
    rt.block_on(async {
        let mut backends = vec!["sqlite"];
        if std::env::var(POSTGRES_ENV).is_ok() {
            backends.push("postgres");
        } else {
            println!("  postgres not measured: {POSTGRES_ENV} is not set");
        }
        for backend in backends {
            let mut by_size = Vec::new();
            for &n in sizes {
                let db = match backend {
                    "sqlite" => TestDb::sqlite().await,
                    _ => TestDb::postgres().await,
                };
                by_size.push(database(backend, db, n, runs).await);
            }
            if let [small, large] = &by_size[..] {
                let worst = small
                    .iter()
                    .zip(large)
                    .map(|(a, b)| b / a)
                    .fold(0.0, f64::max);
                println!("  {backend:8} worst ratio, 1 000 000 against 1 000: {worst:.1}×");
            }
        }
    });
}

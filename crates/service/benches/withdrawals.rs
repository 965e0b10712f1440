//! Withdrawals end to end, next to the durable commit ceiling measured in
//! the same run, on SQLite and (with `STRONGROOM_TEST_POSTGRES_URL`)
//! PostgreSQL; and the queue's claim latency with 1 000 and 1 000 000
//! transfers pending.
//!
//! - **end to end**: a request signed with an API key is authenticated
//!   (its nonce committed), authorised, judged by the policy (one `allow`
//!   rule, the funds check reading the node), stored; the worker claims it,
//!   plans it (nonce), signs it through the keystore gate, checks it, stores
//!   it and broadcasts it to anvil — the path; then one block is
//!   mined and the watcher's pass completes it (reported too). Once one
//!   request at a time, once with four requesters while the worker runs.
//! - **commit ceiling**: the same number of durable, audited commits a
//!   withdrawal makes up to its broadcast (request nonce, judged, planned,
//!   signed, broadcast: five), each one audit record appended to the hash
//!   chain, one after another — the rate the database alone would allow.
//!   The goal is end to end ≥ 50 % of it.
//! - **claim latency**: `claim_transfers` (16 at a time) with N queued
//!   transfers in the table, median of 50 claims.
//! - **scrape**: a `/metrics` scrape (the registry read and encoded) with
//!   10 000 wallets and 10 000 or 1 000 000 queued transfers, and the
//!   process's resident memory before and after.
//!
//! `cargo bench -p service --bench withdrawals` (`-- --bench` for the full
//! run; without it a quick smoke run, as `cargo test --benches` does).

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::sync::Arc;
use std::time::Instant;

use chain_eth::{EthAddress, FeeCaps, TxPlan};
use chain_eth_client::testing::{Anvil, CHAIN_ID, DevWallet, mine};
use chain_eth_client::{ClientOptions, EthClient};
use domain::{Actor, AssetId, AssetKind, KeyAlgorithm, KeyBackend, KeyPurpose, Network, Timestamp};
use service::eth::{EthNetwork, EthNetworkConfig};
use service::testing::Payer;
use service::transfers::state;
use service::{Checkpointer, NewKey, Service, SystemClock};
use storage::testing::TestDb;

const ETHER: u128 = 1_000_000_000_000_000_000;
/// Durable commits one withdrawal makes up to its broadcast, each with its
/// audit records: the request's nonce, the judgment, the plan, the signed
/// bytes, the broadcast.
const COMMITS_PER_WITHDRAWAL: usize = 5;

fn console() -> Actor {
    "operator:bench".parse().unwrap()
}

struct Bench {
    svc: Service,
    db: TestDb,
    payer: Payer,
    client: Arc<EthClient>,
    _anvil: Anvil,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn new(db: TestDb) -> Bench {
        let anvil = Anvil::start();
        let dir = tempfile::tempdir().unwrap();
        let svc = Service::new(
            db.store.clone(),
            Arc::new(SystemClock),
            Checkpointer::for_tests(dir.path(), 8, 100_000),
        );
        for s in &svc.init_keystore(&console(), 2, 2).await.unwrap() {
            svc.unseal(&Actor::Anonymous, s).await.unwrap();
        }
        let client = Arc::new(
            EthClient::connect(
                CHAIN_ID,
                &[anvil.url().to_owned()],
                ClientOptions::default(),
            )
            .await
            .unwrap(),
        );
        svc.add_eth_network(EthNetwork {
            config: EthNetworkConfig {
                chain_id: CHAIN_ID,
                legacy: false,
                confirmations: 1,
                bump_after_blocks: 3,
                fee_caps: FeeCaps {
                    max_fee_per_gas: 1_000_000_000_000,
                    max_total_fee: ETHER / 100,
                },
                min_priority_fee: 1_000_000_000,
                allow_unchecksummed: false,
                tokens: vec![],
            },
            client: client.clone(),
        });
        let key = svc
            .create_key(
                &console(),
                NewKey {
                    purpose: KeyPurpose::TransferSigning,
                    algorithm: KeyAlgorithm::EcdsaSecp256k1,
                    backend: KeyBackend::Keystore,
                    cryptoperiod_days: 30,
                },
            )
            .await
            .unwrap();
        let sender = svc
            .register_eth_sender(&console(), key.id, CHAIN_ID)
            .await
            .unwrap();
        let from: EthAddress = sender.address.parse().unwrap();
        DevWallet::new(0)
            .await
            .transact(&client, |n, f| {
                TxPlan::native(CHAIN_ID, n, from, 1_000 * ETHER, f)
            })
            .await;
        // A wallet for the sender, single-admin governance, an allow-all
        // policy applied by proposal, and an initiator with an API key.
        let payer = Payer::open(&svc, &console(), "bench", &[(CHAIN_ID, from)]).await;
        Bench {
            svc,
            db,
            payer,
            client,
            _anvil: anvil,
            _dir: dir,
        }
    }

    /// One signed request, authenticated, authorised and judged.
    async fn submit(&self) -> domain::TransferId {
        let ether = AssetId::new(Network::Evm { chain_id: CHAIN_ID }, AssetKind::Native).unwrap();
        self.payer
            .submit(
                &ether,
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                "0.001",
            )
            .await
            .unwrap()
            .id
    }

    /// Mines a block, completes the sends and checks every one completed.
    async fn confirm(&self, ids: &[domain::TransferId]) {
        mine(&self.client, 1).await;
        self.svc.eth_poll(CHAIN_ID).await.unwrap();
        for id in ids {
            let t = self.db.store.transfer(*id).await.unwrap();
            assert_eq!(t.state, state::COMPLETED);
        }
    }

    /// `n` withdrawals one after another, from the signed request to the
    /// broadcast (the path), then to completion; both rates.
    async fn end_to_end(&self, n: usize) -> (f64, f64) {
        let t = Instant::now();
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(self.submit().await);
        }
        let requested = t.elapsed();
        assert_eq!(self.svc.execute_due().await.unwrap().submitted, n);
        let sent = t.elapsed();
        self.confirm(&ids).await;
        let all = t.elapsed();
        if std::env::var_os("BENCH_PHASES").is_some() {
            let per = |d: std::time::Duration| d.as_secs_f64() * 1e3 / n as f64;
            println!(
                "    per withdrawal: request {:.2} ms, plan+sign+broadcast {:.2} ms, confirm {:.2} ms",
                per(requested),
                per(sent - requested),
                per(all - sent)
            );
        }
        (n as f64 / sent.as_secs_f64(), n as f64 / all.as_secs_f64())
    }

    /// `n` withdrawals from `clients` concurrent requesters while the
    /// worker sends what is queued, as a server runs them; the rate to the
    /// broadcast of the last one.
    async fn pipelined(self: &Arc<Self>, n: usize, clients: usize) -> f64 {
        let t = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..clients {
            let b = self.clone();
            let k = n / clients + usize::from(c < n % clients);
            tasks.spawn(async move {
                let mut ids = Vec::with_capacity(k);
                for _ in 0..k {
                    ids.push(b.submit().await);
                }
                ids
            });
        }
        let worker = {
            let b = self.clone();
            tokio::spawn(async move {
                // As a server's executor: a pass whenever a transfer moves.
                let mut sent = 0;
                while sent < n {
                    b.svc.transfers_moved().await;
                    sent += b.svc.execute_due().await.unwrap().submitted;
                }
            })
        };
        let mut ids = Vec::with_capacity(n);
        while let Some(r) = tasks.join_next().await {
            ids.extend(r.unwrap());
        }
        worker.await.unwrap();
        let rate = n as f64 / t.elapsed().as_secs_f64();
        self.confirm(&ids).await;
        rate
    }

    /// Durable audited commits, one after another; commits per second.
    async fn commit_ceiling(&self, n: usize) -> f64 {
        let t = Instant::now();
        for i in 0..n {
            let tx = self.db.store.begin().await.unwrap();
            let e = audit::Entry::new(
                console(),
                "bench.commit",
                format!("bench:{i}"),
                audit::Details::none(),
            )
            .unwrap();
            tx.commit(&[e], service::Clock::now(&SystemClock))
                .await
                .unwrap();
        }
        n as f64 / t.elapsed().as_secs_f64()
    }
}

/// `n` queued transfers of `wallet`, written in one statement.
async fn fill_queue(db: &TestDb, wallet: domain::WalletId, n: u64) {
    let now = now_ms();
    let fill = match db.store.backend() {
        storage::Backend::Sqlite => format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) \
                 INSERT INTO transfers (id, wallet_id, initiator, asset, amount, destination, intent, \
                 digest, policy_version, decision_id, decision, state, created_at_ms, updated_at_ms) \
                 SELECT '00000000-0000-7000-8000-' || printf('%012d', x), '{wallet}', 'operator:bench', \
                 'eip155:31337/native', '1', '0x00', X'00', 'd', 1, 'decision-' || x, '{{}}', 'queued', \
                 {now} + x, {now} + x FROM c"
        ),
        storage::Backend::Postgres => format!(
            "INSERT INTO transfers (id, wallet_id, initiator, asset, amount, destination, intent, \
                 digest, policy_version, decision_id, decision, state, created_at_ms, updated_at_ms) \
                 SELECT '00000000-0000-7000-8000-' || lpad(x::text, 12, '0'), '{wallet}', \
                 'operator:bench', 'eip155:31337/native', '1', '0x00', '\\x00'::bytea, 'd', 1, \
                 'decision-' || x, '{{}}', 'queued', {now} + x, {now} + x \
                 FROM generate_series(1, {n}) AS x"
        ),
    };
    db.store.execute_unchecked(&fill).await.unwrap();
    db.store.execute_unchecked("ANALYZE").await.unwrap();
}

/// Median claim latency (16 at a time) with `pending` queued transfers.
async fn claim_latency(db: TestDb, pending: u64, claims: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::new(
        db.store.clone(),
        Arc::new(SystemClock),
        Checkpointer::for_tests(dir.path(), 8, 100_000),
    );
    let wallet = svc
        .console_create_wallet(&console(), "queue")
        .await
        .unwrap()
        .id;
    fill_queue(&db, wallet, pending).await;
    // Claimed rows move their next attempt a lease ahead: each claim takes
    // the next 16, as a busy worker would.
    let later = Timestamp::from_millis(now_ms() + 10_000_000);
    let mut times = Vec::with_capacity(claims);
    for _ in 0..claims {
        let t = Instant::now();
        let got = db
            .store
            .claim_transfers(later, 60_000, 16, "bench")
            .await
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(got.len(), 16);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// A Prometheus scrape (the registry read and encoded, as `/metrics`
/// does) with `wallets` wallets and `pending` queued transfers: the median
/// of 9, in ms; and this process's resident memory (MiB) before the
/// wallets and transfers were written, and after they were scraped and 10
/// claims taken (SQLite's page cache is in the process: a server's own).
async fn scrape_figures(db: TestDb, wallets: usize, pending: u64) -> (f64, f64, f64) {
    let before = rss_mib();
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::new(
        db.store.clone(),
        Arc::new(SystemClock),
        Checkpointer::for_tests(dir.path(), 8, 100_000),
    );
    let mut first = None;
    for i in 0..wallets {
        let w = svc
            .console_create_wallet(&console(), &format!("wallet-{i}"))
            .await
            .unwrap();
        first.get_or_insert(w.id);
    }
    fill_queue(&db, first.unwrap(), pending).await;
    let mut times = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        let r = svc
            .metrics_registry(std::time::Duration::from_secs(60))
            .await;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(text.contains("strongroom_database_up 1"), "{text}");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let later = Timestamp::from_millis(now_ms() + 10_000_000);
    for _ in 0..10 {
        db.store
            .claim_transfers(later, 60_000, 16, "bench")
            .await
            .unwrap();
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], before, rss_mib())
}

/// This process's resident set, in MiB.
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn now_ms() -> i64 {
    service::Clock::now(&SystemClock).as_millis()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (batch, rounds) = if quick { (4, 1) } else { (100, 5) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut backends = vec!["sqlite"];
        if std::env::var("STRONGROOM_TEST_POSTGRES_URL").is_ok() {
            backends.push("postgres");
        }
        println!("withdrawals end to end, {batch} per round, median of {rounds} rounds (one anvil):");
        for backend in &backends {
            let db = match *backend {
                "sqlite" => TestDb::sqlite().await,
                _ => TestDb::postgres().await,
            };
            let b = Arc::new(Bench::new(db).await);
            let (mut sent, mut done, mut piped, mut ceiling) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                let (s, d) = b.end_to_end(batch).await;
                sent.push(s);
                done.push(d);
                piped.push(b.pipelined(batch, 4).await);
                let commits = b.commit_ceiling(batch * COMMITS_PER_WITHDRAWAL).await;
                ceiling.push(commits / COMMITS_PER_WITHDRAWAL as f64);
            }
            let median = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (s, d, p, c) = (
                median(&mut sent),
                median(&mut done),
                median(&mut piped),
                median(&mut ceiling),
            );
            println!(
                "  {backend:8} commit ceiling {c:7.1} withdrawals/s ({:.0} commits/s)",
                c * COMMITS_PER_WITHDRAWAL as f64
            );
            println!(
                "  {backend:8} one at a time, to broadcast {s:7.1}/s ({:.0} %), to completion {d:7.1}/s",
                100.0 * s / c
            );
            println!(
                "  {backend:8} 4 requesters + the worker, to broadcast {p:7.1}/s ({:.0} %)",
                100.0 * p / c
            );
        }
        let sizes: &[u64] = if quick { &[1_000] } else { &[1_000, 1_000_000] };
        println!("queue claim latency (16 per claim), median of 50 claims:");
        for backend in &backends {
            for &n in sizes {
                let db = match *backend {
                    "sqlite" => TestDb::sqlite().await,
                    _ => TestDb::postgres().await,
                };
                let ms = claim_latency(db, n, if quick { 5 } else { 50 }).await;
                println!("  {backend:8} {n:>9} pending: {ms:.2} ms per claim");
            }
        }
        let (wallets, pending): (usize, &[u64]) = if quick {
            (50, &[1_000])
        } else {
            (10_000, &[10_000, 1_000_000])
        };
        println!("metrics scrape (read + encode), median of 9; resident memory:");
        for backend in &backends {
            for &n in pending {
                let db = match *backend {
                    "sqlite" => TestDb::sqlite().await,
                    _ => TestDb::postgres().await,
                };
                let (ms, before, after) = scrape_figures(db, wallets, n).await;
                println!(
                    "  {backend:8} {wallets} wallets, {n:>9} pending: {ms:.1} ms per scrape; \
                     {before:.0} MiB before, {after:.0} MiB after"
                );
            }
        }
    });
}

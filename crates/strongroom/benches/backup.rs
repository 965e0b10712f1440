//! Backup and restore, timed with the real binary: an installation whose
//! audit log holds N records (checkpointed) and T completed transfers,
//! backed up while nothing else runs, verified, restored on a "fresh
//! machine", then served and unsealed until ready (which includes the
//! restore's reconciliation). `cargo bench -p strongroom --bench backup --
//! --bench`: SQLite with 10 000 and 1 000 000 records and with 100 000
//! transfers; PostgreSQL too when `STRONGROOM_TEST_POSTGRES_URL` is set.
//! Without `--bench`, 1 000 records on SQLite.

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");

fn run(args: &[&str]) -> String {
    let o = Command::new(BIN).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn config(dir: &Path, url: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{url}\"\n\
         [audit]\nsigning_key_file = \"audit.key\"\ncheckpoint_file = \"audit.checkpoints\"\n\
         checkpoint_every_records = 100000\ncheckpoint_every_seconds = 3600\n[log]\nformat = \"json\"\n\
         level = \"warn\"\n[governance]\nadmin_quorum = 1\nwhitelist_cooling_off_hours = 24\n[operations]\nmetrics_listen = \"off\"\n\
         [backup]\nrecipients_file = \"{}\"\n",
        dir.join("recipients.txt").display()
    )
}

/// The database at `url` (an SQLite path relative to `dir`).
fn database(dir: &Path, url: &str) -> storage::DatabaseConfig {
    match url.strip_prefix("sqlite://") {
        Some(file) => storage::DatabaseConfig::Sqlite {
            path: dir.join(file),
        },
        None => storage::DatabaseConfig::Postgres {
            url: url.to_owned(),
            password: None,
            max_connections: 4,
        },
    }
}

/// `n` completed withdrawals of one wallet, each with its audit record.
async fn fill_transfers(store: &storage::Store, n: u64) {
    use domain::{Timestamp, TransferId, WalletId};
    let now = service::Clock::now(&service::SystemClock);
    let actor: domain::Actor = "operator:bench".parse().unwrap();
    let wallet = WalletId::from_uuid(uuid::Uuid::now_v7());
    let mut tx = store.begin().await.unwrap();
    tx.insert_wallet(&storage::WalletRow {
        id: wallet,
        name: "bench".into(),
        created_at: now,
        created_by: actor.clone(),
    })
    .await
    .unwrap();
    let e = audit::Entry::new(
        actor.clone(),
        "wallet.created",
        "bench",
        audit::Details::none(),
    )
    .unwrap();
    tx.commit(&[e], now).await.unwrap();
    let mut left = n;
    while left > 0 {
        let batch = left.min(1000);
        let mut tx = store.begin().await.unwrap();
        let mut entries = Vec::new();
        for _ in 0..batch {
            let id = TransferId::from_uuid(uuid::Uuid::now_v7());
            tx.insert_transfer(&storage::TransferRow {
                id,
                wallet,
                initiator: actor.clone(),
                asset: "eip155:1/native".into(),
                amount: 1_000_000_000_000_000,
                destination: "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".into(),
                intent: vec![0; 200],
                digest: hex::encode([7u8; 32]),
                policy_version: 1,
                decision_id: uuid::Uuid::now_v7().to_string(),
                decision: "{\"verdict\":\"allow\"}".into(),
                state: "completed".into(),
                usd_micro: None,
                expires_at: None,
                unlock_at: None,
                eth_send_id: None,
                btc_send_id: None,
                external_id: None,
                attempts: 0,
                next_attempt_at: now,
                last_error: None,
                priority: 1,
                depends_on: None,
                held_at: None,
                finished_at: Some(now),
                created_at: now,
                updated_at: Timestamp::from_millis(now.as_millis()),
                judgment_mac: None,
            })
            .await
            .unwrap();
            entries.push(
                audit::Entry::new(
                    actor.clone(),
                    "transfer.completed",
                    format!("transfer:{id}"),
                    audit::Details::none(),
                )
                .unwrap(),
            );
        }
        tx.commit(&entries, now).await.unwrap();
        left -= batch;
    }
}

/// Appends `n` audit records in batches and `transfers` completed
/// transfers, and checkpoints the head.
fn fill(dir: &Path, url: &str, n: u64, transfers: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = storage::Store::connect(&database(dir, url)).await.unwrap();
        fill_transfers(&store, transfers).await;
        let actor: domain::Actor = "operator:bench".parse().unwrap();
        let mut left = n;
        while left > 0 {
            let batch = left.min(1000);
            let entries: Vec<audit::Entry> = (0..batch)
                .map(|i| {
                    audit::Entry::new(
                        actor.clone(),
                        "bench.record",
                        format!("bench:{}", n - left + i),
                        audit::Details::new(&serde_json::json!({ "i": i })).unwrap(),
                    )
                    .unwrap()
                })
                .collect();
            store
                .append_audit(&entries, service::Clock::now(&service::SystemClock))
                .await
                .unwrap();
            left -= batch;
        }
        let key = service::load_audit_key(&dir.join("audit.key")).unwrap();
        let cp = service::Checkpointer::open(
            key,
            service::CheckpointFile::new(dir.join("audit.checkpoints")),
            service::CheckpointPolicy {
                every_records: 1,
                every: Duration::from_secs(3600),
            },
        )
        .unwrap();
        cp.tick(&store, service::Clock::now(&service::SystemClock))
            .await
            .unwrap();
        store.close().await;
    });
}

fn measure(n: u64, transfers: u64, url: &str, fresh_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let id = age::x25519::Identity::generate();
    let identity = dir.path().join("identity.txt");
    std::fs::write(&identity, format!("{}\n", id.to_string().expose_secret())).unwrap();
    std::fs::write(
        dir.path().join("recipients.txt"),
        format!("{}\n", id.to_public()),
    )
    .unwrap();
    let cfg = dir.path().join("strongroom.toml");
    std::fs::write(&cfg, config(dir.path(), url)).unwrap();
    let cfg_s = cfg.to_str().unwrap();
    run(&[
        "audit",
        "init-key",
        "--out",
        dir.path().join("audit.key").to_str().unwrap(),
    ]);
    let shares = dir.path().join("shares");
    run(&[
        "init",
        "--config",
        cfg_s,
        "--shares",
        "2",
        "--threshold",
        "2",
        "--share-dir",
        shares.to_str().unwrap(),
    ]);
    let started = Instant::now();
    fill(dir.path(), url, n, transfers);
    let filled = started.elapsed();
    let db_size = std::fs::metadata(dir.path().join("strongroom.db")).map_or(0, |m| m.len());

    let file = dir.path().join("b.srbk");
    let t = Instant::now();
    run(&[
        "backup",
        "create",
        "--config",
        cfg_s,
        "--out",
        file.to_str().unwrap(),
    ]);
    let create = t.elapsed();
    let size = std::fs::metadata(&file).unwrap().len();
    let t = Instant::now();
    run(&[
        "backup",
        "verify",
        "--config",
        cfg_s,
        "--identity",
        identity.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    let verify = t.elapsed();

    // A fresh machine: configuration, audit key and recipients; no data.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::write(
        fresh.path().join("strongroom.toml"),
        config(dir.path(), fresh_url),
    )
    .unwrap();
    std::fs::copy(dir.path().join("audit.key"), fresh.path().join("audit.key")).unwrap();
    let fresh_cfg = fresh.path().join("strongroom.toml");
    let t = Instant::now();
    run(&[
        "restore",
        "--config",
        fresh_cfg.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
        "--from",
        file.to_str().unwrap(),
    ]);
    let restore = t.elapsed();
    let t = Instant::now();
    let mut server = Command::new(BIN)
        .args(["serve", "--config", fresh_cfg.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("strongroom listening on ")
        .unwrap()
        .to_owned();
    for i in 1..=2 {
        let share = std::fs::read_to_string(shares.join(format!("share-{i}.txt"))).unwrap();
        let mut c = Command::new(BIN)
            .args(["operator", "unseal", "--addr", &base])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(share.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(
        run(&["operator", "status", "--addr", &base]).trim(),
        "unsealed"
    );
    let ready = t.elapsed();
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "{:>8} {n:>9} audit records, {transfers:>6} transfers (filled in {:.1} s; database {:.1} MB): \
         backup {:.2} s, {:.1} MB; verify {:.2} s; restore {:.2} s; serve + unseal ready {:.2} s; \
         restore to ready {:.2} s",
        if url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        },
        filled.as_secs_f64(),
        db_size as f64 / 1e6,
        create.as_secs_f64(),
        size as f64 / 1e6,
        verify.as_secs_f64(),
        restore.as_secs_f64(),
        ready.as_secs_f64(),
        (restore + ready).as_secs_f64()
    );
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let sizes: &[(u64, u64)] = if quick {
        &[(1_000, 100)]
    } else {
        &[(10_000, 0), (1_000_000, 0), (0, 100_000)]
    };
    let sqlite = "sqlite://strongroom.db";
    println!("backup and restore (one process at a time, this machine):");
    for (n, t) in sizes {
        measure(*n, *t, sqlite, sqlite);
    }
    if !quick && std::env::var("STRONGROOM_TEST_POSTGRES_URL").is_ok() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (n, t) in sizes {
            let (a, b) = rt.block_on(async {
                (
                    storage::testing::TestDb::postgres().await,
                    storage::testing::TestDb::postgres().await,
                )
            });
            measure(*n, *t, &a.url, &b.url);
            drop((a, b));
        }
    }
}

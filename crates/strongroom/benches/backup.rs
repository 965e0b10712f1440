//! Backup and restore, timed with the real binary: an installation (SQLite)
//! whose audit log holds N records (checkpointed), backed up while
//! nothing else runs, verified, restored on a "fresh machine", then served
//! and unsealed until ready. `cargo bench -p strongroom --bench backup --
//! --bench` (10 000 and 1 000 000 records); without `--bench`, 1 000.

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

fn config(dir: &Path) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://strongroom.db\"\n\
         [audit]\nsigning_key_file = \"audit.key\"\ncheckpoint_file = \"audit.checkpoints\"\n\
         checkpoint_every_records = 100000\ncheckpoint_every_seconds = 3600\n[log]\nformat = \"json\"\n\
         level = \"warn\"\n[governance]\nadmin_quorum = 1\nwhitelist_cooling_off_hours = 24\n\
         [backup]\nrecipients_file = \"{}\"\n",
        dir.join("recipients.txt").display()
    )
}

/// Appends `n` audit records in batches and checkpoints the head.
fn fill(dir: &Path, n: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = storage::Store::connect(&storage::DatabaseConfig::Sqlite {
            path: dir.join("strongroom.db"),
        })
        .await
        .unwrap();
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

fn measure(n: u64) {
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
    std::fs::write(&cfg, config(dir.path())).unwrap();
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
    fill(dir.path(), n);
    let filled = started.elapsed();
    let db_size = std::fs::metadata(dir.path().join("strongroom.db"))
        .unwrap()
        .len();

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
    std::fs::write(fresh.path().join("strongroom.toml"), config(dir.path())).unwrap();
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
        "{n:>9} audit records (filled in {:.1} s; database {:.1} MB): backup {:.2} s, {:.1} MB; \
         verify {:.2} s; restore {:.2} s; serve + unseal ready {:.2} s; restore to ready {:.2} s",
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
    let sizes: &[u64] = if quick {
        &[1_000]
    } else {
        &[10_000, 1_000_000]
    };
    println!("backup and restore (SQLite, one process at a time, this machine):");
    for n in sizes {
        measure(*n);
    }
}

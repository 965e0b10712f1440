//! Ceilings later work is measured against: durable commits per second,
//! audit appends inside a transaction, and audit verification next to raw
//! SHA-256 throughput. `cargo bench -p storage --bench ceilings`; set
//! STRONGROOM_TEST_POSTGRES_URL to include PostgreSQL.

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::time::{Duration, Instant};

use audit::{AuditSigningKey, Details, Entry, Head, Record, Verifier};
use domain::{Actor, Timestamp};
use sha2::{Digest, Sha256};
use storage::testing::{POSTGRES_ENV, TestDb};

fn rate(n: u64, d: Duration) -> String {
    format!("{:>10.0}/s", n as f64 / d.as_secs_f64())
}

fn entry(i: u64) -> Entry {
    Entry::new(
        Actor::System,
        "bench.event",
        format!("transfer:{i:016}"),
        Details::new(
            &serde_json::json!({"amount": "1.50000000", "asset": "bitcoin:mainnet/native", "n": i}),
        )
        .unwrap(),
    )
    .unwrap()
}

async fn database(name: &str, db: TestDb, n: u64) {
    let s = &db.store;
    s.execute_unchecked("CREATE TABLE bench_kv (k BIGINT PRIMARY KEY, v TEXT NOT NULL)")
        .await
        .unwrap();

    let t = Instant::now();
    for i in 0..n {
        s.execute_unchecked(&format!(
            "INSERT INTO bench_kv (k, v) VALUES ({i}, 'value {i}')"
        ))
        .await
        .unwrap();
    }
    println!(
        "{name:<10} durable single-row commits       {}",
        rate(n, t.elapsed())
    );

    let t = Instant::now();
    for i in 0..n {
        s.append_audit(&[entry(i)], Timestamp::from_millis(i as i64))
            .await
            .unwrap();
    }
    println!(
        "{name:<10} audited commits (1 record each)  {}",
        rate(n, t.elapsed())
    );

    let batch: Vec<Entry> = (0..1000).map(entry).collect();
    let t = Instant::now();
    let rounds = 10;
    for r in 0..rounds {
        s.append_audit(&batch, Timestamp::from_millis(r))
            .await
            .unwrap();
    }
    println!(
        "{name:<10} audit appends inside a tx (1000) {}",
        rate(rounds as u64 * 1000, t.elapsed())
    );

    let key = AuditSigningKey::from_seed(&zeroize::Zeroizing::new([1; 32]));
    let t = Instant::now();
    let mut v = Verifier::new(&[], &key.public()).unwrap();
    let mut after = 0;
    loop {
        let page = s.audit_page(after, 2000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            v.push(r).unwrap();
        }
    }
    let report = v.finish(None).unwrap();
    println!(
        "{name:<10} audit verify, read from database  {}",
        rate(report.records, t.elapsed())
    );
}

fn in_memory_verification() {
    let n = 200_000u64;
    let mut head = Head::GENESIS;
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let r = Record::next(&head, &entry(i), Timestamp::from_millis(i as i64)).unwrap();
            head = r.head();
            r
        })
        .collect();
    let bytes: Vec<Vec<u8>> = records.iter().map(Record::canonical_bytes).collect();
    let total: usize = bytes.iter().map(Vec::len).sum();

    let key = AuditSigningKey::from_seed(&zeroize::Zeroizing::new([1; 32]));
    let t = Instant::now();
    let mut v = Verifier::new(&[], &key.public()).unwrap();
    for r in &records {
        v.push(r).unwrap();
    }
    v.finish(None).unwrap();
    let verify = t.elapsed();

    let t = Instant::now();
    let mut acc = 0u8;
    for b in &bytes {
        acc ^= Sha256::digest(b)[0];
    }
    let raw = t.elapsed();
    std::hint::black_box(acc);

    let mbps = |d: Duration| total as f64 / d.as_secs_f64() / 1e6;
    println!(
        "memory     audit verify (in memory)           {}  {:>7.1} MB/s",
        rate(n, verify),
        mbps(verify)
    );
    println!(
        "memory     raw SHA-256 of the same bytes      {}  {:>7.1} MB/s   ({} B/record)",
        rate(n, raw),
        mbps(raw),
        total as u64 / n
    );
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 50 } else { 3_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("strongroom storage ceilings ({n} operations per row)");
    rt.block_on(async {
        database("sqlite", TestDb::sqlite().await, n).await;
        if std::env::var(POSTGRES_ENV).is_ok() {
            database("postgres", TestDb::postgres().await, n).await;
        } else {
            println!("postgres   not measured: {POSTGRES_ENV} is not set");
        }
    });
    if !quick {
        in_memory_verification();
    }
}

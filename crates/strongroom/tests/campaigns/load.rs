//! Sustained load: 150 wallets, each with its own Ethereum account on an
//! anvil that mines a block a second; 100 operations in flight from 100
//! clients (signed requests on kept-alive connections); a mix of reads,
//! dry-runs, withdrawals with and without approvals, approvals and
//! cancels, withdrawals paced to what one anvil holds in flight. Measured:
//! the success ratio, p50/p99 latency, the server's memory and open file
//! descriptors before and after (no growth), and the audit chain verifying
//! at the end, every withdrawal settled. Operations:
//! `STRONGROOM_LOAD_OPERATIONS` (3 000 in CI; `scripts/soak load` 100 000).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer as _, SigningKey};

use super::super::*;
use super::size;

const WALLETS: usize = 150;
const IN_FLIGHT: usize = 100;

/// An API key as `strongroom apikey create` writes it.
#[derive(Clone)]
struct Key {
    id: String,
    key: SigningKey,
}

impl Key {
    fn load(path: &Path) -> Key {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines = text.lines().skip(1);
        let id = lines
            .next()
            .unwrap()
            .strip_prefix("id ")
            .unwrap()
            .to_owned();
        let mut seed = [0u8; 32];
        hex::decode_to_slice(
            lines.next().unwrap().strip_prefix("secret ").unwrap(),
            &mut seed,
        )
        .unwrap();
        Key {
            id,
            key: SigningKey::from_bytes(&seed),
        }
    }
}

/// One client: signed requests over one kept-alive connection.
struct Client {
    addr: String,
    key: Key,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(base: &str, key: &Key) -> Client {
        Client {
            addr: base.strip_prefix("http://").unwrap().to_owned(),
            key: key.clone(),
            conn: None,
        }
    }

    /// The status and JSON body of a signed request.
    fn call(
        &mut self,
        method: &str,
        target: &str,
        body: Option<&str>,
        idempotency: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let body = body.unwrap_or("");
        // Unique across every client of the run (they share keys).
        static NONCES: AtomicU64 = AtomicU64::new(0);
        let n = NONCES.fetch_add(1, Ordering::SeqCst);
        let nonce = format!("load-{}-{n:012}", std::process::id());
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            .to_string();
        let m = domain::request::request_message(
            method,
            path,
            query,
            body.as_bytes(),
            &ts,
            &nonce,
            idempotency.unwrap_or(""),
        );
        let sig = data_encoding::BASE64.encode(&self.key.key.sign(&m).to_bytes());
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n{}: {}\r\n{}: {ts}\r\n{}: {nonce}\r\n{}: {sig}\r\n",
            self.addr,
            body.len(),
            api_http::KEY_HEADER,
            self.key.id,
            api_http::TIMESTAMP_HEADER,
            api_http::NONCE_HEADER,
            api_http::SIGNATURE_HEADER,
        );
        if let Some(k) = idempotency {
            req.push_str(&format!("{}: {k}\r\n", api_http::IDEMPOTENCY_HEADER));
        }
        req.push_str("\r\n");
        req.push_str(body);
        for _ in 0..2 {
            if self.conn.is_none() {
                self.conn = Some(BufReader::new(TcpStream::connect(&self.addr).unwrap()));
            }
            let conn = self.conn.as_mut().unwrap();
            if conn.get_mut().write_all(req.as_bytes()).is_ok()
                && let Some(answer) = read_response(conn)
            {
                return answer;
            }
            // The server closed a kept-alive connection: a new one.
            self.conn = None;
        }
        panic!("no answer to {method} {target}");
    }
}

fn read_response(conn: &mut BufReader<TcpStream>) -> Option<(u16, serde_json::Value)> {
    let mut line = String::new();
    if conn.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.get(9..12)?.parse().ok()?;
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut h = String::new();
        conn.read_line(&mut h).ok()?;
        if h == "\r\n" || h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            conn.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            conn.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length, 0);
        conn.read_exact(&mut body).ok()?;
    }
    Some((status, serde_json::from_slice(&body).unwrap_or_default()))
}

/// What the server process holds: resident memory (KiB) and open files.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    (rss, fds)
}

/// The operations a client makes, one kind per turn.
#[derive(Debug, Clone, Copy)]
enum Op {
    Read,
    DryRun,
    Withdraw,
    WithdrawForApproval,
    Approve,
    Cancel,
}

fn op_of(turn: u64) -> Op {
    match turn % 20 {
        0..=7 => Op::Read,
        8..=10 => Op::DryRun,
        11..=13 => Op::Withdraw,
        14..=15 => Op::WithdrawForApproval,
        16..=17 => Op::Approve,
        _ => Op::Cancel,
    }
}

/// The sustained load on one database.
pub(super) fn sustained_load(db_url: &str) {
    let operations = size("STRONGROOM_LOAD_OPERATIONS", 3_000);
    // Withdrawals per second: what one anvil and its 1 s blocks hold in
    // flight without the queue growing without bound.
    let per_second = size("STRONGROOM_LOAD_WITHDRAWALS_PER_SECOND", 25);
    let anvil = chain_eth_client::testing::Anvil::start_with(&["--block-time", "1"]);
    let (dir, config) = data_dir(db_url);
    let cfg = config.to_str().unwrap().to_owned();
    add_ethereum(&config, 31337, anvil.url());
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[operations]\n",
        "[operations]\nrequests_per_second_per_principal = 100000\nrequests_per_second_per_address = 100000\n",
    );
    std::fs::write(&config, text).unwrap();
    let quorum = init_keystore(&cfg, &dir.path().join("shares"), 2, 2).join("\n") + "\n";
    let person = |name: &str, role: &str| api_key(&cfg, dir.path(), name, role, "global");
    let (admin_file, _) = person("admin", "admin");
    let (writer_file, _) = person("writer", "policy-admin");
    let (initiator_file, _) = person("initiator", "initiator");
    let (approver_file, approver_id) = person("approver", "approver");
    let approver_key = SigningKey::from_bytes(&[77; 32]);

    let mut server = Server::start(&config);
    let (tx, lines) = std::sync::mpsc::channel();
    server.follow_log(tx);
    for share in quorum.lines() {
        let o = strongroom_with_input(
            &["operator", "unseal", "--addr", &server.base],
            &format!("{share}\n"),
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (admin, writer) = (Key::load(&admin_file), Key::load(&writer_file));
    let (initiator, approver) = (Key::load(&initiator_file), Key::load(&approver_file));
    let mut a = Client::new(&server.base, &admin);
    let mut w = Client::new(&server.base, &writer);
    let govern = |c: &mut Client, change: serde_json::Value| {
        let body = serde_json::json!({ "change": change }).to_string();
        let (code, p) = c.call("POST", "/v1/proposals", Some(&body), None);
        assert_eq!(code, 201, "{p}");
        let id = p["id"].as_str().unwrap();
        assert_eq!(approve_proposal(&server.base, &admin_file, id), "applied");
    };
    govern(
        &mut a,
        serde_json::json!({"kind": "register_approver_key", "principal": approver_id,
            "public_key": hex::encode(approver_key.verifying_key().to_bytes())}),
    );
    let document = format!(
        "[[groups]]\nname = \"approvers\"\nmembers = [\"{approver_id}\"]\n\n\
         [[rules]]\nname = \"small\"\namount = {{ at_most = \"0.01\" }}\naction = \"allow\"\n\n\
         [[rules]]\nname = \"large\"\naction = \"require_approval\"\n\
         approvals = {{ group = \"approvers\", threshold = 1 }}\n"
    );
    govern(
        &mut w,
        serde_json::json!({"kind": "set_policy", "document": document}),
    );
    // 150 wallets, each with an Ethereum account of its own, funded.
    let mut wallets = Vec::new();
    let mut addresses = std::collections::HashMap::new();
    let rt = rt();
    let client = rt.block_on(eth_client(anvil.url()));
    for i in 0..WALLETS {
        let body = serde_json::json!({ "name": format!("load-{i}") }).to_string();
        let (code, wallet) = a.call("POST", "/v1/wallets", Some(&body), None);
        assert_eq!(code, 201, "{wallet}");
        let id = wallet["id"].as_str().unwrap().to_owned();
        let body = serde_json::json!({ "network": "eip155:31337" }).to_string();
        let (code, account) = a.call(
            "POST",
            &format!("/v1/wallets/{id}/accounts"),
            Some(&body),
            None,
        );
        assert_eq!(code, 201, "{account}");
        let address = account["address"].as_str().unwrap().to_owned();
        rt.block_on(client.raw_call(
            "anvil_setBalance",
            serde_json::json!([address, "0x56bc75e2d63100000"]),
        ))
        .unwrap();
        addresses.insert(id.clone(), address);
        wallets.push(id);
    }
    // Funds count at the confirmation depth: wait for every wallet's.
    let funded = Instant::now();
    for id in &wallets {
        loop {
            let (c, b) = a.call("GET", &format!("/v1/wallets/{id}/balances"), None, None);
            assert_eq!(c, 200, "{b}");
            let available = b
                .as_array()
                .and_then(|l| l.first())
                .and_then(|x| x["available"].as_str())
                .unwrap_or("0")
                .to_owned();
            if available != "0" {
                break;
            }
            assert!(funded.elapsed() < Duration::from_secs(120), "{id}: {b}");
            // A block a second: look again when the server logs the next.
            let _ = lines.recv_timeout(Duration::from_secs(2));
        }
    }
    let wallets = Arc::new(wallets);

    let pid = server.child.id();
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let withdrawals = Arc::new(AtomicU64::new(0));
    let pending: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let results: Arc<Mutex<Vec<(Op, bool, Duration)>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    // A warm-up tenth (pools filled, caches made), then the rest: what the
    // server holds after the warm-up is the baseline for growth.
    let warm_up = (operations / 10).max(200).min(operations);
    let mut before = (0, 0);
    for until in [warm_up, operations] {
        std::thread::scope(|scope| {
            for worker in 0..IN_FLIGHT {
                let (next, withdrawals, pending) =
                    (next.clone(), withdrawals.clone(), pending.clone());
                let (results, failures, wallets) =
                    (results.clone(), failures.clone(), wallets.clone());
                let mut ini = Client::new(&server.base, &initiator);
                let mut app = Client::new(&server.base, &approver);
                let approver_key = approver_key.clone();
                scope.spawn(move || {
                    loop {
                        let turn = next.fetch_add(1, Ordering::SeqCst);
                        if turn >= until {
                            next.fetch_min(until, Ordering::SeqCst);
                            return;
                        }
                        let wallet = &wallets[(turn as usize * 7 + worker) % WALLETS];
                        let mut op = op_of(turn);
                        // Withdrawals paced: past the rate, a read instead.
                        if matches!(op, Op::Withdraw | Op::WithdrawForApproval) {
                            let allowed =
                                started.elapsed().as_secs_f64() * per_second as f64 + 50.0;
                            if withdrawals.load(Ordering::SeqCst) as f64 >= allowed {
                                op = Op::Read;
                            } else {
                                withdrawals.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        let waiting = matches!(op, Op::Approve | Op::Cancel)
                            .then(|| pending.lock().unwrap().pop_front())
                            .flatten();
                        if matches!(op, Op::Approve | Op::Cancel) && waiting.is_none() {
                            op = Op::Read;
                        }
                        let at = Instant::now();
                        let withdrawal = |amount: &str| {
                            serde_json::json!({"wallet": wallet, "asset": "eip155:31337/native",
                            "amount": amount, "destination": DESTINATION})
                            .to_string()
                        };
                        let (ok, what) = match op {
                            Op::Read if turn % 2 == 0 => {
                                let (c, v) = ini.call(
                                    "GET",
                                    &format!("/v1/wallets/{wallet}/balances"),
                                    None,
                                    None,
                                );
                                (c == 200, v)
                            }
                            Op::Read => {
                                let (c, v) = ini.call(
                                    "GET",
                                    &format!("/v1/transfers?wallet={wallet}&limit=20"),
                                    None,
                                    None,
                                );
                                (c == 200, v)
                            }
                            Op::DryRun => {
                                let (c, v) = ini.call(
                                    "POST",
                                    "/v1/policy/dry-run",
                                    Some(&withdrawal("0.5")),
                                    None,
                                );
                                (c == 200, v)
                            }
                            Op::Withdraw | Op::WithdrawForApproval => {
                                let amount = if matches!(op, Op::Withdraw) {
                                    "0.0001"
                                } else {
                                    "0.02"
                                };
                                let key = format!("load-{turn}");
                                let (c, v) = ini.call(
                                    "POST",
                                    "/v1/transfers",
                                    Some(&withdrawal(amount)),
                                    Some(&key),
                                );
                                if c == 201 && v["state"] == "pending_approval" {
                                    pending
                                        .lock()
                                        .unwrap()
                                        .push_back(v["id"].as_str().unwrap_or_default().to_owned());
                                }
                                (c == 201, v)
                            }
                            Op::Approve => {
                                let id = waiting.unwrap_or_default();
                                let (c, t) =
                                    app.call("GET", &format!("/v1/transfers/{id}"), None, None);
                                if c != 200 {
                                    (false, t)
                                } else {
                                    let (c, v) = app.call(
                                        "POST",
                                        &format!("/v1/transfers/{id}/approvals"),
                                        Some(&approval(&t, &approver_key)),
                                        None,
                                    );
                                    (c == 200, v)
                                }
                            }
                            Op::Cancel => {
                                let id = waiting.unwrap_or_default();
                                let (c, v) = ini.call(
                                    "POST",
                                    &format!("/v1/transfers/{id}/cancel"),
                                    Some("{}"),
                                    None,
                                );
                                (c == 200, v)
                            }
                        };
                        if !ok {
                            failures.lock().unwrap().push(format!("{op:?}: {what}"));
                        }
                        results.lock().unwrap().push((op, ok, at.elapsed()));
                    }
                });
            }
        });
        if until == warm_up {
            before = footprint(pid);
        }
    }
    let elapsed = started.elapsed();
    // Every withdrawal settles: none left between queued and completed.
    let mut w = Client::new(&server.base, &initiator);
    let settled = Instant::now();
    // How long the withdrawals may take to settle after the load
    // (`STRONGROOM_LOAD_SETTLE_SECONDS`, 10 minutes unless told).
    let settle_for = size("STRONGROOM_LOAD_SETTLE_SECONDS", 600);
    let mut told = Instant::now();
    loop {
        // Each state's first page (500 at most) and its oldest transfer.
        let pages: Vec<(&str, Vec<serde_json::Value>)> =
            ["queued", "signing", "signed", "broadcasting", "confirming"]
                .iter()
                .map(|state| {
                    let (c, v) = w.call(
                        "GET",
                        &format!("/v1/transfers?state={state}&limit=500"),
                        None,
                        None,
                    );
                    assert_eq!(c, 200, "{v}");
                    (*state, v.as_array().cloned().unwrap_or_default())
                })
                .collect();
        let moving: usize = pages.iter().map(|(_, p)| p.len()).sum();
        if moving == 0 {
            break;
        }
        let counts: Vec<String> = pages
            .iter()
            .map(|(s, p)| format!("{s} {}{}", p.len(), if p.len() == 500 { "+" } else { "" }))
            .collect();
        if told.elapsed() > Duration::from_secs(60) {
            println!(
                "load: settling for {:.0} s: {}",
                settled.elapsed().as_secs_f64(),
                counts.join(", ")
            );
            told = Instant::now();
        }
        if settled.elapsed() > Duration::from_secs(settle_for) {
            // What stands still, and why: the oldest of the first state
            // that holds any, with its history.
            let oldest = pages
                .iter()
                .find_map(|(_, p)| p.first())
                .and_then(|t| t["id"].as_str())
                .map(|id| w.call("GET", &format!("/v1/transfers/{id}"), None, None).1);
            // What the node holds: a pool with transactions in its
            // `queued` part and none `pending` waits for a nonce it lacks.
            let pool = rt.block_on(async {
                let status = client
                    .raw_call("txpool_status", serde_json::json!([]))
                    .await;
                let inspect = client
                    .raw_call("txpool_inspect", serde_json::json!([]))
                    .await;
                format!(
                    "status {status:?}\ninspect {:.4000}",
                    format!("{inspect:?}")
                )
            });
            let senders = rt.block_on(async {
                let mut told = Vec::new();
                for (_, page) in &pages {
                    for t in page.iter().take(3) {
                        let wallet = t["wallet"].as_str().unwrap_or_default();
                        let address = addresses.get(wallet).cloned().unwrap_or_default();
                        let o = strongroom(&[
                            "eth",
                            "nonces",
                            "--config",
                            &cfg,
                            "--chain-id",
                            "31337",
                            "--address",
                            &address,
                        ]);
                        told.push(format!("{address}: {}{}", stdout(&o), stderr(&o)));
                    }
                }
                told.join("\n")
            });
            // What the server complained of, by message, and its last errors.
            let log = server.log_text();
            let mut said: std::collections::BTreeMap<String, usize> = Default::default();
            let mut errors = Vec::new();
            for line in log.lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if v["level"] == "WARN" || v["level"] == "ERROR" {
                    *said
                        .entry(format!("{} {}", v["level"], v["message"]))
                        .or_default() += 1;
                }
                if v["level"] == "ERROR" {
                    errors.push(line.to_owned());
                }
            }
            let last: Vec<&String> = errors.iter().rev().take(5).collect();
            panic!(
                "{moving} still moving {settle_for} s after the load ({}); the oldest: {}\n\
                 the node's pool: {pool}\nnonces of their senders:\n{senders}\n\
                 the server's warnings and errors: {said:#?}\nits last errors: {last:#?}",
                counts.join(", "),
                oldest.unwrap_or_default()
            );
        }
        // Look again once a transfer moved (the server logs each move).
        let _ = lines.recv_timeout(Duration::from_secs(5));
        while lines.try_recv().is_ok() {}
    }
    let after = footprint(pid);
    let results = results.lock().unwrap();
    let failures = failures.lock().unwrap();
    let ok = results.iter().filter(|r| r.1).count();
    let mut lat: Vec<Duration> = results.iter().map(|r| r.2).collect();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0;
    eprintln!(
        "load on {}: {} operations ({} withdrawals) from {IN_FLIGHT} clients over {WALLETS} wallets in {:.0} s ({:.0}/s); success {:.3}% ({} failed); p50 {:.1} ms, p99 {:.1} ms; server memory {} → {} MiB, open files {} → {}; settled in {:.0} s",
        db_url.split(':').next().unwrap_or_default(),
        results.len(),
        withdrawals.load(Ordering::SeqCst),
        elapsed.as_secs_f64(),
        results.len() as f64 / elapsed.as_secs_f64(),
        100.0 * ok as f64 / results.len() as f64,
        results.len() - ok,
        pct(0.5),
        pct(0.99),
        before.0 / 1024,
        after.0 / 1024,
        before.1,
        after.1,
        settled.elapsed().as_secs_f64(),
    );
    if !failures.is_empty() {
        let errors: Vec<String> = server
            .log_text()
            .lines()
            .filter(|l| l.contains("\"level\":\"ERROR\""))
            .take(5)
            .map(str::to_owned)
            .collect();
        panic!(
            "{} failed: {:?}\nthe server's errors: {errors:#?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    }
    // Pools and kept-alive connections settle within a few dozen files;
    // a leak grows with the operations (the long run shows the trend).
    assert!(
        after.1 <= before.1 + 32,
        "file descriptors grew: {before:?} → {after:?}"
    );
    let o = strongroom(&["audit", "verify", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    server.terminate();
}

/// The approval body for transfer `t` (as the API shows it), signed.
fn approval(t: &serde_json::Value, key: &SigningKey) -> String {
    let digest: [u8; 32] = hex::decode(t["digest"].as_str().unwrap_or_default())
        .ok()
        .and_then(|d| d.try_into().ok())
        .unwrap_or([0; 32]);
    let decision = uuid::Uuid::try_parse(t["decision_id"].as_str().unwrap_or_default()).unwrap();
    let expires = domain::Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            + 3_600_000,
    );
    let statement = policy::ApprovalStatement {
        intent: domain::IntentDigest(digest),
        policy_version: t["policy_version"].as_u64().unwrap_or_default(),
        decision_id: *decision.as_bytes(),
        expires_at: expires,
        vote: policy::Vote::Approve,
    };
    serde_json::json!({
        "vote": "approve",
        "expires_at_ms": expires.as_millis(),
        "signature": hex::encode(key.sign(&statement.message()).to_bytes()),
    })
    .to_string()
}

#[test]
fn sustained_load_sqlite() {
    sustained_load("sqlite://strongroom.db");
}

#[test]
fn sustained_load_postgres() {
    let rt = rt();
    let db = rt.block_on(TestDb::postgres());
    sustained_load(&db.url);
}

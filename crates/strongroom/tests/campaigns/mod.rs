//! The reliability campaigns against the real binary (`docs/RELIABILITY.md`):
//! the crash matrix, each crash point killed with SIGKILL and the server
//! restarted, and kills at random moments, the invariants checked after
//! every restart against anvil and the database. `scripts/test` runs the
//! short versions; `scripts/soak crash` the long ones, sized by
//! `STRONGROOM_CRASH_KILLS` (per point) and `STRONGROOM_CRASH_RANDOM`.
//!
//! The invariants: I1 no two conflicting signatures for one transfer (one
//! nonce each); I2 each accepted request executes exactly once; I3 ledger
//! and chain reconcile; I4 the audit chain verifies; I5 nothing is signed
//! without its quorum; I6 no nonce is reused or skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};

use super::*;

mod load;

/// Every crash point, in the order a transfer meets them.
const POINTS: [&str; 9] = service::crash::POINTS;

/// A size from the environment, or its default (the CI run's).
fn size(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A webhook receiver on loopback: answers 200 to every delivery and keeps
/// each `webhook-id` it saw, with how many times.
struct Receiver {
    url: String,
    seen: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        let kept = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut id, mut length) = (None, 0usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("webhook-id:") {
                        id = Some(v.trim().to_owned());
                    }
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                if let Some(id) = id {
                    *kept.lock().unwrap().entry(id).or_default() += 1;
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Receiver { url, seen }
    }

    fn seen(&self) -> BTreeMap<String, u32> {
        self.seen.lock().unwrap().clone()
    }
}

/// The custody data directory of the crash tests, with an approver (one
/// approval for more than 0.01 ETH) and a webhook subscription to every
/// event, delivered to a receiver on loopback.
struct Campaign {
    c: Custody,
    approver: PathBuf,
    approver_key: PathBuf,
    receiver: Receiver,
    webhook: String,
    /// Each withdrawal accepted: its id and amount (wei).
    accepted: Vec<(String, u128)>,
    /// How many withdrawals were asked for (each key once).
    asked: u64,
    /// Kills done, by point (`random` for the random moments).
    kills: BTreeMap<String, u64>,
}

impl Campaign {
    fn new(db_url: &str) -> Campaign {
        let c = Custody::new(db_url);
        let mut text = std::fs::read_to_string(&c.config).unwrap();
        // The campaign reads a lot; the rate limits are not what it tests.
        text = text.replace(
            "[operations]\n",
            "[operations]\nrequests_per_second_per_principal = 10000\n",
        );
        text.push_str("[webhooks]\nallow_loopback = true\n");
        std::fs::write(&c.config, text).unwrap();
        let (approver, approver_id) = c.approver.clone();
        let (approver_key, public) = approver_key_in(c.dir.path(), "approver");
        let writer = c.writer.clone();
        let receiver = Receiver::start();
        let server = c.start(&[], std::sync::mpsc::channel().0);
        let govern = |key: &Path, change: serde_json::Value| {
            let body = serde_json::json!({ "change": change }).to_string();
            let (code, p) = c.api(&server, key, "POST", "/v1/proposals", Some(&body), None);
            assert_eq!(code, 201, "{p}");
            let id = p["id"].as_str().unwrap().to_owned();
            assert_eq!(approve_proposal(&server.base, &c.admin, &id), "applied");
        };
        govern(
            &c.admin,
            serde_json::json!({"kind": "register_approver_key", "principal": approver_id, "public_key": public}),
        );
        let document = format!(
            "[[groups]]\nname = \"approvers\"\nmembers = [\"{approver_id}\"]\n\n\
             [[rules]]\nname = \"small\"\namount = {{ at_most = \"0.01\" }}\naction = \"allow\"\n\n\
             [[rules]]\nname = \"large\"\naction = \"require_approval\"\n\
             approvals = {{ group = \"approvers\", threshold = 1 }}\n"
        );
        govern(
            &writer,
            serde_json::json!({"kind": "set_policy", "document": document}),
        );
        let body = serde_json::json!({"url": receiver.url, "events": ["*"]}).to_string();
        let (code, w) = c.api(&server, &c.admin, "POST", "/v1/webhooks", Some(&body), None);
        assert_eq!(code, 201, "{w}");
        let webhook = w["id"].as_str().unwrap().to_owned();
        server.terminate();
        Campaign {
            c,
            approver,
            approver_key,
            receiver,
            webhook,
            accepted: Vec::new(),
            asked: 0,
            kills: BTreeMap::new(),
        }
    }

    /// The next withdrawal's body and idempotency key: a fresh amount
    /// each, in millionths of an ETH (so what reached the destination
    /// tells which were paid), more than 0.01 ETH when it needs an
    /// approval (up to 9 999 withdrawals; the sender's 100 ETH pays them
    /// all). The long run's 1 400 once ran it dry when amounts grew by a
    /// thousandth of an ETH each.
    fn next(&mut self, approval: bool) -> (String, String, u128) {
        self.asked += 1;
        let n = self.asked;
        let micro = if approval { 10_000 + n } else { n };
        let amount = format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000);
        let wei = u128::from(micro) * 1_000_000_000_000;
        (self.c.withdrawal(&amount), format!("campaign-{n}"), wei)
    }

    fn submit(&self, server: &Server, body: &str, key: &str) -> (u16, serde_json::Value) {
        self.c.api(
            server,
            &self.c.initiator,
            "POST",
            "/v1/transfers",
            Some(body),
            Some(key),
        )
    }

    /// `strongroom approve` of `transfer` by the approver, answered "yes".
    fn approve(&self, server: &Server, transfer: &str) -> Output {
        strongroom_with_input(
            &[
                "approve",
                "--addr",
                server.base.as_str(),
                "--key-file",
                self.approver.to_str().unwrap(),
                "--approver-key",
                self.approver_key.to_str().unwrap(),
                "--transfer",
                transfer,
            ],
            "yes\n",
        )
    }

    fn transfer(&self, server: &Server, id: &str) -> serde_json::Value {
        let (code, t) = self.c.api(
            server,
            &self.c.initiator,
            "GET",
            &format!("/v1/transfers/{id}"),
            None,
            None,
        );
        assert_eq!(code, 200, "{t}");
        t
    }

    /// Drives `id` to `completed` on `server` (mining as it goes).
    fn complete(
        &self,
        server: &Server,
        lines: &std::sync::mpsc::Receiver<Option<String>>,
        id: &str,
    ) {
        let state = self.transfer(server, id)["state"].clone();
        // A server killed after it recorded a move may not have written its
        // log line (lost with the process): the blocks that move would have
        // brought are mined now, as a live chain would bring them.
        let blocks = match state.as_str() {
            Some("broadcasting") => 1,
            Some("confirming") => 2,
            _ => 0,
        };
        if blocks > 0 {
            rt().block_on(async {
                let client = eth_client(self.c.anvil.url()).await;
                chain_eth_client::testing::mine(&client, blocks).await;
            });
        }
        if state != "completed" {
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drive(lines, 1, Some(&self.c.anvil), |t, to| {
                    t == id && to == "completed"
                })
            }));
            match done {
                Ok(done) => assert!(done.is_some(), "{id}: {}", server.log_text()),
                Err(_) => panic!(
                    "{id} stopped moving: {}\nserver log: {}",
                    self.transfer(server, id),
                    server.log_text()
                ),
            }
        }
    }

    /// One kill at `point`: a server armed there takes a withdrawal (one
    /// that needs an approval for `after_approval`) until it dies; a
    /// server started again finishes it. Returns the restarted server.
    fn kill_at(
        &mut self,
        point: &str,
    ) -> (Server, std::sync::mpsc::Receiver<Option<String>>, String) {
        let approval = point == "after_approval";
        let (body, key, wei) = self.next(approval);
        let (tx, lines) = std::sync::mpsc::channel();
        let mut server = self.c.start(&[("STRONGROOM_CRASH_AT", point)], tx);
        let (code, t) = self.submit(&server, &body, &key);
        let known = match (point, code) {
            ("after_intent_insert", 0) => None,
            (_, 201) => Some(t["id"].as_str().unwrap().to_owned()),
            _ => panic!("{point}: {code} {t}"),
        };
        if approval {
            let id = known.as_deref().unwrap();
            assert_eq!(t["state"], "pending_approval", "{t}");
            let o = self.approve(&server, id);
            assert!(
                !o.status.success(),
                "{point}: no answer from a server that died"
            );
        }
        if point != "after_intent_insert" && point != "after_approval" {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drive(&lines, 1, Some(&self.c.anvil), |_, _| false)
            }));
            match ran {
                Ok(left) => assert_eq!(left, None),
                Err(_) => panic!(
                    "{point}: the armed server neither died nor moved on: {}\nreceiver saw {:?}",
                    server.log_text(),
                    self.receiver.seen()
                ),
            }
        }
        let status = server.child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{point}: killed by SIGKILL");
        assert!(
            server.log_text().contains(&format!("crash point {point}")),
            "{point}: {}",
            server.log_text()
        );
        *self.kills.entry(point.to_owned()).or_default() += 1;

        let (tx, lines) = std::sync::mpsc::channel();
        let server = self.c.start(&[], tx);
        // I2: the client's retry is a replay of the one transfer.
        let (code, t) = self.submit(&server, &body, &key);
        assert_eq!(code, 200, "{point}: a replay, not a new transfer: {t}");
        let id = t["id"].as_str().unwrap().to_owned();
        if let Some(k) = &known {
            assert_eq!(k, &id, "{point}");
        }
        if approval {
            // Recorded before the crash: a second vote is refused, typed.
            let o = self.approve(&server, &id);
            assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
            assert!(stderr(&o).contains("already_voted"), "{}", stderr(&o));
        }
        self.accepted.push((id.clone(), wei));
        self.complete(&server, &lines, &id);
        // The claim the killed run held is taken back at the start, not
        // when its lease lapses.
        if point == "after_claim" {
            assert!(
                server
                    .log_text()
                    .contains("took back the claims of this server's previous run"),
                "{}",
                server.log_text()
            );
        }
        (server, lines, id)
    }

    /// One kill at a random moment (`delay_ms` after a withdrawal, one in
    /// three needing an approval, is accepted), then a restart that
    /// finishes it.
    fn kill_randomly(&mut self, delay_ms: u64, approval: bool) -> (Server, String) {
        let (body, key, wei) = self.next(approval);
        let (tx, lines) = std::sync::mpsc::channel();
        let mut server = self.c.start(&[], tx);
        let (code, t) = self.submit(&server, &body, &key);
        assert_eq!(code, 201, "{t}");
        let id = t["id"].as_str().unwrap().to_owned();
        let pid = server.child.id();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
        });
        if approval {
            let _ = self.approve(&server, &id);
        }
        // Mines as the transfer moves, until the process is gone.
        let _ = drive(&lines, 1, Some(&self.c.anvil), |_, _| false);
        let _ = killer.join();
        let status = server.child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "killed after {delay_ms} ms");
        *self.kills.entry("random".to_owned()).or_default() += 1;

        let (tx, lines) = std::sync::mpsc::channel();
        let server = self.c.start(&[], tx);
        let (code, t) = self.submit(&server, &body, &key);
        assert_eq!(code, 200, "a replay: {t}");
        assert_eq!(t["id"], id.as_str());
        if approval && t["state"] == "pending_approval" {
            let o = self.approve(&server, &id);
            assert!(o.status.success(), "{}", stderr(&o));
        }
        self.accepted.push((id.clone(), wei));
        self.complete(&server, &lines, &id);
        (server, id)
    }

    /// I1–I6 with every accepted withdrawal completed: one transaction
    /// each on chain (nonces 0.. with no gap, none left planned), each
    /// amount paid exactly once, one transfer per accepted request, an
    /// approval before every signature that needed one, the audit chain
    /// verifying, and the ledger reconciling with the chain.
    /// Every item of a paged list (500 a page, by the last id).
    fn pages(&self, server: &Server, key: &Path, path: &str) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let (code, page) = self.c.api(
                server,
                key,
                "GET",
                &format!("{path}{sep}limit=500{after}"),
                None,
                None,
            );
            assert_eq!(code, 200, "{page}");
            let items = page.as_array().cloned().unwrap_or_default();
            let last = items
                .last()
                .and_then(|i| i["id"].as_str())
                .map(str::to_owned);
            let full = items.len() == 500;
            all.extend(items);
            match (full, last) {
                (true, Some(id)) => after = format!("&after={id}"),
                _ => return all,
            }
        }
    }

    /// The invariants after a restart; `fresh`: the transfers finished
    /// since the last check, whose histories are read.
    fn check(&self, server: &Server, fresh: &[String]) {
        let n = self.accepted.len() as u64;
        let ids: BTreeSet<&String> = self.accepted.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len() as u64, n, "I2: one transfer per request");
        let listed = self
            .pages(
                server,
                &self.c.initiator,
                &format!("/v1/transfers?wallet={}", self.c.wallet),
            )
            .len() as u64;
        assert_eq!(listed, n, "I2: no transfer beyond the accepted ones");
        for id in fresh {
            let t = self.transfer(server, id);
            assert_eq!(t["state"], "completed", "{t}");
            let states: Vec<&str> = t["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["state"].as_str().unwrap())
                .collect();
            let signed = states.iter().position(|s| *s == "signing").unwrap();
            if states.contains(&"pending_approval") {
                // I5: approved, then signed.
                let approved = states.iter().position(|s| *s == "queued").unwrap();
                assert!(approved < signed, "I5: {states:?}");
            }
            assert_eq!(
                states.iter().filter(|s| **s == "signed").count(),
                1,
                "I1: signed once: {states:?}"
            );
        }
        let paid: u128 = self.accepted.iter().map(|(_, w)| w).sum();
        rt().block_on(async {
            let client = eth_client(self.c.anvil.url()).await;
            let from: chain_eth::EthAddress = self.c.sender.parse().unwrap();
            let to: chain_eth::EthAddress = DESTINATION.parse().unwrap();
            let nonce = client
                .nonce(from, chain_eth_client::NonceTag::Latest)
                .await
                .unwrap();
            assert_eq!(nonce, n, "I1/I6: one transaction per transfer");
            assert_eq!(client.balance(to).await.unwrap(), paid, "each paid once");
        });
        let cfg = self.c.config.to_str().unwrap();
        let o = strongroom(&[
            "eth",
            "nonces",
            "--config",
            cfg,
            "--chain-id",
            "31337",
            "--address",
            &self.c.sender,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        for line in [
            format!("chain latest {n} pending {n}"),
            format!("next to hand out {n}"),
            "planned but unsigned []".to_owned(),
            "later nonces waiting) []".to_owned(),
        ] {
            assert!(stdout(&o).contains(&line), "I6: {}", stdout(&o));
        }
        let o = strongroom(&["audit", "verify", "--config", cfg]);
        assert!(o.status.success(), "I4: {}", stderr(&o));
        let o = strongroom(&["reconcile", "--config", cfg]);
        assert!(o.status.success(), "I3: {}{}", stdout(&o), stderr(&o));
    }

    /// Every event was delivered, each under one id: some more than once
    /// (a crash between a delivery and its record), never two ids for one
    /// event; none left undelivered.
    fn check_webhooks(&self, server: &Server, lines: &std::sync::mpsc::Receiver<Option<String>>) {
        let path = format!("/v1/webhooks/{}/deliveries", self.webhook);
        let deliveries = || self.pages(server, &self.c.admin, &path);
        // The deliverer runs once a second: wait for it by its log line.
        while deliveries().iter().any(|d| d["state"] == "pending") {
            let _ = lines.recv_timeout(std::time::Duration::from_secs(5));
        }
        let all = deliveries();
        assert!(all.iter().all(|d| d["state"] == "delivered"), "{all:?}");
        let seen = self.receiver.seen();
        for d in &all {
            let event = d["event_id"].as_str().unwrap_or_default();
            assert!(seen.contains_key(event), "{event} never arrived: {d}");
        }
    }
}

/// The crash matrix on one database: each crash point killed
/// `STRONGROOM_CRASH_KILLS` times (1 in CI), then
/// `STRONGROOM_CRASH_RANDOM` kills at random moments (2 in CI), the
/// invariants checked after every restart. Prints the figures.
fn crash_matrix(db_url: &str) {
    let per_point = size("STRONGROOM_CRASH_KILLS", 1);
    let random = size("STRONGROOM_CRASH_RANDOM", 2);
    let mut seed = size("STRONGROOM_CRASH_SEED", 0x5eed_cafe);
    assert!(
        per_point * POINTS.len() as u64 + random < 10_000,
        "amounts stay unique and under the approval line up to 9 999 withdrawals"
    );
    let started = std::time::Instant::now();
    let mut k = Campaign::new(db_url);
    // `STRONGROOM_CRASH_SKIP`: points left out of this run (to run one
    // point many times).
    let skip = std::env::var("STRONGROOM_CRASH_SKIP").unwrap_or_default();
    let skipped: Vec<&str> = skip.split(',').filter(|p| !p.is_empty()).collect();
    for (i, point) in POINTS.iter().enumerate() {
        if skipped.contains(point) {
            continue;
        }
        for _ in 0..per_point {
            let (server, lines, id) = k.kill_at(point);
            k.check(&server, &[id]);
            // Nothing left to deliver when a server armed at the delivery
            // starts (it would die before the withdrawal is taken).
            if POINTS.get(i + 1) == Some(&"after_webhook_post") || *point == "after_webhook_post" {
                k.check_webhooks(&server, &lines);
            }
            server.terminate();
        }
    }
    for i in 0..random {
        // xorshift: the moments are reproducible from the seed printed.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = 200 + seed % 2_500;
        let (server, id) = k.kill_randomly(delay, i % 3 == 2);
        k.check(&server, &[id]);
        server.terminate();
    }
    let (tx, lines) = std::sync::mpsc::channel();
    let server = k.c.start(&[], tx);
    k.check_webhooks(&server, &lines);
    server.terminate();
    let kills: u64 = k.kills.values().sum();
    let covered = k.kills.keys().filter(|p| *p != "random").count();
    eprintln!(
        "crash matrix on {}: {kills} kills ({per_point} per point × {covered} points, {random} at random moments, seed {:#x}), {} withdrawals, 0 violations, {:.0} s",
        db_url.split(':').next().unwrap_or_default(),
        size("STRONGROOM_CRASH_SEED", 0x5eed_cafe),
        k.accepted.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(covered + skipped.len(), POINTS.len());
}

#[test]
fn crash_matrix_sqlite() {
    crash_matrix("sqlite://strongroom.db");
}

#[test]
fn crash_matrix_postgres() {
    let rt = rt();
    let db = rt.block_on(TestDb::postgres());
    crash_matrix(&db.url);
}

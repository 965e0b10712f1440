//! The `strongroom` binary end to end: real processes, real databases.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use storage::Backend;
use storage::testing::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");

mod campaigns;
mod signer_nodes;

fn strongroom(args: &[&str]) -> Output {
    strongroom_env(args, &[])
}

/// `strongroom` with variables added to its environment (an HSM's PIN).
fn strongroom_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A data directory with a configuration for `db_url` and a fresh audit key.
fn data_dir(db_url: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strongroom.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[database]
url = "{db_url}"
[audit]
signing_key_file = "audit.key"
checkpoint_file = "audit.checkpoints"
checkpoint_every_records = 1000
checkpoint_every_seconds = 60
[log]
format = "json"
level = "info"
[governance]
admin_quorum = 1
whitelist_cooling_off_hours = 24
[operations]
metrics_listen = "127.0.0.1:0"
"#
        ),
    )
    .unwrap();
    let key = dir.path().join("audit.key");
    let o = strongroom(&["audit", "init-key", "--out", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("public key: "));
    (dir, config)
}

struct Server {
    child: Child,
    base: String,
    /// Where `/metrics` is served (`host:port`), when the configuration
    /// asks for any free port.
    metrics: Option<String>,
    /// Every log line so far, once [`Server::follow_log`] runs.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// A server's log lines as they come; `None` when its stderr closes.
type LogLines = std::sync::mpsc::Sender<Option<String>>;

impl Server {
    fn start(config: &Path) -> Server {
        Server::start_with(config, &[])
    }

    fn start_with(config: &Path, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--config", config.to_str().unwrap()])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let Some(base) = line.trim().strip_prefix("strongroom listening on ") else {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("server did not start: {line:?}\n{err}");
        };
        // Its second line names the metrics listener, when there is one.
        let text = std::fs::read_to_string(config).unwrap_or_default();
        let metrics = text.contains("metrics_listen = \"127.0.0.1:0\"").then(|| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("strongroom metrics on http://")
                .and_then(|l| l.strip_suffix("/metrics"))
                .unwrap_or_else(|| panic!("no metrics line: {line:?}"))
                .to_owned()
        });
        Server {
            base: base.to_owned(),
            metrics,
            child,
            log: Default::default(),
        }
    }

    /// One scrape of `/metrics`.
    fn scrape(&self) -> String {
        let addr = self.metrics.as_deref().expect("a metrics listener");
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
    }

    /// Sends each line the server logs to `lines` (and keeps it), then
    /// `None` when the server's stderr closes.
    fn follow_log(&mut self, lines: LogLines) {
        let stderr = self.child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut all = log.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
                drop(all);
                let _ = lines.send(Some(line));
            }
            let _ = lines.send(None);
        });
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn get(&self, path: &str) -> (u16, String) {
        let addr = self.base.strip_prefix("http://").unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp[9..12].parse().unwrap();
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        (status, body)
    }

    /// SIGTERM, then wait: the server must drain and exit 0.
    fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        let err = match self.child.stderr.take() {
            Some(mut e) => {
                let mut err = String::new();
                e.read_to_string(&mut err).unwrap();
                err
            }
            None => self.log_text(),
        };
        assert!(status.success(), "exit {status:?}\n{err}");
        err
    }
}

/// A test that fails half-way must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn version_and_help() {
    let o = strongroom(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("strongroom {}", env!("CARGO_PKG_VERSION"))
    );
    let o = strongroom(&["--help"]);
    for word in ["serve", "config", "audit", "Exit codes"] {
        assert!(stdout(&o).contains(word), "help lacks {word}");
    }
    let o = strongroom(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn config_check_names_the_bad_key() {
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let o = strongroom(&["config", "check", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &bad,
        text.replace(
            "checkpoint_every_seconds = 60",
            "checkpoint_every_seconds = \"often\"",
        ),
    )
    .unwrap();
    let o = strongroom(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("audit.checkpoint_every_seconds"),
        "{}",
        stderr(&o)
    );

    // The key file must not be readable by others.
    use std::os::unix::fs::PermissionsExt;
    let key = dir.path().join("audit.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = strongroom(&["config", "check", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("audit.signing_key_file"),
        "{}",
        stderr(&o)
    );
}

/// The API over HTTPS with mutual TLS (rcgen certificates on loopback):
/// the CLI reaches it with the CA and a client certificate, and without
/// either it is refused; plain HTTP to another host is refused by the CLI
/// and by the configuration.
#[test]
fn the_api_serves_https_with_mutual_tls() {
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let pki = tls::testing::make_pki(dir.path(), "api").unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let tls_lines = format!(
        "listen = \"127.0.0.1:0\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\ntls_client_ca_file = \"{}\"",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca_cert.display()
    );
    std::fs::write(
        &config,
        text.replacen("listen = \"127.0.0.1:0\"", &tls_lines, 1),
    )
    .unwrap();
    let server = Server::start(&config);
    let port = server.base.strip_prefix("https://127.0.0.1:").unwrap();
    let addr = format!("https://localhost:{port}");
    let status = |env: &[(&str, &std::path::Path)]| {
        Command::new(BIN)
            .args(["operator", "status", "--addr", &addr])
            .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
            .output()
            .unwrap()
    };
    let member = [
        ("STRONGROOM_CA_FILE", pki.ca_cert.as_path()),
        ("STRONGROOM_CLIENT_CERT", pki.client_cert.as_path()),
        ("STRONGROOM_CLIENT_KEY", pki.client_key.as_path()),
    ];
    let o = status(&member);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("uninitialized"), "{}", stdout(&o));
    // No client certificate: the handshake is refused.
    let o = status(&member[..1]);
    assert!(!o.status.success());
    // The system's roots do not know the server's CA.
    let o = status(&member[1..]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).to_lowercase().contains("certificate"),
        "{}",
        stderr(&o)
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut s = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    write!(
        s,
        "GET /v1/sys/seal-status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    assert!(!resp.starts_with(b"HTTP/1.1 200"));
    // Plain HTTP off this machine is refused before any connection.
    let o = strongroom(&["operator", "status", "--addr", "http://10.0.0.1:8200"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    drop(server);

    // The configuration: a certificate needs its key; a node in clear off
    // this machine needs allow_http.
    let bad = dir.path().join("bad.toml");
    let with = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&bad, text.replace(from, to)).unwrap();
        strongroom(&["config", "check", bad.to_str().unwrap()])
    };
    let o = with(
        &format!("tls_key_file = \"{}\"\n", pki.server_key.display()),
        "",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("server.tls_key_file"), "{}", stderr(&o));
    let eth = |endpoint: &str| {
        format!(
            "[[ethereum]]\nchain_id = 31337\nendpoints = [{endpoint}]\nconfirmations = 1\n\
             max_fee_per_gas_wei = \"1000000000000\"\nmax_total_fee_wei = \"1000000000000000000\"\n"
        )
    };
    let o = with(
        "[log]",
        &format!("{}[log]", eth("\"http://10.0.0.5:8545\"")),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("ethereum[0].endpoints[0]"),
        "{}",
        stderr(&o)
    );
    let o = with(
        "[log]",
        &format!(
            "{}[log]",
            eth("{ url = \"http://10.0.0.5:8545\", allow_http = true }")
        ),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = with(
        "[log]",
        &format!("{}[log]", eth("\"https://node.example:8545\"")),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn unreachable_database_is_a_clear_failure() {
    let (_dir, config) = data_dir("postgres://strongroom@127.0.0.1:1/strongroom");
    let o = strongroom(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("opening the database"),
        "{}",
        stderr(&o)
    );
    let o = strongroom(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// Backups: encrypted to the configured recipients, signed by the audit
/// key, verified without restoring; a damaged, truncated, foreign or
/// undecryptable backup is refused, and a restore goes only into an empty
/// database — on a fresh machine, it comes back, unseals with the original
/// shares, and its audit log verifies.
#[test]
fn backups_are_encrypted_signed_and_restored_only_into_an_empty_database() {
    backup_drill("sqlite://strongroom.db", "sqlite://strongroom.db");
}

/// The same on PostgreSQL: `pg_dump` in one snapshot, `pg_restore` into an
/// empty database.
#[test]
fn backups_on_postgresql() {
    let rt = rt();
    let (a, b) = rt.block_on(async { (TestDb::postgres().await, TestDb::postgres().await) });
    backup_drill(&a.url, &b.url);
    drop(rt);
}

/// Scheduled backups: the server writes one every interval, keeps the
/// newest `keep`, audits each; one that cannot be written is audited as
/// `backup.failed` and announced to webhook subscribers.
#[test]
fn scheduled_backups_are_kept_and_failures_alert() {
    use age::secrecy::ExposeSecret;
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let cfg = config.to_str().unwrap();
    init_keystore(cfg, &dir.path().join("shares"), 2, 2);
    let id = age::x25519::Identity::generate();
    let identity = dir.path().join("identity.txt");
    std::fs::write(&identity, format!("{}\n", id.to_string().expose_secret())).unwrap();
    std::fs::write(
        dir.path().join("recipients.txt"),
        format!("{}\n", id.to_public()),
    )
    .unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "[backup]\nrecipients_file = \"recipients.txt\"\ndir = \"scheduled\"\nevery_seconds = 1\nkeep = 2\n",
    );
    std::fs::write(&config, &text).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut server = Server::start(&config);
    server.follow_log(tx);
    let mut written = 0;
    while written < 3 {
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(Some(line)) if line.contains("scheduled backup written") => written += 1,
            Ok(Some(_)) => {}
            other => panic!(
                "the server stopped logging: {other:?}\n{}",
                server.log_text()
            ),
        }
    }
    let mut kept: Vec<_> = std::fs::read_dir(dir.path().join("scheduled"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!kept.is_empty() && kept.len() <= 3, "{kept:?}");
    // The newest, copied aside at once: the server keeps writing a backup a
    // second and pruning the oldest while this verifies.
    kept.sort();
    let copy = dir.path().join("verify.srbk");
    std::fs::copy(kept.last().unwrap(), &copy).unwrap();
    let o = strongroom(&[
        "backup",
        "verify",
        "--config",
        cfg,
        "--identity",
        identity.to_str().unwrap(),
        copy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The directory becomes a file: the next backup fails, and says so.
    std::fs::remove_dir_all(dir.path().join("scheduled")).unwrap();
    std::fs::write(dir.path().join("scheduled"), b"not a directory").unwrap();
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(Some(line)) if line.contains("scheduled backup failed") => break,
            Ok(Some(_)) => {}
            other => panic!("no failure logged: {other:?}\n{}", server.log_text()),
        }
    }
    server.terminate();
    let o = strongroom(&["audit", "verify", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rt = rt();
    rt.block_on(async {
        let store = storage::Store::connect(&storage::DatabaseConfig::Sqlite {
            path: dir.path().join("strongroom.db"),
        })
        .await
        .unwrap();
        let actions: Vec<String> = store
            .audit_page(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.action)
            .collect();
        assert!(actions.iter().filter(|a| *a == "backup.created").count() >= 3);
        assert!(actions.iter().any(|a| a == "backup.failed"));
        let events = store
            .query_text(
                "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_events WHERE event_type = 'backup.failed'",
            )
            .await
            .unwrap();
        assert_ne!(events, "0");
        store.close().await;
    });
}

fn backup_drill(url: &str, fresh_url: &str) {
    use age::secrecy::ExposeSecret;
    let (dir, config) = data_dir(url);
    let cfg = config.to_str().unwrap();
    let shares = init_keystore(cfg, &dir.path().join("shares"), 2, 2);
    api_key(cfg, dir.path(), "ops", "admin", "global");
    // A transfer-signing key: it receives funds only once a verified
    // backup holds it.
    let o = strongroom_with_input(
        &[
            "key",
            "create",
            "--config",
            cfg,
            "--purpose",
            "transfer-signing",
            "--algorithm",
            "ecdsa-secp256k1",
        ],
        &(shares.join("\n") + "\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = age::x25519::Identity::generate();
    let identity = dir.path().join("backup-identity.txt");
    std::fs::write(&identity, format!("{}\n", id.to_string().expose_secret())).unwrap();
    std::fs::write(
        dir.path().join("recipients.txt"),
        format!("# the backup holders\n{}\n", id.to_public()),
    )
    .unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[backup]\nrecipients_file = \"recipients.txt\"\n");
    std::fs::write(&config, &text).unwrap();

    // Online: the server runs while the backup is taken.
    let server = Server::start(&config);
    let backup = dir.path().join("b.srbk");
    let o = strongroom(&[
        "backup",
        "create",
        "--config",
        cfg,
        "--out",
        backup.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("backup "), "{}", stdout(&o));
    let raw = std::fs::read(&backup).unwrap();
    assert!(raw.starts_with(b"age-encryption.org/v1"), "encrypted");
    assert!(
        !raw.windows(6).any(|w| w == b"SRBK\x00\x01"),
        "nothing in clear"
    );
    let verify = |file: &Path, identity: &Path, config: &str| {
        strongroom(&[
            "backup",
            "verify",
            "--config",
            config,
            "--identity",
            identity.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
    };
    let o = verify(&backup, &identity, cfg);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("backup ok"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("keys now held by a verified backup: 1"),
        "{}",
        stdout(&o)
    );
    // The audit chain inside is walked on either database (PostgreSQL:
    // restored into a scratch database, dropped afterwards).
    assert!(stdout(&o).contains("audit chain: "), "{}", stdout(&o));

    // Damaged, truncated, someone else's identity: refused.
    let flipped = dir.path().join("flipped.srbk");
    let mut bad = raw.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    std::fs::write(&flipped, &bad).unwrap();
    let truncated = dir.path().join("truncated.srbk");
    std::fs::write(&truncated, &raw[..raw.len() - 100]).unwrap();
    let stranger = dir.path().join("stranger.txt");
    std::fs::write(
        &stranger,
        format!(
            "{}\n",
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret()
        ),
    )
    .unwrap();
    for (file, who) in [
        (&flipped, &identity),
        (&truncated, &identity),
        (&backup, &stranger),
    ] {
        let o = verify(file, who, cfg);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(stderr(&o).contains("backup refused"), "{}", stderr(&o));
    }
    // Not over a live database.
    let o = strongroom(&[
        "restore",
        "--config",
        cfg,
        "--identity",
        identity.to_str().unwrap(),
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    server.terminate();

    // Another installation (its own audit key) does not take it.
    let (other_dir, other) = data_dir(url);
    let o = verify(&backup, &identity, other.to_str().unwrap());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not signed by this installation"),
        "{}",
        stderr(&o)
    );
    drop(other_dir);

    // A fresh machine: the configuration and the audit key, no database.
    let fresh = tempfile::tempdir().unwrap();
    let fresh_cfg = fresh.path().join("strongroom.toml");
    std::fs::write(&fresh_cfg, text.replace(url, fresh_url)).unwrap();
    for f in ["audit.key", "recipients.txt"] {
        std::fs::copy(dir.path().join(f), fresh.path().join(f)).unwrap();
    }
    let fcfg = fresh_cfg.to_str().unwrap();
    let restore = |cfg: &str, later: Option<&Path>| {
        let mut args = vec![
            "restore",
            "--config",
            cfg,
            "--identity",
            identity.to_str().unwrap(),
            "--from",
            backup.to_str().unwrap(),
        ];
        if let Some(l) = later {
            args.extend(["--later-checkpoints", l.to_str().unwrap()]);
        }
        strongroom(&args)
    };
    // The lost machine's checkpoints, signed after the backup (the server
    // checkpoints as it stops), disagree with the restored log: only an
    // epoch record that names them explains that.
    let lost_checkpoints = dir.path().join("audit.checkpoints");
    let lost_lines = std::fs::read_to_string(&lost_checkpoints).unwrap();
    let unexplained = tempfile::tempdir().unwrap();
    let u_cfg = unexplained.path().join("strongroom.toml");
    std::fs::write(&u_cfg, text.replace(url, fresh_url)).unwrap();
    for f in ["audit.key", "recipients.txt"] {
        std::fs::copy(dir.path().join(f), unexplained.path().join(f)).unwrap();
    }
    if url.starts_with("sqlite") {
        let o = restore(u_cfg.to_str().unwrap(), None);
        assert!(o.status.success(), "{}", stderr(&o));
        let cps = unexplained.path().join("audit.checkpoints");
        let mut both = std::fs::read_to_string(&cps).unwrap();
        both.push_str(&lost_lines);
        std::fs::write(&cps, both).unwrap();
        let o = strongroom(&["audit", "verify", "--config", u_cfg.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    }
    let o = restore(fcfg, Some(&lost_checkpoints));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("unseal it with the original shares"),
        "{}",
        stdout(&o)
    );
    let o = strongroom(&["audit", "verify", "--config", fcfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("of a lost copy of the log, named by a restore's epoch record"),
        "{}",
        stdout(&o)
    );
    let mut server = Server::start(&fresh_cfg);
    let (tx, lines) = std::sync::mpsc::channel();
    server.follow_log(tx);
    let addr = server.base.clone();
    for s in &shares {
        strongroom_with_input(&["operator", "unseal", "--addr", &addr], &format!("{s}\n"));
    }
    let o = strongroom(&["operator", "status", "--addr", &addr]);
    assert_eq!(stdout(&o).trim(), "unsealed", "{}", stderr(&o));
    let ops = dir.path().join("ops.key");
    let o = strongroom(&[
        "api",
        "--addr",
        &addr,
        "--key-file",
        ops.to_str().unwrap(),
        "GET",
        "/v1/me",
    ]);
    assert!(
        stdout(&o).starts_with("200"),
        "the restored keys and grants: {}",
        stdout(&o)
    );
    // The restore opened a new epoch naming the backup.
    let o = strongroom(&[
        "api",
        "--addr",
        &addr,
        "--key-file",
        ops.to_str().unwrap(),
        "GET",
        "/v1/audit?limit=1000",
    ]);
    let log = stdout(&o);
    assert!(
        log.contains("restore.epoch") && log.contains("from_audit_seq"),
        "{log}"
    );
    // It was frozen until the server had asked the chains (none here, so
    // nothing is left for a person), and the reconciliation ended that.
    wait_for_log(&lines, "restore reconciled with the chains");
    let o = strongroom(&[
        "api",
        "--addr",
        &addr,
        "--key-file",
        ops.to_str().unwrap(),
        "GET",
        "/v1/audit?limit=1000",
    ]);
    let log = stdout(&o);
    assert!(
        log.contains("reconciling with the chains") && log.contains("restore.reconciled"),
        "{log}"
    );
    let o = strongroom(&[
        "api",
        "--addr",
        &addr,
        "--key-file",
        ops.to_str().unwrap(),
        "GET",
        "/v1/freezes",
    ]);
    assert!(!stdout(&o).contains("\"scope\""), "{}", stdout(&o));
    // Restoring twice is refused: the database is no longer empty.
    let o = strongroom(&[
        "restore",
        "--config",
        fcfg,
        "--identity",
        identity.to_str().unwrap(),
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    server.terminate();
}

/// Waits for a log line containing `what` (bounded: a test that stops
/// making progress fails, never hangs).
fn wait_for_log(lines: &std::sync::mpsc::Receiver<Option<String>>, what: &str) -> String {
    loop {
        match lines.recv_timeout(std::time::Duration::from_secs(90)) {
            Ok(Some(l)) if l.contains(what) => return l,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the server exited before logging {what:?}"),
            Err(e) => panic!("no {what:?} in the log: {e}"),
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Serve, answer, shut down cleanly, verify; then tamper and verify again.
fn serve_verify_tamper(rt: tokio::runtime::Runtime, db: TestDb) {
    let (_dir, config) = data_dir(&db.url);
    let cfg = config.to_str().unwrap();

    let server = Server::start(&config);
    let (status, body) = server.get("/v1/health");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    // Alive, not ready: no keystore to sign with yet.
    let (status, body) = server.get("/v1/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""unsealed":false"#), "{body}");
    // Anonymous: liveness only.
    let (status, body) = server.get("/v1/status");
    assert_eq!(status, 200);
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        s,
        serde_json::json!({"seal": "uninitialized", "database": {"reachable": true}})
    );
    // No keystore yet: everything but the open endpoints answers `sealed`.
    let (status, body) = server.get("/v1/missing");
    assert_eq!(status, 503);
    assert!(body.contains(r#""code":"sealed""#));
    let logs = server.terminate();
    // Structured JSON logs on stderr.
    let first: serde_json::Value = serde_json::from_str(logs.lines().next().unwrap()).unwrap();
    assert!(
        first["level"].is_string() && first["message"].is_string(),
        "{first}"
    );

    // A second start on the same data: the log continues.
    Server::start(&config).terminate();

    let o = strongroom(&["audit", "verify", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ok: 4 records"), "{}", stdout(&o));

    // An auditor verifies with the public key alone; a wrong key fails the checkpoints.
    let checkpoints = std::fs::read_to_string(config.with_file_name("audit.checkpoints")).unwrap();
    let line: serde_json::Value =
        serde_json::from_str(checkpoints.lines().next().unwrap()).unwrap();
    let public = line["key"].as_str().unwrap();
    std::fs::remove_file(config.with_file_name("audit.key")).unwrap();
    let o = strongroom(&["audit", "verify", "--config", cfg, "--public-key", public]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wrong = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let o = strongroom(&["audit", "verify", "--config", cfg, "--public-key", wrong]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not the trusted audit key"),
        "{}",
        stderr(&o)
    );

    let drop = match db.store.backend() {
        Backend::Sqlite => "DROP TRIGGER audit_log_append_only_update",
        Backend::Postgres => "DROP TRIGGER audit_log_append_only ON audit_log",
    };
    rt.block_on(async {
        db.store.execute_unchecked(drop).await.unwrap();
        db.store
            .execute_unchecked("UPDATE audit_log SET actor = 'operator:mallory' WHERE seq = 2")
            .await
            .unwrap();
    });
    let o = strongroom(&["audit", "verify", "--config", cfg, "--public-key", public]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("record 2 does not match its hash"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn serve_verify_tamper_sqlite() {
    // The pool lives on this runtime: keep it for the whole test.
    let rt = rt();
    let db = rt.block_on(TestDb::sqlite());
    serve_verify_tamper(rt, db);
}

#[test]
fn serve_verify_tamper_postgres() {
    let rt = rt();
    let db = rt.block_on(TestDb::postgres());
    serve_verify_tamper(rt, db);
}

/// `strongroom init` with shares written to `share_dir`; returns the shares.
fn init_keystore(cfg: &str, share_dir: &Path, shares: u8, threshold: u8) -> Vec<String> {
    init_keystore_env(cfg, share_dir, (shares, threshold), &[])
}

/// [`init_keystore`] with variables added to the command's environment.
fn init_keystore_env(
    cfg: &str,
    share_dir: &Path,
    (shares, threshold): (u8, u8),
    env: &[(&str, &str)],
) -> Vec<String> {
    let (n, t) = (shares.to_string(), threshold.to_string());
    let o = strongroom_env(
        &[
            "init",
            "--config",
            cfg,
            "--shares",
            &n,
            "--threshold",
            &t,
            "--share-dir",
            share_dir.to_str().unwrap(),
        ],
        env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    (1..=shares)
        .map(|i| {
            std::fs::read_to_string(share_dir.join(format!("share-{i}.txt")))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect()
}

fn strongroom_with_input(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A new ECDSA transfer-signing key in the keystore (the quorum's shares on
/// standard input): its id.
fn ecdsa_key(cfg: &str, quorum: &str) -> String {
    let o = strongroom_with_input(
        &[
            "key",
            "create",
            "--config",
            cfg,
            "--purpose",
            "transfer-signing",
            "--algorithm",
            "ecdsa-secp256k1",
        ],
        quorum,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("key ").map(str::to_owned))
        .unwrap()
}

/// `strongroom approver-key new` into `dir/<name>.sign`: the file and the
/// public key it printed.
fn approver_key_in(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(format!("{name}.sign"));
    let o = strongroom(&["approver-key", "new", "--out", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let public = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("public key: ").map(str::to_owned))
        .unwrap();
    (file, public)
}

/// init → unseal → create keys → sign → verify, from the command line; then
/// a running server unsealed and sealed by operators over its API.
#[test]
fn keystore_ceremony_from_the_cli() {
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let cfg = config.to_str().unwrap();
    let share_dir = dir.path().join("shares");
    let shares = init_keystore(cfg, &share_dir, 3, 2);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(share_dir.join("share-1.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let o = strongroom(&["init", "--config", cfg]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a second init must fail: {}",
        stdout(&o)
    );

    let quorum = format!("{}\n{}\n", shares[0], shares[2]);
    let mut ids = Vec::new();
    for alg in ["ecdsa-secp256k1", "schnorr-bip340", "ed25519"] {
        let o = strongroom_with_input(
            &[
                "key",
                "create",
                "--config",
                cfg,
                "--purpose",
                "transfer-signing",
                "--algorithm",
                alg,
            ],
            &quorum,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let id = out
            .lines()
            .next()
            .unwrap()
            .strip_prefix("key ")
            .unwrap()
            .to_owned();
        let o = strongroom_with_input(
            &["key", "self-test", "--config", cfg, "--key", &id],
            &quorum,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout(&o).starts_with("ok: signature verified"),
            "{}",
            stdout(&o)
        );
        ids.push(id);
    }
    // An HD key: mnemonic shown once, xpub in the inventory, watch-only derivation.
    let o = strongroom_with_input(
        &[
            "key",
            "create-hd",
            "--config",
            cfg,
            "--purpose",
            "transfer-signing",
            "--algorithm",
            "ecdsa-secp256k1",
            "--account-path",
            "m/84'/0'/0'",
        ],
        &quorum,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let hd_id = out
        .lines()
        .next()
        .unwrap()
        .strip_prefix("key ")
        .unwrap()
        .to_owned();
    let words = out
        .lines()
        .find_map(|l| l.strip_prefix("mnemonic "))
        .unwrap()
        .to_owned();
    assert_eq!(words.split(' ').count(), 24);
    let o = strongroom_with_input(
        &["key", "self-test", "--config", cfg, "--key", &hd_id],
        &quorum,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = strongroom(&[
        "key", "derive", "--config", cfg, "--key", &hd_id, "--child", "0/5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim().len(), 66);
    let o = strongroom(&[
        "key", "derive", "--config", cfg, "--key", &hd_id, "--child", "0/5'",
    ]);
    assert_eq!(o.status.code(), Some(2));

    // A mnemonic from another wallet imported: BIP-84's own vector gives
    // its account zpub; the words are echoed nowhere.
    let import = |path: &str, extra: &[&str], input: &str| {
        let mut args = vec![
            "key",
            "import-mnemonic",
            "--config",
            cfg,
            "--purpose",
            "transfer-signing",
            "--algorithm",
            "ecdsa-secp256k1",
            "--account-path",
            path,
            "--slip132",
        ];
        args.extend_from_slice(extra);
        strongroom_with_input(&args, &format!("{quorum}{input}"))
    };
    let abandon = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    let o = import("m/84'/0'/0'", &[], &format!("{abandon}\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("slip132 zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs\n"),
        "{out}"
    );
    assert!(out.contains("xpub xpub"), "{out}");
    assert!(!out.contains("abandon") && !stderr(&o).contains("abandon"));
    // On a test network's coin type, test prefixes; a passphrase changes the key.
    let o = import("m/84'/1'/0'", &[], &format!("{abandon}\n"));
    let plain = stdout(&o);
    assert!(
        plain.contains("xpub tpub") && plain.contains("slip132 vpub"),
        "{plain}"
    );
    let o = import(
        "m/84'/1'/0'",
        &["--passphrase"],
        &format!("{abandon}\nTREZOR\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let xpub_line = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("xpub "))
            .unwrap()
            .to_owned()
    };
    assert_ne!(xpub_line(&stdout(&o)), xpub_line(&plain));
    assert!(!stdout(&o).contains("TREZOR") && !stderr(&o).contains("TREZOR"));
    // A checksum that fails, and an account path with a non-hardened step.
    let o = import(
        "m/84'/0'/0'",
        &[],
        &format!("{}\n", abandon.replace("about", "abandon")),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("checksum"), "{}", stderr(&o));
    let o = import("m/84'/0'/0", &[], &format!("{abandon}\n"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("hardened"), "{}", stderr(&o));

    // Rotating a signing key: version 2, the first one deactivated.
    let o = strongroom_with_input(
        &["key", "rotate", "--config", cfg, "--key", &ids[0]],
        &quorum,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("version 2 replaces"), "{}", stdout(&o));

    let o = strongroom(&["key", "list", "--config", cfg]);
    assert_eq!(stdout(&o).lines().count(), 8);
    assert!(stdout(&o).contains(" deactivated "), "{}", stdout(&o));

    // A single share does not unseal; a mistyped one is refused at once.
    let o = strongroom_with_input(
        &["key", "self-test", "--config", cfg, "--key", &ids[0]],
        &format!("{}\n", shares[1]),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let typo = shares[1].replacen('a', "b", 1).replacen('1', "2", 1);
    let o = strongroom_with_input(
        &["key", "self-test", "--config", cfg, "--key", &ids[0]],
        &format!("{typo}\n"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("share"), "{}", stderr(&o));
    let o = strongroom(&[
        "key",
        "create",
        "--config",
        cfg,
        "--purpose",
        "teleport",
        "--algorithm",
        "ed25519",
    ]);
    assert_eq!(o.status.code(), Some(2));

    // A running server starts sealed; operators unseal it share by share.
    let server = Server::start(&config);
    let addr = server.base.clone();
    let o = strongroom(&["operator", "status", "--addr", &addr]);
    assert_eq!(stdout(&o).trim(), "sealed (0/2 shares)");
    let o = strongroom_with_input(
        &["operator", "unseal", "--addr", &addr],
        &format!("{}\n", shares[1]),
    );
    assert_eq!(stdout(&o).trim(), "sealed (1/2 shares)", "{}", stderr(&o));
    let o = strongroom_with_input(
        &["operator", "unseal", "--addr", &addr],
        &format!("{}\n", shares[1]),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("duplicate_share"), "{}", stderr(&o));
    let o = strongroom_with_input(
        &["operator", "unseal", "--addr", &addr],
        &format!("{}\n", shares[0]),
    );
    assert_eq!(stdout(&o).trim(), "unsealed", "{}", stderr(&o));
    let (status, _) = server.get("/v1/missing");
    assert_eq!(status, 404);
    // Sealing takes an officer's (or admin's) API key; a viewer's is refused.
    let keys = |role: &str| {
        let file = dir.path().join(format!("{role}.key"));
        let o = strongroom(&[
            "apikey",
            "create",
            "--config",
            cfg,
            "--name",
            role,
            "--role",
            role,
            "--out",
            file.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout(&o).contains("strongroom-api-key-v1"),
            "the private key is shown once"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        file
    };
    let viewer = keys("viewer");
    let officer = keys("security-officer");
    let o = strongroom(&[
        "operator",
        "seal",
        "--addr",
        &addr,
        "--key-file",
        viewer.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("forbidden"), "{}", stderr(&o));
    let o = strongroom(&[
        "api",
        "--addr",
        &addr,
        "--key-file",
        viewer.to_str().unwrap(),
        "GET",
        "/v1/me",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(r#""role":"viewer""#), "{}", stdout(&o));
    let o = strongroom(&[
        "operator",
        "seal",
        "--addr",
        &addr,
        "--key-file",
        officer.to_str().unwrap(),
    ]);
    assert_eq!(stdout(&o).trim(), "sealed", "{}", stderr(&o));
    // Shares never leave the machine over plain HTTP.
    let o = strongroom_with_input(
        &[
            "operator",
            "unseal",
            "--addr",
            "http://strongroom.invalid:8200",
        ],
        &format!("{}\n", shares[0]),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("loopback"), "{}", stderr(&o));
    let (status, _) = server.get("/v1/missing");
    assert_eq!(status, 503);
    let logs = server.terminate();
    // A sealed server's 503 is expected: logged at info, never as an error.
    assert!(logs.contains("answered 503"), "{logs}");
    assert!(!logs.contains("ERROR"), "{logs}");

    // No share reaches the server's logs or the audit log.
    let o = strongroom(&["audit", "verify", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut raw = std::fs::read(dir.path().join("strongroom.db")).unwrap();
    raw.extend(std::fs::read(dir.path().join("strongroom.db-wal")).unwrap_or_default());
    let first_words = words.split(' ').take(6).collect::<Vec<_>>().join(" ");
    assert!(
        !raw.windows(first_words.len())
            .any(|w| w == first_words.as_bytes()),
        "the mnemonic reached the database"
    );
    for s in &shares {
        let body = &s["srshare1-".len()..];
        assert!(!logs.contains(body), "a share reached the logs");
        assert!(
            !raw.windows(body.len()).any(|w| w == body.as_bytes()),
            "a share reached the database"
        );
    }
}

/// HSM keys from the command line against a SoftHSM2 token; the PIN comes
/// from the environment, never from the configuration.
#[test]
fn hsm_keys_from_the_cli() {
    use keys_pkcs11::testing::{SoftHsm, USER_PIN};
    let token = SoftHsm::new("cli");
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[hsm]\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_env = \"SR_TEST_HSM_PIN\"\nsessions = 2\n",
        SoftHsm::module().display(),
        token.label
    ));
    std::fs::write(&config, text).unwrap();
    let cfg = config.to_str().unwrap();
    let run = |args: &[&str], pin: &str, input: &str| {
        let mut child = Command::new(BIN)
            .args(args)
            .env("SR_TEST_HSM_PIN", pin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let share_dir = dir.path().join("shares");
    let o = run(
        &[
            "init",
            "--config",
            cfg,
            "--shares",
            "2",
            "--threshold",
            "2",
            "--share-dir",
            share_dir.to_str().unwrap(),
        ],
        USER_PIN,
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let quorum: String = (1..=2)
        .map(|i| std::fs::read_to_string(share_dir.join(format!("share-{i}.txt"))).unwrap())
        .collect();

    let create = [
        "key",
        "create",
        "--config",
        cfg,
        "--purpose",
        "transfer-signing",
        "--algorithm",
        "ecdsa-secp256k1",
        "--backend",
        "pkcs11",
    ];
    let o = run(&create, USER_PIN, &quorum);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o)
        .lines()
        .next()
        .unwrap()
        .strip_prefix("key ")
        .unwrap()
        .to_owned();
    let o = run(
        &["key", "self-test", "--config", cfg, "--key", &id],
        USER_PIN,
        &quorum,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["key", "list", "--config", cfg], USER_PIN, "");
    assert!(stdout(&o).contains(" pkcs11 active "), "{}", stdout(&o));

    // A wrong PIN is a clear failure, and nothing falls back to software keys.
    let o = run(&create, "000000", &quorum);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("PIN"), "{}", stderr(&o));
    let mut raw = std::fs::read(dir.path().join("strongroom.db")).unwrap();
    raw.extend(std::fs::read(dir.path().join("strongroom.db-wal")).unwrap_or_default());
    let needle = b"hsm.open_failed";
    assert!(
        raw.windows(needle.len()).any(|w| w == needle),
        "the refused PIN was not audited"
    );
    let o = run(&["config", "check", cfg], USER_PIN, "");
    assert!(o.status.success(), "{}", stderr(&o));

    // Auto-unseal: the server opens the keystore itself through the HSM.
    let o = run(
        &["key", "enable-auto-unseal", "--config", cfg],
        USER_PIN,
        &quorum,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let server = Server::start_with(&config, &[("SR_TEST_HSM_PIN", USER_PIN)]);
    let (status, body) = server.get("/v1/sys/seal-status");
    assert_eq!(status, 200);
    assert!(body.contains(r#""state":"unsealed""#), "{body}");
    server.terminate();
}

/// Shares written each encrypted to its holder's age key: only that holder
/// reads it, and any two of them unseal.
#[test]
fn shares_encrypted_to_their_holders() {
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let cfg = config.to_str().unwrap();
    let holders: Vec<age::x25519::Identity> =
        (0..3).map(|_| age::x25519::Identity::generate()).collect();
    let recipients = dir.path().join("recipients.txt");
    let lines: Vec<String> = holders.iter().map(|h| h.to_public().to_string()).collect();
    std::fs::write(
        &recipients,
        format!("# treasury holders\n{}\n", lines.join("\n")),
    )
    .unwrap();
    let share_dir = dir.path().join("shares");
    let sd = share_dir.to_str().unwrap();
    let rc = recipients.to_str().unwrap();

    // One recipient short: refused before anything is created.
    let short = dir.path().join("short.txt");
    std::fs::write(&short, &lines[0]).unwrap();
    let o = strongroom(&[
        "init",
        "--config",
        cfg,
        "--shares",
        "3",
        "--threshold",
        "2",
        "--share-dir",
        sd,
        "--share-recipients",
        short.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--share-recipients"), "{}", stderr(&o));

    let o = strongroom(&[
        "init",
        "--config",
        cfg,
        "--shares",
        "3",
        "--threshold",
        "2",
        "--share-dir",
        sd,
        "--share-recipients",
        rc,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut shares = Vec::new();
    for (i, holder) in holders.iter().enumerate() {
        let armored = std::fs::read(share_dir.join(format!("share-{}.age", i + 1))).unwrap();
        assert!(
            age::decrypt(&holders[(i + 1) % 3], &armored[..]).is_err(),
            "another holder read share {i}"
        );
        let plain = String::from_utf8(age::decrypt(holder, &armored[..]).unwrap()).unwrap();
        shares.push(plain.trim().to_owned());
    }
    let o = strongroom_with_input(
        &[
            "key",
            "create",
            "--config",
            cfg,
            "--purpose",
            "approval",
            "--algorithm",
            "ed25519",
        ],
        &format!("{}\n{}\n", shares[2], shares[0]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The audit checkpoint key inside the HSM: checkpoints are signed by the
/// token, and verify with the public key the token reports.
#[test]
fn audit_key_in_the_hsm() {
    use keys_pkcs11::testing::{SoftHsm, USER_PIN};
    let token = SoftHsm::new("audit");
    let (_dir, config) = data_dir("sqlite://strongroom.db");
    let text = std::fs::read_to_string(&config).unwrap();
    let hsm = format!(
        "[hsm]\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_env = \"SR_TEST_HSM_PIN\"\n",
        SoftHsm::module().display(),
        token.label
    );
    std::fs::write(&config, format!("{text}{hsm}")).unwrap();
    let cfg = config.to_str().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("SR_TEST_HSM_PIN", USER_PIN)
            .output()
            .unwrap()
    };
    let o = run(&["audit", "init-hsm-key", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let key_line = out
        .lines()
        .find(|l| l.starts_with("hsm_key = "))
        .unwrap()
        .to_owned();
    let public = out
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .unwrap()
        .to_owned();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("signing_key_file = \"audit.key\"", &key_line),
    )
    .unwrap();

    let server = Server::start_with(&config, &[("SR_TEST_HSM_PIN", USER_PIN)]);
    server.terminate();
    let checkpoints = std::fs::read_to_string(config.with_file_name("audit.checkpoints")).unwrap();
    assert!(checkpoints.lines().count() >= 2);
    for line in checkpoints.lines() {
        let cp: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(cp["key"], public.as_str());
    }
    let o = run(&["audit", "verify", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["audit", "verify", "--config", cfg, "--public-key", &public]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A server on `config`, its log lines followed, unsealed by `quorum`'s
/// shares (one per line).
fn serve_unsealed(
    config: &Path,
    quorum: &str,
) -> (Server, std::sync::mpsc::Receiver<Option<String>>) {
    serve_unsealed_env(config, quorum, &[])
}

/// [`serve_unsealed`] with variables added to the server's environment.
fn serve_unsealed_env(
    config: &Path,
    quorum: &str,
    env: &[(&str, &str)],
) -> (Server, std::sync::mpsc::Receiver<Option<String>>) {
    let mut server = Server::start_with(config, env);
    let (tx, lines) = std::sync::mpsc::channel();
    server.follow_log(tx);
    for share in quorum.lines() {
        let o = strongroom_with_input(
            &["operator", "unseal", "--addr", &server.base],
            &format!("{share}\n"),
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    (server, lines)
}

/// A new wallet named `name` and its first account (`account`: the
/// request's body), both by `admin`: the wallet id and the account.
fn open_wallet(
    server: &Server,
    admin: &Path,
    name: &str,
    account: &str,
) -> (String, serde_json::Value) {
    let body = serde_json::json!({ "name": name }).to_string();
    let (code, w) = api_call(server, admin, "POST", "/v1/wallets", Some(&body), None);
    assert_eq!(code, 201, "{w}");
    let wallet = w["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/wallets/{wallet}/accounts");
    let (code, a) = api_call(server, admin, "POST", &path, Some(account), None);
    assert_eq!(code, 201, "{a}");
    (wallet, a)
}

/// `strongroom apikey create` into `dir/<name>.key`: the file and the
/// principal (`api-key:<id>`).
fn api_key(cfg: &str, dir: &Path, name: &str, role: &str, scope: &str) -> (PathBuf, String) {
    api_key_env(cfg, dir, (name, role, scope), &[])
}

/// [`api_key`] with variables added to the command's environment.
fn api_key_env(
    cfg: &str,
    dir: &Path,
    (name, role, scope): (&str, &str, &str),
    env: &[(&str, &str)],
) -> (PathBuf, String) {
    let file = dir.join(format!("{name}.key"));
    let o = strongroom_env(
        &[
            "apikey",
            "create",
            "--config",
            cfg,
            "--name",
            name,
            "--role",
            role,
            "--scope",
            scope,
            "--out",
            file.to_str().unwrap(),
        ],
        env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&file).unwrap();
    let id = text
        .lines()
        .nth(1)
        .unwrap()
        .strip_prefix("id ")
        .unwrap()
        .to_owned();
    (file, format!("api-key:{id}"))
}

fn add_ethereum(config: &Path, chain_id: u64, url: &str) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(&format!(
        r#"
[[ethereum]]
chain_id = {chain_id}
endpoints = ["{url}"]
confirmations = 2
max_fee_per_gas_wei = "500000000000"
max_total_fee_wei = "100000000000000000"
poll_seconds = 1
"#
    ));
    std::fs::write(config, text).unwrap();
}

/// An ECDSA key registered as an Ethereum sender against a real anvil,
/// its nonces reported; a wrong chain id refuses to start; the server
/// reports its endpoints' health.
#[test]
fn ethereum_sender_from_the_cli() {
    use chain_eth_client::testing::Anvil;
    let anvil = Anvil::start();
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let cfg = config.to_str().unwrap();
    let quorum = init_keystore(cfg, &dir.path().join("shares"), 2, 2).join("\n") + "\n";
    let key = ecdsa_key(cfg, &quorum);

    // Not configured: a usage error.
    let o = strongroom(&[
        "eth",
        "register-sender",
        "--config",
        cfg,
        "--key",
        &key,
        "--chain-id",
        "31337",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no [[ethereum]] section"),
        "{}",
        stderr(&o)
    );

    // Configured with the wrong chain id for the node: refused, named.
    let plain = std::fs::read_to_string(&config).unwrap();
    add_ethereum(&config, 1, anvil.url());
    let o = strongroom(&[
        "eth",
        "register-sender",
        "--config",
        cfg,
        "--key",
        &key,
        "--chain-id",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("serves chain 31337"), "{}", stderr(&o));
    std::fs::write(&config, &plain).unwrap();

    add_ethereum(&config, 31337, anvil.url());
    let o = strongroom(&[
        "eth",
        "register-sender",
        "--config",
        cfg,
        "--key",
        &key,
        "--chain-id",
        "31337",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let address = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("address ").map(str::to_owned))
        .unwrap();
    assert!(stdout(&o).contains("first nonce 0"));
    let o = strongroom(&[
        "eth",
        "register-sender",
        "--config",
        cfg,
        "--key",
        &key,
        "--chain-id",
        "31337",
    ]);
    assert_eq!(o.status.code(), Some(1), "registered once only");
    let o = strongroom(&[
        "eth",
        "nonces",
        "--config",
        cfg,
        "--chain-id",
        "31337",
        "--address",
        &address,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("next to hand out 0"), "{}", stdout(&o));
    let o = strongroom(&[
        "eth",
        "nonces",
        "--config",
        cfg,
        "--chain-id",
        "31337",
        "--address",
        "0x123",
    ]);
    assert_eq!(o.status.code(), Some(2));

    // One reconciliation pass: nothing to find.
    let o = strongroom(&["reconcile", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1 accounts compared, 0 findings"),
        "{}",
        stdout(&o)
    );
    // The key used outside Strongroom (anvil impersonates its address):
    // the next pass finds the outflow (exit 3), once.
    rt().block_on(async {
        let client = eth_client(anvil.url()).await;
        for (method, params) in [
            (
                "anvil_setBalance",
                serde_json::json!([address, "0xde0b6b3a7640000"]),
            ),
            ("anvil_impersonateAccount", serde_json::json!([address])),
            (
                "eth_sendTransaction",
                serde_json::json!([{ "from": address, "to": DESTINATION, "value": "0x1" }]),
            ),
            ("evm_mine", serde_json::json!([])),
        ] {
            client.raw_call(method, params).await.unwrap();
        }
    });
    let o = strongroom(&["reconcile", "--config", cfg]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!(
            "finding unsigned_outflow eip155:31337:{}",
            address.to_lowercase()
        )),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("never signed"), "{}", stdout(&o));
    let o = strongroom(&["reconcile", "--config", cfg]);
    assert!(o.status.success(), "found once: {}", stdout(&o));

    let (viewer, _) = api_key(cfg, dir.path(), "viewer", "viewer", "global");
    let (auditor, _) = api_key(cfg, dir.path(), "auditor", "auditor", "global");
    let (server, _lines) = serve_unsealed(&config, &quorum);
    let (code, runs) = api_call(
        &server,
        &auditor,
        "GET",
        "/v1/reconciliation/runs",
        None,
        None,
    );
    assert_eq!(code, 200, "{runs}");
    assert_eq!(runs.as_array().unwrap().len(), 3, "{runs}");
    assert_eq!(runs[1]["findings"][0]["kind"], "unsigned_outflow", "{runs}");
    let (code, _) = api_call(
        &server,
        &viewer,
        "GET",
        "/v1/reconciliation/runs",
        None,
        None,
    );
    assert_eq!(code, 403, "a viewer does not read the audit trail");
    let (code, body) = server.get("/v1/status");
    assert_eq!(code, 200);
    assert!(
        !body.contains("ethereum"),
        "anonymous: liveness only: {body}"
    );
    let (code, body) = api_call(&server, &viewer, "GET", "/v1/status", None, None);
    assert_eq!(code, 200);
    assert_eq!(
        body["ethereum"],
        serde_json::json!([{"chain_id": 31337, "endpoints": 1, "healthy": 1}])
    );
    assert!(
        !body.to_string().contains(anvil.url()),
        "endpoints are not named"
    );
    server.terminate();
}

/// An air-gapped signer: a PSBT signed from a mnemonic by the CLI alone,
/// then accepted only as the approved transaction (Bitcoin Core's
/// interpreter verifies it).
#[test]
fn offline_signing_of_a_psbt() {
    use bitcoin::hashes::Hash;
    use chain_btc::{BtcPlan, Payout, Spend, Utxo};
    let dir = tempfile::tempdir().unwrap();
    let words = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    let mnemonic = dir.path().join("words.txt");
    std::fs::write(&mnemonic, words).unwrap();
    let path = "m/84'/1'/0'/0/3";
    let seed = keys::hd::Mnemonic::parse(words).unwrap().to_seed("");
    let secret = keys::hd::derive_secp256k1(&seed, path).unwrap();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(secret.expose()).unwrap();
    let pk = bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk);
    let pubkey = pk.serialize();
    let xonly = pk.x_only_public_key().0.serialize();
    let outpoint = |n: u8| bitcoin::OutPoint {
        txid: bitcoin::Txid::from_byte_array([n; 32]),
        vout: 0,
    };
    let plan = BtcPlan {
        inputs: vec![
            Utxo {
                outpoint: outpoint(1),
                value_sat: 40_000,
                spend: Spend::P2wpkh { pubkey },
            },
            Utxo {
                outpoint: outpoint(2),
                value_sat: 60_000,
                spend: Spend::P2tr {
                    internal_key: xonly,
                },
            },
        ],
        payouts: vec![Payout {
            script_pubkey: chain_btc::BtcAddress::parse(
                "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
                domain::BitcoinNetwork::Testnet,
            )
            .unwrap()
            .script_pubkey(),
            value_sat: 95_000,
        }],
        change: None,
        rbf: true,
    };
    let unsigned = dir.path().join("unsigned.psbt");
    std::fs::write(&unsigned, plan.psbt().unwrap().serialize()).unwrap();
    let signed = dir.path().join("signed.psbt");
    let args = |p: &str| {
        vec![
            "offline".to_owned(),
            "sign".into(),
            "--psbt".into(),
            unsigned.to_str().unwrap().into(),
            "--mnemonic-file".into(),
            mnemonic.to_str().unwrap().into(),
            "--path".into(),
            p.into(),
            "--network".into(),
            "testnet".into(),
            "--out".into(),
            signed.to_str().unwrap().into(),
        ]
    };
    // A P2WPKH input's amount is not proven by this PSBT: refused by default.
    let a: Vec<String> = args(path);
    let o = strongroom(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("non_witness_utxo"), "{}", stderr(&o));
    let mut a: Vec<String> = args(path);
    a.push("--trust-input-amounts".into());
    // 5 000 sat is more than 1 % of the 95 000 paid.
    a.push("--accept-fee".into());
    let o = strongroom(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("pays 95000 sat to tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("fee 5000 sat"));
    assert!(stdout(&o).contains("signed 2 input(s)"));
    let psbt = bitcoin::Psbt::deserialize(&std::fs::read(&signed).unwrap()).unwrap();
    let tx = chain_btc::accept_signed(&plan, psbt.clone()).unwrap();
    assert_eq!(tx.input.len(), 2);
    // A signed PSBT for anything else is not accepted as this plan.
    let other = BtcPlan {
        payouts: vec![Payout {
            value_sat: 94_000,
            ..plan.payouts[0].clone()
        }],
        ..plan.clone()
    };
    assert!(chain_btc::accept_signed(&other, psbt).is_err());
    // A key that spends nothing here.
    std::fs::remove_file(&signed).unwrap();
    let mut a: Vec<String> = args("m/84'/1'/0'/0/4");
    a.push("--trust-input-amounts".into());
    let o = strongroom(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!signed.exists());
}

/// Governance and approvals from the command line against a running
/// server: a policy checked, proposed and approved by an admin; an
/// approver key made and registered; a transfer dry-run, requested,
/// approved with `strongroom approve`; a console freeze stops new ones.
#[test]
fn policy_approvals_and_freeze_from_the_cli() {
    policy_approvals_and_freeze("sqlite://strongroom.db", None);
}

/// The policy, approvals, freezes and governance drill on `db_url`; with
/// `keep`, what it leaves (the database, its keys and checkpoints, an
/// admin's API key, the unseal shares, and what the API showed at the end)
/// is kept there: the upgrade tests' fixtures.
fn policy_approvals_and_freeze(db_url: &str, keep: Option<&Path>) {
    use chain_eth_client::testing::Anvil;
    let anvil = Anvil::start();
    let (dir, config) = data_dir(db_url);
    let cfg = config.to_str().unwrap();
    add_ethereum(&config, 31337, anvil.url());
    let quorum = init_keystore(cfg, &dir.path().join("shares"), 2, 2).join("\n") + "\n";
    let key = ecdsa_key(cfg, &quorum);
    let o = strongroom(&[
        "eth",
        "register-sender",
        "--config",
        cfg,
        "--key",
        &key,
        "--chain-id",
        "31337",
        "--wallet",
        "treasury",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wallet = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("wallet ").map(str::to_owned))
        .unwrap();
    let address = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("address ").map(str::to_owned))
        .unwrap();
    // 100 ETH for the sender: transfers are refused beyond what it holds.
    rt().block_on(async {
        let client = chain_eth_client::EthClient::connect(
            31337,
            &[anvil.url().to_owned()],
            chain_eth_client::ClientOptions::default(),
        )
        .await
        .unwrap();
        client
            .raw_call(
                "anvil_setBalance",
                serde_json::json!([address, "0x56bc75e2d63100000"]),
            )
            .await
            .unwrap();
    });

    let person = |name: &str, role: &str, scope: &str| api_key(cfg, dir.path(), name, role, scope);
    let scope = format!("wallet:{wallet}");
    let (admin, _) = person("admin", "admin", "global");
    let (writer, _) = person("writer", "policy-admin", "global");
    let (initiator, _) = person("initiator", "initiator", &scope);
    let (approver, approver_id) = person("approver", "approver", &scope);

    let (approver_key, public) = approver_key_in(dir.path(), "approver");

    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[groups]]\nname = \"approvers\"\nmembers = [\"{approver_id}\"]\n\n\
             [[rules]]\nname = \"small\"\namount = {{ at_most = \"1\" }}\naction = \"allow\"\n\n\
             [[rules]]\nname = \"large\"\naction = \"require_approval\"\n\
             approvals = {{ group = \"approvers\", threshold = 1 }}\n"
        ),
    )
    .unwrap();
    let o = strongroom(&["policy", "check", policy.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("ok: 2 rules"), "{}", stdout(&o));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[rules]]\nname = \"x\"\naction = \"alow\"\n").unwrap();
    let o = strongroom(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    let server = Server::start(&config);
    for share in quorum.lines() {
        let o = strongroom_with_input(
            &["operator", "unseal", "--addr", &server.base],
            &format!("{share}\n"),
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let api =
        |key: &Path, method: &str, path: &str, body: Option<&str>| -> (bool, serde_json::Value) {
            let mut args = vec![
                "api",
                "--addr",
                server.base.as_str(),
                "--key-file",
                key.to_str().unwrap(),
                method,
                path,
            ];
            if let Some(b) = body {
                args.extend(["--body", b]);
            }
            let o = strongroom(&args);
            let out = stdout(&o);
            let json = out.lines().nth(1).unwrap_or("null");
            (
                o.status.success(),
                serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
            )
        };
    let document = std::fs::read_to_string(&policy).unwrap();
    let body =
        serde_json::json!({"change": {"kind": "set_policy", "document": document}}).to_string();
    let (ok, p) = api(&writer, "POST", "/v1/proposals", Some(&body));
    assert!(ok, "{p}");
    assert_eq!(
        p["state"], "open",
        "a policy admin's proposal waits for an admin"
    );
    let id = p["id"].as_str().unwrap().to_owned();
    // A vote without the admin's signature does not count.
    let (ok, p) = api(
        &admin,
        "POST",
        &format!("/v1/proposals/{id}/votes"),
        Some(r#"{"vote":"approve"}"#),
    );
    assert!(!ok, "{p}");
    assert_eq!(approve_proposal(&server.base, &admin, &id), "applied");
    let body = serde_json::json!({"change": {"kind": "register_approver_key", "principal": approver_id, "public_key": public}}).to_string();
    let (ok, p) = api(&admin, "POST", "/v1/proposals", Some(&body));
    assert!(ok && p["state"] == "open", "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(approve_proposal(&server.base, &admin, &id), "applied");
    // The list shows each proposal with its votes.
    let (ok, list) = api(&admin, "GET", "/v1/proposals", None);
    assert!(ok, "{list}");
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id.as_str())
        .unwrap();
    assert_eq!(listed["votes"][0]["vote"], "approve", "{listed}");

    let to = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    let o = strongroom(&[
        "transfer",
        "dry-run",
        "--addr",
        &server.base,
        "--key-file",
        initiator.to_str().unwrap(),
        "--wallet",
        &wallet,
        "--asset",
        "eip155:31337/native",
        "--amount",
        "5",
        "--to",
        to,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("policy version 1"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("rule 2 large: matched"),
        "{}",
        stdout(&o)
    );

    let body = serde_json::json!({"wallet": wallet, "asset": "eip155:31337/native", "amount": "5", "destination": to}).to_string();
    let (ok, t) = api(&initiator, "POST", "/v1/transfers", Some(&body));
    assert!(ok, "{t}");
    assert_eq!(t["state"], "pending_approval");
    let transfer = t["id"].as_str().unwrap().to_owned();
    // Safe retries: the same Idempotency-Key and body replay the transfer
    // (200); another body with that key is refused (422).
    let retry = |body: &str| {
        strongroom(&[
            "api",
            "--addr",
            &server.base,
            "--key-file",
            initiator.to_str().unwrap(),
            "--idempotency-key",
            "payout-2026-11-27-001",
            "POST",
            "/v1/transfers",
            "--body",
            body,
        ])
    };
    let small = serde_json::json!({"wallet": wallet, "asset": "eip155:31337/native", "amount": "0.5", "destination": to}).to_string();
    let first = retry(&small);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).starts_with("201"), "{}", stdout(&first));
    let again = retry(&small);
    assert!(stdout(&again).starts_with("200"), "{}", stdout(&again));
    assert_eq!(
        stdout(&first).lines().nth(1).unwrap()[..50],
        stdout(&again).lines().nth(1).unwrap()[..50],
        "the same transfer"
    );
    let other = retry(&body);
    assert_eq!(other.status.code(), Some(1));
    assert!(stdout(&other).starts_with("422"), "{}", stdout(&other));
    let approve_with = |reject: bool, answer: &str| {
        let mut args = vec![
            "approve",
            "--addr",
            server.base.as_str(),
            "--key-file",
            approver.to_str().unwrap(),
            "--approver-key",
            approver_key.to_str().unwrap(),
            "--transfer",
            transfer.as_str(),
        ];
        if reject {
            args.extend(["--reject", "--reason", "not the payout we agreed"]);
        }
        strongroom_with_input(&args, answer)
    };
    let approve = |reject: bool| approve_with(reject, "yes\n");
    // Shown, then confirmed: anything but "yes" signs nothing.
    for answer in ["", "no\n", "y\n"] {
        let o = approve_with(false, answer);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stdout(&o).contains("amount      5 ETH"), "{}", stdout(&o));
        assert!(stdout(&o).contains("never paid before"), "{}", stdout(&o));
        assert!(stderr(&o).contains("nothing was signed"), "{}", stderr(&o));
    }
    let o = approve(false);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("approved → queued"), "{}", stdout(&o));
    assert!(stdout(&o).contains("amount      5 ETH"), "{}", stdout(&o));
    // Once only.
    let o = approve(true);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already_voted"), "{}", stderr(&o));

    // A freeze from the console, the server running: new transfers stop.
    let o = strongroom(&[
        "freeze", "--config", cfg, "--scope", &scope, "--reason", "drill",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let body = serde_json::json!({"wallet": wallet, "asset": "eip155:31337/native", "amount": "0.5", "destination": to}).to_string();
    let (ok, _) = api(&initiator, "POST", "/v1/transfers", Some(&body));
    assert!(!ok, "a frozen wallet takes no transfer");
    let (ok, f) = api(&admin, "GET", "/v1/freezes", None);
    assert!(ok && f[0]["scope"] == scope.as_str(), "{f}");
    let o = strongroom(&[
        "freeze",
        "--config",
        cfg,
        "--scope",
        "everything",
        "--reason",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // Governance has acted: the console's bootstrap is over. An admin (or
    // any role that governs or moves funds) is a proposal now; the console
    // still gives read-only roles.
    let refused = dir.path().join("late-admin.key");
    let o = strongroom(&[
        "apikey",
        "create",
        "--config",
        cfg,
        "--name",
        "late",
        "--role",
        "admin",
        "--out",
        refused.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("once governance has acted"),
        "{}",
        stderr(&o)
    );
    assert!(!refused.exists());
    api_key(cfg, dir.path(), "late-auditor", "auditor", "global");
    // A key may name the user who holds it (by name here): a quorum counts
    // that person once, whichever of their keys votes.
    let (ok, user) = api(
        &admin,
        "POST",
        "/v1/users",
        Some(r#"{"name": "frank", "password": "a long enough password", "grants": []}"#),
    );
    assert!(ok, "{user}");
    for (owner, code) in [("nobody", Some(2)), ("frank", Some(0))] {
        let o = strongroom(&[
            "apikey", "create", "--config", cfg, "--name", "frank's", "--role", "auditor",
            "--owner", owner,
        ]);
        assert_eq!(o.status.code(), code, "{owner}: {}", stderr(&o));
    }
    let (ok, keys) = api(&admin, "GET", "/v1/api-keys", None);
    assert!(ok, "{keys}");
    let frank = format!("user:{}", user["id"].as_str().unwrap());
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["owner"] == frank.as_str()),
        "{keys}"
    );
    let proposed = dir.path().join("second-admin.key");
    let o = strongroom(&[
        "apikey",
        "propose",
        "--addr",
        server.base.as_str(),
        "--key-file",
        admin.to_str().unwrap(),
        "--name",
        "second-admin",
        "--role",
        "admin",
        "--out",
        proposed.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("role admin scope global proposal "))
        .unwrap_or_else(|| panic!("{out}"));
    let (id, state) = line.split_once(' ').unwrap();
    assert_eq!(state, "open", "a role waits for the admins' signatures");
    assert_eq!(approve_proposal(&server.base, &admin, id), "applied");
    let (ok, me) = api(&proposed, "GET", "/v1/me", None);
    assert!(ok, "{me}");
    assert!(me.to_string().contains("admin"), "{me}");
    let views = keep.map(|_| {
        let mut views = serde_json::Map::new();
        for path in VIEWS {
            let (ok, v) = api(&admin, "GET", path, None);
            assert!(ok, "{path}: {v}");
            if *path == "/v1/transfers" {
                for t in v.as_array().unwrap() {
                    let one = format!("/v1/transfers/{}", t["id"].as_str().unwrap());
                    let (ok, v) = api(&admin, "GET", &one, None);
                    assert!(ok, "{one}: {v}");
                    views.insert(one, v);
                }
            }
            views.insert((*path).to_owned(), v);
        }
        views
    });
    server.terminate();
    if let (Some(out), Some(views)) = (keep, views) {
        keep_fixture(dir.path(), &admin, &quorum, db_url, views, out);
    }
}

/// What the upgrade tests compare, before and after: every list the API
/// gives of what the database holds.
const VIEWS: &[&str] = &[
    "/v1/transfers",
    "/v1/wallets",
    "/v1/proposals",
    "/v1/freezes",
    "/v1/api-keys",
    "/v1/users",
    "/v1/policy",
    "/v1/audit?limit=1000",
];

/// Leaves a drill's data in `out` (see [`policy_approvals_and_freeze`]).
fn keep_fixture(
    dir: &Path,
    admin: &Path,
    quorum: &str,
    db_url: &str,
    views: serde_json::Map<String, serde_json::Value>,
    out: &Path,
) {
    std::fs::create_dir_all(out).unwrap();
    for f in [
        "strongroom.toml",
        "audit.key",
        "audit.checkpoints",
        "strongroom.db",
    ] {
        if dir.join(f).exists() {
            std::fs::copy(dir.join(f), out.join(f)).unwrap();
        }
    }
    std::fs::copy(admin, out.join("admin.key")).unwrap();
    std::fs::write(out.join("quorum.txt"), quorum).unwrap();
    std::fs::write(
        out.join("views.json"),
        serde_json::to_string_pretty(&serde_json::Value::Object(views)).unwrap() + "\n",
    )
    .unwrap();
    if db_url.starts_with("postgres") {
        let o = Command::new("pg_dump")
            .args(["--no-owner", "--no-privileges", "--dbname", db_url])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::write(out.join("dump.sql"), &o.stdout).unwrap();
    }
}

/// A data directory with a funded Ethereum sender in a wallet, an admin,
/// a policy admin and an initiator, and a policy that allows every
/// transfer: what the crash and scale-out tests start from.
struct Custody {
    dir: tempfile::TempDir,
    config: PathBuf,
    quorum: String,
    wallet: String,
    sender: String,
    /// The sender's key.
    key: String,
    initiator: PathBuf,
    admin: PathBuf,
    /// A policy admin.
    writer: PathBuf,
    /// An approver of the wallet (no approver key registered) and their
    /// principal.
    approver: (PathBuf, String),
    anvil: chain_eth_client::testing::Anvil,
}

impl Custody {
    fn new(db_url: &str) -> Custody {
        use chain_eth_client::testing::Anvil;
        let anvil = Anvil::start();
        let (dir, config) = data_dir(db_url);
        let cfg = config.to_str().unwrap().to_owned();
        add_ethereum(&config, 31337, anvil.url());
        let quorum = init_keystore(&cfg, &dir.path().join("shares"), 2, 2).join("\n") + "\n";
        let o = strongroom_with_input(
            &[
                "key",
                "create",
                "--config",
                &cfg,
                "--purpose",
                "transfer-signing",
                "--algorithm",
                "ecdsa-secp256k1",
            ],
            &quorum,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let key = stdout(&o)
            .lines()
            .find_map(|l| l.strip_prefix("key ").map(str::to_owned))
            .unwrap();
        let (wallet, sender) = funded_sender(&cfg, &key, &anvil);
        let person = |name: &str, role: &str, scope: &str| -> PathBuf {
            api_key(&cfg, dir.path(), name, role, scope).0
        };
        let admin = person("admin", "admin", "global");
        let writer = person("writer", "policy-admin", "global");
        let initiator = person("initiator", "initiator", &format!("wallet:{wallet}"));
        let approver = api_key(
            &cfg,
            dir.path(),
            "approver",
            "approver",
            &format!("wallet:{wallet}"),
        );
        let c = Custody {
            dir,
            config,
            quorum,
            wallet,
            sender,
            key,
            initiator,
            admin,
            writer,
            approver,
            anvil,
        };
        // The policy: everything allowed, proposed and approved over the API.
        let server = c.start(&[], std::sync::mpsc::channel().0);
        let document = "[[rules]]\nname = \"all\"\naction = \"allow\"\n";
        let body =
            serde_json::json!({"change": {"kind": "set_policy", "document": document}}).to_string();
        let (code, p) = c.api(
            &server,
            &c.writer,
            "POST",
            "/v1/proposals",
            Some(&body),
            None,
        );
        assert_eq!(code, 201, "{p}");
        let id = p["id"].as_str().unwrap().to_owned();
        assert_eq!(approve_proposal(&server.base, &c.admin, &id), "applied");
        server.terminate();
        c
    }

    /// A server on this data, unsealed, its log lines sent to `lines`.
    fn start(&self, env: &[(&str, &str)], lines: LogLines) -> Server {
        let mut server = Server::start_with(&self.config, env);
        server.follow_log(lines);
        for share in self.quorum.lines() {
            let o = strongroom_with_input(
                &["operator", "unseal", "--addr", &server.base],
                &format!("{share}\n"),
            );
            assert!(o.status.success(), "{}", stderr(&o));
        }
        server
    }

    fn api(
        &self,
        server: &Server,
        key: &Path,
        method: &str,
        path: &str,
        body: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> (u16, serde_json::Value) {
        api_call(server, key, method, path, body, idempotency_key)
    }

    fn withdrawal(&self, amount: &str) -> String {
        serde_json::json!({
            "wallet": self.wallet,
            "asset": "eip155:31337/native",
            "amount": amount,
            "destination": DESTINATION,
        })
        .to_string()
    }
}

/// `strongroom api`: the status code and the JSON body (`Null` when the
/// server gave no answer).
/// An admin approves a governance proposal with `strongroom approve
/// --proposal` (signed with their API key, their bootstrap signing key);
/// returns the state it reached.
fn approve_proposal(base: &str, admin: &Path, id: &str) -> String {
    let o = strongroom(&[
        "approve",
        "--addr",
        base,
        "--key-file",
        admin.to_str().unwrap(),
        "--proposal",
        id,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let last = out.lines().last().unwrap_or_default();
    last.rsplit(' ').next().unwrap_or_default().to_owned()
}

fn api_call(
    server: &Server,
    key: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    idempotency_key: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut args = vec![
        "api",
        "--addr",
        server.base.as_str(),
        "--key-file",
        key.to_str().unwrap(),
    ];
    if let Some(k) = idempotency_key {
        args.extend(["--idempotency-key", k]);
    }
    args.extend([method, path]);
    if let Some(b) = body {
        args.extend(["--body", b]);
    }
    let o = strongroom(&args);
    let out = stdout(&o);
    let code = out
        .get(..3)
        .and_then(|c| c.parse().ok())
        .unwrap_or_default();
    let json = out.lines().nth(1).unwrap_or("null");
    (code, serde_json::from_str(json).unwrap_or_default())
}

const DESTINATION: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

/// `key` registered as the Ethereum sender of a new wallet "treasury" on
/// anvil's chain, with 100 ETH: (wallet, sender address).
fn funded_sender(
    cfg: &str,
    key: &str,
    anvil: &chain_eth_client::testing::Anvil,
) -> (String, String) {
    let o = strongroom(&[
        "eth",
        "register-sender",
        "--config",
        cfg,
        "--key",
        key,
        "--chain-id",
        "31337",
        "--wallet",
        "treasury",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let field = |name: &str| {
        stdout(&o)
            .lines()
            .find_map(|l| l.strip_prefix(name).map(str::to_owned))
            .unwrap()
    };
    let (wallet, sender) = (field("wallet "), field("address "));
    rt().block_on(async {
        let client = eth_client(anvil.url()).await;
        client
            .raw_call(
                "anvil_setBalance",
                serde_json::json!([sender, "0x56bc75e2d63100000"]),
            )
            .await
            .unwrap();
    });
    (wallet, sender)
}

async fn eth_client(url: &str) -> chain_eth_client::EthClient {
    chain_eth_client::EthClient::connect(
        31337,
        &[url.to_owned()],
        chain_eth_client::ClientOptions::default(),
    )
    .await
    .unwrap()
}

/// A transfer's move as the server logs it: (transfer id, new state).
fn moved(line: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["message"] != "transfer moved" {
        return None;
    }
    let id = v["subject"].as_str()?.strip_prefix("transfer:")?.to_owned();
    let details: serde_json::Value = serde_json::from_str(v["details"].as_str()?).ok()?;
    let to = details["to"].as_str().or(details["state"].as_str())?;
    Some((id, to.to_owned()))
}

/// Follows the log lines of `servers` servers, mining blocks as
/// transfers reach the chain (anvil does not mine by itself here): one
/// block when a transfer is broadcast, two more when it is in a block.
/// Returns when `until` holds for a move, or when every server has exited
/// (`None`).
fn drive(
    lines: &std::sync::mpsc::Receiver<Option<String>>,
    mut servers: usize,
    anvil: Option<&chain_eth_client::testing::Anvil>,
    mut until: impl FnMut(&str, &str) -> bool,
) -> Option<(String, String)> {
    let rt = rt();
    let client = anvil.map(|a| rt.block_on(eth_client(a.url())));
    // Bounded: a test whose transfers stop moving fails, never hangs.
    let patience = std::time::Duration::from_secs(90);
    let mut last_move = std::time::Instant::now();
    loop {
        let left = patience.saturating_sub(last_move.elapsed());
        let line = match lines.recv_timeout(left) {
            Ok(Some(l)) => {
                // What went wrong is shown with the test's failure.
                if l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\"") {
                    eprintln!("{l}");
                }
                l
            }
            Ok(None) => {
                servers -= 1;
                if servers == 0 {
                    return None;
                }
                continue;
            }
            Err(e) => panic!("no progress: {e}"),
        };
        let Some((id, to)) = moved(&line) else {
            continue;
        };
        last_move = std::time::Instant::now();
        match (to.as_str(), &client) {
            ("broadcasting", Some(c)) => rt.block_on(chain_eth_client::testing::mine(c, 1)),
            ("confirming", Some(c)) => rt.block_on(chain_eth_client::testing::mine(c, 2)),
            _ => {}
        }
        if until(&id, &to) {
            return Some((id, to));
        }
    }
}

/// Operations: a scrape of `/metrics` after a withdrawal holds every family
/// the alert rules and the dashboard use, with sane values and no address;
/// a checkpoint file that cannot be written turns readiness false and,
/// past its limit, stops signing until it can be written again (a torn
/// line repaired without a restart); a disk floor above the free space
/// refuses new transfers; a sealed server is not ready.
#[test]
fn operations_metrics_readiness_and_guards() {
    let c = Custody::new("sqlite://strongroom.db");
    let text = std::fs::read_to_string(&c.config).unwrap();
    let text = text
        .replace(
            "checkpoint_every_records = 1000",
            "checkpoint_every_records = 1",
        )
        .replace(
            "metrics_listen = \"127.0.0.1:0\"\n",
            "metrics_listen = \"127.0.0.1:0\"\ncheckpoint_fail_closed_seconds = 1\n",
        );
    std::fs::write(&c.config, &text).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = c.start(&[], tx);
    let (code, t) = c.api(
        &server,
        &c.initiator,
        "POST",
        "/v1/transfers",
        Some(&c.withdrawal("0.1")),
        None,
    );
    assert_eq!(code, 201, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    drive(&rx, 1, Some(&c.anvil), |t, to| t == id && to == "completed");

    let scrape = server.scrape();
    let sample = |name: &str, labels: &str| sample_of(&scrape, name, labels);
    assert_eq!(sample("strongroom_unsealed", ""), 1.0);
    assert_eq!(sample("strongroom_database_up", ""), 1.0);
    assert!(
        sample(
            "strongroom_transfer_transitions_total",
            "{state=\"completed\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            "strongroom_policy_decisions_total",
            "{verdict=\"allow\",rule=\"all\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            "strongroom_signatures_total",
            &format!("{{backend=\"keystore\",key=\"{}\",outcome=\"ok\"}}", c.key)
        ) >= 1.0
    );
    assert_eq!(
        sample(
            "strongroom_http_requests_total",
            "{method=\"POST\",route=\"/v1/transfers\",status=\"201\"}"
        ),
        1.0
    );
    assert!(sample("strongroom_db_commit_seconds_count", "") >= 1.0);
    assert_eq!(sample("strongroom_queue_depth", ""), 0.0);
    assert_eq!(
        sample("strongroom_freezes_active", "{kind=\"global\"}"),
        0.0
    );
    assert!(sample("strongroom_audit_records", "") > 10.0);
    assert_eq!(
        sample("strongroom_audit_checkpoint_failing_seconds", ""),
        0.0
    );
    assert_eq!(sample("strongroom_signing_stopped", ""), 0.0);
    assert_eq!(sample("strongroom_signatures_in_flight", ""), 0.0);
    assert_eq!(sample("strongroom_signatures_in_flight_max", ""), 32.0);
    let endpoint = c.anvil.url().trim_end_matches('/');
    assert_eq!(
        sample(
            "strongroom_chain_endpoint_up",
            &format!("{{network=\"eip155:31337\",endpoint=\"{endpoint}\"}}")
        ),
        1.0
    );
    assert!(
        sample(
            "strongroom_disk_free_bytes",
            &format!(
                "{{path=\"{}\"}}",
                c.dir.path().join("audit.checkpoints").display()
            )
        ) > 0.0
    );
    // Labels are bounded: no address, amount or transfer id.
    for secret in [
        DESTINATION,
        DESTINATION.to_lowercase().as_str(),
        c.sender.as_str(),
        id.as_str(),
    ] {
        assert!(!scrape.contains(secret), "{secret} in\n{scrape}");
    }
    // Every metric the dashboard and the alert rules query is scraped.
    let families: std::collections::BTreeSet<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for file in [
        "deploy/grafana/strongroom.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let queries = std::fs::read_to_string(root.join(file)).unwrap();
        let mut asked = 0;
        for (i, _) in queries.match_indices("strongroom_") {
            let name: String = queries[i..]
                .chars()
                .take_while(|ch| ch.is_ascii_lowercase() || *ch == '_' || ch.is_ascii_digit())
                .collect();
            let family = ["_bucket", "_count", "_sum", "_total"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            // Families of components this server does not have (signer
            // nodes, an HSM) and of events that have not happened yet
            // (a backup, a reconciliation run) are absent until they are.
            let optional = [
                "signer_node_up",
                "presignature",
                "threshold_",
                "hsm_",
                "backup_",
                "reconciliation_",
            ];
            if optional.iter().any(|o| family.contains(o)) {
                continue;
            }
            asked += 1;
            assert!(
                families.contains(family),
                "{file} asks for {name}, not scraped:\n{scrape}"
            );
        }
        assert!(asked >= 15, "{file}: {asked}");
    }

    // The version and the source the binary was built from.
    let (code, st) = c.api(&server, &c.admin, "GET", "/v1/status", None, None);
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"), "{st}");
    assert_eq!(st["database"]["schema_version"], 33, "{st}");
    assert!(
        st["git_commit"]
            .as_str()
            // `unknown` only when built outside a git checkout.
            .is_some_and(|g| !g.is_empty()),
        "{st}"
    );
    // Ready; then the checkpoint file cannot be written (a directory in its
    // place): not ready, and after a second signing stops.
    let (code, body) = server.get("/v1/ready");
    assert_eq!(code, 200, "{body}");
    let cp = c.dir.path().join("audit.checkpoints");
    let kept = c.dir.path().join("audit.checkpoints.kept");
    std::fs::rename(&cp, &kept).unwrap();
    std::fs::create_dir(&cp).unwrap();
    let (code, _) = c.api(
        &server,
        &c.initiator,
        "POST",
        "/v1/transfers",
        Some(&c.withdrawal("0.2")),
        None,
    );
    assert_eq!(
        code, 201,
        "new transfers are accepted; signing is what stops"
    );
    let (code, body) = server.get("/v1/ready");
    assert_eq!(code, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["checks"]["checkpoints"], false, "{ready}");
    // Waiting for the clock (the one-second limit), not for work.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, t2) = c.api(
        &server,
        &c.initiator,
        "POST",
        "/v1/transfers",
        Some(&c.withdrawal("0.3")),
        None,
    );
    assert_eq!(code, 201, "{t2}");
    let stopped = wait_for_log(&rx, "signing is stopped");
    assert!(
        stopped.contains("audit checkpoints have failed since"),
        "{stopped}"
    );
    assert_eq!(server_sample(&server, "strongroom_signing_stopped"), 1.0);
    // Writable again, with a torn line at its end: the next commit cuts
    // the torn line off and writes its checkpoint, and signing resumes.
    std::fs::remove_dir(&cp).unwrap();
    std::fs::rename(&kept, &cp).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&cp).unwrap();
    f.write_all(b"{\"v\":1,\"seq\":").unwrap();
    drop(f);
    let t2 = t2["id"].as_str().unwrap().to_owned();
    drive(&rx, 1, Some(&c.anvil), |t, to| t == t2 && to == "completed");
    let (code, body) = server.get("/v1/ready");
    assert_eq!(code, 200, "{body}");
    assert!(std::fs::read_to_string(&cp).unwrap().ends_with('\n'));

    // Sealed: not ready.
    let (code, body) = c.api(&server, &c.admin, "POST", "/v1/sys/seal", None, None);
    assert!(code < 300, "{code} {body}");
    let (code, body) = server.get("/v1/ready");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"unsealed\":false"), "{body}");
    server.terminate();
    let o = strongroom(&["audit", "verify", "--config", c.config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A disk floor above the free space: new transfers are refused, and
    // say why; readiness names the disk.
    std::fs::write(
        &c.config,
        text.replace(
            "checkpoint_fail_closed_seconds = 1\n",
            "disk_floor_mb = 1073741824\n",
        ),
    )
    .unwrap();
    let server = c.start(&[], std::sync::mpsc::channel().0);
    let (code, body) = c.api(
        &server,
        &c.initiator,
        "POST",
        "/v1/transfers",
        Some(&c.withdrawal("0.1")),
        None,
    );
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["code"], "disk_low", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("under the floor"),
        "{body}"
    );
    let (code, body) = server.get("/v1/ready");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"disk\":false"), "{body}");
    server.terminate();
}

/// Configuration changes while serving: a file that does not check is not
/// sent by `config apply`, and one sent anyway (SIGHUP) changes nothing;
/// a good one applies the disk floor at once, names what waits for a
/// restart, and both are in the audit log with their diff.
#[test]
fn a_reload_applies_what_may_change_and_a_bad_file_changes_nothing() {
    let c = Custody::new("sqlite://strongroom.db");
    let cfg = c.config.to_str().unwrap();
    let good = std::fs::read_to_string(&c.config).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = c.start(&[], tx);
    let pid_file = c.dir.path().join("strongroom.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        server.child.id().to_string()
    );
    let hup = || {
        let pid = server.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    // A bad file: `config apply` refuses to send it; sent anyway, it is
    // refused by the server, and nothing changes.
    std::fs::write(&c.config, good.clone() + "[operations.nonsense]\n").unwrap();
    let o = strongroom(&["config", "apply", cfg]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let bad = good.replace("[operations]\n", "[operations]\ndisk_floor_mb = \"lots\"\n");
    std::fs::write(&c.config, &bad).unwrap();
    hup();
    wait_for_log(&rx, "configuration reload refused");
    let (code, body) = c.api(
        &server,
        &c.initiator,
        "POST",
        "/v1/transfers",
        Some(&c.withdrawal("0.1")),
        None,
    );
    assert_eq!(code, 201, "{body}");
    // A good one: the floor applies at once; a server setting waits.
    let changed = good
        .replace(
            "[operations]\n",
            "[operations]\ndisk_floor_mb = 1073741824\n",
        )
        .replace("[server]\n", "[server]\nmax_body_bytes = 2097152\n")
        // A raised fee cap: governed, never applied from the file.
        .replace(
            "max_fee_per_gas_wei = \"500000000000\"",
            "max_fee_per_gas_wei = \"900000000000\"",
        );
    assert_ne!(changed, good);
    std::fs::write(&c.config, &changed).unwrap();
    let o = strongroom(&["config", "apply", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("sent SIGHUP"), "{}", stdout(&o));
    wait_for_log(&rx, "configuration reloaded");
    let (code, body) = c.api(
        &server,
        &c.initiator,
        "POST",
        "/v1/transfers",
        Some(&c.withdrawal("0.1")),
        None,
    );
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["code"], "disk_low", "{body}");
    let (code, log) = c.api(&server, &c.admin, "GET", "/v1/audit?limit=1000", None, None);
    assert_eq!(code, 200, "{log}");
    let records = log.as_array().unwrap();
    let details = |action: &str| -> serde_json::Value {
        let r = records
            .iter()
            .find(|r| r["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {log}"));
        match &r["details"] {
            serde_json::Value::String(s) => serde_json::from_str(s).unwrap(),
            d => d.clone(),
        }
    };
    let refused = details("config.reload_refused");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("operations.disk_floor_mb"),
        "{refused}"
    );
    let applied = details("config.reloaded");
    assert_eq!(
        applied["applied"],
        serde_json::json!({"operations.disk_floor_mb": {"from": 256, "to": 1073741824}}),
        "{applied}"
    );
    assert_eq!(
        applied["needs_restart"],
        serde_json::json!(["server.max_body_bytes"]),
        "{applied}"
    );
    assert_eq!(
        applied["governed_not_applied"],
        serde_json::json!(["ethereum[31337].fee_caps"]),
        "{applied}"
    );
    // Lowering the floor guards less: it waits for a restart.
    let before = records.len();
    std::fs::write(
        &c.config,
        changed.replace("disk_floor_mb = 1073741824", "disk_floor_mb = 1"),
    )
    .unwrap();
    hup();
    wait_for_log(&rx, "configuration reloaded");
    let (code, body) = c.api(
        &server,
        &c.initiator,
        "POST",
        "/v1/transfers",
        Some(&c.withdrawal("0.1")),
        None,
    );
    assert_eq!(
        (code, body["code"].as_str()),
        (503, Some("disk_low")),
        "{body}"
    );
    let (_, log) = c.api(&server, &c.admin, "GET", "/v1/audit?limit=1000", None, None);
    let later = &log.as_array().unwrap()[before..];
    let lowered = later
        .iter()
        .find(|r| r["action"] == "config.reloaded")
        .unwrap_or_else(|| panic!("{log}"))
        .to_string();
    assert!(
        lowered.contains("operations.disk_floor_mb (lowered)"),
        "{lowered}"
    );
    // Rate limits and the webhook retry schedule change at once.
    let before = log.as_array().unwrap().len();
    std::fs::write(
        &c.config,
        changed.replace(
            "[operations]\n",
            "[operations]\nrequests_per_second_per_principal = 1\n",
        ) + "\n[webhooks]\nretry_delays_seconds = [1, 2]\n",
    )
    .unwrap();
    hup();
    wait_for_log(&rx, "configuration reloaded");
    let codes: Vec<u16> = (0..5)
        .map(|_| {
            c.api(&server, &c.initiator, "GET", "/v1/wallets", None, None)
                .0
        })
        .collect();
    assert!(codes.contains(&429), "one a second now: {codes:?}");
    let (_, log) = c.api(&server, &c.admin, "GET", "/v1/audit?limit=1000", None, None);
    let reloaded = log.as_array().unwrap()[before..]
        .iter()
        .find(|r| r["action"] == "config.reloaded")
        .unwrap_or_else(|| panic!("{log}"));
    let d: serde_json::Value = match &reloaded["details"] {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap(),
        d => d.clone(),
    };
    assert_eq!(
        d["applied"]["operations.requests_per_second_per_principal"]["to"], 1,
        "{d}"
    );
    assert_eq!(
        d["applied"]["webhooks.retry_delays_seconds"]["to"],
        serde_json::json!([1, 2]),
        "{d}"
    );
    assert!(!d["needs_restart"].to_string().contains("webhooks"), "{d}");
    server.terminate();
    assert!(
        !Path::new(&pid_file).exists(),
        "the pid file goes with the server"
    );
    // No server: nothing to send to.
    let o = strongroom(&["config", "apply", cfg]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

fn server_sample(server: &Server, name: &str) -> f64 {
    sample_of(&server.scrape(), name, "")
}

/// The value of the sample `name{labels}` in a scrape.
fn sample_of(scrape: &str, name: &str, labels: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(labels)?;
            rest.strip_prefix(' ')?.split(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {name}{labels} in\n{scrape}"))
}

/// Upgrades: databases made by schema 27's build (committed under
/// `tests/fixtures/schema-27/`: SQLite, and a PostgreSQL dump), full of
/// transfers, keys, approvals, proposals, freezes and audit records, are
/// opened by this build: migrated, every record the API showed then shown
/// the same now, the audit chain and its checkpoints verifying. A database
/// a later build migrated is refused. Each later schema adds its own
/// fixture: `STRONGROOM_MAKE_FIXTURES=<dir>` makes them with this build.
#[test]
fn an_upgrade_keeps_every_record_sqlite() {
    upgrade_from("sqlite");
}

#[test]
fn an_upgrade_keeps_every_record_postgres() {
    upgrade_from("postgres");
}

fn upgrade_from(backend: &str) {
    if let Ok(out) = std::env::var("STRONGROOM_MAKE_FIXTURES") {
        let out = Path::new(&out).join(backend);
        let rt = rt();
        let db = (backend == "postgres").then(|| rt.block_on(TestDb::postgres()));
        let url = db
            .as_ref()
            .map_or("sqlite://strongroom.db", |d| d.url.as_str());
        policy_approvals_and_freeze(url, Some(&out));
        return;
    }
    // Every schema's fixture, oldest first.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut schemas: Vec<(u32, PathBuf)> = std::fs::read_dir(&fixtures)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let n = e
                .file_name()
                .to_str()?
                .strip_prefix("schema-")?
                .parse()
                .ok()?;
            Some((n, e.path().join(backend)))
        })
        .collect();
    schemas.sort();
    assert!(schemas.iter().any(|(n, _)| *n == 27), "{schemas:?}");
    for (_, fixture) in &schemas {
        upgrade_one(fixture, backend);
    }
}

fn upgrade_one(fixture: &Path, backend: &str) {
    // The database itself must be there: without it the server would make
    // a fresh one and the test would say nothing about upgrades.
    let database = if backend == "postgres" {
        "dump.sql"
    } else {
        "strongroom.db"
    };
    assert!(
        fixture.join(database).is_file(),
        "{} has no {database} (is it committed?)",
        fixture.display()
    );
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(fixture).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
    }
    // Keys are the owner's alone (git keeps no such mode).
    for key in ["audit.key", "admin.key"] {
        use std::os::unix::fs::PermissionsExt;
        let p = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(dir.path().join(key), p).unwrap();
    }
    let rt = rt();
    let pg = (backend == "postgres").then(|| rt.block_on(TestDb::postgres_empty()));
    let config = dir.path().join("strongroom.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    // Its own database; no chain (nothing the drill left queued moves).
    let mut kept = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skipping = line == "[[ethereum]]";
        }
        if skipping {
            continue;
        }
        let line = match (line.starts_with("url = "), &pg) {
            (true, Some(db)) => format!("url = \"{}\"", db.url),
            _ => line.to_owned(),
        };
        kept.push_str(&line);
        kept.push('\n');
    }
    std::fs::write(&config, kept).unwrap();
    if let Some(db) = &pg {
        let o = Command::new("psql")
            .args([
                "--quiet",
                "--set",
                "ON_ERROR_STOP=1",
                "--dbname",
                &db.url,
                "--file",
            ])
            .arg(dir.path().join("dump.sql"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let cfg = config.to_str().unwrap();
    let server = Server::start(&config);
    let quorum = std::fs::read_to_string(dir.path().join("quorum.txt")).unwrap();
    for share in quorum.lines() {
        let o = strongroom_with_input(
            &["operator", "unseal", "--addr", &server.base],
            &format!("{share}\n"),
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let admin = dir.path().join("admin.key");
    let views: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("views.json")).unwrap())
            .unwrap();
    assert!(views.len() > VIEWS.len(), "transfers are in the fixture");
    for (path, then) in &views {
        let o = strongroom(&[
            "api",
            "--addr",
            &server.base,
            "--key-file",
            admin.to_str().unwrap(),
            "GET",
            path,
        ]);
        assert!(o.status.success(), "{path}: {}", stderr(&o));
        let now: serde_json::Value =
            serde_json::from_str(stdout(&o).lines().nth(1).unwrap_or("null")).unwrap();
        if let Err(at) = still(then, &now, path) {
            panic!("{path}: {at}\nthen: {then}\nnow: {now}");
        }
    }
    let (code, status) = server.get("/v1/status");
    assert_eq!(code, 200, "{status}");
    server.terminate();
    let o = strongroom(&["audit", "verify", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));

    let db_config = match &pg {
        Some(db) => db.config(),
        None => storage::DatabaseConfig::Sqlite {
            path: dir.path().join("strongroom.db"),
        },
    };
    rt.block_on(async {
        let store = storage::Store::connect(&db_config).await.unwrap();
        // The open transfers judged before their judgments were
        // authenticated (schema 32) were, at the first unseal, each
        // against its `transfer.judged` record, once.
        assert!(
            store
                .audit_has("transfer.judgments_authenticated")
                .await
                .unwrap()
        );
        let left = store.open_transfers_unauthenticated().await.unwrap();
        assert!(left.is_empty(), "{left:?}");
        // A later build's schema: refused, and nothing changed.
        let success = if pg.is_some() { "TRUE" } else { "1" };
        let checksum = if pg.is_some() { "'\\x00'" } else { "x'00'" };
        store
            .execute_unchecked(&format!(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (9999, 'a later build', {success}, {checksum}, 0)"
            ))
            .await
            .unwrap();
        store.close().await;
    });
    let o = Command::new(BIN)
        .args(["serve", "--config", cfg])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("schema version 9999, newer than this build's"),
        "{}",
        stderr(&o)
    );
}

/// Whether what the API showed `then` is shown `now`: every field it had,
/// with the same value (a later build may add fields; the fields that
/// record a queued transfer's attempts may move, as nothing is configured
/// to carry them out). The audit log may have grown at its end.
fn still(then: &serde_json::Value, now: &serde_json::Value, at: &str) -> Result<(), String> {
    use serde_json::Value as V;
    const MOVING: &[&str] = &[
        "attempts",
        "last_error",
        "held_at_ms",
        "next_attempt_at_ms",
        "updated_at_ms",
    ];
    match (then, now) {
        (V::Object(a), V::Object(b)) => {
            for (k, v) in a {
                if MOVING.contains(&k.as_str()) {
                    continue;
                }
                let w = b.get(k).ok_or_else(|| format!("{at}.{k}: gone"))?;
                still(v, w, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (V::Array(a), V::Array(b)) => {
            let grows = at.starts_with("/v1/audit");
            if a.len() != b.len() && !(grows && b.len() > a.len()) {
                return Err(format!("{at}: {} items, now {}", a.len(), b.len()));
            }
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                still(v, w, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{at}: {a}, now {b}")),
    }
}

/// Two servers on one PostgreSQL database share the queue: every transfer
/// is claimed, planned, signed and sent by one of them only.
#[test]
fn two_servers_share_one_queue_on_postgres() {
    let rt = rt();
    let db = rt.block_on(TestDb::postgres());
    let c = Custody::new(&db.url);
    let (tx, lines) = std::sync::mpsc::channel();
    let a = c.start(&[], tx.clone());
    let b = c.start(&[], tx);
    const N: usize = 24;
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..N {
        // Requests alternate between the servers.
        let server = if i % 2 == 0 { &a } else { &b };
        let (code, t) = c.api(
            server,
            &c.initiator,
            "POST",
            "/v1/transfers",
            Some(&c.withdrawal("0.01")),
            None,
        );
        assert_eq!(code, 201, "{t}");
        ids.insert(t["id"].as_str().unwrap().to_owned());
    }
    let mut completed = std::collections::BTreeSet::new();
    let done = drive(&lines, 2, Some(&c.anvil), |id, to| {
        if to == "completed" {
            completed.insert(id.to_owned());
        }
        completed == ids
    });
    assert!(done.is_some(), "{}\n{}", a.log_text(), b.log_text());
    // One send each, nonces 0..N exactly, every amount paid once.
    let sends = rt
        .block_on(db.store.eth_sends_in("eip155:31337", &["confirmed"]))
        .unwrap();
    assert_eq!(sends.len(), N);
    let nonces: std::collections::BTreeSet<u64> = sends.iter().map(|s| s.nonce).collect();
    assert_eq!(nonces, (0..N as u64).collect());
    rt.block_on(async {
        let client = eth_client(c.anvil.url()).await;
        let to: chain_eth::EthAddress = DESTINATION.parse().unwrap();
        assert_eq!(
            client.balance(to).await.unwrap(),
            N as u128 * 10_000_000_000_000_000
        );
    });
    // Both servers carried out some of the work.
    let planned = |s: &Server| s.log_text().matches(r#"\"to\":\"signing\""#).count();
    let (pa, pb) = (planned(&a), planned(&b));
    assert_eq!(pa + pb, N, "each transfer planned once");
    assert!(pa > 0 && pb > 0, "both servers took work: {pa} and {pb}");
    a.terminate();
    b.terminate();
    let o = strongroom(&["audit", "verify", "--config", c.config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A Bitcoin withdrawal through the server's API: a wallet's account opened
/// over the API, a deposit recorded from the console, a transfer judged by
/// the policy, batched, signed through the keystore and verified — and the
/// transaction read back and verified again by Bitcoin Core's interpreter.
#[test]
fn bitcoin_withdrawal_through_the_api() {
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let cfg = config.to_str().unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[[bitcoin]]\nnetwork = \"regtest\"\nmax_fee_rate_sat_vb = 50\nmax_fee_sat = 20000\n\
         fee_rate_sat_vb = 4\npoll_seconds = 1\n",
    );
    std::fs::write(&config, text).unwrap();
    let quorum = init_keystore(cfg, &dir.path().join("shares"), 2, 2).join("\n") + "\n";
    let person = |name: &str, role: &str, scope: &str| -> PathBuf {
        api_key(cfg, dir.path(), name, role, scope).0
    };
    let admin = person("admin", "admin", "global");
    let writer = person("writer", "policy-admin", "global");
    let (server, lines) = serve_unsealed(&config, &quorum);
    let (wallet, a) = open_wallet(
        &server,
        &admin,
        "btc-payouts",
        r#"{"network":"bitcoin:regtest"}"#,
    );
    let address = a["address"].as_str().unwrap().to_owned();
    let key = a["key"].as_str().unwrap().to_owned();
    assert!(address.starts_with("bcrt1q"), "{address}");
    let (code, e) = api_call(
        &server,
        &admin,
        "POST",
        &format!("/v1/wallets/{wallet}/accounts"),
        Some(r#"{"network":"bitcoin:mainnet"}"#),
        None,
    );
    assert_eq!(
        (code, e["code"].as_str()),
        (400, Some("not_configured")),
        "{e}"
    );
    let initiator = person("initiator", "initiator", &format!("wallet:{wallet}"));
    let (code, got) = api_call(
        &server,
        &initiator,
        "GET",
        &format!("/v1/wallets/{wallet}"),
        None,
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(got["accounts"][0]["address"], address.as_str());
    // A second wallet, for deposits: an HD account, a new address each.
    let (deposits, hd) = open_wallet(
        &server,
        &admin,
        "btc-deposits",
        r#"{"network":"bitcoin:regtest","backend":"keystore-hd"}"#,
    );
    let depositor = person("depositor", "initiator", &format!("wallet:{deposits}"));

    let document =
        "[[rules]]\nname = \"small\"\namount = { at_most = \"0.01\" }\naction = \"allow\"\n";
    let body =
        serde_json::json!({"change": {"kind": "set_policy", "document": document}}).to_string();
    let (code, p) = api_call(&server, &writer, "POST", "/v1/proposals", Some(&body), None);
    assert_eq!(code, 201, "{p}");
    let id = p["id"].as_str().unwrap();
    assert_eq!(approve_proposal(&server.base, &admin, id), "applied");

    // An output of 100 000 sat paying the wallet's address, from the console.
    let txid = "5e".repeat(32);
    let o = record_btc_deposit(cfg, ("--key", &key), (&txid, 1, 100000), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("for wallet {wallet}")),
        "{}",
        stdout(&o)
    );

    let payee = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw";
    let withdrawal = |amount: &str| {
        serde_json::json!({"wallet": wallet, "asset": "bitcoin:regtest/native", "amount": amount, "destination": payee})
            .to_string()
    };
    // Beyond what the wallet holds (with the fee cap): refused.
    let (code, e) = api_call(
        &server,
        &initiator,
        "POST",
        "/v1/transfers",
        Some(&withdrawal("0.0009")),
        None,
    );
    assert_eq!(
        (code, e["code"].as_str()),
        (409, Some("insufficient_funds")),
        "{e}"
    );
    let (code, e) = api_call(
        &server,
        &initiator,
        "POST",
        "/v1/transfers",
        Some(&withdrawal("0.0005").replace(payee, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")),
        None,
    );
    assert_eq!(code, 400, "a mainnet address on regtest: {e}");
    let (code, t) = api_call(
        &server,
        &initiator,
        "POST",
        "/v1/transfers",
        Some(&withdrawal("0.0005")),
        None,
    );
    assert_eq!(code, 201, "{t}");
    let transfer = t["id"].as_str().unwrap().to_owned();
    let done = drive(&lines, 1, None, |id, to| id == transfer && to == "signed");
    assert!(done.is_some(), "{}", server.log_text());

    let signed = signed_btc_transaction(&server, &initiator, &transfer);
    let spk = regtest_script;
    assert_eq!(signed.input.len(), 1);
    assert_eq!(
        signed.input[0].previous_output.to_string(),
        format!("{txid}:1")
    );
    let prevout = bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(100_000),
        script_pubkey: spk(&address),
    };
    chain_btc::verify_with_core(&signed, &[prevout]).unwrap();
    assert!(
        signed
            .output
            .iter()
            .any(|o| o.script_pubkey == spk(payee) && o.value.to_sat() == 50_000)
    );
    // One account per network: a second one on regtest is refused.
    let (code, e) = api_call(
        &server,
        &admin,
        "POST",
        &format!("/v1/wallets/{wallet}/accounts"),
        Some(r#"{"network":"bitcoin:regtest","backend":"keystore-hd"}"#),
        None,
    );
    assert_eq!((code, e["code"].as_str()), (409, Some("conflict")), "{e}");
    // The HD account: watch-only descriptors with checksums, a test
    // network's tpub; a fresh deposit address once the last one was paid.
    let watch = &hd["watch_only"];
    assert!(watch["xpub"].as_str().unwrap().starts_with("tpub"), "{hd}");
    assert!(
        watch["slip132"].as_str().unwrap().starts_with("vpub"),
        "{hd}"
    );
    let descriptor =
        chain_btc::WalletDescriptor::parse(watch["descriptor"].as_str().unwrap()).unwrap();
    assert_eq!(
        descriptor
            .address_at(0, domain::BitcoinNetwork::Regtest)
            .unwrap()
            .to_string(),
        hd["address"].as_str().unwrap()
    );
    let next = || {
        let (code, a) = api_call(
            &server,
            &depositor,
            "POST",
            &format!("/v1/wallets/{deposits}/addresses"),
            Some(r#"{"network":"bitcoin:regtest"}"#),
            None,
        );
        assert_eq!(code, 200, "{a}");
        a["address"].as_str().unwrap().to_owned()
    };
    // No key without a backup: refused until one holds it, or the risk is
    // accepted for it from the console.
    let (code, refused) = api_call(
        &server,
        &depositor,
        "POST",
        &format!("/v1/wallets/{deposits}/addresses"),
        Some(r#"{"network":"bitcoin:regtest"}"#),
        None,
    );
    assert_eq!(
        (code, refused["code"].as_str()),
        (409, Some("key_not_backed_up")),
        "{refused}"
    );
    let o = strongroom(&[
        "key",
        "accept-unbacked",
        "--config",
        cfg,
        "--key",
        hd["key"].as_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = next();
    assert_eq!(first, hd["address"].as_str().unwrap());
    assert_eq!(next(), first, "unused: the same address again");
    let o = record_btc_deposit(
        cfg,
        ("--address", &first),
        (&"6f".repeat(32), 0, 30000),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(next(), first, "paid: a fresh one");
    // With its derivation, for watch-only import; an admin (who may read
    // the wallet but not initiate) is told 403, not "no such wallet".
    let (code, a) = api_call(
        &server,
        &depositor,
        "POST",
        &format!("/v1/wallets/{deposits}/addresses"),
        Some(r#"{"network":"bitcoin:regtest"}"#),
        None,
    );
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["derivation_path"], "m/84'/1'/0'/0/1", "{a}");
    assert_eq!(
        (a["chain"].as_u64(), a["index"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(a["key"], hd["key"]);
    let (code, _) = api_call(
        &server,
        &admin,
        "POST",
        &format!("/v1/wallets/{deposits}/addresses"),
        Some(r#"{"network":"bitcoin:regtest"}"#),
        None,
    );
    assert_eq!(code, 403);
    server.terminate();
    let o = strongroom(&["audit", "verify", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A wallet whose keys never exist whole: three real signer processes
/// make them for the wallet — an Ethereum key (CGGMP24, after their
/// auxiliary-information ceremony from the console) and a Taproot key
/// (FROST); withdrawals approved by two approvers go through the queue,
/// each signer checks the transaction and the approvers' signatures
/// itself; anvil mines the Ethereum one (the recipient is paid), Bitcoin
/// Core's interpreter verifies the Taproot one.
#[test]
fn withdrawals_under_threshold_keys_on_ethereum_and_bitcoin() {
    use chain_eth_client::testing::Anvil;
    let anvil = Anvil::start();
    // A 6-decimal token the nodes and the server both know.
    let (token, dev) = rt().block_on(async {
        let client = eth_client(anvil.url()).await;
        let dev = chain_eth_client::testing::DevWallet::new(0).await;
        let token = chain_eth_client::testing::deploy_test_token(&client, &dev).await;
        (token, dev)
    });
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let cfg = config.to_str().unwrap().to_owned();
    add_ethereum(&config, 31337, anvil.url());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[ethereum.tokens]]\nsymbol = \"TUSD\"\ncontract = \"{token}\"\n\
         decimals = 6\nmax_gas = 200000\n"
    ));
    text.push_str(
        "\n[[bitcoin]]\nnetwork = \"regtest\"\nmax_fee_rate_sat_vb = 50\nmax_fee_sat = 20000\n\
         fee_rate_sat_vb = 4\npoll_seconds = 1\n",
    );
    text.push_str(&format!(
        "\n[console]\nrp_id = \"localhost\"\norigins = [\"{PASSKEY_ORIGIN}\"]\n"
    ));
    std::fs::write(&config, text).unwrap();
    let quorum = init_keystore(&cfg, &dir.path().join("shares"), 2, 2).join("\n") + "\n";

    // Two approvers, their signing keys made where they sit; a third who
    // approves with a passkey.
    let approver_keys: Vec<(PathBuf, String)> = (1..=2)
        .map(|i| approver_key_in(dir.path(), &format!("approver{i}")))
        .collect();
    let passkey = Passkey::new();
    // Three signer nodes, each enrolling the three approvers and needing
    // two of them.
    let mut policy = keys_mpc::testing::policy(false);
    policy.approvers = approver_keys.iter().map(|(_, p)| p.clone()).collect();
    policy.passkey_approvers = vec![passkey.enrolment()];
    policy.min_approvals = 2;
    policy.unapproved_limit = 0;
    policy.ethereum = Some(keys_mpc::cosign::EthereumPolicy {
        network: "eip155:31337".into(),
        max_fee: 100_000_000_000_000_000,
        unapproved_limit: 0,
        tokens: vec![keys_mpc::cosign::EthereumToken {
            symbol: "TUSD".into(),
            contract: token.to_string(),
            decimals: 6,
            unapproved_limit: 0,
        }],
    });
    let mut signers = signer_nodes::Signers::start_with(3, policy);
    let identity = dir.path().join("signer-identity");
    std::fs::create_dir_all(&identity).unwrap();
    signers.server.save(&identity).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[threshold]\nidentity_dir = {identity:?}\nthreshold = 2\npresignatures = 1\n"
    ));
    for (p, addr) in signers.publics.iter().zip(&signers.addrs) {
        text.push_str(&format!(
            "\n[[threshold.signers]]\nindex = {}\naddr = {addr:?}\nfingerprint = {:?}\n",
            p.index, p.fingerprint
        ));
    }
    std::fs::write(&config, text).unwrap();
    let o = strongroom(&["signer", "setup-ecdsa", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("auxiliary information made by 3 signers"),
        "{}",
        stdout(&o)
    );

    let person = |name: &str, role: &str, scope: &str| api_key(&cfg, dir.path(), name, role, scope);
    let (admin, _) = person("admin", "admin", "global");
    let (writer, _) = person("writer", "policy-admin", "global");

    let (server, lines) = serve_unsealed(&config, &quorum);
    let (wallet, a) = open_wallet(
        &server,
        &admin,
        "cold",
        r#"{"network":"eip155:31337","backend":"threshold"}"#,
    );
    let address = a["address"].as_str().unwrap().to_owned();
    let eth_key = a["key"].as_str().unwrap().to_owned();
    let scope = format!("wallet:{wallet}");
    let (initiator, _) = person("initiator", "initiator", &scope);
    let approvers: Vec<(PathBuf, String)> = (1..=3)
        .map(|i| person(&format!("approver{i}"), "approver", &scope))
        .collect();
    rt().block_on(async {
        let client = eth_client(anvil.url()).await;
        client
            .raw_call(
                "anvil_setBalance",
                serde_json::json!([address, "0x56bc75e2d63100000"]),
            )
            .await
            .unwrap();
        // In a block: balances are read as of one.
        chain_eth_client::testing::mine(&client, 1).await;
    });

    // The policy: every withdrawal needs both approvers; their keys
    // registered by the admin.
    // The policy: small ether payments allowed by the server alone (the
    // nodes, which need two approvals for anything, will refuse them);
    // everything else needs both approvers; their keys registered by the
    // admin.
    let document = format!(
        "[[groups]]\nname = \"approvers\"\nmembers = [\"{}\", \"{}\", \"{}\"]\n\n\
         [[rules]]\nname = \"dust\"\nassets = [\"eip155:31337/native\"]\n\
         amount = {{ at_most = \"0.01\" }}\naction = \"allow\"\n\n\
         [[rules]]\nname = \"all\"\naction = \"require_approval\"\n\
         approvals = {{ group = \"approvers\", threshold = 2 }}\n",
        approvers[0].1, approvers[1].1, approvers[2].1
    );
    let body =
        serde_json::json!({"change": {"kind": "set_policy", "document": document}}).to_string();
    let (code, p) = api_call(&server, &writer, "POST", "/v1/proposals", Some(&body), None);
    assert_eq!(code, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(approve_proposal(&server.base, &admin, &id), "applied");
    let keys = approver_keys
        .iter()
        .map(|(_, public)| public.clone())
        .chain([passkey.approver_key()]);
    for ((_, principal), public) in approvers.iter().zip(keys) {
        let body = serde_json::json!({"change": {"kind": "register_approver_key", "principal": principal, "public_key": public}}).to_string();
        let (code, p) = api_call(&server, &admin, "POST", "/v1/proposals", Some(&body), None);
        assert!(code < 300 && p["state"] == "open", "{p}");
        let id = p["id"].as_str().unwrap();
        assert_eq!(approve_proposal(&server.base, &admin, id), "applied");
    }

    // A withdrawal requested by the initiator (201).
    let request = |wallet: &str, asset: &str, amount: &str, to: &str| {
        post_transfer(&server, &initiator, (wallet, asset, amount, to))
    };
    let t = request(&wallet, "eip155:31337/native", "1.5", DESTINATION);
    assert_eq!(t["state"], "pending_approval");
    let transfer = t["id"].as_str().unwrap().to_owned();
    // Both approvers sign their votes where they sit.
    let approve_both = |transfer: &str| {
        for ((key, _), (sign, _)) in approvers.iter().zip(&approver_keys) {
            let o = strongroom(&[
                "approve",
                "--addr",
                &server.base,
                "--key-file",
                key.to_str().unwrap(),
                "--approver-key",
                sign.to_str().unwrap(),
                "--transfer",
                transfer,
                "--yes",
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
        }
    };
    // Approved by both, carried out and confirmed on anvil.
    let completed = |transfer: &str| {
        approve_both(transfer);
        let done = drive(&lines, 1, Some(&anvil), |id, to| {
            id == transfer && matches!(to, "completed" | "failed" | "blocked")
        });
        assert_eq!(done.map(|d| d.1).as_deref(), Some("completed"));
    };
    let wei_at = |address: &str| {
        rt().block_on(async {
            let client = eth_client(anvil.url()).await;
            let held = client
                .raw_call("eth_getBalance", serde_json::json!([address, "latest"]))
                .await
                .unwrap();
            u128::from_str_radix(held.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        })
    };
    completed(&transfer);
    assert_eq!(wei_at(DESTINATION), 1_500_000_000_000_000_000, "1.5 ETH");
    for i in 1..=3 {
        let log = signers.audit_log(i);
        assert!(log.contains("mpc.ecdsa.aux"), "node {i}");
    }
    let signed = (1..=3)
        .filter(|i| signers.audit_log(*i).contains("mpc.sign.share"))
        .count();
    assert_eq!(signed, 2, "two of three signers gave partial signatures");

    // An ERC-20 withdrawal under the same key: the nodes check the call
    // against the token they know, then sign.
    let holder: chain_eth::EthAddress = address.parse().unwrap();
    let tokens_at = |who: chain_eth::EthAddress| {
        rt().block_on(async {
            let client = eth_client(anvil.url()).await;
            client.erc20_balance(token, who).await.unwrap()
        })
    };
    rt().block_on(async {
        let client = eth_client(anvil.url()).await;
        dev.transact(&client, |nonce, fees| {
            chain_eth::TxPlan::erc20(31337, nonce, token, holder, 100_000_000, 100_000, fees)
        })
        .await;
        chain_eth_client::testing::mine(&client, 3).await;
    });
    let tusd = format!("eip155:31337/erc20:{}", token.to_lower_hex());
    let t = request(&wallet, &tusd, "12.5", DESTINATION);
    assert_eq!(t["state"], "pending_approval", "{t}");
    completed(t["id"].as_str().unwrap());
    assert_eq!(tokens_at(DESTINATION.parse().unwrap()), 12_500_000);
    assert_eq!(tokens_at(holder), 87_500_000);

    // Approved by an Ed25519 approver and a passkey approver: every node
    // verifies the passkey's WebAuthn assertion against its own relying
    // party, and the withdrawal completes.
    let t = request(&wallet, "eip155:31337/native", "0.25", DESTINATION);
    let transfer = t["id"].as_str().unwrap().to_owned();
    let o = strongroom(&[
        "approve",
        "--addr",
        &server.base,
        "--key-file",
        approvers[0].0.to_str().unwrap(),
        "--approver-key",
        approver_keys[0].0.to_str().unwrap(),
        "--transfer",
        &transfer,
        "--yes",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let vote = passkey.approval(&t, PASSKEY_ORIGIN);
    let path = format!("/v1/transfers/{transfer}/approvals");
    // Made on a page of another origin: refused by the server.
    let elsewhere = passkey.approval(&t, "http://localhost:9999");
    let (code, e) = api_call(
        &server,
        &approvers[2].0,
        "POST",
        &path,
        Some(&elsewhere),
        None,
    );
    assert_eq!(
        (code, e["code"].as_str()),
        (400, Some("bad_approval_signature")),
        "{e}"
    );
    let (code, a) = api_call(&server, &approvers[2].0, "POST", &path, Some(&vote), None);
    assert_eq!(code, 200, "{a}");
    let done = drive(&lines, 1, Some(&anvil), |id, to| {
        id == transfer && matches!(to, "completed" | "failed" | "blocked")
    });
    assert_eq!(
        done.map(|d| d.1).as_deref(),
        Some("completed"),
        "{}",
        server.log_text()
    );
    assert_eq!(
        wei_at(DESTINATION),
        1_750_000_000_000_000_000,
        "1.5 + 0.25 ETH"
    );

    // Bitcoin: a Taproot account on the same nodes, a deposit, a payout.
    let (code, a) = api_call(
        &server,
        &admin,
        "POST",
        &format!("/v1/wallets/{wallet}/accounts"),
        Some(r#"{"network":"bitcoin:regtest","backend":"threshold"}"#),
        None,
    );
    assert_eq!(code, 201, "{a}");
    let btc_address = a["address"].as_str().unwrap().to_owned();
    assert!(btc_address.starts_with("bcrt1p"), "{btc_address}");
    let deposit = "7a".repeat(32);
    let o = record_btc_deposit(
        &cfg,
        ("--key", a["key"].as_str().unwrap()),
        (&deposit, 0, 100000),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let payee = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw";
    // A payout requested, approved by both, signed by the nodes: its send
    // and its transaction.
    let pay_btc = |amount: &str| {
        let t = request(&wallet, "bitcoin:regtest/native", amount, payee);
        let transfer = t["id"].as_str().unwrap().to_owned();
        approve_both(&transfer);
        let done = drive(&lines, 1, None, |id, to| {
            id == transfer && matches!(to, "signed" | "failed" | "blocked")
        });
        assert_eq!(
            done.map(|d| d.1).as_deref(),
            Some("signed"),
            "{}",
            server.log_text()
        );
        let (_, t) = api_call(
            &server,
            &initiator,
            "GET",
            &format!("/v1/transfers/{transfer}"),
            None,
            None,
        );
        let (code, s) = api_call(
            &server,
            &initiator,
            "GET",
            &format!("/v1/btc/sends/{}", t["btc_send"].as_str().unwrap()),
            None,
            None,
        );
        assert_eq!(code, 200, "{s}");
        let raw = hex::decode(s["raw"].as_str().unwrap()).unwrap();
        let tx: bitcoin::Transaction = bitcoin::consensus::deserialize(&raw).unwrap();
        (s, tx)
    };
    let (_, tx) = pay_btc("0.0005");
    let spk = |a: &str| {
        chain_btc::BtcAddress::parse(a, domain::BitcoinNetwork::Regtest)
            .unwrap()
            .script_pubkey()
    };
    let prevout = bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(100_000),
        script_pubkey: spk(&btc_address),
    };
    // A key-path spend: one 64-byte signature, accepted by Core.
    assert_eq!(tx.input[0].witness.len(), 1);
    assert_eq!(tx.input[0].witness.nth(0).map(<[u8]>::len), Some(64));
    chain_btc::verify_with_core(&tx, &[prevout]).unwrap();
    assert!(
        tx.output
            .iter()
            .any(|o| o.script_pubkey == spk(payee) && o.value.to_sat() == 50_000)
    );

    // The threshold ECDSA key rotates (CGGMP24 has no share refresh): a new
    // key among the three nodes for the same wallet, and a sweep of its
    // ether, which the nodes check and sign with the old key like any other
    // approved transfer.
    let o = strongroom_with_input(
        &["key", "rotate", "--config", &cfg, "--key", &eth_key],
        &quorum,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let new_address = out
        .lines()
        .find_map(|l| {
            l.split_once(" to ")
                .filter(|_| l.starts_with("account of wallet"))
        })
        .map(|(_, to)| to.trim().to_owned())
        .unwrap_or_else(|| panic!("{out}"));
    // One sweep per asset it holds: the token's, then the ether's.
    let sweeps: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("sweep transfer "))
        .collect();
    assert_eq!(sweeps.len(), 2, "{out}");
    for sweep in sweeps {
        completed(sweep);
    }
    let held = wei_at(&new_address);
    assert!(held > 98_000_000_000_000_000_000, "{held} wei swept");
    assert_eq!(tokens_at(new_address.parse().unwrap()), 87_500_000);

    // A payment the server's policy lets through without approvals, which
    // the nodes' own policy does not: they refuse, and the transfer's
    // history says so (it stays in `signing`, not paid).
    let t = request(&wallet, "eip155:31337/native", "0.001", DESTINATION);
    let transfer = t["id"].as_str().unwrap().to_owned();
    loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(90))
            .unwrap()
            .unwrap();
        if line.contains("the signer nodes refused") && line.contains(&transfer) {
            break;
        }
    }
    let (_, t) = api_call(
        &server,
        &initiator,
        "GET",
        &format!("/v1/transfers/{transfer}"),
        None,
        None,
    );
    assert_eq!(t["state"], "signing", "{t}");
    let why = t["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["why"].as_str())
        .find(|w| w.starts_with("the signer nodes refused"))
        .unwrap_or_else(|| panic!("no refusal in {t}"))
        .to_owned();
    assert!(why.contains("approvals"), "{why}");

    // The Taproot key's shares refreshed without signer 3 (its machine is
    // suspect): the same key and address; 1 and 2 hold new shares.
    let btc_key = a["key"].as_str().unwrap().to_owned();
    let refresh = |extra: &[&str]| {
        let mut args = vec!["key", "refresh", "--config", &cfg, "--key", &btc_key];
        args.extend_from_slice(extra);
        strongroom_with_input(&args, &quorum)
    };
    // Removing two of three would leave less than the threshold: refused.
    let o = refresh(&["--remove", "2", "--remove", "3"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("below its threshold of 2"),
        "{}",
        stderr(&o)
    );
    let o = refresh(&["--remove", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("signers 1, 2 hold new shares of the same key"),
        "{out}"
    );
    assert!(out.contains("removed: signer 3"), "{out}");
    // Every transfer the nodes say they gave a share for is one this
    // database holds (the three-way check finds nothing).
    let o = strongroom(&["reconcile", "--config", &cfg]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(", 0 findings"), "{}", stdout(&o));
    // An ECDSA key has no refresh: it rotates (above).
    let o = strongroom_with_input(
        &["key", "refresh", "--config", &cfg, "--key", &eth_key],
        &quorum,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no share refresh"), "{}", stderr(&o));
    // Signer 3 is gone for good; 1 and 2 sign a payout from the same
    // address with their new shares, accepted by Core.
    signers.kill(3);
    let o = record_btc_deposit(&cfg, ("--key", &btc_key), (&"7b".repeat(32), 1, 80000), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (s, tx) = pay_btc("0.0003");
    // The outputs it spends, as the approved PSBT names them.
    let psbt =
        bitcoin::Psbt::deserialize(&hex::decode(s["psbt"].as_str().unwrap()).unwrap()).unwrap();
    let prevouts: Vec<bitcoin::TxOut> = psbt
        .inputs
        .iter()
        .map(|i| i.witness_utxo.clone().unwrap())
        .collect();
    assert!(
        prevouts
            .iter()
            .all(|p| p.script_pubkey == spk(&btc_address))
    );
    chain_btc::verify_with_core(&tx, &prevouts).unwrap();
    for i in 1..=2 {
        assert!(
            signers.audit_log(i).contains("mpc.key.refreshed"),
            "node {i}"
        );
    }
    assert!(!signers.audit_log(3).contains("mpc.key.refreshed"));
    // Signer 2 down too: one of the two needed answers. The transfer waits
    // in `signing` and says why, in its last error and its history.
    signers.kill(2);
    let o = record_btc_deposit(&cfg, ("--key", &btc_key), (&"7c".repeat(32), 1, 80000), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = request(&wallet, "bitcoin:regtest/native", "0.0002", payee);
    let transfer = t["id"].as_str().unwrap().to_owned();
    approve_both(&transfer);
    let noted = wait_for_log(&lines, "no quorum of signer nodes answered");
    assert!(noted.contains(&transfer), "{noted}");
    let (_, t) = api_call(
        &server,
        &initiator,
        "GET",
        &format!("/v1/transfers/{transfer}"),
        None,
        None,
    );
    assert_eq!(t["state"], "signing", "{t}");
    let why = t["last_error"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("no quorum of signer nodes answered: "),
        "{t}"
    );
    assert!(
        t.to_string().contains("no quorum of signer nodes answered"),
        "{t}"
    );
    // The status names each node, whether it answered, and its protocol.
    let (code, st) = api_call(&server, &admin, "GET", "/v1/status", None, None);
    assert_eq!(code, 200, "{st}");
    let deps = &st["dependencies"];
    assert_eq!(deps["signer_protocol"], 1, "{st}");
    let node = |i: u64| {
        deps["signer_nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == i)
            .unwrap_or_else(|| panic!("no node {i} in {st}"))
            .clone()
    };
    assert_eq!(node(1)["reachable"], true, "{st}");
    assert_eq!(node(1)["protocol"], 1, "{st}");
    assert_eq!(node(2)["reachable"], false, "{st}");
    server.terminate();
}

/// The binary these tests run carries the crash, fault and test-prime
/// hooks (feature `test-hooks`, from the dev-dependencies), so the crash
/// tests test something; a release build carries none (xtask tidy checks
/// no normal dependency enables the feature; scripts/dev greps the release
/// binary with the same names).
#[test]
fn the_test_binary_carries_the_test_hooks() {
    let bin = std::fs::read(env!("CARGO_BIN_EXE_strongroom")).unwrap();
    for name in [
        "STRONGROOM_CRASH_AT",
        "STRONGROOM_SIGNER_CRASH_AT",
        "STRONGROOM_SIGNER_FAULT",
        "STRONGROOM_SIGNER_TEST_PRIMES",
    ] {
        assert!(
            bin.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name} missing from the test binary"
        );
    }
}

/// The restore drill: a server with a wallet, a funded key, a completed
/// transfer, one broadcast and one queued at the backup; after the backup
/// the lost server sends both (the chain moves past the copy); the machine
/// is lost. Restored elsewhere and unsealed, the server asks the chain
/// before signing anything: the broadcast one resumes and completes
/// without a second signature; the queued one, which the chain shows may
/// have been paid, goes to a person (its key frozen, nothing signed for
/// it again); once they cancel it and the quorum ends the freeze, a new
/// withdrawal completes on the next unused nonce. Every amount is paid
/// exactly once, and the audit chain verifies across the epoch.
fn restore_drill(db_url: &str, fresh_url: &str) {
    use age::secrecy::ExposeSecret;
    let c = Custody::new(db_url);
    let cfg = c.config.to_str().unwrap().to_owned();
    let id = age::x25519::Identity::generate();
    let identity = c.dir.path().join("backup-identity.txt");
    std::fs::write(&identity, format!("{}\n", id.to_string().expose_secret())).unwrap();
    std::fs::write(
        c.dir.path().join("recipients.txt"),
        format!("{}\n", id.to_public()),
    )
    .unwrap();
    let mut text = std::fs::read_to_string(&c.config).unwrap();
    text.push_str("[backup]\nrecipients_file = \"recipients.txt\"\n");
    std::fs::write(&c.config, &text).unwrap();
    let post = |server: &Server, amount: &str, key: &str| {
        c.api(
            server,
            &c.initiator,
            "POST",
            "/v1/transfers",
            Some(&c.withdrawal(amount)),
            Some(key),
        )
    };
    let get = |server: &Server, id: &str| {
        c.api(
            server,
            &c.admin,
            "GET",
            &format!("/v1/transfers/{id}"),
            None,
            None,
        )
        .1
    };

    // Completed before the backup.
    let (tx, lines) = std::sync::mpsc::channel();
    let server = c.start(&[], tx);
    let (code, t1) = post(&server, "0.1", "drill-1");
    assert_eq!(code, 201, "{t1}");
    let t1 = t1["id"].as_str().unwrap().to_owned();
    assert!(
        drive(&lines, 1, Some(&c.anvil), |t, to| t == t1
            && to == "completed")
        .is_some()
    );
    server.terminate();
    // Broadcast, not yet in a block, at the backup.
    let (tx, lines) = std::sync::mpsc::channel();
    let server = c.start(&[("STRONGROOM_CRASH_AT", "after_broadcast")], tx);
    let (code, t2) = post(&server, "0.2", "drill-2");
    assert_eq!(code, 201, "{t2}");
    let t2 = t2["id"].as_str().unwrap().to_owned();
    assert_eq!(drive(&lines, 1, None, |_, _| false), None);
    // Queued at the backup (the server died right after taking it).
    let (tx, lines) = std::sync::mpsc::channel();
    let _server = c.start(&[("STRONGROOM_CRASH_AT", "after_intent_insert")], tx);
    assert_eq!(post(&_server, "0.3", "drill-3").0, 0);
    assert_eq!(drive(&lines, 1, None, |_, _| false), None);
    let backup = c.dir.path().join("drill.srbk");
    let o = strongroom(&[
        "backup",
        "create",
        "--config",
        &cfg,
        "--out",
        backup.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // The lost server goes on after the backup: both reach the chain.
    let (tx, lines) = std::sync::mpsc::channel();
    let server = c.start(&[], tx);
    let (code, t3) = post(&server, "0.3", "drill-3");
    assert_eq!(code, 200, "the queued one: {t3}");
    let t3 = t3["id"].as_str().unwrap().to_owned();
    let mut done = std::collections::BTreeSet::new();
    for t in [&t2, &t3] {
        if get(&server, t)["state"] == "completed" {
            done.insert(t.clone());
        }
    }
    if done.len() < 2 {
        drive(&lines, 1, Some(&c.anvil), |t, to| {
            if to == "completed" {
                done.insert(t.to_owned());
            }
            done.len() == 2
        });
    }
    server.terminate();

    // The machine is lost; a fresh one has the configuration, the audit
    // key, the backup, its identity and the checkpoints kept elsewhere.
    let fresh = tempfile::tempdir().unwrap();
    let fresh_cfg = fresh.path().join("strongroom.toml");
    std::fs::write(&fresh_cfg, text.replace(db_url, fresh_url)).unwrap();
    for f in ["audit.key", "recipients.txt"] {
        std::fs::copy(c.dir.path().join(f), fresh.path().join(f)).unwrap();
    }
    let kept = fresh.path().join("kept.checkpoints");
    std::fs::copy(c.dir.path().join("audit.checkpoints"), &kept).unwrap();
    let fcfg = fresh_cfg.to_str().unwrap();
    let o = strongroom(&[
        "restore",
        "--config",
        fcfg,
        "--identity",
        identity.to_str().unwrap(),
        "--from",
        backup.to_str().unwrap(),
        "--later-checkpoints",
        kept.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut server = Server::start(&fresh_cfg);
    let (tx, lines) = std::sync::mpsc::channel();
    server.follow_log(tx);
    let reconciled = wait_for_log(&lines, "restore reconciled with the chains");
    assert!(reconciled.contains("\"review\":1"), "{reconciled}");
    for share in c.quorum.lines() {
        let o = strongroom_with_input(
            &["operator", "unseal", "--addr", &server.base],
            &format!("{share}\n"),
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // The broadcast one resumes: its transaction is on chain.
    if get(&server, &t2)["state"] != "completed" {
        assert!(
            drive(&lines, 1, Some(&c.anvil), |t, to| t == t2
                && to == "completed")
            .is_some()
        );
    }
    let history = get(&server, &t2)["history"].to_string();
    assert_eq!(
        history.matches("\"signed\"").count(),
        1,
        "signed once: {history}"
    );
    // The queued one went to a person: its key is frozen, it is not signed.
    let (_, freezes) = c.api(&server, &c.admin, "GET", "/v1/freezes", None, None);
    let freeze = freezes
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("to review")
        })
        .unwrap_or_else(|| panic!("{freezes}"))
        .clone();
    assert!(
        freeze["scope"].as_str().unwrap().starts_with("key:"),
        "{freeze}"
    );
    assert_eq!(get(&server, &t3)["state"], "queued");
    let (_, log) = c.api(&server, &c.admin, "GET", "/v1/audit?limit=1000", None, None);
    assert!(
        log.to_string().contains(&format!("transfer:{t3}")),
        "named for review"
    );
    // The person sees on chain that it was paid, cancels it; the quorum
    // ends the freeze.
    let (code, body) = c.api(
        &server,
        &c.initiator,
        "POST",
        &format!("/v1/transfers/{t3}/cancel"),
        None,
        None,
    );
    assert_eq!(code, 200, "{body}");
    let release = serde_json::json!({"change": {"kind": "release_freeze",
        "freeze_id": freeze["id"]}})
    .to_string();
    let (code, p) = c.api(
        &server,
        &c.admin,
        "POST",
        "/v1/proposals",
        Some(&release),
        None,
    );
    assert_eq!(code, 201, "{p}");
    assert_eq!(
        approve_proposal(&server.base, &c.admin, p["id"].as_str().unwrap()),
        "applied"
    );
    // A new withdrawal completes, on the next nonce the chain has not used.
    let (code, t4) = post(&server, "0.4", "drill-4");
    assert_eq!(code, 201, "{t4}");
    let t4 = t4["id"].as_str().unwrap().to_owned();
    assert!(
        drive(&lines, 1, Some(&c.anvil), |t, to| t == t4
            && to == "completed")
        .is_some()
    );
    server.terminate();
    rt().block_on(async {
        let client = eth_client(c.anvil.url()).await;
        let from: chain_eth::EthAddress = c.sender.parse().unwrap();
        let to: chain_eth::EthAddress = DESTINATION.parse().unwrap();
        let nonce = client
            .nonce(from, chain_eth_client::NonceTag::Latest)
            .await
            .unwrap();
        assert_eq!(nonce, 4, "one transaction each");
        assert_eq!(
            client.balance(to).await.unwrap(),
            1_000_000_000_000_000_000,
            "each paid once"
        );
    });
    let o = strongroom(&["audit", "verify", "--config", fcfg]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("named by a restore's epoch record"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn restore_drill_sqlite() {
    restore_drill("sqlite://strongroom.db", "sqlite://strongroom.db");
}

#[test]
fn restore_drill_postgres() {
    let rt = rt();
    let (a, b) = rt.block_on(async { (TestDb::postgres().await, TestDb::postgres().await) });
    restore_drill(&a.url, &b.url);
    drop(rt);
}

/// The compromise drill, with the runbook's commands
/// (docs/runbooks/suspected-key-compromise.md): the key frozen from the
/// console, marked compromised, rotated with a sweep; the quorum ends the
/// freeze; the sweep — the one thing the compromised key still signs —
/// moves its ether to the successor through the pipeline; the wallet pays
/// from the successor afterwards.
fn compromise_drill(db_url: &str) {
    let c = Custody::new(db_url);
    let cfg = c.config.to_str().unwrap().to_owned();
    let (tx, lines) = std::sync::mpsc::channel();
    let server = c.start(&[], tx);
    let (code, t1) = c.api(
        &server,
        &c.initiator,
        "POST",
        "/v1/transfers",
        Some(&c.withdrawal("0.1")),
        Some("before"),
    );
    assert_eq!(code, 201, "{t1}");
    let t1 = t1["id"].as_str().unwrap().to_owned();
    assert!(
        drive(&lines, 1, Some(&c.anvil), |t, to| t == t1
            && to == "completed")
        .is_some()
    );

    let scope = format!("key:{}", c.key);
    let o = strongroom(&[
        "freeze",
        "--config",
        &cfg,
        "--scope",
        &scope,
        "--reason",
        "suspected compromise",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let freeze = stdout(&o)
        .lines()
        .find_map(|l| {
            l.split_once("freeze id ")
                .map(|(_, id)| id.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{}", stdout(&o)));
    let o = strongroom(&[
        "key",
        "set-state",
        "--config",
        &cfg,
        "--key",
        &c.key,
        "--state",
        "compromised",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("key {} is compromised", c.key));
    let o = strongroom_with_input(
        &[
            "key",
            "rotate",
            "--config",
            &cfg,
            "--key",
            &c.key,
            "--cryptoperiod-days",
            "90",
        ],
        &c.quorum,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("which now signs only sweeps to it"), "{out}");
    let moved = out
        .lines()
        .find_map(|l| {
            l.split_once(" to ")
                .filter(|_| l.starts_with("account of wallet"))
        })
        .map(|(_, to)| to.to_owned())
        .unwrap_or_else(|| panic!("{out}"));
    let sweep = out
        .lines()
        .find_map(|l| l.strip_prefix("sweep transfer "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{out}"));
    // Frozen: nothing is signed until the quorum ends the freeze.
    let (_, t) = c.api(
        &server,
        &c.admin,
        "GET",
        &format!("/v1/transfers/{sweep}"),
        None,
        None,
    );
    assert_eq!(t["state"], "queued", "{t}");
    let release =
        serde_json::json!({"change": {"kind": "release_freeze", "freeze_id": freeze}}).to_string();
    let (code, p) = c.api(
        &server,
        &c.admin,
        "POST",
        "/v1/proposals",
        Some(&release),
        None,
    );
    assert_eq!(code, 201, "{p}");
    assert_eq!(
        approve_proposal(&server.base, &c.admin, p["id"].as_str().unwrap()),
        "applied"
    );
    assert!(
        drive(&lines, 1, Some(&c.anvil), |t, to| t == sweep
            && to == "completed")
        .is_some()
    );
    // The wallet pays from the successor now.
    let (code, t2) = c.api(
        &server,
        &c.initiator,
        "POST",
        "/v1/transfers",
        Some(&c.withdrawal("0.2")),
        Some("after"),
    );
    assert_eq!(code, 201, "{t2}");
    let t2 = t2["id"].as_str().unwrap().to_owned();
    assert!(
        drive(&lines, 1, Some(&c.anvil), |t, to| t == t2
            && to == "completed")
        .is_some()
    );
    server.terminate();
    rt().block_on(async {
        let client = eth_client(c.anvil.url()).await;
        let old: chain_eth::EthAddress = c.sender.parse().unwrap();
        let new: chain_eth::EthAddress = moved.parse().unwrap();
        let latest = chain_eth_client::NonceTag::Latest;
        assert_eq!(
            client.nonce(old, latest).await.unwrap(),
            2,
            "the payment and the sweep"
        );
        assert_eq!(
            client.nonce(new, latest).await.unwrap(),
            1,
            "the payment after"
        );
        assert!(
            client.balance(old).await.unwrap() < 100_000_000_000_000_000,
            "swept"
        );
        assert!(client.balance(new).await.unwrap() > 99 * 1_000_000_000_000_000_000);
    });
    let o = strongroom(&["audit", "verify", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn compromise_drill_sqlite() {
    compromise_drill("sqlite://strongroom.db");
}

#[test]
fn compromise_drill_postgres() {
    let rt = rt();
    let db = rt.block_on(TestDb::postgres());
    compromise_drill(&db.url);
    drop(rt);
}

/// A share holder is gone (docs/runbooks/lost-unseal-share-holder.md): a
/// threshold of the remaining holders splits the root again; the server
/// refuses the old shares and unseals with the new ones.
#[test]
fn a_lost_share_holder_is_replaced_by_a_new_split() {
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let cfg = config.to_str().unwrap();
    let old = init_keystore(cfg, &dir.path().join("shares"), 3, 2);
    let new_dir = dir.path().join("new-shares");
    let o = strongroom_with_input(
        &[
            "key",
            "reshare",
            "--config",
            cfg,
            "--threshold",
            "2",
            "--shares",
            "3",
            "--share-dir",
            new_dir.to_str().unwrap(),
        ],
        &format!("{}\n{}\n", old[0], old[2]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("new unseal shares (2 of 3); the old ones are refused"),
        "{}",
        stdout(&o)
    );
    let new: Vec<String> = (1..=3)
        .map(|i| {
            std::fs::read_to_string(new_dir.join(format!("share-{i}.txt")))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    let server = Server::start(&config);
    let unseal = |share: &str| {
        strongroom_with_input(
            &["operator", "unseal", "--addr", &server.base],
            &format!("{share}\n"),
        )
    };
    for s in &old {
        let o = unseal(s);
        assert!(
            !o.status.success(),
            "an old share is refused: {}",
            stdout(&o)
        );
    }
    assert!(unseal(&new[0]).status.success());
    assert!(unseal(&new[2]).status.success());
    let o = strongroom(&["operator", "status", "--addr", &server.base]);
    assert_eq!(stdout(&o).trim(), "unsealed", "{}", stderr(&o));
    server.terminate();
    let o = strongroom(&["audit", "verify", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Runtime code of a token that answers every call but `balanceOf` with
/// `false` (32 zero bytes) and says every holder has 10^30: a transfer
/// "succeeds" on chain and moves nothing.
const FALSE_TOKEN: &str = "600035 60e01c 6370a08231 14 601457 6020 6000 f3 5b 6f0000000c9f2c9cd04674edea40000000 600052 6020 6000 f3";
/// The same, but every call except `balanceOf` reverts.
const REVERTING_TOKEN: &str = "600035 60e01c 6370a08231 14 601457 6000 6000 fd 5b 6f0000000c9f2c9cd04674edea40000000 600052 6020 6000 f3";

#[test]
fn erc20_withdrawals_through_the_api_sqlite() {
    erc20_withdrawals_through_the_api("sqlite://strongroom.db");
}

#[test]
fn erc20_withdrawals_through_the_api_postgres() {
    let rt = rt();
    let db = rt.block_on(TestDb::postgres());
    erc20_withdrawals_through_the_api(&db.url);
}

/// ERC-20 end to end through `POST /v1/transfers`: a 6-decimal and an
/// 18-decimal token (the test token deployed twice, configured with each),
/// policy limits in token units, an approval, confirmation on anvil and
/// the recipient's balance read back; a token whose `transfer` answers
/// false and one whose `transfer` reverts end `failed` with the reason and
/// nothing sent; payments to the token contract itself or to the zero
/// address are refused when requested.
fn erc20_withdrawals_through_the_api(db_url: &str) {
    use chain_eth::TxPlan;
    use chain_eth_client::testing::{Anvil, DevWallet, deploy_test_token};
    let anvil = Anvil::start();
    let rt = rt();
    let client = rt.block_on(eth_client(anvil.url()));
    let dev = rt.block_on(DevWallet::new(0));
    let usd6 = rt.block_on(deploy_test_token(&client, &dev));
    let usd18 = rt.block_on(deploy_test_token(&client, &dev));
    let falsy = "0x7000000000000000000000000000000000000001";
    let reverting = "0x7000000000000000000000000000000000000002";
    // Configured, never deployed: no code at all.
    let ghost = "0x7000000000000000000000000000000000000003";
    for (at, code) in [(falsy, FALSE_TOKEN), (reverting, REVERTING_TOKEN)] {
        let code = format!("0x{}", code.replace(' ', ""));
        rt.block_on(client.raw_call("anvil_setCode", serde_json::json!([at, code])))
            .unwrap();
    }
    let (dir, config) = data_dir(db_url);
    let cfg = config.to_str().unwrap();
    add_ethereum(&config, 31337, anvil.url());
    let mut text = std::fs::read_to_string(&config).unwrap();
    for (symbol, contract, decimals) in [
        ("TUSD", usd6.to_string(), 6),
        ("TUSD18", usd18.to_string(), 18),
        ("FALSY", falsy.to_owned(), 6),
        ("REVERTS", reverting.to_owned(), 6),
        ("GHOST", ghost.to_owned(), 6),
    ] {
        text.push_str(&format!(
            "\n[[ethereum.tokens]]\nsymbol = \"{symbol}\"\ncontract = \"{contract}\"\n\
             decimals = {decimals}\nmax_gas = 200000\n"
        ));
    }
    std::fs::write(&config, text).unwrap();
    let quorum = init_keystore(cfg, &dir.path().join("shares"), 2, 2).join("\n") + "\n";
    let key = ecdsa_key(cfg, &quorum);
    let o = strongroom(&[
        "eth",
        "register-sender",
        "--config",
        cfg,
        "--key",
        &key,
        "--chain-id",
        "31337",
        "--wallet",
        "tokens",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let field = |name: &str| {
        stdout(&o)
            .lines()
            .find_map(|l| l.strip_prefix(name).map(str::to_owned))
            .unwrap()
    };
    let (wallet, sender) = (field("wallet "), field("address "));
    let sender_address: chain_eth::EthAddress = sender.parse().unwrap();
    // Ether for gas, and tokens: 1 000 TUSD and 0.0005 TUSD18.
    rt.block_on(async {
        client
            .raw_call(
                "anvil_setBalance",
                serde_json::json!([sender, "0x56bc75e2d63100000"]),
            )
            .await
            .unwrap();
        for (token, units) in [(usd6, 1_000_000_000u128), (usd18, 500_000_000_000_000)] {
            dev.transact(&client, |nonce, fees| {
                TxPlan::erc20(31337, nonce, token, sender_address, units, 100_000, fees)
            })
            .await;
        }
        chain_eth_client::testing::mine(&client, 3).await;
    });
    let person = |name: &str, role: &str, scope: &str| api_key(cfg, dir.path(), name, role, scope);
    let scope = format!("wallet:{wallet}");
    let (admin, _) = person("admin", "admin", "global");
    let (writer, _) = person("writer", "policy-admin", "global");
    let (initiator, _) = person("initiator", "initiator", &scope);
    let (approver, approver_id) = person("approver", "approver", &scope);
    let (approver_key, public) = approver_key_in(dir.path(), "approver");
    let (server, lines) = serve_unsealed(&config, &quorum);
    let tusd = format!("eip155:31337/erc20:{}", usd6.to_lower_hex());
    let tusd18 = format!("eip155:31337/erc20:{}", usd18.to_lower_hex());
    // Up to $100 of TUSD (at a governed price of $2) and 100 TUSD at once;
    // anything else needs the approver.
    let document = format!(
        "price_max_age_seconds = 3600\n\n\
         [[groups]]\nname = \"approvers\"\nmembers = [\"{approver_id}\"]\n\n\
         [[rules]]\nname = \"small tusd\"\nassets = [\"{tusd}\"]\n\
         amount = {{ at_most = \"100\" }}\nusd = {{ at_most = \"100\" }}\naction = \"allow\"\n\n\
         [[rules]]\nname = \"rest\"\naction = \"require_approval\"\n\
         approvals = {{ group = \"approvers\", threshold = 1 }}\n"
    );
    for change in [
        serde_json::json!({"kind": "set_price", "asset": tusd, "usd": "2"}),
        serde_json::json!({"kind": "set_policy", "document": document}),
        serde_json::json!({"kind": "register_approver_key", "principal": approver_id, "public_key": public}),
    ] {
        let by = if change["kind"] == "register_approver_key" {
            &admin
        } else {
            &writer
        };
        let body = serde_json::json!({ "change": change }).to_string();
        let (code, p) = api_call(&server, by, "POST", "/v1/proposals", Some(&body), None);
        assert_eq!(code, 201, "{p}");
        let id = p["id"].as_str().unwrap().to_owned();
        assert_eq!(approve_proposal(&server.base, &admin, &id), "applied");
    }
    let request = |asset: &str, amount: &str, to: &str| {
        let body = serde_json::json!({"wallet": wallet, "asset": asset, "amount": amount, "destination": to}).to_string();
        api_call(
            &server,
            &initiator,
            "POST",
            "/v1/transfers",
            Some(&body),
            None,
        )
    };
    let approve = |transfer: &str| {
        let o = strongroom(&[
            "approve",
            "--addr",
            &server.base,
            "--key-file",
            approver.to_str().unwrap(),
            "--approver-key",
            approver_key.to_str().unwrap(),
            "--transfer",
            transfer,
            "--yes",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let ends = |transfer: &str| {
        drive(&lines, 1, Some(&anvil), |id, to| {
            id == transfer && matches!(to, "completed" | "failed" | "blocked")
        })
        .map(|d| d.1)
    };
    let held = |token: chain_eth::EthAddress, holder: &str| {
        rt.block_on(client.erc20_balance(token, holder.parse().unwrap()))
            .unwrap()
    };
    // Refused when requested: the token contract itself, the zero address.
    for to in [
        usd6.to_string(),
        "0x0000000000000000000000000000000000000000".into(),
    ] {
        let (code, e) = request(&tusd, "1", &to);
        assert_eq!(code, 400, "{to}: {e}");
    }
    // 50 TUSD: allowed at once, sent and confirmed.
    let (code, t) = request(&tusd, "50", DESTINATION);
    assert_eq!(code, 201, "{t}");
    assert_eq!(t["state"], "queued", "{t}");
    assert_eq!(
        (t["amount"].as_str(), t["amount_decimal"].as_str()),
        (Some("50000000"), Some("50"))
    );
    assert_eq!(
        ends(t["id"].as_str().unwrap()).as_deref(),
        Some("completed")
    );
    assert_eq!(held(usd6, DESTINATION), 50_000_000);
    // 60 TUSD is under 100 TUSD but $120: over the dollar limit.
    let (code, t) = request(&tusd, "60", DESTINATION);
    assert_eq!(
        (code, t["state"].as_str()),
        (201, Some("pending_approval")),
        "{t}"
    );
    let (code, _) = api_call(
        &server,
        &initiator,
        "POST",
        &format!("/v1/transfers/{}/cancel", t["id"].as_str().unwrap()),
        None,
        None,
    );
    assert_eq!(code, 200);
    // 500 TUSD: over the limit, approved, then sent.
    let (code, t) = request(&tusd, "500", DESTINATION);
    assert_eq!(
        (code, t["state"].as_str()),
        (201, Some("pending_approval")),
        "{t}"
    );
    approve(t["id"].as_str().unwrap());
    assert_eq!(
        ends(t["id"].as_str().unwrap()).as_deref(),
        Some("completed")
    );
    assert_eq!(held(usd6, DESTINATION), 550_000_000);
    // 18 decimals: 0.0001 TUSD18 is 10^14 base units.
    let (code, t) = request(&tusd18, "0.0001", DESTINATION);
    assert_eq!(code, 201, "{t}");
    assert_eq!(t["amount"], "100000000000000", "{t}");
    approve(t["id"].as_str().unwrap());
    assert_eq!(
        ends(t["id"].as_str().unwrap()).as_deref(),
        Some("completed")
    );
    assert_eq!(held(usd18, DESTINATION), 100_000_000_000_000);
    // Beyond what the sender holds: refused when requested.
    let (code, e) = request(&tusd18, "0.001", DESTINATION);
    assert_eq!(
        (code, e["code"].as_str()),
        (409, Some("insufficient_funds")),
        "{e}"
    );
    // Tokens that misbehave: failed, with the reason, nothing broadcast.
    for (token, why) in [(falsy, "answers false"), (reverting, "reverts")] {
        let asset = format!("eip155:31337/erc20:{token}");
        let (code, t) = request(&asset, "1", DESTINATION);
        assert_eq!(code, 201, "{t}");
        let id = t["id"].as_str().unwrap().to_owned();
        approve(&id);
        assert_eq!(ends(&id).as_deref(), Some("failed"), "{token}");
        let (_, t) = api_call(
            &server,
            &initiator,
            "GET",
            &format!("/v1/transfers/{id}"),
            None,
            None,
        );
        assert!(
            t["last_error"].as_str().unwrap_or_default().contains(why),
            "{t}"
        );
        assert!(t["eth_send"].is_null(), "nothing was sent: {t}");
    }
    // A token configured where nothing is deployed: refused, not "paid".
    let asset = format!("eip155:31337/erc20:{ghost}");
    let (code, t) = request(&asset, "1", DESTINATION);
    assert_eq!(code, 400, "{t}");
    assert!(
        t["message"].as_str().unwrap().contains("no contract"),
        "{t}"
    );
    server.terminate();
    let o = strongroom(&["audit", "verify", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `POST /v1/transfers` of (wallet, asset, amount, destination), which
/// must be taken (201): the transfer.
/// The origin the test passkey's approvals are made on.
const PASSKEY_ORIGIN: &str = "http://localhost:8080";

/// A passkey held in software, as an authenticator holds one: its key and
/// the WebAuthn assertions it makes (ES256, user present and verified).
struct Passkey(p256::ecdsa::SigningKey);

impl Passkey {
    const CREDENTIAL: [u8; 16] = [0xab; 16];

    fn new() -> Passkey {
        Passkey(p256::ecdsa::SigningKey::from_bytes(&[0x42; 32].into()).unwrap())
    }

    fn public(&self) -> String {
        hex::encode(self.0.verifying_key().to_encoded_point(true).as_bytes())
    }

    /// As governance registers it.
    fn approver_key(&self) -> String {
        format!(
            "webauthn:{}:{}",
            hex::encode(Self::CREDENTIAL),
            self.public()
        )
    }

    /// As a signer node enrolls it.
    fn enrolment(&self) -> keys_mpc::cosign::PasskeyApprover {
        keys_mpc::cosign::PasskeyApprover {
            public_key: self.public(),
            credential_id: hex::encode(Self::CREDENTIAL),
            rp_id: "localhost".into(),
            origins: vec![PASSKEY_ORIGIN.into()],
        }
    }

    /// The body of `POST /v1/transfers/{id}/approvals` approving `t` (as
    /// the API returned it), made on a page of `origin`.
    fn approval(&self, t: &serde_json::Value, origin: &str) -> String {
        use base64::Engine as _;
        use p256::ecdsa::signature::Signer as _;
        use sha2::Digest as _;
        let expires_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            + 3_600_000;
        let statement = policy::ApprovalStatement {
            intent: domain::IntentDigest(
                hex::decode(t["digest"].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
            ),
            policy_version: t["policy_version"].as_u64().unwrap(),
            decision_id: *uuid::Uuid::parse_str(t["decision_id"].as_str().unwrap())
                .unwrap()
                .as_bytes(),
            expires_at: domain::Timestamp::from_millis(expires_at_ms),
            vote: policy::Vote::Approve,
        };
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let mut data = sha2::Sha256::digest(b"localhost").to_vec();
        data.extend_from_slice(&[0x05, 0, 0, 0, 0]);
        let client = serde_json::to_vec(&serde_json::json!({
            "type": "webauthn.get", "challenge": b64(&statement.challenge()), "origin": origin,
        }))
        .unwrap();
        let mut signed = data.clone();
        signed.extend_from_slice(&sha2::Sha256::digest(&client));
        let sig: p256::ecdsa::Signature = self.0.sign(&signed);
        serde_json::json!({
            "vote": "approve",
            "expires_at_ms": expires_at_ms,
            "signature": format!("webauthn:{}.{}.{}", b64(&data), b64(&client), b64(sig.to_der().as_bytes())),
        })
        .to_string()
    }
}

fn post_transfer(
    server: &Server,
    key: &Path,
    (wallet, asset, amount, to): (&str, &str, &str, &str),
) -> serde_json::Value {
    let body =
        serde_json::json!({"wallet": wallet, "asset": asset, "amount": amount, "destination": to})
            .to_string();
    let (code, t) = api_call(server, key, "POST", "/v1/transfers", Some(&body), None);
    assert_eq!(code, 201, "{t}");
    t
}

/// `strongroom btc record-deposit` on regtest: an output paying `who`
/// (`--key <id>` or `--address <a>`) at `txid:vout` of `sat`.
fn record_btc_deposit(
    cfg: &str,
    who: (&str, &str),
    (txid, vout, sat): (&str, u32, u64),
    env: &[(&str, &str)],
) -> Output {
    let (vout, sat) = (vout.to_string(), sat.to_string());
    strongroom_env(
        &[
            "btc",
            "record-deposit",
            "--config",
            cfg,
            "--network",
            "regtest",
            who.0,
            who.1,
            "--txid",
            txid,
            "--vout",
            &vout,
            "--sat",
            &sat,
        ],
        env,
    )
}

/// A Bitcoin transfer's transaction, signed and stored (no node is
/// configured: it waits `signed`), as the API gives it: its send names the
/// transfer and its id is the transaction's.
fn signed_btc_transaction(server: &Server, key: &Path, transfer: &str) -> bitcoin::Transaction {
    let (_, t) = api_call(
        server,
        key,
        "GET",
        &format!("/v1/transfers/{transfer}"),
        None,
        None,
    );
    assert_eq!(t["state"], "signed", "no node configured: signed and kept");
    let send = t["btc_send"].as_str().unwrap().to_owned();
    let (code, s) = api_call(
        server,
        key,
        "GET",
        &format!("/v1/btc/sends/{send}"),
        None,
        None,
    );
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["transfers"][0], transfer);
    let raw = hex::decode(s["raw"].as_str().unwrap()).unwrap();
    let signed: bitcoin::Transaction = bitcoin::consensus::deserialize(&raw).unwrap();
    assert_eq!(
        signed.compute_txid().to_string(),
        s["txid"].as_str().unwrap()
    );
    signed
}

fn regtest_script(address: &str) -> bitcoin::ScriptBuf {
    chain_btc::BtcAddress::parse(address, domain::BitcoinNetwork::Regtest)
        .unwrap()
        .script_pubkey()
}

/// `strongroom cold <cmd>` (export, import) of `transfer` against
/// `server` with `key`; `rest`: its other arguments.
fn cold_cli(server: &Server, key: &Path, cmd: &str, transfer: &str, rest: &[&str]) -> Output {
    let mut args = vec![
        "cold",
        cmd,
        "--addr",
        &server.base,
        "--key-file",
        key.to_str().unwrap(),
        "--transfer",
        transfer,
    ];
    args.extend_from_slice(rest);
    strongroom(&args)
}

/// `strongroom cold export` of `transfer` into `out`: what it showed.
fn cold_export(server: &Server, key: &Path, transfer: &str, out: &Path) -> String {
    let o = cold_cli(
        server,
        key,
        "export",
        transfer,
        &["--out", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    stderr(&o)
}

/// Follows the server's log until `transfer` reaches `state` (mining on
/// anvil when given), or fails with the log.
fn reach(
    server: &Server,
    lines: &std::sync::mpsc::Receiver<Option<String>>,
    anvil: Option<&chain_eth_client::testing::Anvil>,
    (transfer, state): (&str, &str),
) {
    let got = drive(lines, 1, anvil, |id, to| id == transfer && to == state);
    assert!(got.is_some(), "{}", server.log_text());
}

/// Who signs a cold wallet's PSBT offline in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OfflineSigner {
    /// `strongroom offline sign`.
    Strongroom,
    /// embit (PyPI), an implementation that shares nothing with ours:
    /// `scripts/embit_sign.py` run by `STRONGROOM_PYTHON` (`scripts/test`
    /// makes that venv).
    Embit,
}

#[test]
fn cold_multisig_withdrawal_through_the_api_and_the_cli_sqlite() {
    cold_multisig_withdrawal_through_the_api_and_the_cli(
        "sqlite://strongroom.db",
        OfflineSigner::Strongroom,
    );
}

#[test]
fn cold_multisig_withdrawal_through_the_api_and_the_cli_postgres() {
    let rt = rt();
    let db = rt.block_on(TestDb::postgres());
    cold_multisig_withdrawal_through_the_api_and_the_cli(&db.url, OfflineSigner::Embit);
}

/// The cold tier end to end: a cold wallet's 2-of-3 multisig account (an
/// HSM key, a keystore key, a key derived from a mnemonic kept offline);
/// an approved withdrawal gets one signature here, waits in
/// `awaiting_signature`; `strongroom cold export` hands its PSBT out,
/// `strongroom offline sign` signs it away from the server, `strongroom
/// cold import` brings it back, and the stored transaction passes
/// Bitcoin Core's interpreter. A PSBT without the offline signature is
/// refused with `signature_refused`.
fn cold_multisig_withdrawal_through_the_api_and_the_cli(db_url: &str, signer: OfflineSigner) {
    use keys_pkcs11::testing::{SoftHsm, USER_PIN};
    const WORDS: &str = "abandon abandon abandon abandon abandon abandon abandon abandon \
                         abandon abandon abandon about";
    const COLD_PATH: &str = "m/48'/1'/0'/2'/0/0";
    let token = SoftHsm::new("cold");
    let (dir, config) = data_dir(db_url);
    let cfg = config.to_str().unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[bitcoin]]\nnetwork = \"regtest\"\nmax_fee_rate_sat_vb = 50\nmax_fee_sat = 20000\n\
         fee_rate_sat_vb = 4\npoll_seconds = 1\n\n\
         [hsm]\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_env = \"SR_TEST_HSM_PIN\"\nsessions = 2\n",
        SoftHsm::module().display(),
        token.label
    ));
    std::fs::write(&config, text).unwrap();
    // Every command that opens the configuration opens the HSM too.
    let pin = [("SR_TEST_HSM_PIN", USER_PIN)];
    let share_dir = dir.path().join("shares");
    let quorum = init_keystore_env(cfg, &share_dir, (2, 2), &pin).join("\n") + "\n";
    let api_key = |name: &str, role: &str, scope: &str| {
        api_key_env(cfg, dir.path(), (name, role, scope), &pin).0
    };
    let admin = api_key("admin", "admin", "global");
    let writer = api_key("writer", "policy-admin", "global");
    // Made during the bootstrap ceremony (the console grants only
    // read-only roles once governance has acted).
    let initiator = api_key("initiator", "initiator", "global");
    let (server, lines) = serve_unsealed_env(&config, &quorum, &pin);
    // The offline key: derived here with rust-bitcoin's BIP-32 from the
    // mnemonic the offline signer is given.
    let (cold_pub, fingerprint) = {
        use bitcoin::bip32::{DerivationPath, Xpriv};
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let seed = keys::hd::Mnemonic::parse(WORDS).unwrap().to_seed("");
        let master = Xpriv::new_master(bitcoin::Network::Testnet, seed.expose()).unwrap();
        let path: DerivationPath = COLD_PATH.parse().unwrap();
        let key = master.derive_priv(&secp, &path).unwrap();
        (
            hex::encode(key.private_key.public_key(&secp).serialize()),
            master.fingerprint(&secp),
        )
    };
    // Where its holder derives it: named in the PSBTs handed out, so the
    // offline signers below find their key by the derivation alone.
    let origin = format!("{fingerprint}/{}", COLD_PATH.trim_start_matches("m/"));
    // Bad accounts first: a key twice, a threshold above the cosigners.
    let body = serde_json::json!({"name": "cold-store"}).to_string();
    let (code, w) = api_call(&server, &admin, "POST", "/v1/wallets", Some(&body), None);
    assert_eq!(code, 201, "{w}");
    let wallet = w["id"].as_str().unwrap().to_owned();
    let accounts = format!("/v1/wallets/{wallet}/accounts");
    let account = |threshold: u8, cosigners: serde_json::Value| {
        serde_json::json!({"network": "bitcoin:regtest", "backend": "multisig",
            "threshold": threshold, "cosigners": cosigners})
        .to_string()
    };
    let external =
        serde_json::json!({"public_key": cold_pub, "label": "vault-a", "origin": origin});
    for bad in [
        account(1, serde_json::json!([external, external])),
        account(3, serde_json::json!([{"backend": "keystore"}, external])),
        account(
            1,
            serde_json::json!([{"backend": "keystore", "public_key": cold_pub}]),
        ),
        account(
            1,
            serde_json::json!([{"public_key": cold_pub, "origin": "not-a-fingerprint/0"}]),
        ),
    ] {
        let (code, e) = api_call(&server, &admin, "POST", &accounts, Some(&bad), None);
        assert_eq!(
            (code, e["code"].as_str()),
            (400, Some("invalid_request")),
            "{e}"
        );
    }
    let body = account(
        2,
        serde_json::json!([{"backend": "pkcs11"}, {"backend": "keystore"}, external]),
    );
    let (code, a) = api_call(&server, &admin, "POST", &accounts, Some(&body), None);
    assert_eq!(code, 201, "{a}");
    let address = a["address"].as_str().unwrap().to_owned();
    let key = a["key"].as_str().unwrap().to_owned();
    let descriptor = a["watch_only"]["descriptor"].as_str().unwrap();
    assert!(
        descriptor.starts_with("wsh(sortedmulti(2,") && descriptor.contains(&cold_pub),
        "{a}"
    );
    // Governance: the wallet is cold; every withdrawal is allowed.
    let propose = |by: &Path, change: serde_json::Value| {
        let body = serde_json::json!({ "change": change }).to_string();
        let (code, p) = api_call(&server, by, "POST", "/v1/proposals", Some(&body), None);
        assert_eq!(code, 201, "{p}");
        if p["state"] != "applied" {
            let id = p["id"].as_str().unwrap();
            assert_eq!(approve_proposal(&server.base, &admin, id), "applied");
        }
    };
    propose(
        &admin,
        serde_json::json!({"kind": "set_wallet_tier", "wallet": wallet, "tier": "cold"}),
    );
    propose(
        &writer,
        serde_json::json!({"kind": "set_policy",
            "document": "[[rules]]\nname = \"all\"\naction = \"allow\"\n"}),
    );
    let txid = "6e".repeat(32);
    let o = record_btc_deposit(cfg, ("--key", &key), (&txid, 0, 100000), &pin);
    assert!(o.status.success(), "{}", stderr(&o));
    let payee = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw";
    let t = post_transfer(
        &server,
        &initiator,
        (&wallet, "bitcoin:regtest/native", "0.0005", payee),
    );
    let transfer = t["id"].as_str().unwrap().to_owned();
    reach(&server, &lines, None, (&transfer, "awaiting_signature"));

    // Handed out: what it spends and pays is shown; the PSBT is written.
    let unsigned = dir.path().join("unsigned.psbt");
    let shown = cold_export(&server, &admin, &transfer, &unsigned);
    assert!(
        shown.contains(&format!("pays {payee}  0.0005 BTC")),
        "{shown}"
    );
    let text = std::fs::read_to_string(&unsigned).unwrap();
    let exported = bitcoin::Psbt::deserialize(
        &data_encoding::BASE64
            .decode(text.trim().as_bytes())
            .unwrap(),
    )
    .unwrap();
    let cold_key =
        bitcoin::secp256k1::PublicKey::from_slice(&hex::decode(&cold_pub).unwrap()).unwrap();
    let (fp, path) = &exported.inputs[0].bip32_derivation[&cold_key];
    assert_eq!(
        (*fp, format!("m/{path}")),
        (fingerprint, COLD_PATH.to_owned())
    );
    // Without the offline signature it is refused, and nothing moves.
    let (code, e) = api_call(
        &server,
        &admin,
        "POST",
        &format!("/v1/transfers/{transfer}/signed"),
        Some(
            &serde_json::json!({"psbt": std::fs::read_to_string(&unsigned).unwrap().trim()})
                .to_string(),
        ),
        None,
    );
    assert_eq!(
        (code, e["code"].as_str()),
        (422, Some("signature_refused")),
        "{e}"
    );
    // Signed away from the server, by the key at its path.
    std::fs::write(dir.path().join("words.txt"), WORDS).unwrap();
    let signed = dir.path().join("signed.psbt");
    let words = dir.path().join("words.txt");
    let o = match signer {
        OfflineSigner::Strongroom => strongroom(&[
            "offline",
            "sign",
            "--psbt",
            unsigned.to_str().unwrap(),
            "--mnemonic-file",
            words.to_str().unwrap(),
            "--network",
            "regtest",
            "--trust-input-amounts",
            "--out",
            signed.to_str().unwrap(),
        ]),
        OfflineSigner::Embit => {
            let python = std::env::var("STRONGROOM_PYTHON").expect(
                "STRONGROOM_PYTHON: a Python with embit (scripts/test makes one in .tools/py)",
            );
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/embit_sign.py");
            // Like a hardware wallet: by the derivations the PSBT names.
            Command::new(python)
                .arg(script)
                .args([&unsigned, &words, &signed])
                .output()
                .unwrap()
        }
    };
    assert!(o.status.success(), "{signer:?}: {}", stderr(&o));
    let o = cold_cli(
        &server,
        &admin,
        "import",
        &transfer,
        &[signed.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("accepted"), "{}", stdout(&o));
    let tx = signed_btc_transaction(&server, &initiator, &transfer);
    let spk = regtest_script;
    let prevout = bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(100_000),
        script_pubkey: spk(&address),
    };
    chain_btc::verify_with_core(&tx, &[prevout]).unwrap();
    assert_eq!(
        tx.input[0].witness.len(),
        4,
        "dummy, two signatures, script"
    );
    assert!(
        tx.output
            .iter()
            .any(|o| o.script_pubkey == spk(payee) && o.value.to_sat() == 50_000)
    );
    server.terminate();
}

/// A cold wallet's Ethereum account from the CLI: its key held outside
/// (opened by its public key), a withdrawal waits in `awaiting_signature`,
/// `strongroom cold export` writes the unsigned EIP-1559 transaction (the
/// bytes the API's summary describes), signed here with libsecp256k1,
/// `strongroom cold import` brings it back, and anvil confirms it.
#[test]
fn cold_ether_withdrawal_through_the_cli() {
    use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey};
    use chain_eth_client::testing::Anvil;
    let anvil = Anvil::start();
    let rt = rt();
    let client = rt.block_on(eth_client(anvil.url()));
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let cfg = config.to_str().unwrap();
    add_ethereum(&config, 31337, anvil.url());
    let quorum = init_keystore(cfg, &dir.path().join("shares"), 2, 2).join("\n") + "\n";
    let admin = api_key(cfg, dir.path(), "admin", "admin", "global").0;
    let writer = api_key(cfg, dir.path(), "writer", "policy-admin", "global").0;
    let initiator = api_key(cfg, dir.path(), "initiator", "initiator", "global").0;
    let (server, lines) = serve_unsealed(&config, &quorum);
    let secp = Secp256k1::new();
    let cold = SecretKey::from_slice(&[0x61; 32]).unwrap();
    let public = hex::encode(PublicKey::from_secret_key(&secp, &cold).serialize());
    let account = serde_json::json!({"network": "eip155:31337", "backend": "external",
        "public_key": public, "label": "vault-e"});
    let (wallet, a) = open_wallet(&server, &admin, "cold-ether", &account.to_string());
    let sender: chain_eth::EthAddress = a["address"].as_str().unwrap().parse().unwrap();
    rt.block_on(client.raw_call(
        "anvil_setBalance",
        serde_json::json!([sender.to_string(), "0x56bc75e2d63100000"]),
    ))
    .unwrap();
    let body = serde_json::json!({"change": {"kind": "set_policy",
        "document": "[[rules]]\nname = \"all\"\naction = \"allow\"\n"}})
    .to_string();
    let (code, p) = api_call(&server, &writer, "POST", "/v1/proposals", Some(&body), None);
    assert_eq!(code, 201, "{p}");
    assert_eq!(
        approve_proposal(&server.base, &admin, p["id"].as_str().unwrap()),
        "applied"
    );
    let bob = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    let t = post_transfer(
        &server,
        &initiator,
        (&wallet, "eip155:31337/native", "2", bob),
    );
    let transfer = t["id"].as_str().unwrap().to_owned();
    reach(
        &server,
        &lines,
        Some(&anvil),
        (&transfer, "awaiting_signature"),
    );
    let unsigned = dir.path().join("unsigned.hex");
    let shown = cold_export(&server, &admin, &transfer, &unsigned);
    assert!(
        shown.contains(&format!("to {}", bob.to_lowercase()))
            || shown.contains(&format!("to {bob}")),
        "{shown}"
    );
    // The summary the API gives is the transaction exported, byte for byte.
    let (_, u) = api_call(
        &server,
        &admin,
        "GET",
        &format!("/v1/transfers/{transfer}/unsigned"),
        None,
        None,
    );
    let e = &u["ethereum"];
    let n = |k: &str| e[k].as_str().unwrap().parse::<u128>().unwrap();
    let plan = chain_eth::TxPlan {
        chain_id: e["chain_id"].as_u64().unwrap(),
        nonce: e["nonce"].as_u64().unwrap(),
        to: e["to"].as_str().unwrap().parse().unwrap(),
        value: n("value"),
        data: hex::decode(e["data"].as_str().unwrap().trim_start_matches("0x")).unwrap(),
        gas_limit: e["gas_limit"].as_u64().unwrap(),
        fees: chain_eth::Fees::Eip1559 {
            max_fee_per_gas: n("max_fee_per_gas"),
            max_priority_fee_per_gas: n("max_priority_fee_per_gas"),
        },
    };
    let exported = std::fs::read_to_string(&unsigned).unwrap();
    assert_eq!(
        exported.trim(),
        format!("0x{}", hex::encode(plan.signing_payload()))
    );
    assert_eq!(plan.value, 2 * 10u128.pow(18));
    // Signed away from the server.
    let (id, compact) = secp
        .sign_ecdsa_recoverable(&Message::from_digest(plan.signing_hash()), &cold)
        .serialize_compact();
    let parts = chain_eth::EcdsaParts {
        r: compact[..32].try_into().unwrap(),
        s: compact[32..].try_into().unwrap(),
        recovery_id: u8::try_from(id.to_i32()).unwrap(),
    };
    let signed = plan.into_signed(parts, sender).unwrap();
    let signed_file = dir.path().join("signed.hex");
    std::fs::write(&signed_file, format!("0x{}\n", hex::encode(&signed.raw))).unwrap();
    let o = cold_cli(
        &server,
        &admin,
        "import",
        &transfer,
        &[signed_file.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    reach(&server, &lines, Some(&anvil), (&transfer, "completed"));
    let paid = rt.block_on(client.balance(bob.parse().unwrap())).unwrap();
    assert!(paid >= 2 * 10u128.pow(18), "{paid}");
}

/// chromedriver on a free loopback port, stopped with the test: its
/// WebDriver URL.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    fn start() -> Chromedriver {
        let bin = std::env::var("STRONGROOM_CHROMEDRIVER")
            .unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(&bin)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (scripts/test installs chromium-driver)"));
        let out = child.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
        // It says so once it listens.
        loop {
            let line = lines.next().unwrap().unwrap();
            if line.contains("started successfully") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headless Chromium through `driver`, with its profile in `profile`.
async fn chromium(driver: &Chromedriver, profile: &Path) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": std::env::var("STRONGROOM_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap()
}

/// The WebDriver WebAuthn extension: a virtual authenticator (CTAP2, a
/// platform one that holds passkeys and verifies its user) in the browser.
#[derive(Debug)]
struct VirtualAuthenticator;

impl fantoccini::wd::WebDriverCompatibleCommand for VirtualAuthenticator {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/webauthn/authenticator",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = serde_json::json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserConsenting": true,
            "isUserVerified": true,
        });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// Types each value into the field its selector names.
async fn fill(browser: &fantoccini::Client, fields: &[(&str, &str)]) {
    for (field, value) in fields {
        browser
            .find(fantoccini::Locator::Css(field))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
}

/// Fills the sign-in form's `fields`, clicks `button` and waits for the
/// overview.
async fn sign_in(browser: &fantoccini::Client, fields: &[(&str, &str)], button: &str) {
    use fantoccini::Locator;
    fill(browser, fields).await;
    browser
        .find(Locator::Css(button))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    if let Err(e) = browser
        .wait()
        .for_element(Locator::Css(r#"[data-fact="seal"]"#))
        .await
    {
        panic!("{e}: {}", browser.source().await.unwrap_or_default());
    }
}

/// `user`'s TOTP, enrolled through the API from the console's origin (a
/// session of its own, from `fetch`): the secret.
async fn enrol_totp(
    browser: &fantoccini::Client,
    base: &str,
    user: &str,
    password: &str,
) -> Vec<u8> {
    browser.goto(&format!("{base}/ui/login")).await.unwrap();
    let enrolment = in_page(
        browser,
        "const login = await fetch('/v1/auth/login', {method: 'POST',
             headers: {'content-type': 'application/json'},
             body: JSON.stringify({username: arguments[0], password: arguments[1]})});
         const session = await login.json();
         const enrol = await fetch('/v1/auth/totp/enrol', {method: 'POST',
             headers: {'x-csrf-token': session.csrf_token}});
         return {csrf: session.csrf_token, enrol: await enrol.json()};",
        vec![user.into(), password.into()],
    )
    .await;
    let uri = enrolment["enrol"]["otpauth_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("{enrolment}"));
    let secret = uri
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap();
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let step = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / service::totp::STEP;
    let code = format!("{:06}", service::totp::code(&secret, step - 1, 6).unwrap());
    let confirmed = in_page(
        browser,
        "const r = await fetch('/v1/auth/totp/confirm', {method: 'POST',
             headers: {'content-type': 'application/json', 'x-csrf-token': arguments[0]},
             body: JSON.stringify({code: arguments[1]})});
         return r.status;",
        vec![enrolment["csrf"].clone(), code.into()],
    )
    .await;
    assert_eq!(confirmed, 204, "TOTP confirmed");
    secret
}

/// `user` (password "correct horse battery") enrols TOTP and signs in
/// with its code.
async fn enrol_totp_and_sign_in(browser: &fantoccini::Client, base: &str, user: &str) {
    let secret = enrol_totp(browser, base, user, "correct horse battery").await;
    let step = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / service::totp::STEP;
    let code = format!("{:06}", service::totp::code(&secret, step, 6).unwrap());
    sign_in(
        browser,
        &[
            ("#username", user),
            ("#password", "correct horse battery"),
            ("#totp", &code),
        ],
        "form.card button[type=submit]",
    )
    .await;
}

/// Signs out with the header's button and waits for the sign-in form.
async fn sign_out(browser: &fantoccini::Client) {
    use fantoccini::Locator;
    browser
        .find(Locator::Css("form.signout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Css("#username"))
        .await
        .unwrap();
}

/// Runs `script` (a promise's body) in the page and returns its value.
async fn in_page(
    browser: &fantoccini::Client,
    script: &str,
    args: Vec<serde_json::Value>,
) -> serde_json::Value {
    browser
        .execute(&format!("return (async () => {{ {script} }})();"), args)
        .await
        .unwrap()
}

/// An approver works in the browser with a passkey, against a real server
/// and anvil: signs in with password and TOTP, makes a passkey (Chromium's
/// virtual authenticator) that the admins enroll as their approver key; a
/// page edited before signing (another challenge) gets its approval
/// refused; the approval signed on the page as rendered counts and the
/// 2 ETH withdrawal completes on anvil. Screenshots of the transfer and the
/// approval are saved.
#[test]
fn an_approver_approves_a_withdrawal_with_a_passkey_in_chromium() {
    use chain_eth_client::testing::Anvil;
    use fantoccini::Locator;
    let anvil = Anvil::start();
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let cfg = config.to_str().unwrap().to_owned();
    // Served on a port known beforehand: the console's origin names it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text =
        std::fs::read_to_string(&config).unwrap().replacen(
            "127.0.0.1:0",
            &format!("127.0.0.1:{port}"),
            1,
        ) + &format!("[console]\nrp_id = \"localhost\"\norigins = [\"http://localhost:{port}\"]\n");
    std::fs::write(&config, text).unwrap();
    add_ethereum(&config, 31337, anvil.url());
    let quorum = init_keystore(&cfg, &dir.path().join("shares"), 2, 2).join("\n") + "\n";
    let key = ecdsa_key(&cfg, &quorum);
    let (wallet, _) = funded_sender(&cfg, &key, &anvil);
    let person = |name: &str, role: &str, scope: &str| api_key(&cfg, dir.path(), name, role, scope);
    let (admin, _) = person("admin", "admin", "global");
    let (writer, _) = person("writer", "policy-admin", "global");
    let (server, lines) = serve_unsealed(&config, &quorum);
    let base = format!("http://localhost:{port}");
    // Carol approves for the wallet, Ian initiates; their roles are
    // granted by governance.
    let person_of = |name: &str, role: &str| {
        let body = serde_json::json!({"name": name, "password": "correct horse battery",
            "grants": [{"role": role, "scope": format!("wallet:{wallet}")}]})
        .to_string();
        let (code, user) = api_call(&server, &admin, "POST", "/v1/users", Some(&body), None);
        assert_eq!(code, 201, "{user}");
        for p in user["role_proposals"].as_array().unwrap() {
            if p["state"] == "open" {
                approve_proposal(&server.base, &admin, p["id"].as_str().unwrap());
            }
        }
        format!("user:{}", user["id"].as_str().unwrap())
    };
    let carol_id = person_of("carol", "approver");
    person_of("ian", "initiator");
    person_of("vic", "viewer");
    let policy = format!(
        "[[groups]]\nname = \"approvers\"\nmembers = [\"{carol_id}\"]\n\n\
         [[rules]]\nname = \"small\"\namount = {{ at_most = \"1\" }}\naction = \"allow\"\n\n\
         [[rules]]\nname = \"large\"\naction = \"require_approval\"\n\
         approvals = {{ group = \"approvers\", threshold = 1 }}\n"
    );
    let body =
        serde_json::json!({"change": {"kind": "set_policy", "document": policy}}).to_string();
    let (code, p) = api_call(&server, &writer, "POST", "/v1/proposals", Some(&body), None);
    assert_eq!(code, 201, "{p}");
    assert_eq!(
        approve_proposal(&server.base, &admin, p["id"].as_str().unwrap()),
        "applied"
    );

    let driver = Chromedriver::start();
    let profile = tempfile::tempdir().unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&shots).unwrap();
    let (transfer, bob) = rt().block_on(async {
        let browser = chromium(&driver, profile.path()).await;
        browser.issue_cmd(VirtualAuthenticator).await.unwrap();
        enrol_totp_and_sign_in(&browser, &base, "carol").await;

        // A passkey, made in the browser; the admins enroll its key.
        browser.goto(&format!("{base}/ui/passkeys")).await.unwrap();
        browser
            .find(Locator::Css("#register-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // The key once the server verified the ceremony, or why not.
        browser
            .wait()
            .for_element(Locator::Css(
                "#new-approver-key:not(:empty), #register-status.error",
            ))
            .await
            .unwrap();
        let status = browser
            .find(Locator::Css("#register-status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !status.starts_with("No passkey"),
            "{status}\n{}",
            server.log_text()
        );
        let approver_key = browser
            .find(Locator::Css("#new-approver-key"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(approver_key.starts_with("webauthn:"), "{approver_key}");
        // She signs in with it from now on: her password and the passkey
        // instead of a code (a second factor: the transfers open).
        browser.goto(&format!("{base}/ui/passkeys")).await.unwrap();
        browser
            .find(Locator::Css("li[data-credential]"))
            .await
            .unwrap_or_else(|e| panic!("{e}: listed as a sign-in passkey"));
        sign_out(&browser).await;
        let body = serde_json::json!({"change": {"kind": "register_approver_key",
            "principal": carol_id, "public_key": approver_key}})
        .to_string();
        let (code, p) = api_call(&server, &admin, "POST", "/v1/proposals", Some(&body), None);
        assert_eq!(code, 201, "{p}");
        assert_eq!(
            approve_proposal(&server.base, &admin, p["id"].as_str().unwrap()),
            "applied"
        );

        // Ian asks for 2 ETH to Bob in the console: checked first (the
        // policy's answer: it needs an approval), then requested.
        let bob = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        enrol_totp_and_sign_in(&browser, &base, "ian").await;
        browser
            .find(Locator::LinkText("Initiate"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        fill(
            &browser,
            &[
                ("#asset", "eip155:31337/native"),
                ("#amount", "2"),
                ("#destination", bob),
            ],
        )
        .await;
        browser
            .find(Locator::Css(r#"button[value="check"]"#))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let verdict = browser
            .wait()
            .for_element(Locator::Css(r#"[data-fact="verdict"]"#))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(verdict.contains("require approval"), "{verdict}");
        assert!(
            api_call(
                &server,
                &admin,
                "GET",
                &format!("/v1/transfers?wallet={wallet}"),
                None,
                None
            )
            .1
            .as_array()
            .is_some_and(|a| a.is_empty()),
            "a check creates nothing"
        );
        browser
            .find(Locator::Css("#request-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser
            .wait()
            .for_element(Locator::Css(r#"[data-fact="digest"]"#))
            .await
            .unwrap();
        let url = browser.current_url().await.unwrap();
        let transfer = url.path().trim_start_matches("/ui/transfers/").to_owned();
        sign_out(&browser).await;

        // Vic only views: the transfer without a button to act with, and
        // the vote posted anyway (with his own session's token) refused.
        sign_in(
            &browser,
            &[("#username", "vic"), ("#password", "correct horse battery")],
            "form.card button[type=submit]",
        )
        .await;
        browser
            .goto(&format!("{base}/ui/transfers/{transfer}"))
            .await
            .unwrap();
        let seen = browser.source().await.unwrap();
        assert!(seen.contains(r#"data-fact="digest""#), "{seen}");
        for action in [
            "passkey-vote",
            "strongroom approve",
            r#"href="/ui/initiate""#,
        ] {
            assert!(!seen.contains(action), "{action}: {seen}");
        }
        let refused = in_page(
            &browser,
            "const csrf = document.querySelector('form.signout input[name=csrf]').value;
             const r = await fetch('/ui/transfers/' + arguments[0] + '/vote', {method: 'POST',
                 headers: {'content-type': 'application/json'},
                 body: JSON.stringify({csrf: csrf, vote: 'approve',
                     expires_at_ms: Date.now() + 600000, signature: 'webauthn:AA.AA.AA'})});
             return r.status;",
            vec![transfer.clone().into()],
        )
        .await;
        assert_eq!(refused, 403, "a viewer's vote");
        sign_out(&browser).await;

        // Carol signs in with her password and the passkey instead of a
        // code (a second factor: the transfers open).
        sign_in(
            &browser,
            &[
                ("#username", "carol"),
                ("#password", "correct horse battery"),
            ],
            "#passkey-login",
        )
        .await;
        let (_, t) = api_call(
            &server,
            &admin,
            "GET",
            &format!("/v1/transfers/{transfer}"),
            None,
            None,
        );
        assert_eq!(t["state"], "pending_approval", "{t}");
        // The wallet's page: where deposits go, with its QR code drawn by
        // the server, and what is awaiting her approval.
        browser
            .goto(&format!("{base}/ui/wallets/{wallet}"))
            .await
            .unwrap();
        let qr = browser
            .find(Locator::Css("figure.account img"))
            .await
            .unwrap()
            .attr("src")
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(qr.starts_with("data:image/svg+xml;base64,"), "{qr}");
        let awaiting = browser.source().await.unwrap();
        assert!(awaiting.contains("Awaiting approval"), "{awaiting}");
        std::fs::write(
            shots.join("wallet.png"),
            browser.screenshot().await.unwrap(),
        )
        .unwrap();
        browser
            .goto(&format!("{base}/ui/transfers/{transfer}"))
            .await
            .unwrap();
        let page = browser.source().await.unwrap();
        assert!(
            page.contains("2 ETH (2000000000000000000 base units)"),
            "{page}"
        );
        assert!(page.contains(bob), "the recipient as typed (EIP-55)");
        std::fs::write(
            shots.join("transfer.png"),
            browser.screenshot().await.unwrap(),
        )
        .unwrap();
        let vote = |expect_done: bool| {
            let (browser, server) = (&browser, &server);
            async move {
                browser
                    .find(Locator::Css("#approve-button"))
                    .await
                    .unwrap()
                    .click()
                    .await
                    .unwrap();
                let attr = if expect_done {
                    "data-done"
                } else {
                    "data-failed"
                };
                browser
                    .wait()
                    .for_element(Locator::Css(&format!("#passkey-vote[{attr}]")))
                    .await
                    .unwrap_or_else(|e| panic!("{e}: {}", server.log_text()));
                browser
                    .find(Locator::Css("#vote-status"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            }
        };
        // The page edited before signing: the reject statement's digest
        // where the approval's should be. The server refuses the assertion.
        in_page(
            &browser,
            "const v = document.getElementById('passkey-vote');
             v.dataset.challengeApprove = v.dataset.challengeReject; return null;",
            vec![],
        )
        .await;
        let refused = vote(false).await;
        assert!(
            refused.contains("bad_signature") || refused.contains("signature"),
            "{refused}"
        );
        let (_, t) = api_call(
            &server,
            &admin,
            "GET",
            &format!("/v1/transfers/{transfer}"),
            None,
            None,
        );
        assert_eq!(t["state"], "pending_approval", "{t}");
        assert!(t["approvals"].as_array().unwrap().is_empty(), "{t}");
        // The page as the server rendered it.
        browser.refresh().await.unwrap();
        let done = vote(true).await;
        assert!(done.starts_with("Approved"), "{done}");
        in_page(
            &browser,
            "document.getElementById('passkey-vote').scrollIntoView(); return null;",
            vec![],
        )
        .await;
        std::fs::write(
            shots.join("approve.png"),
            browser.screenshot().await.unwrap(),
        )
        .unwrap();
        browser.close().await.unwrap();
        let (_, t) = api_call(
            &server,
            &admin,
            "GET",
            &format!("/v1/transfers/{transfer}"),
            None,
            None,
        );
        let approval = &t["approvals"][0];
        assert_eq!(approval["approver"], carol_id.as_str(), "{t}");
        (transfer, bob)
    });
    reach(&server, &lines, Some(&anvil), (&transfer, "completed"));
    let paid = rt().block_on(async {
        eth_client(anvil.url())
            .await
            .balance(bob.parse().unwrap())
            .await
            .unwrap()
    });
    assert!(paid >= 2 * 10u128.pow(18), "{paid}");
}

/// The web console in headless Chromium against a real server: sign-in
/// through the form, the overview (seal state, the note that the role's
/// second factor is missing), a page the missing factor keeps closed, sign
/// out; a screenshot of the overview is saved for the README.
#[test]
fn the_console_in_chromium() {
    use fantoccini::Locator;
    let (dir, config) = data_dir("sqlite://strongroom.db");
    let cfg = config.to_str().unwrap().to_owned();
    let shares = dir.path().join("shares");
    let o = strongroom_with_input(
        &[
            "init",
            "--config",
            &cfg,
            "--shares",
            "2",
            "--threshold",
            "2",
            "--share-dir",
            shares.to_str().unwrap(),
            "--admin",
            "admin",
        ],
        "correct horse battery staple\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let quorum: String = (1..=2)
        .map(|i| std::fs::read_to_string(shares.join(format!("share-{i}.txt"))).unwrap())
        .map(|s| s.trim().to_owned() + "\n")
        .collect();
    let (server, _lines) = serve_unsealed(&config, &quorum);
    // A domain name, as WebAuthn will need; Secure cookies work on it.
    let base = server.base.replace("127.0.0.1", "localhost");
    let driver = Chromedriver::start();
    let profile = tempfile::tempdir().unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&shots).unwrap();
    rt().block_on(async {
        let browser = chromium(&driver, profile.path()).await;
        browser.goto(&format!("{base}/ui/")).await.unwrap();
        assert_eq!(
            browser.current_url().await.unwrap().path(),
            "/ui/login",
            "signed out, the console asks for a sign-in"
        );
        sign_in(
            &browser,
            &[
                ("#username", "admin"),
                ("#password", "correct horse battery staple"),
            ],
            "form.card button[type=submit]",
        )
        .await;
        let seal = browser
            .find(Locator::Css(r#"[data-fact="seal"]"#))
            .await
            .unwrap();
        assert_eq!(seal.text().await.unwrap(), "unsealed");
        let page = browser.source().await.unwrap();
        assert!(page.contains(r#"data-fact="mfa""#), "{page}");
        let png = browser.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(shots.join("overview.png"), &png).unwrap();
        // The transfers need the second factor an admin has not enrolled.
        browser
            .find(Locator::LinkText("Transfers"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let alert = browser
            .wait()
            .for_element(Locator::Css(r#"p[role="alert"]"#))
            .await
            .unwrap();
        assert!(
            alert.text().await.unwrap().contains("authenticator code"),
            "{}",
            browser.source().await.unwrap()
        );
        sign_out(&browser).await;
        browser.goto(&format!("{base}/ui/")).await.unwrap();
        assert_eq!(browser.current_url().await.unwrap().path(), "/ui/login");
        browser.close().await.unwrap();
    });
}

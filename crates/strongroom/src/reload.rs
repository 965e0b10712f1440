//! Configuration changes while serving. SIGHUP (which `strongroom config
//! apply` sends, once the file checks) re-reads the file and validates it
//! whole: a bad file changes nothing. What is safe to change at runtime is
//! applied (the log level; the API's rate limits; the webhook retry
//! schedule; a Bitcoin network's batching; the disk floor raised; the time
//! checkpoints may fail before signing stops shortened); what is not
//! waits for a restart and is named. Either way the audit log records it first, with the diff:
//! a change it cannot record is not made.
//!
//! Nothing that weakens a control is reloaded: webhook hosts, TLS,
//! governance and the rest take a restart (and the restart is itself
//! audited, with the configuration's digest). A network's fee caps and
//! endpoints are not the file's at all once the governance log holds them
//! (`service::governed`): a change in the file is named and ignored, at a
//! reload and at a restart alike.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use service::Service;

use crate::Failure;
use crate::config::Config;

/// Sets the log filter (`info`, `strongroom=debug,info`, …).
pub(crate) type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a reload found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Diff {
    /// Applied now: key → {from, to}.
    pub applied: serde_json::Map<String, Value>,
    /// Changed in the file, applied at the next start.
    pub needs_restart: Vec<&'static str>,
    /// Changed in the file, never applied: governed values (a network's
    /// fee caps and endpoints) change by a proposal to the quorum.
    pub governed: Vec<String>,
}

/// The running configuration and how to change it.
pub(crate) struct Reloader {
    path: PathBuf,
    running: tokio::sync::Mutex<Config>,
    set_log: SetLogLevel,
    /// The API's rate limits, changed in place.
    rates: Option<api_http::RateLimits>,
}

impl Reloader {
    pub(crate) fn new(path: PathBuf, running: Config, set_log: SetLogLevel) -> Reloader {
        Reloader {
            path,
            running: tokio::sync::Mutex::new(running),
            set_log,
            rates: None,
        }
    }

    /// The API's rate limits, for a reload to change.
    pub(crate) fn with_rates(mut self, rates: api_http::RateLimits) -> Reloader {
        self.rates = Some(rates);
        self
    }

    /// Reads the file again and applies what may change now, audited;
    /// `None` when the file was refused (logged and audited, nothing
    /// changed). An error when the audit record could not be written.
    pub(crate) async fn reload(&self, svc: &Service) -> Result<Option<Diff>, Failure> {
        let mut running = self.running.lock().await;
        let checked = Config::load(&self.path).and_then(|new| {
            // The filter is checked before anything is applied.
            tracing_subscriber::EnvFilter::try_new(&new.log_level).map_err(|e| {
                crate::config::ConfigError {
                    key: "log.level".into(),
                    message: e.to_string(),
                }
            })?;
            Ok(new)
        });
        let new = match checked {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(error = %e, "configuration reload refused: nothing changed");
                svc.config_reloaded(
                    false,
                    json!({ "file": self.path.display().to_string(), "error": e.to_string() }),
                )
                .await
                .map_err(anyhow::Error::from)?;
                return Ok(None);
            }
        };
        let diff = diff(&running, &new);
        // Recorded first: a change the audit log cannot hold is not made.
        svc.config_reloaded(
            true,
            json!({
                "file": self.path.display().to_string(),
                "applied": diff.applied,
                "needs_restart": diff.needs_restart,
                "governed_not_applied": diff.governed,
            }),
        )
        .await
        .map_err(anyhow::Error::from)?;
        if diff.applied.contains_key("log.level") {
            (self.set_log)(&new.log_level).map_err(anyhow::Error::msg)?;
            running.log_level.clone_from(&new.log_level);
        }
        let ops = &new.operations;
        if diff.applied.contains_key("operations.disk_floor_mb") {
            svc.set_disk_guard(service::disk::DiskGuard {
                paths: running.disk_paths(),
                floor_bytes: ops.disk_floor_bytes,
            });
            running.operations.disk_floor_bytes = ops.disk_floor_bytes;
        }
        if diff
            .applied
            .contains_key("operations.checkpoint_fail_closed_seconds")
        {
            svc.checkpointer()
                .set_fail_closed_after(ops.checkpoint_fail_closed_after);
            running.operations.checkpoint_fail_closed_after = ops.checkpoint_fail_closed_after;
        }
        if !diff.governed.is_empty() {
            tracing::warn!(governed = ?diff.governed, "the file changes governed values, which it only seeds: they change by a set_fee_caps or set_endpoints proposal");
        }
        let rate_keys = [
            "operations.requests_per_second_per_principal",
            "operations.requests_per_second_per_address",
        ];
        if rate_keys.iter().any(|k| diff.applied.contains_key(*k))
            && let Some(rates) = &self.rates
        {
            let rate = |per_second: u32| api_http::Rate {
                per_second,
                burst: per_second.saturating_mul(2),
            };
            rates.set(rate(ops.per_principal), rate(ops.per_address));
            running.operations.per_principal = ops.per_principal;
            running.operations.per_address = ops.per_address;
        }
        if diff.applied.contains_key("webhooks.retry_delays_seconds") {
            svc.set_webhook_retries(new.webhooks.retry_delays_s.clone());
            running
                .webhooks
                .retry_delays_s
                .clone_from(&new.webhooks.retry_delays_s);
        }
        for (r, n) in running.bitcoin.iter_mut().zip(&new.bitcoin) {
            let key = format!("bitcoin[{}].batch", domain::Network::Bitcoin(n.network));
            if diff.applied.contains_key(&key) && svc.set_btc_batch(n.network, n.batch) {
                r.batch = n.batch;
            }
        }
        tracing::info!(applied = ?diff.applied.keys().collect::<Vec<_>>(), needs_restart = ?diff.needs_restart, "configuration reloaded");
        Ok(Some(diff))
    }
}

fn seconds(d: Duration) -> u64 {
    d.as_secs()
}

/// What differs between the running configuration and the file's: the
/// settings applied at runtime with their values, the others by name only
/// (an endpoint's URL may hold an API key).
pub(crate) fn diff(running: &Config, new: &Config) -> Diff {
    let mut d = Diff::default();
    // Fee caps and endpoints are the governance log's once seeded: named,
    // never applied, and no reason for a restart. A Bitcoin network's
    // batching applies at once.
    let (eth_same, btc_same) = governed_changes(running, new, &mut d);
    let mut applied = |key: &str, from: Value, to: Value| {
        if from != to {
            d.applied
                .insert(key.to_owned(), json!({ "from": from, "to": to }));
        }
    };
    applied("log.level", json!(running.log_level), json!(new.log_level));
    // The guards change at runtime only to guard more: a higher floor, a
    // shorter limit. Lowering one waits for a restart.
    let (floor, new_floor) = (
        running.operations.disk_floor_bytes,
        new.operations.disk_floor_bytes,
    );
    let (limit, new_limit) = (
        running.operations.checkpoint_fail_closed_after,
        new.operations.checkpoint_fail_closed_after,
    );
    if new_floor >= floor {
        applied(
            "operations.disk_floor_mb",
            json!(floor >> 20),
            json!(new_floor >> 20),
        );
    }
    if new_limit <= limit {
        applied(
            "operations.checkpoint_fail_closed_seconds",
            json!(seconds(limit)),
            json!(seconds(new_limit)),
        );
    }
    // Rate limits and the webhook retry schedule: at once, either way.
    applied(
        "operations.requests_per_second_per_principal",
        json!(running.operations.per_principal),
        json!(new.operations.per_principal),
    );
    applied(
        "operations.requests_per_second_per_address",
        json!(running.operations.per_address),
        json!(new.operations.per_address),
    );
    let retries = |p: &service::webhook_target::WebhookPolicy| {
        json!(
            p.retry_delays_s
                .clone()
                .unwrap_or_else(|| { service::webhook_target::DEFAULT_RETRY_DELAYS_S.to_vec() })
        )
    };
    applied(
        "webhooks.retry_delays_seconds",
        retries(&running.webhooks),
        retries(&new.webhooks),
    );
    let webhooks_same = {
        let mut masked = new.webhooks.clone();
        masked
            .retry_delays_s
            .clone_from(&running.webhooks.retry_delays_s);
        format!("{:?}", running.webhooks) == format!("{masked:?}")
    };
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    let restart: [(&'static str, bool); 23] = [
        ("operations.disk_floor_mb (lowered)", new_floor >= floor),
        (
            "operations.checkpoint_fail_closed_seconds (raised)",
            new_limit <= limit,
        ),
        ("server.listen", same(&running.listen, &new.listen)),
        (
            "server.max_body_bytes",
            same(&running.max_body_bytes, &new.max_body_bytes),
        ),
        (
            "server.request_timeout_seconds",
            same(&running.request_timeout, &new.request_timeout),
        ),
        (
            "server.trusted_proxies",
            same(&running.trusted_proxies, &new.trusted_proxies),
        ),
        ("server.tls", same(&running.server_tls, &new.server_tls)),
        ("tls", same(&running.client_tls, &new.client_tls)),
        ("database", same(&running.database, &new.database)),
        (
            "audit",
            same(
                &(
                    &running.audit_key,
                    &running.checkpoint_file,
                    running.checkpoint_every_records,
                    running.checkpoint_every,
                ),
                &(
                    &new.audit_key,
                    &new.checkpoint_file,
                    new.checkpoint_every_records,
                    new.checkpoint_every,
                ),
            ),
        ),
        ("log.format", same(&running.log_format, &new.log_format)),
        ("hsm", same(&running.hsm, &new.hsm)),
        ("threshold", same(&running.threshold, &new.threshold)),
        ("governance", same(&running.governance, &new.governance)),
        ("ethereum", eth_same),
        ("bitcoin", btc_same),
        ("webhooks", webhooks_same),
        ("backup", same(&running.backup, &new.backup)),
        (
            "reconciliation",
            same(&running.reconcile_every, &new.reconcile_every),
        ),
        ("console", same(&running.passkeys, &new.passkeys)),
        (
            "operations.metrics_listen",
            same(
                &running.operations.metrics_listen,
                &new.operations.metrics_listen,
            ),
        ),
        (
            "operations.max_in_flight",
            same(
                &running.operations.max_in_flight,
                &new.operations.max_in_flight,
            ),
        ),
        (
            "operations.max_concurrent_signatures",
            same(
                &running.operations.max_concurrent_signatures,
                &new.operations.max_concurrent_signatures,
            ),
        ),
    ];
    d.needs_restart = restart
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(k, _)| k)
        .collect();
    d
}

/// Whether the EVM and Bitcoin networks are the same but for their fee
/// caps and endpoints (named in `d.governed`) and a Bitcoin network's
/// batching (applied, in `d.applied`).
fn governed_changes(running: &Config, new: &Config, d: &mut Diff) -> (bool, bool) {
    let governed = &mut d.governed;
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    let mut eth_same = running.ethereum.len() == new.ethereum.len();
    for (r, n) in running.ethereum.iter().zip(&new.ethereum) {
        let id = n.network.chain_id;
        if r.network.chain_id != id {
            eth_same = false;
            continue;
        }
        if r.network.fee_caps != n.network.fee_caps {
            governed.push(format!("ethereum[{id}].fee_caps"));
        }
        if r.endpoints != n.endpoints {
            governed.push(format!("ethereum[{id}].endpoints"));
        }
        let mut masked = n.clone();
        masked.network.fee_caps = r.network.fee_caps;
        masked.endpoints.clone_from(&r.endpoints);
        eth_same &= same(r, &masked);
    }
    let mut btc_same = running.bitcoin.len() == new.bitcoin.len();
    for (r, n) in running.bitcoin.iter().zip(&new.bitcoin) {
        let net = domain::Network::Bitcoin(n.network);
        if r.network != n.network {
            btc_same = false;
            continue;
        }
        if r.fee_caps != n.fee_caps {
            governed.push(format!("bitcoin[{net}].fee_caps"));
        }
        if !same(&r.endpoints, &n.endpoints) {
            governed.push(format!("bitcoin[{net}].endpoints"));
        }
        if r.batch != n.batch {
            let rule = |b: &service::btc::BatchRule| json!({ "window_seconds": b.window_ms / 1000, "max_payouts": b.max_payouts });
            d.applied.insert(
                format!("bitcoin[{net}].batch"),
                json!({ "from": rule(&r.batch), "to": rule(&n.batch) }),
            );
        }
        let mut masked = n.clone();
        masked.fee_caps = r.fee_caps;
        masked.batch = r.batch;
        masked.endpoints.clone_from(&r.endpoints);
        btc_same &= same(r, &masked);
    }
    (eth_same, btc_same)
}

/// Where `serve` keeps its own small files (its process id, its instance
/// id): beside its audit checkpoints, a directory it must be able to write
/// (the configuration's may be read-only).
pub(crate) fn state_dir(c: &Config) -> PathBuf {
    c.checkpoint_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where `serve` writes its process id.
pub(crate) fn pid_file(c: &Config) -> PathBuf {
    state_dir(c).join("strongroom.pid")
}

/// `strongroom config apply`: checks the file as `serve` would, then asks
/// the server serving it to reload (SIGHUP). A file that does not check is
/// not sent.
pub(crate) fn apply(config: &Path) -> Result<(), Failure> {
    crate::setup::config_check(config)?;
    let pid_path = pid_file(&Config::load(config)?);
    let pid = std::fs::read_to_string(&pid_path)
        .map_err(|e| anyhow::anyhow!("no server is serving {}: {e}", config.display()))?;
    let pid = pid.trim();
    // Only a `strongroom serve` of this file (a stale file's pid may be
    // another process's by now).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    if !args.iter().any(|a| *a == b"serve") || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(anyhow::anyhow!(
            "{} names process {pid}, which is not a strongroom server: is the server running?",
            pid_path.display()
        )
        .into());
    }
    let sent = std::process::Command::new("kill")
        .args(["-HUP", pid])
        .status()
        .map_err(anyhow::Error::from)?;
    if !sent.success() {
        return Err(anyhow::anyhow!("could not signal process {pid}").into());
    }
    println!(
        "sent SIGHUP to the server (pid {pid}): it applies what may change at runtime and audits \
         it (config.reloaded), or changes nothing (config.reload_refused)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration with one network of each kind.
    const NETWORKS: &str = r#"
[[ethereum]]
chain_id = 1
endpoints = ["http://127.0.0.1:8545"]
confirmations = 12
max_fee_per_gas_wei = "200000000000"
max_total_fee_wei = "50000000000000000"
[[bitcoin]]
network = "regtest"
max_fee_rate_sat_vb = 50
max_fee_sat = 20000
batch_window_seconds = 60
"#;

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/strongroom")).unwrap()
    }

    fn base() -> String {
        format!("{}{NETWORKS}", crate::config::EXAMPLE)
    }

    #[test]
    fn each_setting_is_applied_governed_or_left_for_a_restart() {
        let running = config(&base());
        assert_eq!(diff(&running, &config(&base())), Diff::default());
        // Batching applies at once; a raised cap and a new endpoint are
        // governed: named, never applied, no restart.
        let new = config(
            &base()
                .replace("batch_window_seconds = 60", "batch_window_seconds = 5")
                .replace("\"200000000000\"", "\"900000000000\"")
                .replace("max_fee_sat = 20000", "max_fee_sat = 90000")
                .replace(
                    "[\"http://127.0.0.1:8545\"]",
                    "[\"http://127.0.0.1:8545\", \"https://node.example\"]",
                ),
        );
        let d = diff(&running, &new);
        assert_eq!(
            d.applied["bitcoin[bitcoin:regtest].batch"],
            json!({"from": {"window_seconds": 60, "max_payouts": 50}, "to": {"window_seconds": 5, "max_payouts": 50}})
        );
        assert_eq!(
            d.governed,
            [
                "ethereum[1].fee_caps",
                "ethereum[1].endpoints",
                "bitcoin[bitcoin:regtest].fee_caps"
            ]
        );
        assert!(d.needs_restart.is_empty(), "{d:?}");
        // Anything else about a network waits for a restart.
        let d = diff(
            &running,
            &config(&base().replace("confirmations = 12", "confirmations = 20")),
        );
        assert_eq!(d.needs_restart, ["ethereum"]);
        let d = diff(
            &running,
            &config(&format!(
                "{}[webhooks]\nretry_delays_seconds = [10]\n",
                base()
            )),
        );
        assert_eq!(
            d.applied["webhooks.retry_delays_seconds"],
            json!({"from": [5, 300, 1800, 7200, 18_000, 36_000, 36_000], "to": [10]})
        );
        assert!(d.needs_restart.is_empty(), "{d:?}");
        let d = diff(
            &running,
            &config(&format!(
                "{}[webhooks]\nallow_hosts = [\"hooks.internal\"]\n",
                base()
            )),
        );
        assert_eq!(d.needs_restart, ["webhooks"]);
    }

    #[test]
    fn a_retry_schedule_out_of_bounds_is_refused() {
        for bad in ["[0]", "[604801]", &format!("[{}]", ["1"; 21].join(","))] {
            let text = format!("{}[webhooks]\nretry_delays_seconds = {bad}\n", base());
            let e = Config::parse(&text, Path::new("/etc/strongroom")).unwrap_err();
            assert_eq!(e.key, "webhooks.retry_delays_seconds", "{bad}");
        }
    }
}

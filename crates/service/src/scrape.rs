//! A scrape: the counters kept so far (`metrics`) and the state read now —
//! transfers by state and age, the stuck view, freezes, the audit log and
//! its checkpoints, chain endpoints, signer nodes, the HSM and the database
//! pool.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{
    EndpointLabels, KeyLabels, KindLabels, NetworkLabels, NodeLabels, PathLabels, StateLabels,
};
use crate::service::Service;
use crate::vault::SealStatus;

fn gauge(r: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    r.register(name, help, g);
}

fn seconds_since(now: domain::Timestamp, then: domain::Timestamp) -> i64 {
    now.as_millis().saturating_sub(then.as_millis()).max(0) / 1000
}

fn count(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The queue and the webhook outbox at one moment, for `/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkStatus {
    /// Transfers queued for the chain.
    pub queued: u64,
    /// Transfers the stuck view shows.
    pub stuck: u64,
    /// Webhook deliveries not yet made, of which some failed once or more,
    /// and those given up.
    pub webhooks_pending: u64,
    pub webhooks_retrying: u64,
    pub webhooks_failed: u64,
}

impl Service {
    /// The queue's and the webhook outbox's state (`None`: the database
    /// did not answer within `budget`).
    pub async fn work_status(&self, budget: std::time::Duration) -> Option<WorkStatus> {
        let now = self.now();
        let quiet = now
            .checked_add_millis(-crate::queue::STUCK_AFTER_MS)
            .unwrap_or(now);
        let s = tokio::time::timeout(budget, self.store().ops_snapshot(quiet))
            .await
            .ok()?
            .ok()?;
        let deliveries = |state: &str| {
            s.webhook_deliveries
                .iter()
                .find(|(st, _)| st == state)
                .map_or(0, |(_, n)| *n)
        };
        Some(WorkStatus {
            queued: s
                .open_transfers
                .iter()
                .find(|c| c.state == "queued")
                .map_or(0, |c| c.count),
            stuck: s.stuck,
            webhooks_pending: deliveries("pending"),
            webhooks_retrying: s.webhook_retrying,
            webhooks_failed: deliveries("failed"),
        })
    }

    /// The registry a scrape encodes: the counters kept so far and the
    /// state read now (the database within `budget`; what it could not
    /// read is left out, and `strongroom_database_up` says so).
    pub async fn metrics_registry(&self, budget: std::time::Duration) -> Registry {
        let mut r = Registry::with_prefix("strongroom");
        self.metrics().register(&mut r);
        let now = self.now();
        let seal = self
            .seal_status()
            .await
            .unwrap_or(SealStatus::Uninitialized);
        gauge(
            &mut r,
            "unsealed",
            "1 when the keystore is unsealed",
            i64::from(seal == SealStatus::Unsealed),
        );
        let quiet = now
            .checked_add_millis(-crate::queue::STUCK_AFTER_MS)
            .unwrap_or(now);
        let snapshot = tokio::time::timeout(budget, self.store().ops_snapshot(quiet)).await;
        let snapshot = snapshot.ok().and_then(Result::ok);
        gauge(
            &mut r,
            "database_up",
            "1 when the database answered this scrape",
            i64::from(snapshot.is_some()),
        );
        let (open, idle) = self.store().pool_connections();
        let pool = Family::<StateLabels, Gauge>::default();
        pool.get_or_create(&StateLabels {
            state: "open".into(),
        })
        .set(i64::from(open));
        pool.get_or_create(&StateLabels {
            state: "idle".into(),
        })
        .set(count(idle));
        r.register("db_pool_connections", "Database connections", pool);
        if let Some(s) = snapshot {
            self.register_snapshot(&mut r, &s, now);
            self.register_history(&mut r, now, budget).await;
        }
        self.register_disk(&mut r);
        self.register_checkpoints(&mut r, now);
        self.register_chains(&mut r);
        self.register_backends(&mut r);
        r
    }

    fn register_snapshot(
        &self,
        r: &mut Registry,
        s: &storage::OpsSnapshot,
        now: domain::Timestamp,
    ) {
        let by_state = Family::<StateLabels, Gauge>::default();
        let age = Family::<StateLabels, Gauge>::default();
        // Every open state, 0 when none is in it (a series that vanishes
        // cannot be told from one that is not scraped).
        for state in lifecycle::State::ALL.iter().filter(|s| !s.is_final()) {
            let l = StateLabels {
                state: state.as_str().to_owned(),
            };
            by_state.get_or_create(&l).set(0);
            age.get_or_create(&l).set(0);
        }
        for c in &s.open_transfers {
            let l = StateLabels {
                state: c.state.clone(),
            };
            by_state.get_or_create(&l).set(count(c.count));
            age.get_or_create(&l)
                .set(seconds_since(now, c.oldest_change));
        }
        let pending = s
            .open_transfers
            .iter()
            .find(|c| c.state == "pending_approval");
        gauge(
            r,
            "approvals_pending",
            "Transfers waiting for approvals",
            pending.map_or(0, |c| count(c.count)),
        );
        gauge(
            r,
            "approvals_oldest_age_seconds",
            "How long the oldest transfer has waited for approvals",
            pending.map_or(0, |c| seconds_since(now, c.oldest_change)),
        );
        let queued = s.open_transfers.iter().find(|c| c.state == "queued");
        gauge(
            r,
            "queue_depth",
            "Transfers queued for the chain",
            queued.map_or(0, |c| count(c.count)),
        );
        r.register(
            "transfers",
            "Transfers not yet at an end, by state",
            by_state,
        );
        r.register(
            "transfer_oldest_age_seconds",
            "Time since the longest-waiting transfer in each state last moved",
            age,
        );
        gauge(
            r,
            "transfers_stuck",
            "Transfers the stuck view shows (held, retried, or quiet too long)",
            count(s.stuck),
        );
        let freezes = Family::<KindLabels, Gauge>::default();
        for kind in ["global", "wallet", "key"] {
            freezes
                .get_or_create(&KindLabels { kind: kind.into() })
                .set(0);
        }
        for (kind, n) in &s.freezes {
            freezes
                .get_or_create(&KindLabels { kind: kind.clone() })
                .set(count(*n));
        }
        r.register("freezes_active", "Freezes in force, by scope", freezes);
        let outbox = Family::<StateLabels, Gauge>::default();
        for state in ["pending", "failed"] {
            outbox
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(0);
        }
        for (state, n) in &s.webhook_deliveries {
            outbox
                .get_or_create(&StateLabels {
                    state: state.clone(),
                })
                .set(count(*n));
        }
        r.register(
            "webhook_outbox",
            "Webhook deliveries not yet made, by state (failed: given up)",
            outbox,
        );
        gauge(
            r,
            "webhook_retrying",
            "Pending webhook deliveries that have failed at least once",
            count(s.webhook_retrying),
        );
        gauge(
            r,
            "audit_records",
            "Records in the audit log",
            count(s.audit_records),
        );
        gauge(
            r,
            "audit_unchecked_records",
            "Audit records not yet covered by a signed checkpoint",
            count(
                s.audit_records
                    .saturating_sub(self.checkpointer().health().seq),
            ),
        );
    }

    /// The last reconciliation run and the last backup.
    async fn register_history(
        &self,
        r: &mut Registry,
        now: domain::Timestamp,
        budget: std::time::Duration,
    ) {
        let runs = tokio::time::timeout(budget, self.store().reconciliation_runs(1, None)).await;
        if let Ok(Ok(runs)) = runs
            && let Some(run) = runs.first()
        {
            let findings = serde_json::from_str::<serde_json::Value>(&run.findings)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0);
            gauge(
                r,
                "reconciliation_findings",
                "Findings of the last reconciliation run (each an outflow or balance Strongroom cannot explain)",
                count(findings),
            );
            gauge(
                r,
                "reconciliation_last_run_age_seconds",
                "Time since the last reconciliation run finished",
                seconds_since(now, run.finished_at),
            );
            gauge(
                r,
                "reconciliation_last_run_complete",
                "1 when the last reconciliation run compared every account",
                i64::from(run.complete),
            );
        }
        if self.metrics().last_backup().is_none() {
            let read =
                tokio::time::timeout(budget, self.store().last_audit_time("backup.created")).await;
            if let Ok(Ok(at)) = read {
                self.metrics().backup_read(at);
            }
        }
        if let Some(Some(at)) = self.metrics().last_backup() {
            gauge(
                r,
                "backup_age_seconds",
                "Time since the last backup was taken",
                seconds_since(now, at),
            );
        }
    }

    fn register_disk(&self, r: &mut Registry) {
        let free = Family::<PathLabels, Gauge>::default();
        let floor = Family::<PathLabels, Gauge>::default();
        for d in self.disk_space() {
            let l = PathLabels {
                path: d.path.display().to_string(),
            };
            if let Some(f) = d.free_bytes {
                free.get_or_create(&l).set(count(f));
            }
            floor.get_or_create(&l).set(count(d.floor_bytes));
        }
        r.register(
            "disk_free_bytes",
            "Free space where the server writes",
            free,
        );
        r.register(
            "disk_floor_bytes",
            "The free space below which new transfers are refused",
            floor,
        );
    }

    fn register_checkpoints(&self, r: &mut Registry, now: domain::Timestamp) {
        let h = self.checkpointer().health();
        if let Some(at) = h.written_at {
            gauge(
                r,
                "audit_checkpoint_age_seconds",
                "Time since the last audit checkpoint was written",
                seconds_since(now, at),
            );
        }
        gauge(
            r,
            "audit_checkpoint_failing_seconds",
            "How long checkpoint writes have been failing (0: they are not)",
            h.failing
                .as_ref()
                .map_or(0, |(since, _)| seconds_since(now, *since).max(1)),
        );
        gauge(
            r,
            "signing_stopped",
            "1 when signing is stopped because checkpoints fail",
            i64::from(self.checkpointer().signing_stopped(now).is_some()),
        );
    }

    fn register_chains(&self, r: &mut Registry) {
        let up = Family::<EndpointLabels, Gauge>::default();
        let head = Family::<EndpointLabels, Gauge>::default();
        let lag = Family::<EndpointLabels, Gauge>::default();
        let head_age = Family::<NetworkLabels, Gauge>::default();
        let networks = self
            .eth_networks()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for n in networks.values() {
            let network = domain::Network::Evm {
                chain_id: n.config.chain_id,
            }
            .to_string();
            let health = n.client.health();
            let tip = health.iter().filter_map(|h| h.head).max();
            if let Some(t) = n.client.head_time() {
                let now_s = u64::try_from(self.now().as_millis() / 1000).unwrap_or(0);
                head_age
                    .get_or_create(&NetworkLabels {
                        network: network.clone(),
                    })
                    .set(count(now_s.saturating_sub(t)));
            }
            for h in health {
                let l = EndpointLabels {
                    network: network.clone(),
                    endpoint: h.name.clone(),
                };
                up.get_or_create(&l)
                    .set(i64::from(h.allowed && h.consecutive_failures == 0));
                if let (Some(at), Some(tip)) = (h.head, tip) {
                    head.get_or_create(&l).set(count(at));
                    lag.get_or_create(&l).set(count(tip.saturating_sub(at)));
                }
            }
        }
        let btc = self
            .btc_networks()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (network, n) in &btc {
            for (endpoint, _, failures, allowed) in n.client.iter().flat_map(|c| c.health()) {
                up.get_or_create(&EndpointLabels {
                    network: network.clone(),
                    endpoint,
                })
                .set(i64::from(allowed && failures == 0));
            }
        }
        r.register(
            "chain_endpoint_up",
            "1 when the endpoint is allowed by governance and its last call succeeded",
            up,
        );
        r.register(
            "chain_endpoint_head",
            "The head block the endpoint reported last",
            head,
        );
        r.register(
            "chain_endpoint_lag_blocks",
            "Blocks the endpoint is behind the highest head seen on its network",
            lag,
        );
        r.register(
            "chain_head_age_seconds",
            "Time since the block at the best head of an EVM network was made",
            head_age,
        );
        let scanned = Family::<NetworkLabels, Gauge>::default();
        for (network, height) in self
            .scan_cursors()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            scanned
                .get_or_create(&NetworkLabels {
                    network: network.clone(),
                })
                .set(count(*height));
        }
        r.register(
            "chain_scanned_height",
            "The block deposits have been scanned to, by network",
            scanned,
        );
    }

    fn register_backends(&self, r: &mut Registry) {
        if let Some(t) = self.threshold() {
            let c = t.cluster();
            let nodes = Family::<NodeLabels, Gauge>::default();
            for (index, answered) in c.reachability() {
                nodes
                    .get_or_create(&NodeLabels {
                        node: index.to_string(),
                    })
                    .set(match answered {
                        Some(true) => 1,
                        Some(false) => 0,
                        None => -1,
                    });
            }
            let protocols = Family::<NodeLabels, Gauge>::default();
            for (index, p) in c.protocols() {
                protocols
                    .get_or_create(&NodeLabels {
                        node: index.to_string(),
                    })
                    .set(p.map_or(0, i64::from));
            }
            r.register(
                "signer_node_protocol",
                "The signer protocol the node spoke at its last hello (0: none yet)",
                protocols,
            );
            r.register(
                "signer_node_up",
                "1 when the signer node answered its last call (0: it did not; -1: not called yet)",
                nodes,
            );
            let pool = Family::<KeyLabels, Gauge>::default();
            for (key, n) in c.pool_sizes() {
                pool.get_or_create(&KeyLabels { key }).set(count(n));
            }
            r.register(
                "presignatures_pooled",
                "Threshold ECDSA presignatures ready, by key",
                pool,
            );
            gauge(
                r,
                "presignature_target",
                "Presignatures the coordinator keeps ready per key",
                count(t.presignatures()),
            );
            let blamed = Counter::<u64>::default();
            blamed.inc_by(c.blamed_aborts());
            r.register(
                "threshold_blamed_aborts",
                "Aborted signing sessions blamed on a party",
                blamed,
            );
        }
        let (turns, limit) = self.signing_turns();
        gauge(
            r,
            "signatures_in_flight",
            "Signatures being made now",
            count(limit.saturating_sub(turns.available_permits())),
        );
        gauge(
            r,
            "signatures_in_flight_max",
            "Signatures made at once at most (more wait their turn)",
            count(limit),
        );
        if let Some((open, idle)) = self.hsm().and_then(|h| h.sessions()) {
            let pool = Family::<StateLabels, Gauge>::default();
            pool.get_or_create(&StateLabels {
                state: "open".into(),
            })
            .set(count(open));
            pool.get_or_create(&StateLabels {
                state: "idle".into(),
            })
            .set(count(idle));
            r.register("hsm_sessions", "HSM sessions", pool);
        }
    }
}

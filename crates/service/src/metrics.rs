//! Metrics for Prometheus: what the service counts as it works (signatures,
//! policy decisions, transitions, claims, commits, webhook deliveries). What
//! is read when it is scraped is `scrape`'s.
//!
//! Labels are bounded: states, backends, verdicts, the operators' own rule
//! names, configured networks, endpoints (scheme, host and port) and nodes,
//! and key ids. Never an address, an amount or a transfer id.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SignatureLabels {
    pub(crate) backend: String,
    pub(crate) key: String,
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SignerLabels {
    pub(crate) backend: String,
    pub(crate) key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FeeLabels {
    pub(crate) network: String,
    /// `max_fee_per_gas_wei`, `priority_fee_wei`, `gas_price_wei` (EVM),
    /// `sat_per_vb` (Bitcoin).
    pub(crate) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DecisionLabels {
    pub(crate) verdict: &'static str,
    pub(crate) rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    pub(crate) state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub(crate) kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EndpointLabels {
    pub(crate) network: String,
    pub(crate) endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NetworkLabels {
    pub(crate) network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NodeLabels {
    pub(crate) node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PathLabels {
    pub(crate) path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KeyLabels {
    pub(crate) key: String,
}

fn seconds_histogram() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// What the service counts as it works, kept for the process's life.
#[derive(Debug)]
pub struct Metrics {
    signatures: Family<SignatureLabels, Counter>,
    signature_seconds: Family<SignerLabels, Histogram, fn() -> Histogram>,
    /// The last fee estimate each network's planning used.
    fees: Family<FeeLabels, prometheus_client::metrics::gauge::Gauge>,
    decisions: Family<DecisionLabels, Counter>,
    breakers: Counter,
    transitions: Family<StateLabels, Counter>,
    claims: Histogram,
    retries: Counter,
    commits: Histogram,
    deliveries: Family<OutcomeLabels, Counter>,
    /// When the last backup was taken: unread until the first scrape
    /// (then read from the audit log once), kept by this process after.
    last_backup: std::sync::Mutex<Option<Option<domain::Timestamp>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics::empty();
        // Series that exist from the start, at 0 (rates over a series that
        // appears only with its first event miss that event).
        for state in lifecycle::State::ALL {
            let _ = m.transitions.get_or_create(&StateLabels {
                state: state.as_str().to_owned(),
            });
        }
        for outcome in ["ok", "error"] {
            let _ = m.deliveries.get_or_create(&OutcomeLabels { outcome });
        }
        m
    }
}

impl Metrics {
    fn empty() -> Self {
        Metrics {
            signatures: Family::default(),
            signature_seconds: Family::new_with_constructor(seconds_histogram),
            fees: Family::default(),
            decisions: Family::default(),
            breakers: Counter::default(),
            transitions: Family::default(),
            claims: seconds_histogram(),
            retries: Counter::default(),
            commits: seconds_histogram(),
            deliveries: Family::default(),
            last_backup: std::sync::Mutex::new(None),
        }
    }
}

impl Metrics {
    /// A signature made (or refused or failed) by `backend` with `key`.
    pub(crate) fn signed(&self, backend: &str, key: &str, ok: bool, seconds: f64) {
        let outcome = if ok { "ok" } else { "error" };
        self.signatures
            .get_or_create(&SignatureLabels {
                backend: backend.to_owned(),
                key: key.to_owned(),
                outcome,
            })
            .inc();
        self.signature_seconds
            .get_or_create(&SignerLabels {
                backend: backend.to_owned(),
                key: key.to_owned(),
            })
            .observe(seconds);
    }

    /// The fee estimate a plan on `network` used (`kind` as in
    /// [`FeeLabels`]), in base units.
    pub(crate) fn fee_estimated(&self, network: &str, kind: &'static str, value: u128) {
        self.fees
            .get_or_create(&FeeLabels {
                network: network.to_owned(),
                kind,
            })
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    }

    /// A policy decision: its verdict and the rule that made it.
    pub(crate) fn decided(&self, d: &policy::Decision) {
        let rule = match (&d.rule, d.error) {
            (_, true) => "(error)".to_owned(),
            (Some(r), false) => r.clone(),
            (None, false) => "(default)".to_owned(),
        };
        self.decisions
            .get_or_create(&DecisionLabels {
                verdict: match &d.outcome {
                    policy::Outcome::Allow { time_lock_s: 0 } => "allow",
                    policy::Outcome::Allow { .. } => "allow_after_time_lock",
                    policy::Outcome::RequireApproval { .. } => "require_approval",
                    policy::Outcome::Block => "block",
                },
                rule,
            })
            .inc();
        if d.breaker.is_some() {
            self.breakers.inc();
        }
    }

    /// A transfer moved to `state`.
    pub(crate) fn moved(&self, state: lifecycle::State) {
        self.transitions
            .get_or_create(&StateLabels {
                state: state.as_str().to_owned(),
            })
            .inc();
    }

    /// How long the queue took to claim work.
    pub(crate) fn claimed(&self, seconds: f64) {
        self.claims.observe(seconds);
    }

    /// A transfer's attempt failed and will be tried again.
    pub(crate) fn retried(&self) {
        self.retries.inc();
    }

    /// How long a commit (with its audit records) took.
    pub(crate) fn committed(&self, seconds: f64) {
        self.commits.observe(seconds);
    }

    /// A webhook delivery attempt.
    pub(crate) fn delivered(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.deliveries
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A backup was taken at `at`.
    pub(crate) fn backed_up(&self, at: domain::Timestamp) {
        *self
            .last_backup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Some(at));
    }

    /// When the last backup was taken, if known (`None`: not read yet).
    pub(crate) fn last_backup(&self) -> Option<Option<domain::Timestamp>> {
        *self
            .last_backup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps what the audit log says, unless a backup was taken meanwhile.
    pub(crate) fn backup_read(&self, at: Option<domain::Timestamp>) {
        let mut last = self
            .last_backup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none() {
            *last = Some(at);
        }
    }

    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "signatures",
            "Signatures asked of a key backend, by outcome",
            self.signatures.clone(),
        );
        r.register(
            "signature_seconds",
            "Time to make one signature, by backend and key",
            self.signature_seconds.clone(),
        );
        r.register(
            "fee_estimate",
            "The last fee estimate planning used, by network and kind (wei, or sat/vB)",
            self.fees.clone(),
        );
        r.register(
            "policy_decisions",
            "Policy decisions, by verdict and the rule that decided",
            self.decisions.clone(),
        );
        r.register(
            "circuit_breaker_trips",
            "Circuit breakers tripped (each freezes its wallet)",
            self.breakers.clone(),
        );
        r.register(
            "transfer_transitions",
            "Transfers that entered each state",
            self.transitions.clone(),
        );
        r.register(
            "queue_claim_seconds",
            "Time to claim queued transfers",
            self.claims.clone(),
        );
        r.register(
            "transfer_retries",
            "Transfer attempts that failed and will be tried again",
            self.retries.clone(),
        );
        r.register(
            "db_commit_seconds",
            "Time to commit a change with its audit records",
            self.commits.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome",
            self.deliveries.clone(),
        );
    }
}

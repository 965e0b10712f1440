//! The service: the operations the API and CLI call, each one a state change
//! committed with its audit record, followed by its effects.

use std::sync::Arc;

use audit::{Details, Entry};
use domain::{Account, AccountId, AccountName, Actor};
use serde_json::json;
use storage::Store;

pub use crate::error::ServiceError;

use crate::checkpoints::Checkpointer;
use crate::clock::Clock;
use crate::vault::{SealStatus, Vault};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseStatus {
    pub backend: &'static str,
    pub reachable: bool,
    pub schema_version: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub version: &'static str,
    /// `git describe` of the source the binary was built from.
    pub git_commit: &'static str,
    pub database: DatabaseStatus,
    pub seal: SealStatus,
    pub audit_records: Option<u64>,
    /// Per configured EVM network: how many node endpoints answer.
    pub ethereum: Vec<EthStatus>,
    /// Per configured Bitcoin network with nodes: how many answer.
    pub bitcoin: Vec<BtcStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtcStatus {
    /// `bitcoin:mainnet`, …
    pub network: String,
    pub endpoints: usize,
    /// Endpoints whose last call succeeded.
    pub healthy: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthStatus {
    pub chain_id: u64,
    pub endpoints: usize,
    /// Endpoints governance allows whose last call succeeded.
    pub healthy: usize,
}

/// What anyone may know: the server is up, its database answers, its seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    pub reachable: bool,
    pub seal: SealStatus,
}

/// Where the server writes, and the free space each place needs (the
/// disk floor: see `disk`).
#[derive(Debug, Clone)]
pub struct DiskGuard {
    pub paths: Vec<std::path::PathBuf>,
    pub floor_bytes: u64,
}

/// Signatures made at once, by default.
pub const SIGNING_LIMIT: usize = 32;

/// The running application.
#[derive(Debug, Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    checkpointer: Checkpointer,
    vault: tokio::sync::Mutex<Vault>,
    hsm: Option<Arc<dyn keys::Signer>>,
    wrapper: Option<Arc<dyn keys::Wrapper>>,
    /// Configured EVM networks by chain id.
    eth: std::sync::RwLock<std::collections::BTreeMap<u64, Arc<crate::settings::EthNetwork>>>,
    /// The HTTP client webhook deliveries go out through.
    webhooks: std::sync::RwLock<Arc<(crate::webhook_target::WebhookPolicy, reqwest::Client)>>,
    /// Configured Bitcoin networks by name (`bitcoin:mainnet`, …).
    btc: std::sync::RwLock<std::collections::BTreeMap<String, Arc<crate::settings::BtcNetwork>>>,
    /// `None` until the binary (or a test) configures it: until then no
    /// proposal applies and no transfer is judged.
    governance: std::sync::RwLock<Option<crate::settings::GovernanceConfig>>,
    /// Woken when a transfer's state changes: the queue's worker looks.
    transfers_moved: tokio::sync::Notify,
    /// Woken when a broadcast of this process ends: a freeze waiting for
    /// broadcasts in flight looks again.
    broadcasts_ended: tokio::sync::Notify,
    /// Sign-in attempts per user name (20 a minute, bursts of 10).
    login_names: crate::limiter::Limiter,
    /// Where each network's deposit scan has reached in this process (the
    /// database keeps it at least every `BLOCKS_PER_PASS` blocks and with
    /// every deposit found; a restart rescans from there).
    scan_cursors: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Ethereum sends next in line for their sender that the chain has not
    /// mined: since which block each has waited (`eth_stall`). Kept in this
    /// process only: after a restart a send waits its blocks again.
    eth_waiting: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// The signer nodes of threshold keys, once configured.
    threshold: std::sync::OnceLock<Arc<crate::threshold::ThresholdKeys>>,
    /// The verified governance state and the governance MAC key.
    gov: crate::gov_state::Gov,
    /// Where passkey approvals are made (the console's RP ID and origins):
    /// without it, passkey approvals are refused.
    relying_party: std::sync::RwLock<Option<Arc<policy::RelyingParty>>>,
    /// What this process counted, for Prometheus.
    metrics: crate::metrics::Metrics,
    /// This server's instance id: what its claims on queued transfers are
    /// held under (kept across restarts by the binary; random otherwise).
    instance: std::sync::OnceLock<String>,
    /// `git describe` of the binary's source, as the binary says.
    source: std::sync::OnceLock<(&'static str, &'static str)>,
    /// Signatures made at once (each HSM session, node round trip or
    /// keystore signature holds one), and how many there are.
    signing: std::sync::RwLock<(Arc<tokio::sync::Semaphore>, usize)>,
    /// The disk floor, once configured.
    disk: std::sync::RwLock<Option<DiskGuard>>,
    /// What the configuration file says of each network's governed
    /// settings (its first values, and what a difference is logged
    /// against).
    configured: crate::settings::ConfiguredNetworks,
}

impl Service {
    pub fn new(store: Store, clock: Arc<dyn Clock>, checkpointer: Checkpointer) -> Self {
        Self::with_hsm(store, clock, checkpointer, None)
    }

    /// A service with an HSM that both holds keys and wraps the root key for
    /// auto-unseal.
    pub fn with_hsm_wrapper<H>(
        store: Store,
        clock: Arc<dyn Clock>,
        checkpointer: Checkpointer,
        hsm: Arc<H>,
    ) -> Self
    where
        H: keys::Signer + keys::Wrapper + 'static,
    {
        let mut svc = Self::with_hsm(store, clock, checkpointer, Some(hsm.clone()));
        if let Some(inner) = Arc::get_mut(&mut svc.inner) {
            inner.wrapper = Some(hsm);
        }
        svc
    }

    /// A service that can also keep keys in an HSM (a PKCS#11 token).
    pub fn with_hsm(
        store: Store,
        clock: Arc<dyn Clock>,
        checkpointer: Checkpointer,
        hsm: Option<Arc<dyn keys::Signer>>,
    ) -> Self {
        Service {
            inner: Arc::new(Inner {
                store,
                clock,
                checkpointer,
                vault: tokio::sync::Mutex::new(Vault::Uninitialized),
                hsm,
                wrapper: None,
                eth: Default::default(),
                webhooks: std::sync::RwLock::new(Arc::new((
                    Default::default(),
                    crate::webhook_target::client(&Default::default()),
                ))),
                btc: Default::default(),
                governance: std::sync::RwLock::new(None),
                transfers_moved: tokio::sync::Notify::new(),
                broadcasts_ended: tokio::sync::Notify::new(),
                login_names: crate::limiter::Limiter::per_minute(20, 10, 8192),
                scan_cursors: Default::default(),
                eth_waiting: Default::default(),
                gov: Default::default(),
                relying_party: Default::default(),
                metrics: crate::metrics::Metrics::default(),
                disk: std::sync::RwLock::default(),
                configured: Default::default(),
                signing: std::sync::RwLock::new((
                    Arc::new(tokio::sync::Semaphore::new(SIGNING_LIMIT)),
                    SIGNING_LIMIT,
                )),
                source: std::sync::OnceLock::new(),
                instance: std::sync::OnceLock::new(),
                threshold: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Configures the signer nodes threshold keys live on (once).
    pub fn set_threshold(&self, t: Arc<crate::threshold::ThresholdKeys>) {
        if self.inner.threshold.set(t).is_err() {
            tracing::warn!("threshold signers configured twice: the first kept");
        }
    }

    pub fn threshold(&self) -> Option<&Arc<crate::threshold::ThresholdKeys>> {
        self.inner.threshold.get()
    }

    /// Sets this server's instance id (before it claims anything): the
    /// same id after a restart lets it take back its own claims at once.
    pub fn set_instance(&self, id: &str) -> Result<(), ServiceError> {
        if id.is_empty()
            || id.len() > 64
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ServiceError::Invalid(format!(
                "instance id {id:?}: 1 to 64 letters, digits or '-'"
            )));
        }
        self.inner.instance.set(id.to_owned()).map_err(|_| {
            ServiceError::Invalid("the instance id is set once, before any claim".into())
        })
    }

    /// This server's instance id.
    pub fn instance(&self) -> &str {
        self.inner
            .instance
            .get_or_init(|| uuid::Uuid::now_v7().simple().to_string())
    }

    /// Bounds the signatures made at once (from the next one on); more
    /// wait their turn.
    pub fn set_signing_limit(&self, n: usize) {
        let n = n.max(1);
        *self
            .inner
            .signing
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            (Arc::new(tokio::sync::Semaphore::new(n)), n);
    }

    /// A turn to sign (held while the signature is made), and the bound's
    /// (in use, limit) for metrics.
    pub(crate) fn signing_turns(&self) -> (Arc<tokio::sync::Semaphore>, usize) {
        self.inner
            .signing
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Names the binary's version and the source it was built from (`git
    /// describe`), once.
    pub fn set_source(&self, version: &'static str, describe: &'static str) {
        let _ = self.inner.source.set((version, describe));
    }

    /// The HSM's sessions (open, idle), if an HSM is configured.
    pub fn hsm_sessions(&self) -> Option<(usize, usize)> {
        self.inner.hsm.as_ref().and_then(|h| h.sessions())
    }

    pub(crate) fn hsm(&self) -> Option<&Arc<dyn keys::Signer>> {
        self.inner.hsm.as_ref()
    }

    pub(crate) fn wrapper(&self) -> Option<&Arc<dyn keys::Wrapper>> {
        self.inner.wrapper.as_ref()
    }

    /// Returns once a transfer's state has changed since the last call
    /// returned (at once if one has): the queue's worker waits on this
    /// besides its timer, so work is taken up when it arrives.
    pub async fn transfers_moved(&self) {
        self.inner.transfers_moved.notified().await;
    }

    pub(crate) fn scan_cursors(&self) -> &std::sync::Mutex<std::collections::HashMap<String, u64>> {
        &self.inner.scan_cursors
    }

    pub(crate) fn eth_waiting(&self) -> &std::sync::Mutex<std::collections::HashMap<String, u64>> {
        &self.inner.eth_waiting
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn checkpointer(&self) -> &Checkpointer {
        &self.inner.checkpointer
    }

    pub(crate) fn eth_networks(
        &self,
    ) -> &std::sync::RwLock<std::collections::BTreeMap<u64, Arc<crate::settings::EthNetwork>>> {
        &self.inner.eth
    }

    pub(crate) fn configured_networks(&self) -> &crate::settings::ConfiguredNetworks {
        &self.inner.configured
    }

    pub(crate) fn btc_networks(
        &self,
    ) -> &std::sync::RwLock<std::collections::BTreeMap<String, Arc<crate::settings::BtcNetwork>>>
    {
        &self.inner.btc
    }

    /// Where passkey approvals are made: the console's RP ID and the
    /// origins its pages are served from.
    pub fn set_relying_party(&self, rp: Option<policy::RelyingParty>) {
        *self
            .inner
            .relying_party
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rp.map(Arc::new);
    }

    pub fn relying_party(&self) -> Option<Arc<policy::RelyingParty>> {
        self.inner
            .relying_party
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn governance_cell(
        &self,
    ) -> &std::sync::RwLock<Option<crate::settings::GovernanceConfig>> {
        &self.inner.governance
    }

    /// Where webhooks may go, and the client deliveries go out through.
    pub(crate) fn webhook_egress(
        &self,
    ) -> Arc<(crate::webhook_target::WebhookPolicy, reqwest::Client)> {
        self.inner
            .webhooks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets where webhooks may go (`[webhooks]` of the configuration).
    pub fn set_webhook_policy(&self, policy: crate::webhook_target::WebhookPolicy) {
        let client = crate::webhook_target::client(&policy);
        *self
            .inner
            .webhooks
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new((policy, client));
    }

    /// A new retry schedule for webhook deliveries (a configuration
    /// reload); where they may go stays as it is.
    pub fn set_webhook_retries(&self, delays_s: Option<Vec<u64>>) {
        let mut cell = self
            .inner
            .webhooks
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let mut policy = cell.0.clone();
        policy.retry_delays_s = delays_s;
        *cell = Arc::new((policy, cell.1.clone()));
    }

    pub(crate) fn vault(&self) -> &tokio::sync::Mutex<Vault> {
        &self.inner.vault
    }

    pub(crate) fn governance_state(&self) -> &crate::gov_state::Gov {
        &self.inner.gov
    }

    pub fn now(&self) -> domain::Timestamp {
        self.inner.clock.now()
    }

    /// Records the start of a server and checkpoints the chain as found.
    pub async fn start(&self, details: serde_json::Value) -> Result<(), ServiceError> {
        let now = self.inner.clock.now();
        let entry = Entry::new(
            Actor::System,
            "server.started",
            "server",
            Details::new(&details)?,
        )?;
        self.inner.store.append_audit(&[entry], now).await?;
        self.inner.checkpointer.tick(&self.inner.store, now).await
    }

    /// Records a configuration change applied while serving (its diff,
    /// and what waits for a restart), or one refused (why).
    pub async fn config_reloaded(
        &self,
        applied: bool,
        details: serde_json::Value,
    ) -> Result<(), ServiceError> {
        let now = self.inner.clock.now();
        let action = if applied {
            "config.reloaded"
        } else {
            "config.reload_refused"
        };
        let entry = Entry::new(Actor::System, action, "config", Details::new(&details)?)?;
        let records = self.inner.store.append_audit(&[entry], now).await?;
        self.after_commit(&records).await;
        Ok(())
    }

    /// Records a clean shutdown and checkpoints the final head.
    pub async fn stop(&self) -> Result<(), ServiceError> {
        let now = self.inner.clock.now();
        let entry = Entry::new(Actor::System, "server.stopped", "server", Details::none())?;
        self.inner.store.append_audit(&[entry], now).await?;
        self.inner.checkpointer.tick(&self.inner.store, now).await
    }

    /// The periodic checkpoint: call every `policy.every`.
    pub async fn checkpoint_tick(&self) -> Result<(), ServiceError> {
        let now = self.inner.clock.now();
        self.inner.checkpointer.tick(&self.inner.store, now).await
    }

    /// Whether the database answers, and the seal state: all an anonymous
    /// caller is told (no audit or schema read).
    pub async fn liveness(&self) -> Liveness {
        Liveness {
            reachable: self.inner.store.ping().await.is_ok(),
            seal: self
                .seal_status()
                .await
                .unwrap_or(SealStatus::Uninitialized),
        }
    }

    pub async fn status(&self) -> Status {
        let store = &self.inner.store;
        let reachable = store.ping().await.is_ok();
        let schema_version = if reachable {
            store.check_schema().await.ok()
        } else {
            None
        };
        let audit_records = if reachable {
            store.audit_head().await.ok().map(|h| h.seq)
        } else {
            None
        };
        Status {
            version: self
                .inner
                .source
                .get()
                .map_or(env!("CARGO_PKG_VERSION"), |s| s.0),
            git_commit: self.inner.source.get().map_or("unknown", |s| s.1),
            database: DatabaseStatus {
                backend: store.backend().as_str(),
                reachable,
                schema_version,
            },
            seal: self
                .seal_status()
                .await
                .unwrap_or(SealStatus::Uninitialized),
            audit_records,
            ethereum: self.eth_status(),
            bitcoin: self.btc_status(),
        }
    }

    fn btc_status(&self) -> Vec<BtcStatus> {
        let nets = self
            .btc_networks()
            .read()
            .unwrap_or_else(|p| p.into_inner());
        nets.iter()
            .filter_map(|(name, n)| {
                let health = n.client.as_ref()?.health();
                Some(BtcStatus {
                    network: name.clone(),
                    endpoints: health.len(),
                    healthy: health
                        .iter()
                        .filter(|(_, _, failures, allowed)| *allowed && *failures == 0)
                        .count(),
                })
            })
            .collect()
    }

    fn eth_status(&self) -> Vec<EthStatus> {
        let nets = self
            .eth_networks()
            .read()
            .unwrap_or_else(|p| p.into_inner());
        nets.values()
            .map(|n| {
                let health = n.client.health();
                EthStatus {
                    chain_id: n.config.chain_id,
                    endpoints: health.len(),
                    healthy: health
                        .iter()
                        .filter(|h| h.allowed && h.consecutive_failures == 0)
                        .count(),
                }
            })
            .collect()
    }

    /// Creates an account, audited in the same transaction.
    pub async fn create_account(&self, actor: &Actor, name: &str) -> Result<Account, ServiceError> {
        let name = AccountName::new(name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let now = self.inner.clock.now();
        let account = Account {
            id: AccountId::from_uuid(uuid::Uuid::now_v7()),
            name,
            created_at: now,
            created_by: actor.clone(),
        };
        let entry = Entry::new(
            actor.clone(),
            "account.created",
            format!("account:{}", account.id),
            Details::new(&json!({ "name": account.name.as_str() }))?,
        )?;
        let mut tx = self.inner.store.begin().await?;
        tx.insert_account(&account).await?;
        self.commit(tx, &[entry], now).await?;
        Ok(account)
    }

    /// Commits `tx` with its audit records, then runs the effects after a
    /// commit (checkpoints).
    /// Sign-in attempts per user name.
    pub(crate) fn login_names(&self) -> &crate::limiter::Limiter {
        &self.inner.login_names
    }

    /// Woken when a broadcast of this process ends.
    pub(crate) fn broadcasts_ended(&self) -> &tokio::sync::Notify {
        &self.inner.broadcasts_ended
    }

    pub(crate) fn disk_guard(&self) -> &std::sync::RwLock<Option<DiskGuard>> {
        &self.inner.disk
    }

    /// What this process counted, for Prometheus.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    pub(crate) async fn commit(
        &self,
        tx: storage::WriteTx,
        entries: &[Entry],
        now: domain::Timestamp,
    ) -> Result<(), ServiceError> {
        let started = std::time::Instant::now();
        let records = tx.commit(entries, now).await?;
        self.inner
            .metrics
            .committed(started.elapsed().as_secs_f64());
        self.after_commit(&records).await;
        Ok(())
    }

    /// Effects after a commit. A failed checkpoint does not undo the committed
    /// change; it is logged and retried by the next commit or tick.
    pub(crate) async fn after_commit(&self, records: &[audit::Record]) {
        let Some(last) = records.last() else { return };
        let mut moved = false;
        for r in records.iter().filter(|r| r.action.starts_with("transfer.")) {
            moved = true;
            if r.action == "transfer.state_changed"
                && let Ok(d) = serde_json::from_str::<serde_json::Value>(&r.details)
                && let Some(Ok(to)) = d["to"].as_str().map(str::parse::<lifecycle::State>)
            {
                self.inner.metrics.moved(to);
            }
            if r.action == "transfer.state_changed" || r.action == "transfer.judged" {
                tracing::info!(subject = %r.subject, action = %r.action, details = %r.details, "transfer moved");
            }
        }
        // A released freeze wakes the transfers it held (their backoff was
        // cut short in the same transaction).
        if moved || records.iter().any(|r| r.action == "freeze.released") {
            self.inner.transfers_moved.notify_one();
        }
        let now = self.inner.clock.now();
        if let Err(e) = self
            .inner
            .checkpointer
            .after_commit(&self.inner.store, last.head(), now)
            .await
        {
            tracing::error!(error = %e, "audit checkpoint failed");
        }
    }
}

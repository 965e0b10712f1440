//! Building the service from configuration, serving HTTP, and verifying the log.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use service::{
    CheckpointFile, CheckpointPolicy, CheckpointSigner, Checkpointer, Service, SystemClock,
    VerifyError,
};
use storage::Store;

use crate::Failure;
use crate::config::{AuditKey, Config, ConfigError, LogFormat};

/// Starts logging; returns how to change its level while serving.
fn init_logging(c: &Config) -> crate::reload::SetLogLevel {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&c.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let parse = |level: &str| EnvFilter::try_new(level).map_err(|e| e.to_string());
    match c.log_format {
        LogFormat::Json => {
            let b = builder.json().flatten_event(true).with_filter_reloading();
            let h = b.reload_handle();
            b.init();
            Box::new(move |l| h.reload(parse(l)?).map_err(|e| e.to_string()))
        }
        LogFormat::Text => {
            let b = builder.with_filter_reloading();
            let h = b.reload_handle();
            b.init();
            Box::new(move |l| h.reload(parse(l)?).map_err(|e| e.to_string()))
        }
    }
}

async fn open_store(c: &Config) -> Result<Store, Failure> {
    let db = c.database.resolve()?;
    Ok(Store::connect(&db).await.context("opening the database")?)
}

fn file_audit_key(path: &std::path::Path) -> Result<audit::AuditSigningKey, Failure> {
    service::load_audit_key(path).map_err(|e| {
        Failure::Config(ConfigError {
            key: "audit.signing_key_file".into(),
            message: e.to_string(),
        })
    })
}

/// Opens the configured HSM. A refused PIN or a missing token is audited:
/// an event the auditors see, not only an error on one console.
async fn open_hsm(
    h: &crate::config::HsmConfig,
    store: &Store,
) -> Result<Arc<keys_pkcs11::Pkcs11Signer>, Failure> {
    let pin = h.pin()?;
    match keys_pkcs11::Pkcs11Signer::open(&h.module, &h.token_label, &pin, h.sessions) {
        Ok(s) => Ok(Arc::new(s)),
        Err(e) => {
            let entry = audit::Entry::new(
                domain::Actor::System,
                "hsm.open_failed",
                format!("hsm:{}", h.token_label),
                audit::Details::new(&serde_json::json!({ "reason": e.to_string() }))
                    .map_err(anyhow::Error::from)?,
            )
            .map_err(anyhow::Error::from)?;
            let now = service::Clock::now(&SystemClock);
            if let Err(audit_err) = store.append_audit(&[entry], now).await {
                tracing::error!(error = %audit_err, "could not audit the HSM failure");
            }
            Err(anyhow::Error::new(e)
                .context(format!("opening the HSM token {:?}", h.token_label))
                .into())
        }
    }
}

/// The checkpoint signer as configured: the key file, or the HSM key.
async fn checkpoint_signer(
    c: &Config,
    hsm: Option<&Arc<keys_pkcs11::Pkcs11Signer>>,
) -> Result<CheckpointSigner, Failure> {
    match &c.audit_key {
        AuditKey::File(path) => Ok(file_audit_key(path)?.into()),
        AuditKey::Hsm(key) => {
            let hsm = hsm.ok_or_else(|| {
                Failure::Config(ConfigError {
                    key: "audit.hsm_key".into(),
                    message: "needs an [hsm] section".into(),
                })
            })?;
            CheckpointSigner::hsm(hsm.clone(), service::keys::KeyRef(key.clone()))
                .await
                .map_err(|e| {
                    Failure::Config(ConfigError {
                        key: "audit.hsm_key".into(),
                        message: e.to_string(),
                    })
                })
        }
    }
}

/// The service as configured: database opened and migrated, HSM opened,
/// audit key and checkpoint file ready. Used by `serve` and by the offline
/// admin commands.
pub(crate) async fn build_service(c: &Config) -> Result<(Service, Store), Failure> {
    if let AuditKey::File(path) = &c.audit_key {
        file_audit_key(path)?;
    }
    let store = open_store(c).await?;
    store.migrate().await.context("migrating the database")?;
    let hsm = match &c.hsm {
        Some(h) => Some(open_hsm(h, &store).await?),
        None => None,
    };
    let signer = checkpoint_signer(c, hsm.as_ref()).await?;
    let policy = CheckpointPolicy {
        every_records: c.checkpoint_every_records,
        every: c.checkpoint_every,
    };
    let checkpointer = Checkpointer::open(signer, CheckpointFile::new(&c.checkpoint_file), policy)
        .context("opening the audit checkpoint file")?
        .fail_closed_after(c.operations.checkpoint_fail_closed_after);
    let svc = match hsm {
        None => Service::new(store.clone(), Arc::new(SystemClock), checkpointer),
        Some(hsm) => {
            Service::with_hsm_wrapper(store.clone(), Arc::new(SystemClock), checkpointer, hsm)
        }
    };
    svc.set_webhook_policy(c.webhooks.clone());
    svc.set_governance(c.governance);
    svc.set_relying_party(c.passkeys.clone());
    if let Some(t) = &c.threshold {
        let cluster = threshold_cluster(t)?;
        // The epoch of the latest restore this database went through,
        // announced on every connection to the signer nodes.
        let latest = store
            .recoveries()
            .await
            .context("reading the restores")?
            .iter()
            .map(service::recovery::epoch_of)
            .max();
        cluster.set_epoch(latest.unwrap_or(0));
        svc.set_threshold(Arc::new(service::threshold::ThresholdKeys::new(
            cluster,
            t.threshold,
            t.presignatures,
        )));
    }
    Ok((svc, store))
}

/// The signer nodes of `[threshold]`, reached with this server's pinned
/// identity, blamed sessions counted in a ledger beside it.
pub(crate) fn threshold_cluster(
    t: &crate::config::ThresholdConfig,
) -> Result<keys_mpc::cluster::Cluster, Failure> {
    let identity = keys_mpc::net::TlsIdentity::load(&t.identity_dir).with_context(|| {
        format!(
            "threshold.identity_dir: {} (strongroom signer server-identity --dir makes it)",
            t.identity_dir.display()
        )
    })?;
    let ledger =
        keys_mpc::cluster::BlameLedger::open(&t.identity_dir.join("blame.jsonl"), t.blame_limit)
            .context("opening the blame ledger")?;
    Ok(
        keys_mpc::cluster::Cluster::new(identity, t.signers.clone(), t.timeout)
            .with_blame_ledger(ledger),
    )
}

/// Connects every configured EVM network (checking each endpoint's chain
/// id) and adds it to the service.
pub(crate) async fn connect_ethereum(svc: &Service, c: &Config) -> Result<(), Failure> {
    for e in &c.ethereum {
        let client = chain_eth_client::EthClient::connect(
            e.network.chain_id,
            &e.endpoints,
            e.client.clone(),
        )
        .await
        .with_context(|| format!("connecting to eip155:{}", e.network.chain_id))?;
        svc.add_eth_network(service::eth::EthNetwork {
            config: e.network.clone(),
            client: Arc::new(client),
        });
    }
    Ok(())
}

/// Configures every `[[bitcoin]]` network, connecting to its endpoints if
/// it names any (without, Bitcoin transfers stop at `signed`: the bytes are
/// kept for an operator to broadcast).
pub(crate) async fn connect_bitcoin(svc: &Service, c: &Config) -> Result<(), Failure> {
    for b in &c.bitcoin {
        let client = if b.endpoints.is_empty() {
            None
        } else {
            Some(Arc::new(
                chain_btc_client::BtcClient::connect_with(
                    b.network,
                    b.endpoints.clone(),
                    b.timeout,
                    &c.client_tls,
                )
                .await
                .with_context(|| {
                    format!("connecting to {}", domain::Network::Bitcoin(b.network))
                })?,
            ))
        };
        svc.add_btc_network(service::btc::BtcNetwork {
            network: b.network,
            fee_caps: b.fee_caps,
            fee_rate: b.fee_rate,
            batch: b.batch,
            confirmations: b.confirmations,
            bump_after_blocks: b.bump_after_blocks,
            client,
            consolidation: b.consolidation,
        });
    }
    Ok(())
}

/// The Ethereum watcher of one network: endpoint health, confirmations and
/// reorgs, the resumer that signs planned sends and resends stored bytes,
/// and the speed-up of a send that waits unmined.
fn spawn_eth_watcher(svc: Service, chain_id: u64, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Ok(net) = svc.eth_network(chain_id)
                && let Err(e) = net.client.check_health().await
            {
                tracing::warn!(chain_id, error = %e, "no Ethereum endpoint is healthy");
                continue;
            }
            if let Err(e) = svc.eth_poll(chain_id).await {
                tracing::error!(chain_id, error = %e, "Ethereum confirmation pass failed");
            }
            if let Err(e) = svc.eth_resume_chain(chain_id).await {
                tracing::error!(chain_id, error = %e, "Ethereum resume pass failed");
            }
            if let Err(e) = svc.eth_speed_up_stalled(chain_id).await {
                tracing::error!(chain_id, error = %e, "Ethereum stall pass failed");
            }
            if let Err(e) = svc.eth_scan_deposits(chain_id).await {
                tracing::error!(chain_id, error = %e, "Ethereum deposit scan failed");
            }
        }
    })
}

/// `strongroom audit init-hsm-key`.
pub(crate) fn init_hsm_audit_key(c: Config) -> Result<(), Failure> {
    use service::keys::{Algorithm, PublicKey, Signer};
    let Some(h) = c.hsm.clone() else {
        return Err(Failure::Config(ConfigError {
            key: "hsm".into(),
            message: "an [hsm] section is needed".into(),
        }));
    };
    runtime()?.block_on(async move {
        let store = open_store(&c).await?;
        store.migrate().await.context("migrating the database")?;
        let hsm = open_hsm(&h, &store).await;
        store.close().await;
        let hsm = hsm?;
        let key = hsm
            .generate(Algorithm::Ed25519)
            .await
            .context("creating the audit key in the HSM")?;
        let PublicKey::Ed25519(pk) = hsm.public_key(&key).await.context("reading the key")? else {
            return Err(Failure::Runtime(anyhow::anyhow!(
                "the HSM made another kind of key"
            )));
        };
        println!("hsm_key = \"{}\"", key.0);
        println!("public key: {}", hex::encode(pk));
        Ok(())
    })
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?)
}

/// Work a caller runs beside the server, in its runtime (the binary's
/// scheduled backups), started once the service is built.
pub(crate) type Beside = fn(&Config, &Service, &Store) -> Option<tokio::task::JoinHandle<()>>;

/// `strongroom serve`.
pub(crate) fn run(c: Config, beside: Beside) -> Result<(), Failure> {
    let set_log = init_logging(&c);
    arm_crash_point()?;
    runtime()?.block_on(async move {
        let (svc, store) = build_service(&c).await?;
        let policy = svc.checkpointer().policy();
        // Read now: a bad certificate stops the start, before anything runs.
        let server_tls = c
            .server_tls
            .as_ref()
            .map(|t| t.config())
            .transpose()
            .context("loading the API's TLS certificate")?;
        let listener = tokio::net::TcpListener::bind(c.listen)
            .await
            .with_context(|| format!("listening on {}", c.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        svc.start(serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "source": env!("STRONGROOM_GIT_COMMIT"),
            "listen": addr.to_string(),
            "tls": server_tls.is_some(),
            "mutual_tls": c.server_tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()),
            "database": store.backend().as_str(),
        }))
        .await
        .context("recording the start in the audit log")?;
        // Its claims on queued transfers are held under an id kept beside
        // its configuration: after a crash, this run takes them back at
        // once instead of waiting for their leases to lapse.
        if c.path.is_some() {
            svc.set_instance(&instance_id(&c)?)
                .context("setting the instance id")?;
            match svc.reclaim_leases().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    claims = n,
                    "took back the claims of this server's previous run"
                ),
                Err(e) => tracing::error!(error = %e, "could not take back this server's claims"),
            }
        }
        match svc.auto_unseal(&domain::Actor::System).await {
            Ok(true) => tracing::info!("unsealed with the root key wrapped in the HSM"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "auto-unseal failed; the server stays sealed"),
        }

        connect_ethereum(&svc, &c).await?;
        connect_bitcoin(&svc, &c).await?;
        let mut watchers: Vec<_> = c
            .ethereum
            .iter()
            .map(|e| spawn_eth_watcher(svc.clone(), e.network.chain_id, e.poll_every))
            .collect();
        // Bitcoin sends of transfer batches signed and sent after a restart.
        for b in &c.bitcoin {
            let n = b.network;
            watchers.push(every(b.poll_every, "Bitcoin resume", {
                let svc = svc.clone();
                move || {
                    let svc = svc.clone();
                    // Then the chain: deposits, inclusions, reorgs,
                    // confirmations, outputs taken.
                    async move {
                        svc.btc_resume(n).await?;
                        svc.btc_watch(n).await.map(drop)
                    }
                }
            }));
        }

        // Webhook deliveries: one pass a second while unsealed.
        let deliverer = every(Duration::from_secs(1), "webhook delivery", {
            let svc = svc.clone();
            move || {
                let svc = svc.clone();
                async move { svc.deliver_webhooks().await.map(drop) }
            }
        });
        // Time locks that end and approvals that do not arrive in time.
        let lifecycle = every(Duration::from_secs(2), "transfer time-lock and expiry", {
            let svc = svc.clone();
            move || {
                let svc = svc.clone();
                async move { svc.advance_transfers().await.map(drop) }
            }
        });
        // Queued transfers go to the chain (claimed, so that several
        // servers on one database share the work); a slow node delays only
        // this. It looks when a transfer moves, and every two seconds for
        // backoffs that end and other servers' work.
        let executor = tokio::spawn({
            let svc = svc.clone();
            async move {
                let mut interval = tokio::time::interval(Duration::from_secs(2));
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = interval.tick() => {}
                        () = svc.transfers_moved() => {}
                    }
                    match svc.execute_due().await {
                        Ok(_) | Err(service::ServiceError::Sealed) => {}
                        Err(e) => tracing::error!(error = %e, "transfer execution pass failed"),
                    }
                }
            }
        });

        // After a restore: the chains are asked before anything is signed
        // (the restore's freeze holds until then; a node that cannot be
        // reached is tried again).
        let reconciler = every(Duration::from_secs(5), "restore reconciliation", {
            let svc = svc.clone();
            move || {
                let svc = svc.clone();
                async move { svc.reconcile_restore().await.map(drop) }
            }
        });
        // Every account against the chains: an outflow Strongroom did not
        // sign freezes its wallet within a pass (a pass that cannot ask a
        // node fails loudly and is tried again).
        let accounts = every_from(c.reconcile_every, c.reconcile_every, "reconciliation", {
            let svc = svc.clone();
            move || {
                let svc = svc.clone();
                async move { svc.reconcile_chains().await.map(drop) }
            }
        });
        // Work beside the server's own (scheduled backups), if configured.
        let backups = beside(&c, &svc, &store);
        let ticker = tokio::spawn({
            let svc = svc.clone();
            let every = policy.every;
            async move {
                let mut interval = tokio::time::interval(every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                interval.tick().await;
                // While checkpoints fail, tried again every 5 s (a failure
                // brings signing closer to its stop; a success clears it).
                let mut retry = tokio::time::interval(Duration::from_secs(5));
                retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = interval.tick() => {}
                        _ = retry.tick() => {
                            if svc.checkpointer().health().failing.is_none() {
                                continue;
                            }
                        }
                    }
                    if let Err(e) = svc.checkpoint_tick().await {
                        tracing::error!(error = %e, "periodic audit checkpoint failed");
                    }
                    // Governed rows edited in the database are raised even
                    // where no request reads them.
                    match svc.governance_sweep().await {
                        Ok(()) | Err(service::ServiceError::Sealed) => {}
                        Err(e) => tracing::error!(error = %e, "governance sweep failed"),
                    }
                }
            }
        });

        svc.set_source(env!("CARGO_PKG_VERSION"), env!("STRONGROOM_GIT_COMMIT"));
        svc.set_signing_limit(c.operations.max_concurrent_signatures);
        svc.set_disk_guard(service::disk::DiskGuard {
            paths: c.disk_paths(),
            floor_bytes: c.operations.disk_floor_bytes,
        });
        // Signer nodes asked who they are every 15 s: one that is down is
        // seen (and alerted on) before a withdrawal needs it.
        let prober = svc.threshold().cloned().map(|t| {
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(Duration::from_secs(15));
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    t.cluster().probe().await;
                }
            })
        });
        let http_metrics = api_http::HttpMetrics::new(c.operations.max_in_flight);
        let (app, rates) = api_http::router_with_rates(
            svc.clone(),
            api_http::Limits {
                trusted_proxies: c.trusted_proxies.clone().into(),
                max_in_flight: c.operations.max_in_flight,
                per_principal: api_http::Rate {
                    per_second: c.operations.per_principal,
                    burst: c.operations.per_principal.saturating_mul(2),
                },
                per_address: api_http::Rate {
                    per_second: c.operations.per_address,
                    burst: c.operations.per_address.saturating_mul(2),
                },
                ..api_http::Limits::new(c.max_body_bytes, c.request_timeout)
            },
            &http_metrics,
        );
        // SIGHUP: the file read again, what may change at runtime applied.
        let reloads = match &c.path {
            Some(path) => Some(spawn_reloads(
                svc.clone(),
                crate::reload::Reloader::new(path.clone(), c.clone(), set_log).with_rates(rates),
                &crate::reload::pid_file(&c),
            )?),
            None => None,
        };
        let metrics = match c.operations.metrics_listen {
            Some(at) => {
                let l = tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("listening for metrics on {at}"))?;
                let at = l.local_addr().context("reading the metrics address")?;
                let app = api_http::metrics_router(svc.clone(), http_metrics.clone());
                Some((
                    at,
                    tokio::spawn(async move {
                        if let Err(e) = axum::serve(l, app).await {
                            tracing::error!(error = %e, "the metrics listener stopped");
                        }
                    }),
                ))
            }
            None => None,
        };
        // Handlers are installed before anyone is told we listen, so that a
        // SIGTERM sent right after start-up still drains and audits the stop.
        let shutdown = shutdown_signal()?;
        tracing::info!(%addr, database = store.backend().as_str(), "strongroom listening");
        // The one line on stdout: scripts and tests wait for it.
        let mut out = std::io::stdout();
        let scheme = if server_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let _ = writeln!(out, "strongroom listening on {scheme}://{addr}");
        if let Some((at, _)) = &metrics {
            let _ = writeln!(out, "strongroom metrics on http://{at}/metrics");
        }
        let _ = out.flush();

        let served = match server_tls {
            None => {
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Some(config) => {
                let listener = crate::https::TlsListener::new(listener, config)
                    .context("reading the bound address")?;
                axum::serve(listener, crate::https::with_peer(app))
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        ticker.abort();
        if let Some(b) = &backups {
            b.abort();
        }
        if let Some((_, m)) = &metrics {
            m.abort();
        }
        if let Some(p) = &prober {
            p.abort();
        }
        if let Some((r, pid)) = &reloads {
            r.abort();
            let _ = std::fs::remove_file(pid);
        }
        deliverer.abort();
        lifecycle.abort();
        reconciler.abort();
        accounts.abort();
        executor.abort();
        for w in &watchers {
            w.abort();
        }
        tracing::info!("shutting down");
        let stopped = svc.stop().await;
        store.close().await;
        served.context("serving HTTP")?;
        stopped.context("recording the shutdown in the audit log")?;
        Ok(())
    })
}

/// This server's instance id, kept in `strongroom.instance` beside its
/// checkpoints (made once, written whole: a file a crash left empty is made
/// again).
fn instance_id(c: &Config) -> Result<String, Failure> {
    let path = crate::reload::state_dir(c).join("strongroom.instance");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) => new_instance_id(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_instance_id(&path),
        Err(e) => Err(anyhow::Error::new(e)
            .context(format!("reading {}", path.display()))
            .into()),
    }
}

fn new_instance_id(path: &std::path::Path) -> Result<String, Failure> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let tmp = path.with_extension("instance.tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// Reloads the configuration on each SIGHUP; writes the process id beside
/// the file (for `strongroom config apply`). The task and the pid file.
fn spawn_reloads(
    svc: Service,
    reloader: crate::reload::Reloader,
    pid: &std::path::Path,
) -> Result<(tokio::task::JoinHandle<()>, std::path::PathBuf), Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let pid = pid.to_path_buf();
    std::fs::write(&pid, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", pid.display()))?;
    let task = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // A refusal is logged and audited by the reload itself.
            if let Err(e) = reloader.reload(&svc).await {
                tracing::error!(error = ?e, "configuration reload failed");
            }
        }
    });
    Ok((task, pid))
}

/// For the crash tests (a build with the `test-hooks` feature only): the
/// crash point the environment names makes the process kill itself with
/// SIGKILL when it reaches it (see `service::crash`). In a release build
/// nothing is read and nothing is armed.
fn arm_crash_point() -> Result<(), Failure> {
    match service::crash::arm_from_env(kill_self) {
        Ok(Some(point)) => {
            tracing::warn!(point, "crash point armed: this process kills itself there");
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(message) => Err(Failure::Config(ConfigError {
            key: "environment".into(),
            message,
        })),
    }
}

/// Dies at a crash point with a real SIGKILL: nothing is flushed, dropped
/// or rolled back.
pub(crate) fn kill_self(label: &str) -> ! {
    eprintln!("crash point {label}");
    let killed = std::process::Command::new("sh")
        .args(["-c", "kill -KILL $PPID"])
        .status();
    if killed.is_err() {
        // No shell: die anyway, without unwinding.
        std::process::abort();
    }
    loop {
        std::thread::park();
    }
}

/// Runs `pass` every `period`, the first at once; a failed pass is logged
/// (sealed is not a failure) and the next one runs on time.
fn every<F, Fut>(period: Duration, what: &'static str, pass: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), service::ServiceError>> + Send,
{
    every_from(Duration::ZERO, period, what, pass)
}

/// [`every`], the first pass after `first` (a server that starts, after a
/// restore say, settles its own work first).
fn every_from<F, Fut>(
    first: Duration,
    period: Duration,
    what: &'static str,
    pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), service::ServiceError>> + Send,
{
    tokio::spawn(async move {
        tokio::time::sleep(first).await;
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match pass().await {
                Ok(()) | Err(service::ServiceError::Sealed) => {}
                Err(e) => tracing::error!(error = %e, "{what} pass failed"),
            }
        }
    })
}

fn shutdown_signal() -> Result<impl Future<Output = ()>, Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// The audit key's public half, as this configuration names it (from its
/// file, or read from the HSM). Not from inside a runtime.
pub(crate) fn audit_public_key(c: &Config) -> Result<audit::AuditPublicKey, Failure> {
    Ok(match &c.audit_key {
        AuditKey::File(path) => file_audit_key(path)?.public(),
        AuditKey::Hsm(_) => {
            let key = runtime()?.block_on(async {
                let store = open_store(c).await?;
                let hsm = match &c.hsm {
                    Some(h) => Some(open_hsm(h, &store).await?),
                    None => None,
                };
                let signer = checkpoint_signer(c, hsm.as_ref()).await;
                store.close().await;
                signer
            })?;
            key.public()
        }
    })
}

/// `strongroom audit verify`.
pub(crate) fn verify(c: Config, public_key: Option<&str>) -> Result<(), Failure> {
    let public = match public_key {
        Some(hex) => audit::AuditPublicKey::from_hex(hex).map_err(|e| {
            Failure::Config(ConfigError {
                key: "--public-key".into(),
                message: e.to_string(),
            })
        })?,
        None => audit_public_key(&c)?,
    };
    runtime()?.block_on(async move {
        let store = open_store(&c).await?;
        store
            .check_schema()
            .await
            .context("checking the database schema")?;
        let file = CheckpointFile::new(&c.checkpoint_file);
        let result = service::verify_audit(&store, &file, &public).await;
        store.close().await;
        match result {
            Ok(r) => {
                println!(
                    "ok: {} records, head {}, {} checkpoints (last at record {})",
                    r.records,
                    r.head.hash,
                    r.checkpoints,
                    r.last_checkpoint
                        .map_or("none".to_owned(), |s| s.to_string())
                );
                if r.superseded > 0 {
                    println!(
                        "{} checkpoints of a lost copy of the log, named by a restore's epoch record",
                        r.superseded
                    );
                }
                Ok(())
            }
            Err(VerifyError::Service(e)) => Err(Failure::Runtime(e.into())),
            Err(e) => Err(Failure::Broken(e.to_string())),
        }
    })
}

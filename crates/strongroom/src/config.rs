//! The configuration file: strict TOML, validated at load, errors that name the key.
//!
//! Secrets never appear inline: the database password comes from a file or an
//! environment variable, the audit key from a 0600 file. Relative paths are
//! relative to the configuration file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use storage::DatabaseConfig;
use zeroize::Zeroizing;

mod backup;
mod chains;
mod console;
mod governance;
mod operations;
mod reconcile;
mod threshold;
mod transport;

pub use backup::{BackupConfig, Schedule};
pub use chains::{BitcoinConfig, EthereumConfig};
use chains::{RawBitcoin, RawEthereum, btc, eth};
pub use threshold::ThresholdConfig;
use threshold::{RawThreshold, threshold};
pub use transport::ServerTls;

/// A configuration problem, with the dotted key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    database: RawDatabase,
    audit: RawAudit,
    #[serde(default)]
    log: RawLog,
    hsm: Option<RawHsm>,
    threshold: Option<RawThreshold>,
    governance: governance::RawGovernance,
    #[serde(default)]
    ethereum: Vec<RawEthereum>,
    #[serde(default)]
    bitcoin: Vec<RawBitcoin>,
    #[serde(default)]
    webhooks: RawWebhooks,
    #[serde(default)]
    tls: transport::RawTls,
    backup: Option<backup::RawBackup>,
    reconciliation: Option<reconcile::RawReconciliation>,
    console: Option<console::RawConsole>,
    operations: Option<operations::RawOperations>,
}

/// `[webhooks]`: where deliveries may go beyond public addresses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    /// Hosts that may resolve to private addresses (an internal receiver).
    #[serde(default)]
    allow_hosts: Vec<String>,
    /// Receivers on this host (development and tests only).
    #[serde(default)]
    allow_loopback: bool,
    /// Seconds to wait after each failed delivery (the attempt after the
    /// last is final); Standard Webhooks' schedule when absent. Changed by
    /// a reload.
    retry_delays_seconds: Option<Vec<u64>>,
}

/// `[governance]`: who must agree before rules, roles and keys change.
/// The quorum and the cooling-off period have no defaults: they are a
/// decision of the installation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHsm {
    module: PathBuf,
    token_label: String,
    pin_file: Option<PathBuf>,
    pin_env: Option<String>,
    #[serde(default = "default_sessions")]
    sessions: usize,
}

/// Two sessions per core, at least four: a signer's `C_Sign` and the
/// recovery-id search after it overlap on one session (see
/// docs/BENCHMARKS.md), and a network HSM's round trips want more in
/// flight than there are cores.
fn default_sessions() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    cores.saturating_mul(2).clamp(4, 64)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    #[serde(default = "default_max_body")]
    max_body_bytes: u64,
    #[serde(default = "default_timeout")]
    request_timeout_seconds: u64,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names
    /// the client for rate limits and the audit log.
    #[serde(default)]
    trusted_proxies: Vec<String>,
    /// The API's certificate chain and key (PEM): it serves HTTPS.
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    /// Clients must present a certificate this CA signed (mutual TLS).
    tls_client_ca_file: Option<PathBuf>,
}

fn default_max_body() -> u64 {
    1024 * 1024
}

fn default_timeout() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    max_connections: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    signing_key_file: Option<PathBuf>,
    hsm_key: Option<String>,
    checkpoint_file: PathBuf,
    checkpoint_every_records: u64,
    checkpoint_every_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    format: LogFormat,
    #[serde(default = "default_level")]
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line: for log collectors.
    #[default]
    Json,
    /// Human-readable lines: for a terminal.
    Text,
}

/// Where the database is, before its secret is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite {
        path: PathBuf,
    },
    Postgres {
        url: String,
        password: Option<PasswordSource>,
        max_connections: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    File(PathBuf),
    Env(String),
}

/// A PKCS#11 token: module, token label, where the PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmConfig {
    pub module: PathBuf,
    pub token_label: String,
    pub pin: PasswordSource,
    pub sessions: usize,
}

impl HsmConfig {
    /// Reads the PIN from its file or environment variable.
    pub fn pin(&self) -> Result<Zeroizing<String>, ConfigError> {
        read_secret(&self.pin, "hsm.pin_file", "hsm.pin_env")
    }
}

/// Where the audit checkpoint key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditKey {
    /// An Ed25519 seed in a 0600 file.
    File(PathBuf),
    /// An Ed25519 key inside the configured HSM (`pkcs11:<id>`).
    Hsm(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub trusted_proxies: Vec<api_http::Cidr>,
    /// The API serves HTTPS with this (plain HTTP without).
    pub server_tls: Option<ServerTls>,
    /// What outbound connections trust.
    pub client_tls: tls::ClientTls,
    /// Where backups are encrypted to, if configured.
    pub backup: Option<BackupConfig>,
    /// How often the server reconciles every account with the chains.
    pub reconcile_every: Duration,
    /// The file it was read from (a backup carries it).
    pub path: Option<PathBuf>,
    pub database: Database,
    pub audit_key: AuditKey,
    pub checkpoint_file: PathBuf,
    pub checkpoint_every_records: u64,
    pub checkpoint_every: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    pub hsm: Option<HsmConfig>,
    pub threshold: Option<ThresholdConfig>,
    pub governance: service::governance::GovernanceConfig,
    pub ethereum: Vec<EthereumConfig>,
    pub bitcoin: Vec<BitcoinConfig>,
    pub webhooks: service::webhook_target::WebhookPolicy,
    /// Where passkeys are made and used (`[console]`); none without it.
    pub passkeys: Option<policy::RelyingParty>,
    /// Metrics and resource guards (`[operations]`).
    pub operations: operations::Operations,
}

impl Config {
    /// Where the server writes: the SQLite database's directory
    /// (PostgreSQL's disk is its own server's) and the checkpoint file's.
    pub fn disk_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.checkpoint_file.clone()];
        paths.extend(self.database.sqlite_path());
        paths
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("(file)", format!("cannot read {}: {e}", path.display()))
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut c = Config::parse(&text, base)?;
        c.path = Some(path.to_path_buf());
        Ok(c)
    }

    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::new("(syntax)", one_line(&e.to_string())))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            // An empty key (`"" = 1`) has an empty path: named as such
            // (found by fuzzing).
            let key = match key.as_str() {
                "." => "(top level)".to_owned(),
                "" => "\"\" (an empty key)".to_owned(),
                _ => key,
            };
            ConfigError::new(&key, one_line(&e.inner().to_string()))
        })?;
        validate(raw, base)
    }
}

/// toml errors span several lines: a position, a source excerpt, then the
/// message. Keeps the message and the position on one line.
fn one_line(s: &str) -> String {
    let mut lines = s.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or_default();
    let message = s
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim();
    match first.strip_prefix("TOML parse error at ") {
        Some(pos) => format!("{message} ({pos})"),
        None => message.to_owned(),
    }
}

fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let listen: SocketAddr = raw.server.listen.parse().map_err(|_| {
        ConfigError::new(
            "server.listen",
            format!(
                "{:?} is not an address:port such as 127.0.0.1:8200",
                raw.server.listen
            ),
        )
    })?;
    let client_tls = transport::client(&raw.tls, base)?;
    let server_tls = transport::server(
        raw.server.tls_cert_file.clone(),
        raw.server.tls_key_file.clone(),
        raw.server.tls_client_ca_file.clone(),
        base,
    )?;
    let webhooks = transport::webhooks(
        &raw.webhooks.allow_hosts,
        raw.webhooks.allow_loopback,
        raw.webhooks.retry_delays_seconds,
        &client_tls,
    )?;
    let backup = backup::backup(raw.backup, base)?;
    let reconcile_every = reconcile::every(raw.reconciliation)?;
    let passkeys = console::relying_party(raw.console)?;
    let operations = operations::operations(raw.operations)?;
    let trusted_proxies = raw
        .server
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.parse::<api_http::Cidr>().map_err(|e| {
                ConfigError::new(&format!("server.trusted_proxies[{i}]"), e.to_string())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !(1024..=64 * 1024 * 1024).contains(&raw.server.max_body_bytes) {
        return Err(ConfigError::new(
            "server.max_body_bytes",
            "must be between 1024 and 67108864",
        ));
    }
    if !(1..=600).contains(&raw.server.request_timeout_seconds) {
        return Err(ConfigError::new(
            "server.request_timeout_seconds",
            "must be between 1 and 600",
        ));
    }
    let database = database(raw.database, base)?;
    if raw.audit.checkpoint_every_records == 0 {
        return Err(ConfigError::new(
            "audit.checkpoint_every_records",
            "must be at least 1",
        ));
    }
    if !(1..=86_400).contains(&raw.audit.checkpoint_every_seconds) {
        return Err(ConfigError::new(
            "audit.checkpoint_every_seconds",
            "must be between 1 and 86400",
        ));
    }
    if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
        return Err(ConfigError::new(
            "log.level",
            format!(
                "{:?} is not a log filter such as info or strongroom=debug",
                raw.log.level
            ),
        ));
    }
    let hsm = raw.hsm.map(|h| hsm(h, base)).transpose()?;
    let threshold = raw.threshold.map(|t| threshold(t, base)).transpose()?;
    let audit_key = match (raw.audit.signing_key_file, raw.audit.hsm_key) {
        (Some(f), None) => AuditKey::File(base.join(f)),
        (None, Some(k)) => {
            if hsm.is_none() {
                return Err(ConfigError::new("audit.hsm_key", "needs an [hsm] section"));
            }
            if !k.starts_with("pkcs11:") {
                return Err(ConfigError::new(
                    "audit.hsm_key",
                    "expected pkcs11:<id> (strongroom audit init-hsm-key prints it)",
                ));
            }
            AuditKey::Hsm(k)
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "audit.hsm_key",
                "set either signing_key_file or hsm_key, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(
                "audit.signing_key_file",
                "the audit key comes from signing_key_file or hsm_key",
            ));
        }
    };
    let governance = governance::governance(&raw.governance)?;
    let mut ethereum = Vec::with_capacity(raw.ethereum.len());
    for (i, e) in raw.ethereum.into_iter().enumerate() {
        let net = eth(e, i, &client_tls)?;
        if ethereum
            .iter()
            .any(|o: &EthereumConfig| o.network.chain_id == net.network.chain_id)
        {
            return Err(ConfigError::new(
                &format!("ethereum[{i}].chain_id"),
                "configured twice",
            ));
        }
        ethereum.push(net);
    }
    let mut bitcoin: Vec<BitcoinConfig> = Vec::with_capacity(raw.bitcoin.len());
    for (i, b) in raw.bitcoin.into_iter().enumerate() {
        let net = btc(b, i, base)?;
        if bitcoin.iter().any(|o| o.network == net.network) {
            return Err(ConfigError::new(
                &format!("bitcoin[{i}].network"),
                "configured twice",
            ));
        }
        bitcoin.push(net);
    }
    Ok(Config {
        hsm,
        threshold,
        governance,
        ethereum,
        bitcoin,
        listen,
        max_body_bytes: usize::try_from(raw.server.max_body_bytes).unwrap_or(usize::MAX),
        request_timeout: Duration::from_secs(raw.server.request_timeout_seconds),
        trusted_proxies,
        server_tls,
        client_tls,
        backup,
        reconcile_every,
        passkeys,
        operations,
        path: None,
        webhooks,
        database,
        audit_key,
        checkpoint_file: base.join(raw.audit.checkpoint_file),
        checkpoint_every_records: raw.audit.checkpoint_every_records,
        checkpoint_every: Duration::from_secs(raw.audit.checkpoint_every_seconds),
        log_format: raw.log.format,
        log_level: raw.log.level,
    })
}

fn hsm(raw: RawHsm, base: &Path) -> Result<HsmConfig, ConfigError> {
    if raw.token_label.is_empty() || raw.token_label.len() > 32 {
        return Err(ConfigError::new("hsm.token_label", "must be 1 to 32 bytes"));
    }
    if !(1..=64).contains(&raw.sessions) {
        return Err(ConfigError::new("hsm.sessions", "must be between 1 and 64"));
    }
    let pin = match (raw.pin_file, raw.pin_env) {
        (Some(f), None) => PasswordSource::File(base.join(f)),
        (None, Some(e)) => PasswordSource::Env(e),
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "hsm.pin_env",
                "set either pin_file or pin_env, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(
                "hsm.pin_file",
                "the PIN comes from pin_file or pin_env, never from the configuration",
            ));
        }
    };
    Ok(HsmConfig {
        module: base.join(raw.module),
        token_label: raw.token_label,
        pin,
        sessions: raw.sessions,
    })
}

/// A secret from a file (trailing newline removed) or an environment variable.
fn read_secret(
    source: &PasswordSource,
    file_key: &str,
    env_key: &str,
) -> Result<Zeroizing<String>, ConfigError> {
    match source {
        PasswordSource::File(f) => {
            let s = Zeroizing::new(std::fs::read_to_string(f).map_err(|e| {
                ConfigError::new(file_key, format!("cannot read {}: {e}", f.display()))
            })?);
            Ok(Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_owned()))
        }
        PasswordSource::Env(v) => std::env::var(v)
            .map(Zeroizing::new)
            .map_err(|_| ConfigError::new(env_key, format!("environment variable {v} is not set"))),
    }
}

fn database(raw: RawDatabase, base: &Path) -> Result<Database, ConfigError> {
    let url = raw.url.trim();
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() || path.contains('?') {
            return Err(ConfigError::new(
                "database.url",
                "expected sqlite://PATH (relative to this file) or sqlite:///ABSOLUTE/PATH",
            ));
        }
        for (key, set) in [
            ("database.password_file", raw.password_file.is_some()),
            ("database.password_env", raw.password_env.is_some()),
            ("database.max_connections", raw.max_connections.is_some()),
        ] {
            if set {
                return Err(ConfigError::new(key, "applies to PostgreSQL only"));
            }
        }
        return Ok(Database::Sqlite {
            path: base.join(path),
        });
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let parsed = url::Url::parse(url)
            .map_err(|e| ConfigError::new("database.url", format!("not a valid URL: {e}")))?;
        let secret_param = parsed
            .query_pairs()
            .any(|(k, _)| matches!(k.as_ref(), "password" | "passfile" | "sslpassword"));
        if parsed.password().is_some() || secret_param {
            return Err(ConfigError::new(
                "database.url",
                "must not contain a password; use database.password_file or database.password_env",
            ));
        }
        let password = match (raw.password_file, raw.password_env) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "database.password_env",
                    "set either password_file or password_env, not both",
                ));
            }
            (Some(f), None) => Some(PasswordSource::File(base.join(f))),
            (None, Some(e)) => Some(PasswordSource::Env(e)),
            (None, None) => None,
        };
        let max_connections = raw.max_connections.unwrap_or(16);
        if !(1..=1000).contains(&max_connections) {
            return Err(ConfigError::new(
                "database.max_connections",
                "must be between 1 and 1000",
            ));
        }
        return Ok(Database::Postgres {
            url: url.to_owned(),
            password,
            max_connections,
        });
    }
    Err(ConfigError::new(
        "database.url",
        "expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE",
    ))
}

impl Database {
    /// The SQLite file, if it is one.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match self {
            Database::Sqlite { path } => Some(path.clone()),
            Database::Postgres { .. } => None,
        }
    }

    /// Reads the password, if any, and builds the storage configuration.
    pub fn resolve(&self) -> Result<DatabaseConfig, ConfigError> {
        Ok(match self {
            Database::Sqlite { path } => DatabaseConfig::Sqlite { path: path.clone() },
            Database::Postgres {
                url,
                password,
                max_connections,
            } => {
                let password = password
                    .as_ref()
                    .map(|p| read_secret(p, "database.password_file", "database.password_env"))
                    .transpose()?;
                DatabaseConfig::Postgres {
                    url: url.clone(),
                    password,
                    max_connections: *max_connections,
                }
            }
        })
    }
}

/// The configuration `strongroom dev init` writes.
pub fn dev_config(listen: SocketAddr, eth: Option<&str>) -> String {
    // Any free port (the server prints it on its second line): several
    // development servers and test runs on one machine never collide.
    let metrics = SocketAddr::new(listen.ip(), 0);
    let mut text = format!(
        r#"# Strongroom development configuration, written by `strongroom dev init`.
# Not for production: SQLite in this directory, text logs.

[server]
listen = "{listen}"
max_body_bytes = 1048576
request_timeout_seconds = 30

[database]
url = "sqlite://strongroom.db"

[audit]
signing_key_file = "audit.key"
checkpoint_file = "audit.checkpoints"
checkpoint_every_records = 1000
checkpoint_every_seconds = 60

[log]
format = "text"
level = "info"

# Prometheus scrapes /metrics here (loopback only); the disk floor below
# which new transfers are refused.
[operations]
metrics_listen = "{metrics}"
disk_floor_mb = 256

# One admin on a dev machine: their signed vote applies a proposal. Production
# installations set a quorum of two or more.
[governance]
admin_quorum = 1
whitelist_cooling_off_hours = 0
"#
    );
    if let Some(url) = eth {
        text.push_str(&format!(
            r#"
# The local dev chain (anvil). Fee caps are generous for a dev chain only.
[[ethereum]]
chain_id = 31337
endpoints = ["{url}"]
confirmations = 2
max_fee_per_gas_wei = "500000000000"
max_total_fee_wei = "100000000000000000"
poll_seconds = 2
"#
        ));
    }
    text
}

/// A whole configuration with nothing optional, its paths relative (the
/// tests here and the binary's build on it).
#[doc(hidden)]
pub const EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8200"
[database]
url = "sqlite://data/strongroom.db"
[audit]
signing_key_file = "audit.key"
checkpoint_file = "audit.checkpoints"
checkpoint_every_records = 100
checkpoint_every_seconds = 60
[governance]
admin_quorum = 2
whitelist_cooling_off_hours = 24
"#;

#[cfg(test)]
mod tests;

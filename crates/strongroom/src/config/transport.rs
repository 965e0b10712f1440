//! TLS in the configuration: `[tls] ca_file` (whose certificates outbound
//! connections trust: nodes, Esplora, webhooks), the API's own certificate
//! in `[server]`, and the plain-HTTP rule for each endpoint URL.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// `[tls]`: outbound connections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// A PEM bundle of the only CAs to trust (a private PKI); without it,
    /// the system's trust store.
    ca_file: Option<PathBuf>,
}

/// The TLS every outbound connection uses, its bundle read and checked now.
pub(super) fn client(raw: &RawTls, base: &Path) -> Result<tls::ClientTls, ConfigError> {
    let roots = match &raw.ca_file {
        Some(f) => tls::Roots::Bundle(base.join(f)),
        None => tls::Roots::System,
    };
    tls::ClientTls::new(&roots).map_err(|e| ConfigError::new("tls.ca_file", e.to_string()))
}

/// The API's own TLS: it serves HTTPS itself, and with a client CA only to
/// clients holding a certificate that CA signed.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

impl ServerTls {
    /// The rustls configuration, from the files as they are now.
    pub fn config(&self) -> Result<std::sync::Arc<tls::rustls::ServerConfig>, tls::TlsError> {
        tls::server_config(
            &self.cert_file,
            &self.key_file,
            self.client_ca_file.as_deref(),
        )
    }
}

/// `[server] tls_cert_file / tls_key_file / tls_client_ca_file`: both of
/// the first two or neither; checked by building the configuration once.
pub(super) fn server(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    base: &Path,
) -> Result<Option<ServerTls>, ConfigError> {
    let tls = match (cert, key) {
        (Some(c), Some(k)) => ServerTls {
            cert_file: base.join(c),
            key_file: base.join(k),
            client_ca_file: client_ca.map(|f| base.join(f)),
        },
        (None, None) if client_ca.is_none() => return Ok(None),
        (None, None) => {
            return Err(ConfigError::new(
                "server.tls_client_ca_file",
                "needs tls_cert_file and tls_key_file (mutual TLS is TLS first)",
            ));
        }
        (Some(_), None) => {
            return Err(ConfigError::new(
                "server.tls_key_file",
                "tls_cert_file needs its key",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "server.tls_cert_file",
                "tls_key_file needs its certificate",
            ));
        }
    };
    tls.config()
        .map_err(|e| ConfigError::new("server.tls_cert_file", e.to_string()))?;
    Ok(Some(tls))
}

/// A node endpoint: its URL, or a table that may allow plain HTTP to it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawEndpoint {
    Url(String),
    Table {
        url: String,
        /// Plain `http://` to a host that is not this machine (a node on a
        /// private link the operator vouches for).
        #[serde(default)]
        allow_http: bool,
    },
}

impl RawEndpoint {
    /// The URL, checked against the plain-HTTP rule.
    pub(super) fn checked(self, key: &str) -> Result<String, ConfigError> {
        let (url, allow_http) = match self {
            RawEndpoint::Url(u) => (u, false),
            RawEndpoint::Table { url, allow_http } => (url, allow_http),
        };
        url_rule(key, &url, allow_http)?;
        Ok(url)
    }
}

/// The plain-HTTP rule: `https://`, or `http://` to loopback or where
/// `allow_http` says so.
pub(super) fn url_rule(key: &str, url: &str, allow_http: bool) -> Result<(), ConfigError> {
    tls::check_url(url, allow_http).map_err(|e| {
        ConfigError::new(
            key,
            format!("{e} (`allow_http = true` on the endpoint allows it)"),
        )
    })
}

/// The most retries a delivery may have, and the longest wait before one.
const MAX_RETRIES: usize = 20;
const MAX_RETRY_DELAY_S: u64 = 7 * 86_400;

/// `[webhooks]`: hosts that may resolve to private addresses, the loopback
/// test mode, the retry schedule, and the TLS deliveries use.
pub(super) fn webhooks(
    hosts: &[String],
    allow_loopback: bool,
    retry_delays_s: Option<Vec<u64>>,
    client_tls: &tls::ClientTls,
) -> Result<service::webhook_target::WebhookPolicy, ConfigError> {
    if let Some(d) = &retry_delays_s {
        let ok = d.len() <= MAX_RETRIES && d.iter().all(|s| (1..=MAX_RETRY_DELAY_S).contains(s));
        if !ok {
            return Err(ConfigError::new(
                "webhooks.retry_delays_seconds",
                format!(
                    "at most {MAX_RETRIES} delays, each from 1 to {MAX_RETRY_DELAY_S} seconds ([] retries nothing)"
                ),
            ));
        }
    }
    let mut allow_hosts = std::collections::BTreeSet::new();
    for (i, h) in hosts.iter().enumerate() {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'));
        if !ok {
            return Err(ConfigError::new(
                &format!("webhooks.allow_hosts[{i}]"),
                "a host name or address",
            ));
        }
        allow_hosts.insert(h);
    }
    Ok(service::webhook_target::WebhookPolicy {
        allow_hosts,
        allow_loopback,
        tls: Some(client_tls.clone()),
        retry_delays_s,
    })
}

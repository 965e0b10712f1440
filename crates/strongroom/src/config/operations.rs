//! `[operations]`: where Prometheus scrapes, and the guards that keep a
//! server in trouble from making it worse — a disk floor, a bound on
//! requests in flight, the API's rate limits, and how long checkpoint
//! writes may fail before signing stops.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOperations {
    /// `host:port` for `/metrics` (its own listener), or `off`.
    metrics_listen: Option<String>,
    /// Free space (MiB) below which new transfers are refused, where the
    /// database (SQLite) and the audit checkpoints are written.
    disk_floor_mb: Option<u64>,
    /// Checkpoint writes failing this long stop every signature.
    checkpoint_fail_closed_seconds: Option<u64>,
    /// Requests answered at once; more get 503 with `Retry-After`.
    max_in_flight: Option<usize>,
    /// Signatures made at once (HSM sessions, signer nodes, the keystore);
    /// more wait their turn.
    max_concurrent_signatures: Option<usize>,
    /// Requests per second each verified principal may make on average
    /// (bursts of twice as many); more get 429 `rate_limited`.
    requests_per_second_per_principal: Option<u32>,
    /// The same per client address, before authentication.
    requests_per_second_per_address: Option<u32>,
}

/// What `[operations]` says, defaults filled in.
#[derive(Debug, Clone)]
pub struct Operations {
    /// Where `/metrics` is served; `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    pub disk_floor_bytes: u64,
    pub checkpoint_fail_closed_after: Duration,
    pub max_in_flight: usize,
    pub max_concurrent_signatures: usize,
    /// Requests per second per principal, and per address.
    pub per_principal: u32,
    pub per_address: u32,
}

/// Prometheus's registered default port for exporters is taken by many;
/// 9464 is the OpenTelemetry exporter's, on loopback only.
const DEFAULT_METRICS: &str = "127.0.0.1:9464";

pub(super) fn operations(raw: Option<RawOperations>) -> Result<Operations, ConfigError> {
    let raw = raw.unwrap_or_default();
    let metrics_listen = match raw.metrics_listen.as_deref().unwrap_or(DEFAULT_METRICS) {
        "off" => None,
        addr => Some(addr.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                "operations.metrics_listen",
                format!("{addr:?} is not host:port (or \"off\")"),
            )
        })?),
    };
    let floor_mb = raw.disk_floor_mb.unwrap_or(256);
    if floor_mb > 1 << 30 {
        return Err(ConfigError::new(
            "operations.disk_floor_mb",
            "at most 1073741824 (1 PiB)",
        ));
    }
    let fail_closed = raw.checkpoint_fail_closed_seconds.unwrap_or(600);
    if !(1..=86_400).contains(&fail_closed) {
        return Err(ConfigError::new(
            "operations.checkpoint_fail_closed_seconds",
            "must be between 1 and 86400",
        ));
    }
    let max_in_flight = raw.max_in_flight.unwrap_or(1024);
    if !(1..=1_000_000).contains(&max_in_flight) {
        return Err(ConfigError::new(
            "operations.max_in_flight",
            "must be between 1 and 1000000",
        ));
    }
    let max_concurrent_signatures = raw
        .max_concurrent_signatures
        .unwrap_or(service::SIGNING_LIMIT);
    if !(1..=1024).contains(&max_concurrent_signatures) {
        return Err(ConfigError::new(
            "operations.max_concurrent_signatures",
            "must be between 1 and 1024",
        ));
    }
    let rate = |v: Option<u32>, default: u32, key: &str| {
        let v = v.unwrap_or(default);
        if (1..=100_000).contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::new(key, "must be between 1 and 100000"))
        }
    };
    Ok(Operations {
        per_principal: rate(
            raw.requests_per_second_per_principal,
            20,
            "operations.requests_per_second_per_principal",
        )?,
        per_address: rate(
            raw.requests_per_second_per_address,
            50,
            "operations.requests_per_second_per_address",
        )?,
        max_concurrent_signatures,
        metrics_listen,
        disk_floor_bytes: floor_mb * 1024 * 1024,
        checkpoint_fail_closed_after: Duration::from_secs(fail_closed),
        max_in_flight,
    })
}

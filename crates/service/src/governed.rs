//! Settings that weaken a control when they are raised — a network's fee
//! caps and the node endpoints it trusts — held by the governance log, not
//! by the configuration file.
//!
//! At an unseal, each configured network whose values the log does not
//! hold yet gets the configuration's as its first ones (a record of
//! authority `configuration`, which replay accepts only while the log
//! holds none for that network). From then on only the admin quorum
//! changes them (`set_fee_caps`, `set_endpoints`), and the file's values
//! are ignored: a difference is logged at each unseal. A database write
//! cannot change them either: a `configuration` record carries the MAC
//! only an unsealed server can make, and the log's hash chain is anchored
//! in the audit log.
//!
//! The values in force are applied to the networks whenever a new
//! governance state is loaded: planning, approval checks and bumps read a
//! network's `fee_caps` as before; an endpoint outside the governed set is
//! never asked anything (the readiness check names the network when none
//! is left).

use std::sync::Arc;

use domain::{Actor, Network};
use serde_json::{Value, json};

use crate::changes::{Change, GovernedFeeCaps, fee_caps_of, invalid, origins_of};
use crate::error::ServiceError;
use crate::gov_state::{Authority, Content, GovState};
use crate::record::entry;
use crate::service::Service;
use crate::settings::{BtcNetwork, Configured, EthNetwork, EthNetworkConfig};

fn eth_caps(c: GovernedFeeCaps) -> chain_eth::FeeCaps {
    chain_eth::FeeCaps {
        max_fee_per_gas: c.max_rate,
        max_total_fee: c.max_total,
    }
}

/// Bitcoin's caps fit 64 bits (checked when they were recorded).
fn btc_caps(c: GovernedFeeCaps) -> chain_btc::FeeCaps {
    chain_btc::FeeCaps {
        max_fee_rate: u64::try_from(c.max_rate).unwrap_or(u64::MAX),
        max_fee: u64::try_from(c.max_total).unwrap_or(u64::MAX),
    }
}

/// An origin as governance spells it (hosts in lower case).
fn origin(o: &str) -> String {
    o.to_ascii_lowercase()
}

impl Service {
    /// Keeps what the configuration says of an EVM network (at start-up,
    /// before it is added; [`apply_governed`](Self::apply_governed) then
    /// puts the values in force).
    pub(crate) fn configure_eth(&self, network: &EthNetwork) {
        let caps = network.config.fee_caps;
        self.keep_configured(
            network.network().to_string(),
            GovernedFeeCaps {
                max_rate: caps.max_fee_per_gas,
                max_total: caps.max_total_fee,
            },
            network.client.origins(),
        );
    }

    /// [`configure_eth`](Self::configure_eth) for a Bitcoin network.
    pub(crate) fn configure_btc(&self, network: &BtcNetwork) {
        self.keep_configured(
            Network::Bitcoin(network.network).to_string(),
            GovernedFeeCaps {
                max_rate: u128::from(network.fee_caps.max_fee_rate),
                max_total: u128::from(network.fee_caps.max_fee),
            },
            network
                .client
                .as_ref()
                .map(|c| c.origins())
                .unwrap_or_default(),
        );
    }

    fn keep_configured(&self, name: String, caps: GovernedFeeCaps, origins: Vec<String>) {
        self.configured_networks()
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, Configured { caps, origins });
    }

    /// Applies the fee caps and endpoints `state` holds (the
    /// configuration's where it holds none yet) to every network.
    pub(crate) fn apply_governed(&self, state: &GovState) {
        let configured = self
            .configured_networks()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let caps_of = |name: &str| {
            state
                .fee_caps(name)
                .or_else(|| configured.get(name).map(|c| c.caps))
        };
        {
            let mut nets = self
                .eth_networks()
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for net in nets.values_mut() {
                let name = net.network().to_string();
                restrict(&name, state.endpoints(&name), |allowed| {
                    net.client.restrict(allowed)
                });
                if let Some(caps) = caps_of(&name).map(eth_caps)
                    && caps != net.config.fee_caps
                {
                    tracing::info!(network = %name, max_fee_per_gas = caps.max_fee_per_gas, max_total_fee = caps.max_total_fee, "fee caps in force");
                    *net = Arc::new(EthNetwork {
                        config: EthNetworkConfig {
                            fee_caps: caps,
                            ..net.config.clone()
                        },
                        client: net.client.clone(),
                    });
                }
            }
        }
        let mut nets = self
            .btc_networks()
            .write()
            .unwrap_or_else(|p| p.into_inner());
        for (name, net) in nets.iter_mut() {
            if let Some(client) = &net.client {
                restrict(name, state.endpoints(name), |allowed| {
                    client.restrict(allowed)
                });
            }
            if let Some(caps) = caps_of(name).map(btc_caps)
                && caps != net.fee_caps
            {
                tracing::info!(network = %name, max_fee_rate = caps.max_fee_rate, max_fee = caps.max_fee, "fee caps in force");
                *net = Arc::new(BtcNetwork {
                    fee_caps: caps,
                    ..BtcNetwork::clone(net)
                });
            }
        }
    }

    /// After an unseal: each configured network's values become its first
    /// governed ones where the log holds none; where it does, a file that
    /// says otherwise is named in the log (its values do not apply).
    pub(crate) async fn record_configured(&self) -> Result<(), ServiceError> {
        let configured = self
            .configured_networks()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (name, c) in configured {
            let state = self.gov().await?;
            match state.fee_caps(&name) {
                None => {
                    let content = Content::FeeCaps {
                        network: name.clone(),
                        max_rate: c.caps.max_rate.to_string(),
                        max_total: c.caps.max_total.to_string(),
                    };
                    self.record_first(&content, "fee_caps.configured").await?;
                }
                Some(g) if g != c.caps => tracing::warn!(
                    network = %name,
                    "the configuration's fee caps differ from the governed ones, which apply: a change takes a set_fee_caps proposal"
                ),
                Some(_) => {}
            }
            let origins: Vec<String> = c.origins.iter().map(|o| origin(o)).collect();
            match state.endpoints(&name) {
                None if origins.is_empty() => {}
                None => {
                    let mut unique = origins.clone();
                    unique.sort();
                    unique.dedup();
                    let content = Content::Endpoints {
                        network: name.clone(),
                        origins: unique,
                    };
                    self.record_first(&content, "endpoints.configured").await?;
                }
                Some(set) => {
                    let refused: Vec<&String> =
                        origins.iter().filter(|o| !set.contains(*o)).collect();
                    if !refused.is_empty() {
                        tracing::warn!(network = %name, refused = ?refused, "configured endpoints outside the governed set are not used: adding one takes a set_endpoints proposal");
                    }
                }
            }
        }
        // Applied now, not at the next use of the log.
        self.gov().await.map(drop)
    }

    /// Appends one `configuration` record with its audit record. Another
    /// server that recorded the network's values first is not an error.
    async fn record_first(&self, content: &Content, action: &str) -> Result<(), ServiceError> {
        let (network, details) = match content {
            Content::FeeCaps {
                network,
                max_rate,
                max_total,
            } => (
                network,
                json!({ "network": network, "max_rate": max_rate, "max_total": max_total }),
            ),
            Content::Endpoints { network, origins } => {
                (network, json!({ "network": network, "origins": origins }))
            }
            _ => return Err(invalid("not a network's configured values")),
        };
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let logged = self
            .log_governance(
                &mut tx,
                Authority::Configuration,
                &Actor::System,
                content,
                &[],
                now,
            )
            .await;
        let mut anchors = match logged {
            Ok(a) => a,
            Err(ServiceError::Conflict(why)) => {
                tracing::info!(network = %network, why = %why, "the network's first values were recorded by another server");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        anchors.insert(
            0,
            entry(
                &Actor::System,
                action,
                &format!("network:{network}"),
                details,
            )?,
        );
        self.commit(tx, &anchors, now).await?;
        tracing::info!(network = %network, action, "the configuration's values recorded as the network's first governed ones");
        Ok(())
    }

    /// Checks a `set_fee_caps` or `set_endpoints` proposal; returns what
    /// the admins see (the values in force beside the new ones).
    pub(crate) async fn check_governed(&self, change: &Change) -> Result<String, ServiceError> {
        let state = self.gov().await?;
        let configured = self
            .configured_networks()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match parsed(change)? {
            Parsed::Caps(name, caps) => {
                let now = state
                    .fee_caps(&name)
                    .or_else(|| configured.get(&name).map(|c| c.caps))
                    .ok_or_else(|| invalid(format!("network: {name} is not configured here")))?;
                let unit = if name.starts_with("bitcoin:") {
                    ("sat/vB", "sat")
                } else {
                    ("wei per gas", "wei")
                };
                Ok(format!(
                    "fee caps of {name}: at most {} {} (now {}) and {} {} a transaction (now {})",
                    caps.max_rate, unit.0, now.max_rate, caps.max_total, unit.1, now.max_total
                ))
            }
            Parsed::Origins(name, set) => {
                if !configured.contains_key(&name) {
                    return Err(invalid(format!("network: {name} is not configured here")));
                }
                let list = |s: &mut dyn Iterator<Item = &String>| {
                    s.map(String::as_str).collect::<Vec<_>>().join(", ")
                };
                let now = state.endpoints(&name).map_or_else(
                    || "every configured one".to_owned(),
                    |n| list(&mut n.iter()),
                );
                Ok(format!(
                    "endpoints of {name}: {} (now {now})",
                    list(&mut set.iter())
                ))
            }
        }
    }
}

/// A `set_fee_caps` or `set_endpoints` change, checked and canonical.
enum Parsed {
    Caps(String, GovernedFeeCaps),
    Origins(String, std::collections::BTreeSet<String>),
}

fn parsed(change: &Change) -> Result<Parsed, ServiceError> {
    match change {
        Change::SetFeeCaps {
            network,
            max_rate,
            max_total,
        } => fee_caps_of(network, max_rate, max_total).map(|(n, c)| Parsed::Caps(n, c)),
        Change::SetEndpoints { network, origins } => {
            origins_of(network, origins).map(|(n, s)| Parsed::Origins(n, s))
        }
        _ => Err(invalid("not a fee-cap or endpoint change")),
    }
}

/// Restricts a client to `governed` (every endpoint while the log holds
/// none for the network); logs the endpoints left out.
fn restrict(
    name: &str,
    governed: Option<&std::collections::BTreeSet<String>>,
    apply: impl FnOnce(&dyn Fn(&str) -> bool) -> Vec<String>,
) {
    let refused = apply(&|o: &str| governed.is_none_or(|set| set.contains(&origin(o))));
    if !refused.is_empty() {
        tracing::warn!(network = %name, refused = ?refused, "endpoints outside the governed set are not used");
    }
}

/// The audit details of an applied `set_fee_caps` or `set_endpoints`.
pub(crate) fn details(change: &Change) -> Result<Value, ServiceError> {
    Ok(match parsed(change)? {
        Parsed::Caps(name, caps) => {
            json!({ "network": name, "max_rate": caps.max_rate.to_string(), "max_total": caps.max_total.to_string() })
        }
        Parsed::Origins(name, set) => json!({ "network": name, "origins": set }),
    })
}

//! Destination screening, before money moves: the deny list governance
//! keeps (an address in any case or encoding matches its entry) and
//! look-alike detection against address poisoning — a destination that
//! shares its first and last characters with an address-book entry or a
//! recent destination without being it. Checked when a transfer is
//! requested (and dry-run), when it is approved and again before it is
//! signed; a hit changes nothing and names what it matched.

use domain::Timestamp;

use crate::changes::{DeniedEntry, MAX_DENIED_PER_PROPOSAL, canonical_denied};
use crate::error::ServiceError;
use crate::gov_state::{DeniedState, GovState};
use crate::service::Service;

/// How far back destinations paid count for look-alike screening.
const RECENT_MS: i64 = 90 * 24 * 3_600_000;

/// Checks a deny-list proposal; returns its summary.
pub(crate) fn check_deny(list: &str, entries: &[DeniedEntry]) -> Result<String, ServiceError> {
    let invalid = |m: String| ServiceError::Invalid(m);
    if list.trim().is_empty() || list.len() > 200 || list.chars().any(char::is_control) {
        return Err(invalid(
            "list: 1 to 200 characters naming the list and its version".into(),
        ));
    }
    if entries.is_empty() || entries.len() > MAX_DENIED_PER_PROPOSAL {
        return Err(invalid(format!(
            "entries: 1 to {MAX_DENIED_PER_PROPOSAL} per proposal"
        )));
    }
    for (i, e) in entries.iter().enumerate() {
        canonical_denied(&e.network, &e.address)
            .map_err(|err| invalid(format!("entries[{i}]: {err}")))?;
        if e.reason.trim().is_empty()
            || e.reason.len() > 500
            || e.reason.chars().any(char::is_control)
        {
            return Err(invalid(format!("entries[{i}].reason: 1 to 500 characters")));
        }
    }
    Ok(format!("deny {} addresses ({list})", entries.len()))
}

/// Whether two networks share their addresses: every EVM chain does.
fn same_family(a: &str, b: &str) -> bool {
    a == b || (a.starts_with("eip155:") && b.starts_with("eip155:"))
}

/// The part of an address that is random: without `0x`, or a bech32
/// address's human-readable part, separator and witness version, or a
/// base58 address's version character.
fn body(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix("0x") {
        return rest;
    }
    match address.find('1') {
        Some(i) if (2..=5).contains(&i) && address[..i].bytes().all(|b| b.is_ascii_lowercase()) => {
            address.get(i + 2..).unwrap_or_default()
        }
        _ => address.get(1..).unwrap_or_default(),
    }
}

/// Whether `a` looks like `b` (same first `head` and last `tail`
/// characters of their bodies, case aside) without being it.
pub(crate) fn looks_like(a: &str, b: &str, head: usize, tail: usize) -> bool {
    let (x, y) = (body(a).to_ascii_lowercase(), body(b).to_ascii_lowercase());
    if x == y || x.len() < head + tail || y.len() < head + tail || head + tail == 0 {
        return false;
    }
    x[..head] == y[..head] && x[x.len() - tail..] == y[y.len() - tail..]
}

/// An address on the deny list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedAddress {
    pub network: String,
    /// Canonical (EVM lower-case hex, bech32 lower case).
    pub address: String,
    pub list: String,
    pub reason: String,
    pub since: Timestamp,
}

/// Refuses a transfer whose destination the verified governance state
/// denies (`denied_destination`).
pub(crate) fn refuse_denied(gov: &GovState, t: &storage::TransferRow) -> Result<(), ServiceError> {
    let network = t.asset.split('/').next().unwrap_or_default();
    match gov.denied(network, &t.destination) {
        Some(why) => Err(denied(&t.destination, why)),
        None => Ok(()),
    }
}

fn denied(destination: &str, why: &DeniedState) -> ServiceError {
    ServiceError::Screened {
        code: "denied_destination",
        message: format!(
            "{destination} is on the deny list ({}: {}) since {} ms",
            why.list,
            why.reason,
            why.since.as_millis()
        ),
    }
}

impl Service {
    /// Checks that an address to take off the deny list is on it.
    pub(crate) async fn check_undeny(
        &self,
        network: &str,
        address: &str,
    ) -> Result<String, ServiceError> {
        let (network, address) = canonical_denied(network, address)?;
        if self.gov().await?.denied(&network, &address).is_none() {
            return Err(ServiceError::Invalid(format!(
                "{address} is not on the deny list of {network}"
            )));
        }
        Ok(format!("take {address} on {network} off the deny list"))
    }

    /// Refuses a destination (its canonical key on `network`) on the deny
    /// list: `denied_destination`, naming the list and the reason.
    pub(crate) async fn screen_denied(
        &self,
        network: &str,
        destination: &str,
    ) -> Result<(), ServiceError> {
        let gov = match self.gov().await {
            Ok(g) => g,
            // No governance, no deny list; anything else fails closed.
            Err(ServiceError::GovernanceNotConfigured) => return Ok(()),
            Err(e) => return Err(e),
        };
        match gov.denied(network, destination) {
            Some(why) => Err(denied(destination, why)),
            None => Ok(()),
        }
    }

    /// The deny list and look-alike screening of a new transfer's
    /// destination on `network` (canonical key).
    pub(crate) async fn screen_destination(
        &self,
        network: &str,
        destination: &str,
    ) -> Result<(), ServiceError> {
        self.screen_denied(network, destination).await?;
        let Ok(cfg) = self.governance() else {
            return Ok(());
        };
        let (head, tail) = (
            usize::from(cfg.lookalike_head),
            usize::from(cfg.lookalike_tail),
        );
        let mut known: Vec<(String, String)> = Vec::new();
        // No governance, no address book; anything else fails closed.
        let gov = match self.gov().await {
            Ok(g) => Some(g),
            Err(ServiceError::GovernanceNotConfigured) => None,
            Err(e) => return Err(e),
        };
        if let Some(gov) = gov {
            known.extend(
                gov.addresses()
                    .values()
                    .filter(|a| !a.removed && same_family(&a.network, network))
                    .map(|a| {
                        (
                            a.address.clone(),
                            format!("address-book entry {:?}", a.label),
                        )
                    }),
            );
        }
        // Only the candidates sharing both ends are read back.
        let prefix = destination.len() - body(destination).len();
        if let (Some(start), Some(end)) = (
            destination.get(..prefix + head),
            destination.get(destination.len().saturating_sub(tail)..),
        ) {
            let since = Timestamp::from_millis(self.now().as_millis().saturating_sub(RECENT_MS));
            // Every EVM chain's payees: a poisoner copies a mainnet payee
            // to catch a payment on an L2.
            let scope = if network.starts_with("eip155:") {
                "eip155:%"
            } else {
                network
            };
            known.extend(
                self.store()
                    .paid_destinations_like(scope, since, start, end)
                    .await?
                    .into_iter()
                    .map(|d| (d, "a destination paid in the last 90 days".to_owned())),
            );
        }
        if let Some((address, what)) = known
            .into_iter()
            .find(|(known, _)| looks_like(destination, known, head, tail))
        {
            return Err(ServiceError::Screened {
                code: "lookalike_destination",
                message: format!(
                    "{destination} looks like {address} ({what}) but is not it: \
                     a poisoned address? Check every character"
                ),
            });
        }
        Ok(())
    }

    /// The deny list as the verified governance log has it (empty without
    /// governance).
    pub async fn deny_list(&self) -> Result<Vec<DeniedAddress>, ServiceError> {
        let gov = match self.gov().await {
            Ok(g) => g,
            Err(ServiceError::GovernanceNotConfigured) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(gov
            .deny_list()
            .iter()
            .map(|((network, address), why)| DeniedAddress {
                network: network.clone(),
                address: address.clone(),
                list: why.list.clone(),
                reason: why.reason.clone(),
                since: why.since,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_share_both_ends_of_the_body() {
        let real = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";
        let poisoned = "0x5aaE00000000000000000000000000000000beaed";
        assert!(looks_like(poisoned, real, 4, 4));
        assert!(!looks_like(real, real, 4, 4), "itself is no look-alike");
        assert!(!looks_like(
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaee",
            real,
            4,
            4
        ));
        assert!(!looks_like(
            "0x1aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            real,
            4,
            4
        ));
        // Bitcoin: the body starts after `bc1q`, `tb1q`, `bcrt1q`, …
        let b = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";
        assert!(looks_like(
            "bc1qar0s999999999999999999999999999zwf5mdq",
            b,
            4,
            4
        ));
        assert!(!looks_like(
            "bc1par0s999999999999999999999999999zwf5mdq",
            b,
            5,
            4
        ));
        assert_eq!(body("bcrt1qxyz"), "xyz");
        assert_eq!(
            body("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
            "BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"
        );
        assert!(!looks_like("0x12", real, 4, 4), "too short to compare");
    }
}

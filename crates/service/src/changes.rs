//! The changes governance makes, and their checks: what a proposal may
//! carry, in the core so that the governance log's replay reads them the
//! way `governance` applies them.

use domain::{Actor, Grant, Permission, Role, Scope};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ServiceError;

/// A change that needs the admin quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// A new policy version (TOML or JSON text).
    SetPolicy {
        document: String,
    },
    /// An address-book entry, usable after the cooling-off period.
    AddAddress {
        network: String,
        address: String,
        label: String,
        #[serde(default)]
        group: Option<String>,
    },
    RemoveAddress {
        id: String,
    },
    Grant {
        principal: String,
        role: String,
        scope: String,
        #[serde(default)]
        until_ms: Option<i64>,
    },
    Revoke {
        principal: String,
        role: String,
        scope: String,
    },
    /// An approver's Ed25519 public key (hex); replaces any earlier one.
    RegisterApproverKey {
        principal: String,
        public_key: String,
    },
    /// Revokes an approver's key and voids their pending approvals.
    RevokeApproverKey {
        principal: String,
    },
    SetWalletTier {
        wallet: String,
        tier: String,
    },
    /// An operator-kept price for USD rules: US dollars per whole unit, a
    /// decimal string (moves every USD limit, so it is governed too).
    SetPrice {
        asset: String,
        usd: String,
    },
    /// Ends a freeze, after an optional cool-down.
    ReleaseFreeze {
        freeze_id: String,
        #[serde(default)]
        cool_down_s: u64,
    },
    /// Destinations no transfer may pay: one list (a sanctions list, an
    /// incident's addresses) imported as one proposal.
    DenyAddresses {
        /// Where the entries come from (a list's name and version).
        list: String,
        entries: Vec<DeniedEntry>,
    },
    /// Takes an address off the deny list.
    UndenyAddress {
        network: String,
        address: String,
    },
    /// A network's fee caps (raising one weakens a control, so it is
    /// governed; the configuration gives only the first values). EVM: wei
    /// per gas and wei per transaction; Bitcoin: sat per vbyte and sat per
    /// transaction. Decimal integers.
    SetFeeCaps {
        network: String,
        max_rate: String,
        max_total: String,
    },
    /// The node endpoints a network may use, by origin
    /// (`scheme://host:port`): an endpoint in the configuration outside
    /// this set is never asked anything.
    SetEndpoints {
        network: String,
        origins: Vec<String>,
    },
}

/// One deny-list entry as proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeniedEntry {
    pub network: String,
    /// In any case or encoding the network's addresses take.
    pub address: String,
    pub reason: String,
}

/// The most entries one deny-list proposal carries.
pub(crate) const MAX_DENIED_PER_PROPOSAL: usize = 10_000;

impl Change {
    /// Its kind (as in its JSON), the audit action recorded when it
    /// applies, and the permission that may propose it.
    pub(crate) fn describe(&self) -> (&'static str, &'static str, Permission) {
        use Permission::*;
        match self {
            Change::SetPolicy { .. } => ("set_policy", "policy.activated", ManagePolicy),
            Change::AddAddress { .. } => ("add_address", "address_book.added", ManagePolicy),
            Change::RemoveAddress { .. } => {
                ("remove_address", "address_book.removed", ManagePolicy)
            }
            Change::Grant { .. } => ("grant", "grant.added", ManageUsers),
            Change::Revoke { .. } => ("revoke", "grant.removed", ManageUsers),
            Change::RegisterApproverKey { .. } => (
                "register_approver_key",
                "approver_key.registered",
                ManageUsers,
            ),
            Change::RevokeApproverKey { .. } => {
                ("revoke_approver_key", "approver_key.revoked", ManageUsers)
            }
            Change::SetWalletTier { .. } => ("set_wallet_tier", "wallet.tier_set", ManageNetworks),
            Change::SetPrice { .. } => ("set_price", "price.set", ManagePolicy),
            Change::ReleaseFreeze { .. } => ("release_freeze", "freeze.released", Freeze),
            Change::DenyAddresses { .. } => ("deny_addresses", "deny_list.added", ManagePolicy),
            Change::UndenyAddress { .. } => ("undeny_address", "deny_list.removed", ManagePolicy),
            Change::SetFeeCaps { .. } => ("set_fee_caps", "fee_caps.set", ManageNetworks),
            Change::SetEndpoints { .. } => ("set_endpoints", "endpoints.set", ManageNetworks),
        }
    }
}

pub(crate) fn invalid(s: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(s.into())
}

pub(crate) fn principal_of(s: &str) -> Result<Actor, ServiceError> {
    match s.parse::<Actor>() {
        Ok(a @ (Actor::User(_) | Actor::ApiKey(_))) => Ok(a),
        _ => Err(invalid(format!(
            "principal {s:?}: expected user:<uuid> or api-key:<uuid>"
        ))),
    }
}

pub(crate) fn grant_of(role: &str, scope: &str) -> Result<Grant, ServiceError> {
    let role: Role = role
        .parse()
        .map_err(|e: domain::AccessError| invalid(e.to_string()))?;
    let scope: Scope = scope
        .parse()
        .map_err(|e: domain::AccessError| invalid(e.to_string()))?;
    Grant::new(role, scope).map_err(|e| invalid(e.to_string()))
}

/// An Ed25519 key (an admin's, which signs governance votes).
pub(crate) fn public_key_of(hex_key: &str) -> Result<[u8; 32], ServiceError> {
    match approver_key_of(hex_key)? {
        policy::ApproverKey::Ed25519(k) => Ok(k),
        policy::ApproverKey::Passkey { .. } => Err(invalid(
            "public_key: a passkey signs transfer approvals only; governance votes need an Ed25519 key",
        )),
    }
}

/// An approver's key of either kind, in its canonical text form.
pub(crate) fn approver_key_of(text: &str) -> Result<policy::ApproverKey, ServiceError> {
    text.parse()
        .map_err(|e: policy::KeyError| invalid(e.to_string()))
}

/// A price: the asset and millionths of a dollar per whole unit, above zero
/// (a zero price would switch USD limits off).
pub(crate) fn price_of(asset: &str, usd: &str) -> Result<(domain::AssetId, u128), ServiceError> {
    let a: domain::AssetId = asset
        .parse()
        .map_err(|e: domain::AssetError| invalid(e.to_string()))?;
    let d = domain::Decimals::new(policy::document::USD_DECIMALS)
        .map_err(|e| invalid(e.to_string()))?;
    let micro = domain::amount::parse_units(usd, d).map_err(|e| invalid(e.to_string()))?;
    if micro == 0 {
        return Err(invalid("usd: a price above zero"));
    }
    Ok((a, micro))
}

/// A network's fee caps as governance holds them: the most per unit (wei
/// per gas, sat per vbyte) and per transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GovernedFeeCaps {
    pub(crate) max_rate: u128,
    pub(crate) max_total: u128,
}

/// Fee caps for `network` in canonical form: both above zero, a Bitcoin
/// network's within 64 bits and its rate at most 10 000 sat/vB.
pub(crate) fn fee_caps_of(
    network: &str,
    max_rate: &str,
    max_total: &str,
) -> Result<(String, GovernedFeeCaps), ServiceError> {
    let net = network_of(network)?;
    let number = |name: &str, v: &str| -> Result<u128, ServiceError> {
        let ok = !v.is_empty() && v.len() <= 39 && v.bytes().all(|b| b.is_ascii_digit());
        match v.parse::<u128>() {
            Ok(n) if ok && n > 0 && (v == "0" || !v.starts_with('0')) => Ok(n),
            _ => Err(invalid(format!(
                "{name}: a decimal integer above zero, without leading zeros"
            ))),
        }
    };
    let caps = GovernedFeeCaps {
        max_rate: number("max_rate", max_rate)?,
        max_total: number("max_total", max_total)?,
    };
    if let domain::Network::Bitcoin(_) = net {
        if caps.max_rate > 10_000 {
            return Err(invalid("max_rate: at most 10000 sat/vB"));
        }
        if u64::try_from(caps.max_total).is_err() {
            return Err(invalid("max_total: at most 2^64 - 1 sat"));
        }
    }
    Ok((net.to_string(), caps))
}

/// The most endpoints a network may name.
const MAX_ORIGINS: usize = 16;

/// Endpoint origins for `network` in canonical form: each
/// `http(s)://host[:port]` in lower case, with no user-info, path, query
/// or fragment (a URL's path may hold an API key: governance never sees
/// one), at least one, at most 16, none twice.
pub(crate) fn origins_of(
    network: &str,
    origins: &[String],
) -> Result<(String, std::collections::BTreeSet<String>), ServiceError> {
    let net = network_of(network)?;
    if origins.is_empty() || origins.len() > MAX_ORIGINS {
        return Err(invalid(format!(
            "origins: between 1 and {MAX_ORIGINS} endpoints"
        )));
    }
    let mut set = std::collections::BTreeSet::new();
    for o in origins {
        let lower = o.to_ascii_lowercase();
        let host = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"))
            .unwrap_or_default();
        let plain = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !plain || lower != *o {
            return Err(invalid(format!(
                "origins: {o:?} is not scheme://host[:port] in lower case (no user, path or query)"
            )));
        }
        if !set.insert(lower) {
            return Err(invalid(format!("origins: {o:?} is named twice")));
        }
    }
    Ok((net.to_string(), set))
}

fn network_of(network: &str) -> Result<domain::Network, ServiceError> {
    network
        .parse()
        .map_err(|e: domain::NetworkError| invalid(e.to_string()))
}

/// An address in its one canonical spelling for the network, checked by
/// the chain crate: EIP-55 for EVM (mixed case required), lower-case
/// bech32 for Bitcoin.
pub(crate) fn canonical_address(
    network: &str,
    text: &str,
) -> Result<(String, String), ServiceError> {
    let net = network_of(network)?;
    match net {
        domain::Network::Evm { .. } => {
            let a = chain_eth::DestinationRules {
                allow_unchecksummed: false,
                whitelist: &[],
            }
            .check(text)
            .map_err(|e| invalid(e.to_string()))?;
            Ok((net.to_string(), a.to_lower_hex()))
        }
        domain::Network::Bitcoin(b) => {
            let a = chain_btc::BtcAddress::parse(text, b).map_err(|e| invalid(e.to_string()))?;
            Ok((net.to_string(), a.to_string()))
        }
    }
}

/// A denied address in its canonical form however it was written: lower
/// case hex for EVM (a deny list matches in any case; no checksum needed
/// to refuse), bech32 in lower case (upper case accepted), base58 as is.
pub(crate) fn canonical_denied(
    network: &str,
    text: &str,
) -> Result<(String, String), ServiceError> {
    let net = network_of(network)?;
    let text = text.trim();
    match net {
        domain::Network::Evm { .. } => {
            let (a, _) = chain_eth::EthAddress::parse(&text.to_ascii_lowercase())
                .map_err(|e| invalid(e.to_string()))?;
            Ok((net.to_string(), a.to_lower_hex()))
        }
        domain::Network::Bitcoin(b) => {
            let upper_bech32 = text.chars().all(|c| !c.is_ascii_lowercase())
                && text.contains('1')
                && !text.starts_with('1');
            let text = if upper_bech32 {
                text.to_ascii_lowercase()
            } else {
                text.to_owned()
            };
            let a = chain_btc::BtcAddress::parse(&text, b).map_err(|e| invalid(e.to_string()))?;
            Ok((net.to_string(), a.to_string()))
        }
    }
}

impl Change {
    /// Its canonical JSON: what is stored, hashed and signed.
    pub(crate) fn canonical(&self) -> Result<String, ServiceError> {
        let v = serde_json::to_value(self).map_err(|e| invalid(e.to_string()))?;
        audit::canonical_json(&v).map_err(|e| invalid(e.to_string()))
    }

    /// SHA-256 of its canonical JSON (what an admin's vote names).
    pub(crate) fn digest(&self) -> Result<[u8; 32], ServiceError> {
        Ok(Sha256::digest(self.canonical()?.as_bytes()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_addresses_match_in_any_case_or_encoding() {
        let evm = |a: &str| canonical_denied("eip155:1", a).unwrap().1;
        let bob = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";
        for written in [
            bob,
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0X5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED",
            // A checksum that fails is still that address, to deny.
            "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        ] {
            assert_eq!(evm(written), bob, "{written}");
        }
        let btc = |a: &str| canonical_denied("bitcoin:mainnet", a).unwrap().1;
        let b = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";
        assert_eq!(btc(&b.to_uppercase()), b);
        assert_eq!(btc(b), b);
        assert!(
            canonical_denied(
                "bitcoin:mainnet",
                "bc1qAR0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
            )
            .is_err()
        );
        assert!(canonical_denied("eip155:1", "0x1234").is_err());
    }

    #[test]
    fn fee_caps_and_origins_have_one_spelling() {
        let (net, caps) = fee_caps_of("eip155:1", "200000000000", "10000000000000000").unwrap();
        assert_eq!(net, "eip155:1");
        assert_eq!(caps.max_rate, 200_000_000_000);
        for (rate, total) in [
            ("0", "1"),
            ("1", "0"),
            ("01", "1"),
            ("-1", "1"),
            ("1.5", "1"),
            ("", "1"),
            ("1e9", "1"),
        ] {
            assert!(
                fee_caps_of("eip155:1", rate, total).is_err(),
                "{rate} {total}"
            );
        }
        assert!(fee_caps_of("bitcoin:mainnet", "10001", "1").is_err());
        assert!(fee_caps_of("bitcoin:mainnet", "100", "18446744073709551616").is_err());
        assert!(fee_caps_of("bitcoin:mainnet", "100", "100000").is_ok());
        assert!(fee_caps_of("solana:1", "1", "1").is_err());

        let ok = |o: &[&str]| {
            origins_of(
                "eip155:1",
                &o.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            ok(&["https://node.example:8545", "http://127.0.0.1:8545"])
                .unwrap()
                .1
                .len(),
            2
        );
        for bad in [
            &["https://node.example/v3/secret"][..],
            &["https://user:pw@node.example"],
            &["HTTPS://node.example"],
            &["ftp://node.example"],
            &["https://"],
            &["https://a.example?key=1"],
            &["https://a.example", "https://a.example"],
            &[],
        ] {
            assert!(ok(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_change_is_named_as_its_json_says() {
        let s = || String::from("x");
        let all = [
            Change::SetPolicy { document: s() },
            Change::AddAddress {
                network: s(),
                address: s(),
                label: s(),
                group: None,
            },
            Change::RemoveAddress { id: s() },
            Change::Grant {
                principal: s(),
                role: s(),
                scope: s(),
                until_ms: None,
            },
            Change::Revoke {
                principal: s(),
                role: s(),
                scope: s(),
            },
            Change::RegisterApproverKey {
                principal: s(),
                public_key: s(),
            },
            Change::RevokeApproverKey { principal: s() },
            Change::SetWalletTier {
                wallet: s(),
                tier: s(),
            },
            Change::SetPrice {
                asset: s(),
                usd: s(),
            },
            Change::ReleaseFreeze {
                freeze_id: s(),
                cool_down_s: 0,
            },
            Change::DenyAddresses {
                list: s(),
                entries: vec![],
            },
            Change::UndenyAddress {
                network: s(),
                address: s(),
            },
            Change::SetFeeCaps {
                network: s(),
                max_rate: s(),
                max_total: s(),
            },
            Change::SetEndpoints {
                network: s(),
                origins: vec![],
            },
        ];
        for c in all {
            let json = serde_json::to_value(&c).unwrap_or_default();
            assert_eq!(json["kind"], c.describe().0);
        }
    }
}

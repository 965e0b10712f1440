//! Networks: the Bitcoin networks and EVM chains Strongroom can hold assets on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The four Bitcoin networks. Address formats and consensus parameters differ
/// between them, so a value is never valid on more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BitcoinNetwork {
    Mainnet,
    Testnet,
    Signet,
    Regtest,
}

/// A network an asset lives on.
///
/// EVM chains are identified by their EIP-155 chain id alone: the chain id that
/// ends up in a signed transaction always comes from the server's configuration
/// for that network, never from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Network {
    Bitcoin(BitcoinNetwork),
    Evm { chain_id: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    #[error(
        "unknown network {0:?}: expected bitcoin:mainnet|testnet|signet|regtest or eip155:<chain id>"
    )]
    Unknown(String),
    #[error("invalid EVM chain id {0:?}: expected a decimal integer from 1 to 2^53")]
    InvalidChainId(String),
}

/// Largest chain id accepted: EIP-2294 bounds chain ids so that they survive
/// JSON number handling in wallets and nodes.
pub const MAX_CHAIN_ID: u64 = (1 << 53) - 1;

impl Network {
    pub fn is_bitcoin(self) -> bool {
        matches!(self, Network::Bitcoin(_))
    }

    /// Whether real value moves on this network. Test networks are still
    /// handled with the same care, but dashboards and policies may say so.
    pub fn is_mainnet(self) -> bool {
        match self {
            Network::Bitcoin(n) => n == BitcoinNetwork::Mainnet,
            Network::Evm { chain_id } => chain_id == 1,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Network::Bitcoin(BitcoinNetwork::Mainnet) => f.write_str("bitcoin:mainnet"),
            Network::Bitcoin(BitcoinNetwork::Testnet) => f.write_str("bitcoin:testnet"),
            Network::Bitcoin(BitcoinNetwork::Signet) => f.write_str("bitcoin:signet"),
            Network::Bitcoin(BitcoinNetwork::Regtest) => f.write_str("bitcoin:regtest"),
            Network::Evm { chain_id } => write!(f, "eip155:{chain_id}"),
        }
    }
}

impl FromStr for Network {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bitcoin:mainnet" => Ok(Network::Bitcoin(BitcoinNetwork::Mainnet)),
            "bitcoin:testnet" => Ok(Network::Bitcoin(BitcoinNetwork::Testnet)),
            "bitcoin:signet" => Ok(Network::Bitcoin(BitcoinNetwork::Signet)),
            "bitcoin:regtest" => Ok(Network::Bitcoin(BitcoinNetwork::Regtest)),
            _ => {
                let Some(id) = s.strip_prefix("eip155:") else {
                    return Err(NetworkError::Unknown(s.to_owned()));
                };
                // Digits only, no sign, no leading zeros: one spelling per chain.
                let well_formed = !id.is_empty()
                    && id.bytes().all(|b| b.is_ascii_digit())
                    && !id.starts_with('0');
                let chain_id = well_formed
                    .then(|| id.parse::<u64>().ok())
                    .flatten()
                    .filter(|&c| c <= MAX_CHAIN_ID)
                    .ok_or_else(|| NetworkError::InvalidChainId(id.to_owned()))?;
                Ok(Network::Evm { chain_id })
            }
        }
    }
}

impl Serialize for Network {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        for s in [
            "bitcoin:mainnet",
            "bitcoin:testnet",
            "bitcoin:signet",
            "bitcoin:regtest",
            "eip155:1",
            "eip155:11155111",
            "eip155:31337",
        ] {
            let n: Network = s.parse().unwrap();
            assert_eq!(n.to_string(), s);
        }
        for bad in [
            "",
            "bitcoin",
            "Bitcoin:mainnet",
            "eip155:",
            "eip155:0",
            "eip155:01",
            "eip155:-1",
            "eip155:+1",
            "eip155:9007199254740992",
            "eip155:1 ",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mainnets() {
        assert!("bitcoin:mainnet".parse::<Network>().unwrap().is_mainnet());
        assert!("eip155:1".parse::<Network>().unwrap().is_mainnet());
        assert!(!"eip155:31337".parse::<Network>().unwrap().is_mainnet());
    }
}

//! Assets: what is held on a network, with the number of decimals its base unit has.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::network::Network;

/// Largest number of decimals an asset may declare. `u128` holds every
/// 38-digit number, so an amount of one whole unit always fits.
pub const MAX_DECIMALS: u8 = 36;

/// Number of decimal places between the display unit and the base unit
/// (8 for BTC, 18 for ETH, 6 for USDC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Decimals(u8);

impl Decimals {
    pub fn new(d: u8) -> Result<Self, AssetError> {
        if d > MAX_DECIMALS {
            return Err(AssetError::TooManyDecimals(d));
        }
        Ok(Decimals(d))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Decimals {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Decimals::new(u8::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A ticker symbol: 1 to 16 characters of `A-Z`, `0-9`, `.` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Symbol(String);

impl Symbol {
    pub fn new(s: &str) -> Result<Self, AssetError> {
        let ok = (1..=16).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !ok {
            return Err(AssetError::InvalidSymbol(s.to_owned()));
        }
        Ok(Symbol(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Symbol::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The 20-byte address of a token contract on an EVM chain. Written in
/// lower-case hex in ids; checksummed display belongs to `chain-eth`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContractAddress([u8; 20]);

impl ContractAddress {
    pub fn from_bytes(b: [u8; 20]) -> Self {
        ContractAddress(b)
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Debug for ContractAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContractAddress({self})")
    }
}

impl fmt::Display for ContractAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl FromStr for ContractAddress {
    type Err = AssetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AssetError::InvalidContract(s.to_owned());
        let h = s.strip_prefix("0x").ok_or_else(bad)?;
        let mut out = [0u8; 20];
        hex::decode_to_slice(h, &mut out).map_err(|_| bad())?;
        if out == [0u8; 20] {
            return Err(bad());
        }
        Ok(ContractAddress(out))
    }
}

/// How an asset exists on its network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AssetKind {
    /// The network's own coin (BTC, ETH).
    Native,
    /// An ERC-20 token at a contract address.
    Erc20(ContractAddress),
}

/// A stable, unique name for an asset: `<network>/native` or
/// `<network>/erc20:<lower-case contract>`. Symbols are not part of it: two
/// tokens may share a symbol, and a symbol is what a phishing token copies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssetId {
    network: Network,
    kind: AssetKind,
}

impl AssetId {
    pub fn new(network: Network, kind: AssetKind) -> Result<Self, AssetError> {
        if matches!(kind, AssetKind::Erc20(_)) && network.is_bitcoin() {
            return Err(AssetError::TokenOnBitcoin);
        }
        Ok(AssetId { network, kind })
    }

    pub fn network(&self) -> Network {
        self.network
    }

    pub fn kind(&self) -> &AssetKind {
        &self.kind
    }
}

impl fmt::Display for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            AssetKind::Native => write!(f, "{}/native", self.network),
            AssetKind::Erc20(c) => write!(f, "{}/erc20:{c}", self.network),
        }
    }
}

impl FromStr for AssetId {
    type Err = AssetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (net, kind) = s
            .split_once('/')
            .ok_or_else(|| AssetError::InvalidId(s.to_owned()))?;
        let network: Network = net.parse().map_err(AssetError::Network)?;
        let kind = match kind {
            "native" => AssetKind::Native,
            _ => {
                let c = kind
                    .strip_prefix("erc20:")
                    .ok_or_else(|| AssetError::InvalidId(s.to_owned()))?;
                // Ids have one spelling: lower-case hex only.
                if c.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(AssetError::InvalidId(s.to_owned()));
                }
                AssetKind::Erc20(c.parse()?)
            }
        };
        AssetId::new(network, kind)
    }
}

impl Serialize for AssetId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AssetId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An asset as configured by the operators: its id, symbol and decimals.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Asset {
    id: AssetId,
    symbol: Symbol,
    decimals: Decimals,
}

/// Decimals of every network's native coin: they are facts of the chain, not settings.
fn native_decimals(network: Network) -> u8 {
    match network {
        Network::Bitcoin(_) => 8,
        Network::Evm { .. } => 18,
    }
}

impl Asset {
    /// An asset as configured. A native coin must have its chain's decimals
    /// (8 for Bitcoin, 18 for EVM chains); a token's come from its contract.
    pub fn new(id: AssetId, symbol: Symbol, decimals: Decimals) -> Result<Self, AssetError> {
        if id.kind == AssetKind::Native && decimals.0 != native_decimals(id.network) {
            return Err(AssetError::NativeDecimals {
                network: id.network,
                expected: native_decimals(id.network),
                given: decimals.0,
            });
        }
        Ok(Asset {
            id,
            symbol,
            decimals,
        })
    }

    /// Bitcoin on the given network: 8 decimals, base unit the satoshi.
    pub fn bitcoin(network: crate::BitcoinNetwork) -> Self {
        Asset {
            id: AssetId {
                network: Network::Bitcoin(network),
                kind: AssetKind::Native,
            },
            symbol: Symbol("BTC".to_owned()),
            decimals: Decimals(8),
        }
    }

    /// Ether on an EVM chain: 18 decimals, base unit the wei.
    pub fn ether(chain_id: u64) -> Self {
        Asset {
            id: AssetId {
                network: Network::Evm { chain_id },
                kind: AssetKind::Native,
            },
            symbol: Symbol("ETH".to_owned()),
            decimals: Decimals(18),
        }
    }

    pub fn id(&self) -> &AssetId {
        &self.id
    }

    pub fn network(&self) -> Network {
        self.id.network
    }

    pub fn symbol(&self) -> &Symbol {
        &self.symbol
    }

    pub fn decimals(&self) -> Decimals {
        self.decimals
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssetError {
    #[error("an asset may have at most {MAX_DECIMALS} decimals, not {0}")]
    TooManyDecimals(u8),
    #[error("invalid symbol {0:?}: 1 to 16 of A-Z, 0-9, '.', '-'")]
    InvalidSymbol(String),
    #[error("invalid token contract {0:?}: expected 0x and 40 hex digits, not all zero")]
    InvalidContract(String),
    #[error("invalid asset id {0:?}: expected <network>/native or <network>/erc20:0x<contract>")]
    InvalidId(String),
    #[error("tokens exist only on EVM chains")]
    TokenOnBitcoin,
    #[error("the native coin of {network} has {expected} decimals, not {given}")]
    NativeDecimals {
        network: Network,
        expected: u8,
        given: u8,
    },
    #[error(transparent)]
    Network(crate::NetworkError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_ids_round_trip() {
        for s in [
            "bitcoin:mainnet/native",
            "eip155:1/native",
            "eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
        ] {
            assert_eq!(s.parse::<AssetId>().unwrap().to_string(), s);
        }
        for bad in [
            "bitcoin:mainnet",
            "bitcoin:mainnet/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
            "eip155:1/erc20:0xA0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
            "eip155:1/erc20:0x0000000000000000000000000000000000000000",
            "eip155:1/erc20:a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
            "eip155:1/erc20:0xa0b8",
            "eip155:1/token",
        ] {
            assert!(bad.parse::<AssetId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn symbols_and_decimals() {
        assert!(Symbol::new("USDC").is_ok());
        assert!(Symbol::new("usdc").is_err());
        assert!(Symbol::new("").is_err());
        assert!(Symbol::new("A\u{0391}").is_err());
        assert!(Decimals::new(36).is_ok());
        assert!(Decimals::new(37).is_err());
        let btc: AssetId = "bitcoin:mainnet/native".parse().unwrap();
        let sym = Symbol::new("BTC").unwrap();
        assert!(Asset::new(btc.clone(), sym.clone(), Decimals::new(8).unwrap()).is_ok());
        assert!(matches!(
            Asset::new(btc, sym, Decimals::new(14).unwrap()),
            Err(AssetError::NativeDecimals {
                expected: 8,
                given: 14,
                ..
            })
        ));
    }
}

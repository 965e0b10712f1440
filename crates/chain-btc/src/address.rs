//! Addresses: the five standard output types, on the right network.

use std::str::FromStr;

use bitcoin::ScriptBuf;
use bitcoin::address::{Address, AddressType, NetworkUnchecked};
use domain::BitcoinNetwork;

/// The output types Strongroom pays to and receives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKind {
    P2pkh,
    P2sh,
    P2wpkh,
    P2wsh,
    P2tr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`{0}` is not a Bitcoin address")]
    Malformed(String),
    #[error("`{address}` is not an address of {network:?}")]
    WrongNetwork {
        address: String,
        network: BitcoinNetwork,
    },
    #[error("`{0}` is a kind of output Strongroom does not pay to (an unknown witness version)")]
    Unsupported(String),
}

/// A parsed address, checked for its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtcAddress {
    address: Address,
    kind: AddressKind,
}

pub(crate) fn network_of(n: BitcoinNetwork) -> bitcoin::Network {
    match n {
        BitcoinNetwork::Mainnet => bitcoin::Network::Bitcoin,
        BitcoinNetwork::Testnet => bitcoin::Network::Testnet,
        BitcoinNetwork::Signet => bitcoin::Network::Signet,
        BitcoinNetwork::Regtest => bitcoin::Network::Regtest,
    }
}

impl BtcAddress {
    /// Parses `text` as an address of `network`. Bech32 (witness v0) and
    /// Bech32m (v1+) are told apart per BIP-350; mixed case is refused.
    pub fn parse(text: &str, network: BitcoinNetwork) -> Result<Self, AddressError> {
        let unchecked = Address::<NetworkUnchecked>::from_str(text)
            .map_err(|_| AddressError::Malformed(text.to_owned()))?;
        let address = unchecked
            .require_network(network_of(network))
            .map_err(|_| AddressError::WrongNetwork {
                address: text.to_owned(),
                network,
            })?;
        let kind = match address.address_type() {
            Some(AddressType::P2pkh) => AddressKind::P2pkh,
            Some(AddressType::P2sh) => AddressKind::P2sh,
            Some(AddressType::P2wpkh) => AddressKind::P2wpkh,
            Some(AddressType::P2wsh) => AddressKind::P2wsh,
            Some(AddressType::P2tr) => AddressKind::P2tr,
            _ => return Err(AddressError::Unsupported(text.to_owned())),
        };
        Ok(BtcAddress { address, kind })
    }

    pub fn kind(&self) -> AddressKind {
        self.kind
    }

    pub fn script_pubkey(&self) -> ScriptBuf {
        self.address.script_pubkey()
    }
}

impl std::fmt::Display for BtcAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.address.fmt(f)
    }
}

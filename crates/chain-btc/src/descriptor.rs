//! Wallets as output descriptors (BIP-380 family): `wpkh(…)`, `tr(…)` (key
//! path only) and `wsh(sortedmulti(…))`, printed with their checksum so
//! that any descriptor wallet can watch the same addresses.

use std::str::FromStr;

use bitcoin::secp256k1::Secp256k1;
use domain::BitcoinNetwork;
use miniscript::descriptor::{Descriptor, DescriptorPublicKey, WshInner};

use crate::address::{BtcAddress, network_of};
use crate::psbt::{BtcError, Spend};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptorError {
    #[error("not a descriptor: {0}")]
    Parse(String),
    #[error("Strongroom keeps wpkh(KEY/*), tr(KEY/*) and wsh(sortedmulti(M,KEY/*,…)) wallets only")]
    Unsupported,
    #[error("a cosigner's key appears more than once: one holder would count twice")]
    DuplicateKey,
    #[error("derivation failed: {0}")]
    Derive(String),
    #[error(transparent)]
    Spend(#[from] BtcError),
}

/// A wallet's descriptor: one chain (receive or change) of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletDescriptor(Descriptor<DescriptorPublicKey>);

impl WalletDescriptor {
    /// Parses a descriptor (the checksum, if present, is checked) and
    /// refuses any shape Strongroom does not sign for, or one without a
    /// wildcard (a wallet derives a fresh address per deposit).
    pub fn parse(text: &str) -> Result<Self, DescriptorError> {
        let d = Descriptor::<DescriptorPublicKey>::from_str(text)
            .map_err(|e| DescriptorError::Parse(e.to_string()))?;
        let ok = match &d {
            Descriptor::Wpkh(_) => true,
            Descriptor::Tr(t) => t.tap_tree().is_none(),
            Descriptor::Wsh(w) => matches!(w.as_inner(), WshInner::SortedMulti(_)),
            _ => false,
        };
        if !ok || !d.has_wildcard() || d.is_multipath() {
            return Err(DescriptorError::Unsupported);
        }
        if let Descriptor::Wsh(w) = &d
            && let WshInner::SortedMulti(m) = w.as_inner()
        {
            // The holder is the key, whatever path below it is named.
            let mut keys: Vec<String> = m
                .pks()
                .iter()
                .map(|k| match k {
                    DescriptorPublicKey::XPub(x) => x.xkey.to_string(),
                    DescriptorPublicKey::MultiXPub(x) => x.xkey.to_string(),
                    DescriptorPublicKey::Single(s) => format!("{:?}", s.key),
                })
                .collect();
            keys.sort();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err(DescriptorError::DuplicateKey);
            }
        }
        Ok(WalletDescriptor(d))
    }

    /// How the output at `index` is spent.
    pub fn spend_at(&self, index: u32) -> Result<Spend, DescriptorError> {
        let secp = Secp256k1::verification_only();
        let d = self
            .0
            .at_derivation_index(index)
            .map_err(|e| DescriptorError::Derive(e.to_string()))?;
        let spend = match &d {
            Descriptor::Wpkh(w) => Spend::P2wpkh {
                pubkey: w.as_inner().derive_public_key(&secp).inner.serialize(),
            },
            Descriptor::Tr(t) => Spend::P2tr {
                internal_key: t
                    .internal_key()
                    .derive_public_key(&secp)
                    .inner
                    .x_only_public_key()
                    .0
                    .serialize(),
            },
            Descriptor::Wsh(w) => match w.as_inner() {
                WshInner::SortedMulti(m) => Spend::P2wshMulti {
                    threshold: m.k(),
                    pubkeys: m
                        .pks()
                        .iter()
                        .map(|k| k.derive_public_key(&secp).inner.serialize())
                        .collect(),
                },
                WshInner::Ms(_) => return Err(DescriptorError::Unsupported),
            },
            _ => return Err(DescriptorError::Unsupported),
        };
        // Our reading of the descriptor and miniscript's agree on the script.
        if spend.script_pubkey()? != d.script_pubkey() {
            return Err(DescriptorError::Derive("script mismatch".into()));
        }
        Ok(spend)
    }

    /// The address at `index` on `network`.
    pub fn address_at(
        &self,
        index: u32,
        network: BitcoinNetwork,
    ) -> Result<BtcAddress, DescriptorError> {
        let d = self
            .0
            .at_derivation_index(index)
            .map_err(|e| DescriptorError::Derive(e.to_string()))?;
        let a = d
            .address(network_of(network))
            .map_err(|e| DescriptorError::Derive(e.to_string()))?;
        BtcAddress::parse(&a.to_string(), network)
            .map_err(|e| DescriptorError::Derive(e.to_string()))
    }
}

/// Any descriptor miniscript reads, printed back with its checksum
/// (`…#xxxxxxxx`, BIP-380) for a watch-only import elsewhere.
pub fn checksummed(text: &str) -> Result<String, DescriptorError> {
    Descriptor::<DescriptorPublicKey>::from_str(text)
        .map(|d| d.to_string())
        .map_err(|e| DescriptorError::Parse(e.to_string()))
}

/// The descriptor with its checksum (`…#xxxxxxxx`).
impl std::fmt::Display for WalletDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

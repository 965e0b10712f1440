//! EIP-55 addresses and the rules for which of them may receive money.

use std::fmt;
use std::str::FromStr;

use alloy_primitives::Address;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 20-byte Ethereum account address. Displays with its EIP-55 checksum.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EthAddress(Address);

/// How an address was written: the casing tells whether it carries a checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Casing {
    /// Mixed case whose capitals match EIP-55: a checksum that was verified.
    Checksummed,
    /// All lower- or all upper-case hex letters: no checksum at all.
    Unchecksummed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`{0}` is not an Ethereum address (0x and 40 hex digits)")]
    Malformed(String),
    #[error(
        "`{0}` has mixed case that does not match its EIP-55 checksum: a typo or a tampered address"
    )]
    BadChecksum(String),
    #[error(
        "`{0}` carries no checksum (all one case); write it checksummed or whitelist it exactly"
    )]
    Unchecksummed(String),
    #[error("`{0}` is the zero address: money sent there is burnt")]
    Zero(String),
    #[error("`{0}` is a precompile or system contract, not a destination")]
    Reserved(String),
}

impl EthAddress {
    pub fn from_bytes(bytes: [u8; 20]) -> Self {
        EthAddress(Address::from(bytes))
    }

    /// The address of an uncompressed or compressed secp256k1 public key.
    pub fn from_public_key(sec1: &[u8]) -> Result<Self, AddressError> {
        let key = k256_point(sec1).ok_or_else(|| AddressError::Malformed(hex::encode(sec1)))?;
        Ok(EthAddress(Address::from_raw_public_key(&key[1..])))
    }

    /// Parses `text`, reporting how it was written. Mixed case must match
    /// EIP-55; a single case carries no checksum and is reported as such.
    pub fn parse(text: &str) -> Result<(Self, Casing), AddressError> {
        let bad = || AddressError::Malformed(text.to_owned());
        let digits = text.strip_prefix("0x").ok_or_else(bad)?;
        if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut bytes = [0u8; 20];
        hex::decode_to_slice(digits, &mut bytes).map_err(|_| bad())?;
        let address = EthAddress::from_bytes(bytes);
        if address.0.to_checksum_buffer(None).as_str() == text {
            // Includes the rare address whose checksum is all one case (EIP-55's own vectors).
            return Ok((address, Casing::Checksummed));
        }
        let lower = digits.bytes().any(|b| b.is_ascii_lowercase());
        let upper = digits.bytes().any(|b| b.is_ascii_uppercase());
        if lower && upper {
            return Err(AddressError::BadChecksum(text.to_owned()));
        }
        Ok((address, Casing::Unchecksummed))
    }

    /// Parses an address that must carry a valid checksum.
    pub fn parse_checksummed(text: &str) -> Result<Self, AddressError> {
        match EthAddress::parse(text)? {
            (a, Casing::Checksummed) => Ok(a),
            (_, Casing::Unchecksummed) => Err(AddressError::Unchecksummed(text.to_owned())),
        }
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        self.0.as_ref()
    }

    pub fn is_zero(&self) -> bool {
        self.0 == Address::ZERO
    }

    /// Precompiles and system contracts: the low range every EVM chain
    /// reserves (`0x…0000` to `0x…ffff`: Ethereum's precompiles, BLS,
    /// P-256, and the ranges L2s use) and the EIP-4788/2935/7002/7251
    /// system contracts.
    pub fn is_reserved(&self) -> bool {
        let b = self.as_bytes();
        b[..18].iter().all(|&x| x == 0) || SYSTEM_CONTRACTS.contains(b)
    }

    pub(crate) fn alloy(&self) -> Address {
        self.0
    }

    pub(crate) fn from_alloy(a: Address) -> Self {
        EthAddress(a)
    }

    /// Lower-case hex, the spelling used in ids and storage.
    pub fn to_lower_hex(&self) -> String {
        format!("0x{}", hex::encode(self.as_bytes()))
    }
}

const SYSTEM_CONTRACTS: [[u8; 20]; 4] = [
    // EIP-4788 beacon block roots.
    hex20("000f3df6d732807ef1319fb7b8bb8522d0beac02"),
    // EIP-2935 historical block hashes.
    hex20("0000f90827f1c53a10cb7a02335b175320002935"),
    // EIP-7002 execution-layer withdrawals.
    hex20("00000961ef480eb55e80d19ad83579a64c007002"),
    // EIP-7251 consolidations.
    hex20("0000bbddc7ce488642fb579f8b00f3a590007251"),
];

const fn hex20(s: &str) -> [u8; 20] {
    let b = s.as_bytes();
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not lower-case hex"),
    }
}

/// Decompresses a SEC1 point to its 65-byte uncompressed form.
fn k256_point(sec1: &[u8]) -> Option<[u8; 65]> {
    use k256::elliptic_curve::sec1::ToEncodedPoint;
    let key = k256::PublicKey::from_sec1_bytes(sec1).ok()?;
    let point = key.to_encoded_point(false);
    point.as_bytes().try_into().ok()
}

impl fmt::Display for EthAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.to_checksum_buffer(None).as_str())
    }
}

impl fmt::Debug for EthAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EthAddress({self})")
    }
}

/// Parses strictly: mixed case must be a valid checksum; one case is accepted
/// here (as data at rest, in lower case), and refused by [`DestinationRules`]
/// where a person typed it.
impl FromStr for EthAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EthAddress::parse(s).map(|(a, _)| a)
    }
}

impl Serialize for EthAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EthAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl From<domain::ContractAddress> for EthAddress {
    fn from(c: domain::ContractAddress) -> Self {
        EthAddress::from_bytes(*c.as_bytes())
    }
}

/// Which written addresses a network accepts as the destination of a payment.
#[derive(Debug, Clone, Default)]
pub struct DestinationRules<'a> {
    /// Accept an address written in one case (no checksum). Off by default:
    /// a single mistyped digit then goes unnoticed.
    pub allow_unchecksummed: bool,
    /// Whitelisted addresses as they were written when they were approved;
    /// an unchecksummed address equal to one of them byte for byte is accepted.
    pub whitelist: &'a [String],
}

impl DestinationRules<'_> {
    /// Parses a destination typed by a person or sent by an integrator.
    pub fn check(&self, text: &str) -> Result<EthAddress, AddressError> {
        let (address, casing) = EthAddress::parse(text)?;
        if casing == Casing::Unchecksummed
            && !self.allow_unchecksummed
            && !self.whitelist.iter().any(|w| w == text)
        {
            return Err(AddressError::Unchecksummed(text.to_owned()));
        }
        check_destination(address).map_err(|e| match e {
            AddressError::Zero(_) => AddressError::Zero(text.to_owned()),
            _ => AddressError::Reserved(text.to_owned()),
        })
    }
}

/// Refuses the zero address, precompiles and system contracts.
pub fn check_destination(address: EthAddress) -> Result<EthAddress, AddressError> {
    if address.is_zero() {
        return Err(AddressError::Zero(address.to_string()));
    }
    if address.is_reserved() {
        return Err(AddressError::Reserved(address.to_string()));
    }
    Ok(address)
}

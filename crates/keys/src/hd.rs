//! Hierarchical deterministic keys: BIP-39 mnemonics, BIP-32 derivation for
//! secp256k1 (BIP-44/84/86 account paths, xpub export for watch-only deposit
//! addresses) and SLIP-10 derivation for Ed25519.

use std::fmt;
use std::str::FromStr;

use bip32::{DerivationPath, Prefix, XPrv, XPub};
use hmac::{Hmac, Mac};
use zeroize::Zeroizing;

use crate::secret::Secret32;

type HmacSha512 = Hmac<sha2_010::Sha512>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HdError {
    #[error("not a valid BIP-39 mnemonic (English word list, 12 to 24 words, checksum)")]
    Mnemonic,
    #[error("invalid derivation path {0:?}")]
    Path(String),
    #[error("Ed25519 (SLIP-10) derivation takes hardened steps only")]
    UnhardenedEd25519,
    #[error("derivation failed: {0}")]
    Derive(String),
    #[error(
        "an account path is hardened at every step (e.g. m/84'/0'/0'): {0:?} would let one \
         leaked child key and the xpub reveal the whole account"
    )]
    UnhardenedAccount(String),
    #[error("invalid extended key")]
    Xpub,
    #[error("the random number generator failed")]
    Random,
}

/// A BIP-39 mnemonic (12 to 24 English words). Shown once, at creation, to
/// the people who keep it. Zeroized on drop.
pub struct Mnemonic(bip39::Mnemonic);

impl fmt::Debug for Mnemonic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Mnemonic(<redacted>)")
    }
}

impl Mnemonic {
    /// 24 words from 256 bits of OS entropy.
    pub fn generate() -> Result<Self, HdError> {
        let mut entropy = Zeroizing::new([0u8; 32]);
        getrandom::fill(entropy.as_mut()).map_err(|_| HdError::Random)?;
        bip39::Mnemonic::from_entropy_in(bip39::Language::English, &entropy[..])
            .map(Mnemonic)
            .map_err(|_| HdError::Mnemonic)
    }

    /// Parses a phrase: English words, a valid length and checksum.
    pub fn parse(phrase: &str) -> Result<Self, HdError> {
        bip39::Mnemonic::parse_in_normalized(bip39::Language::English, phrase.trim())
            .map(Mnemonic)
            .map_err(|_| HdError::Mnemonic)
    }

    /// The words, for writing down.
    pub fn phrase(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.to_string())
    }

    /// The 64-byte BIP-39 seed (PBKDF2-HMAC-SHA512, 2048 rounds) for
    /// `passphrase`, which is NFKD-normalised first as BIP-39 says.
    pub fn to_seed(&self, passphrase: &str) -> Seed {
        let mut bytes = self.0.to_seed(passphrase);
        let seed = Seed(Zeroizing::new(bytes.to_vec()));
        zeroize::Zeroize::zeroize(&mut bytes);
        seed
    }
}

/// A BIP-39 / BIP-32 seed: 64 bytes from a mnemonic, 16 to 64 in the
/// BIP-32 vectors. Zeroized on drop; never printed.
pub struct Seed(Zeroizing<Vec<u8>>);

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

impl Seed {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HdError> {
        if !(16..=64).contains(&bytes.len()) {
            return Err(HdError::Derive("a seed is 16 to 64 bytes".into()));
        }
        Ok(Seed(Zeroizing::new(bytes.to_vec())))
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, for sealing into the keystore. Do not copy them elsewhere.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// The purposes of BIP-43 that Strongroom derives accounts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// BIP-44: legacy P2PKH; also Ethereum (coin type 60).
    Bip44,
    /// BIP-84: native segwit P2WPKH.
    Bip84,
    /// BIP-86: Taproot key-path P2TR.
    Bip86,
}

impl Purpose {
    fn number(self) -> u32 {
        match self {
            Purpose::Bip44 => 44,
            Purpose::Bip84 => 84,
            Purpose::Bip86 => 86,
        }
    }
}

/// `m/purpose'/coin_type'/account'`: the hardened account level, below which
/// an xpub derives receive (`0/i`) and change (`1/i`) addresses.
pub fn account_path(purpose: Purpose, coin_type: u32, account: u32) -> Result<String, HdError> {
    if coin_type >= 1 << 31 || account >= 1 << 31 {
        return Err(HdError::Path(format!(
            "coin type {coin_type} or account {account} too large"
        )));
    }
    Ok(format!("m/{}'/{coin_type}'/{account}'", purpose.number()))
}

/// Checks that an account path is hardened at every step: below a
/// non-hardened step, one child private key and the parent's xpub give
/// the parent's private key (BIP-32, "security").
pub fn check_account_path(path: &str) -> Result<(), HdError> {
    let parsed = parse_path(path)?;
    if parsed.is_empty() || parsed.iter().any(|c| !c.is_hardened()) {
        return Err(HdError::UnhardenedAccount(path.to_owned()));
    }
    Ok(())
}

const VPUB: Prefix = Prefix::from_parts_unchecked("vpub", 0x045f_1cf6);
const UPUB: Prefix = Prefix::from_parts_unchecked("upub", 0x044a_5262);

/// An account's xpub as wallets expect it: the test-network prefix
/// (`tpub`) when the path's coin type is 1', and with `slip132` the
/// SLIP-132 prefix of its script type (BIP-49 `ypub`/`upub`, BIP-84
/// `zpub`/`vpub`; other purposes have none and keep `xpub`/`tpub`).
pub fn xpub_for(xpub: &str, account_path: &str, slip132: bool) -> Result<String, HdError> {
    let parsed = parse_path(account_path)?;
    let step = |i: usize| parsed.iter().nth(i).map(|c| c.index());
    let test = step(1) == Some(1);
    let prefix = match (slip132, step(0), test) {
        (true, Some(84), false) => Prefix::ZPUB,
        (true, Some(84), true) => VPUB,
        (true, Some(49), false) => Prefix::YPUB,
        (true, Some(49), true) => UPUB,
        (_, _, false) => Prefix::XPUB,
        (_, _, true) => Prefix::TPUB,
    };
    Ok(parse_xpub(xpub)?.to_string(prefix))
}

fn parse_path(path: &str) -> Result<DerivationPath, HdError> {
    DerivationPath::from_str(&path.replace('H', "'")).map_err(|_| HdError::Path(path.to_owned()))
}

/// BIP-32: the secp256k1 private key at `path`.
pub fn derive_secp256k1(seed: &Seed, path: &str) -> Result<Secret32, HdError> {
    let xprv = XPrv::derive_from_path(seed.bytes(), &parse_path(path)?)
        .map_err(|e| HdError::Derive(e.to_string()))?;
    let mut bytes: [u8; 32] = xprv.private_key().to_bytes().into();
    Ok(Secret32::from_bytes(&mut bytes))
}

/// BIP-32: the extended private key at `path`, serialised (for vectors and
/// for export to an offline signer only).
pub fn xprv(seed: &Seed, path: &str, prefix: Prefix) -> Result<Zeroizing<String>, HdError> {
    let xprv = XPrv::derive_from_path(seed.bytes(), &parse_path(path)?)
        .map_err(|e| HdError::Derive(e.to_string()))?;
    Ok(xprv.to_string(prefix))
}

/// BIP-32: the extended public key at `path`, for watch-only derivation.
pub fn xpub(seed: &Seed, path: &str, prefix: Prefix) -> Result<String, HdError> {
    let xprv = XPrv::derive_from_path(seed.bytes(), &parse_path(path)?)
        .map_err(|e| HdError::Derive(e.to_string()))?;
    Ok(xprv.public_key().to_string(prefix))
}

/// Parses an extended public key strictly: besides what the library checks,
/// a depth-0 key must have a zero parent fingerprint and child number (BIP-32
/// test vector 5).
pub fn parse_xpub(xpub: &str) -> Result<XPub, HdError> {
    let key = XPub::from_str(xpub).map_err(|_| HdError::Xpub)?;
    let a = key.attrs();
    if a.depth == 0 && (a.parent_fingerprint != [0; 4] || u32::from(a.child_number) != 0) {
        return Err(HdError::Xpub);
    }
    Ok(key)
}

/// Parses an extended private key with the same strictness as [`parse_xpub`].
pub fn parse_xprv(xprv: &str) -> Result<XPrv, HdError> {
    let key = XPrv::from_str(xprv).map_err(|_| HdError::Xpub)?;
    let a = key.attrs();
    if a.depth == 0 && (a.parent_fingerprint != [0; 4] || u32::from(a.child_number) != 0) {
        return Err(HdError::Xpub);
    }
    Ok(key)
}

/// Watch-only: the compressed public key at non-hardened `steps` below an xpub.
pub fn derive_from_xpub(xpub: &str, steps: &[u32]) -> Result<[u8; 33], HdError> {
    let mut key = parse_xpub(xpub)?;
    for &i in steps {
        let child = bip32::ChildNumber::new(i, false).map_err(|_| HdError::Path(i.to_string()))?;
        key = key
            .derive_child(child)
            .map_err(|e| HdError::Derive(e.to_string()))?;
    }
    Ok(key.to_bytes())
}

/// SLIP-10 for Ed25519: the private key and chain code at a path of
/// hardened steps (`m/44H/501H/0H`).
pub fn derive_ed25519(seed: &Seed, path: &str) -> Result<(Secret32, [u8; 32]), HdError> {
    let mut steps = path.split('/');
    if steps.next() != Some("m") {
        return Err(HdError::Path(path.to_owned()));
    }
    let (mut key, mut chain) = slip10_step(b"ed25519 seed", &[seed.bytes()])?;
    for step in steps {
        let index: u32 = step
            .strip_suffix(['H', '\''])
            .ok_or(HdError::UnhardenedEd25519)?
            .parse()
            .ok()
            .filter(|&i: &u32| i < 1 << 31)
            .ok_or_else(|| HdError::Path(path.to_owned()))?;
        let hardened = (index | 1 << 31).to_be_bytes();
        (key, chain) = slip10_step(&chain[..], &[&[0u8], &key[..], &hardened])?;
    }
    let mut k = *key;
    Ok((Secret32::from_bytes(&mut k), *chain))
}

/// A SLIP-10 node: private key and chain code.
type Node = (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>);

/// One HMAC-SHA512: left half key, right half chain code.
fn slip10_step(hmac_key: &[u8], parts: &[&[u8]]) -> Result<Node, HdError> {
    let mut mac =
        HmacSha512::new_from_slice(hmac_key).map_err(|e| HdError::Derive(e.to_string()))?;
    for p in parts {
        mac.update(p);
    }
    let out = Zeroizing::new(<[u8; 64]>::from(mac.finalize().into_bytes()));
    let mut key = Zeroizing::new([0u8; 32]);
    let mut chain = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&out[..32]);
    chain.copy_from_slice(&out[32..]);
    Ok((key, chain))
}

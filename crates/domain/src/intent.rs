//! Transfer intents: what an initiator asked for, in a canonical form that
//! approvers sign and that every built transaction is checked against.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::amount::Amount;
use crate::asset::Asset;
use crate::canonical::{DecodeError, Reader, Writer};
use crate::id::{AccountId, TransferId, WalletId};
use crate::network::Network;
use crate::principal::Actor;
use crate::time::Timestamp;

const MAGIC: &[u8] = b"SRTI";
/// Current version of the canonical intent encoding.
pub const INTENT_VERSION: u16 = 1;
const MAX_ADDRESS_LEN: usize = 128;
const MAX_REFERENCE_LEN: usize = 256;

/// A destination address on a network, in the canonical spelling of its
/// chain crate (checksummed hex for EVM, lower-case bech32 for segwit).
///
/// The domain only checks what is true of every chain (printable ASCII,
/// bounded length); `chain-btc` and `chain-eth` validate formats, checksums
/// and networks before they hand out an `Address`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    network: Network,
    text: String,
}

impl Address {
    pub fn new(network: Network, text: &str) -> Result<Self, IntentError> {
        let ok = (1..=MAX_ADDRESS_LEN).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(IntentError::InvalidAddress(text.to_owned()));
        }
        Ok(Address {
            network,
            text: text.to_owned(),
        })
    }

    pub fn network(&self) -> Network {
        self.network
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// What kind of movement a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// Out of custody to an external address.
    Withdrawal,
    /// Between two wallets of this custodian.
    InternalMove,
    /// The funds of a rotated key moved to its successor's address, or a
    /// deposit address's funds moved to its wallet's sender.
    Sweep,
    /// Many small outputs of a wallet spent into one of its own (Bitcoin),
    /// while fees are low.
    Consolidation,
    /// Ether from a wallet's sender to one of its own deposit addresses,
    /// for the gas of that address's token sweep (Ethereum).
    GasTopUp,
}

impl TransferKind {
    fn code(self) -> u8 {
        match self {
            TransferKind::Withdrawal => 1,
            TransferKind::InternalMove => 2,
            TransferKind::Sweep => 3,
            TransferKind::Consolidation => 4,
            TransferKind::GasTopUp => 5,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(TransferKind::Withdrawal),
            2 => Some(TransferKind::InternalMove),
            3 => Some(TransferKind::Sweep),
            4 => Some(TransferKind::Consolidation),
            5 => Some(TransferKind::GasTopUp),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntentError {
    #[error("invalid address {0:?}")]
    InvalidAddress(String),
    #[error("destination is on {destination}, but the asset is on {asset}")]
    NetworkMismatch {
        asset: Network,
        destination: Network,
    },
    #[error("amount must be greater than zero")]
    ZeroAmount,
    #[error("reference must be 1 to {MAX_REFERENCE_LEN} printable characters")]
    InvalidReference,
    #[error("malformed intent encoding: {0}")]
    Decode(#[from] DecodeError),
    #[error("the intent's asset {0} is not configured here")]
    UnknownAsset(String),
    #[error("the intent describes asset {0} with another symbol or decimals than configured here")]
    AssetMismatch(String),
}

/// The SHA-256 digest of an intent's canonical bytes: what approvers sign.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IntentDigest(pub [u8; 32]);

impl fmt::Debug for IntentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IntentDigest({self})")
    }
}

impl fmt::Display for IntentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A request to move an amount from a wallet to an address.
///
/// Built only through [`TransferIntent::new`] or [`TransferIntent::decode`],
/// which check that the amount is positive and that asset and destination are
/// on the same network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferIntent {
    id: TransferId,
    kind: TransferKind,
    account: AccountId,
    wallet: WalletId,
    amount: Amount,
    destination: Address,
    reference: Option<String>,
    initiator: Actor,
    created_at: Timestamp,
}

/// The parts of a [`TransferIntent`], named so that call sites read clearly.
#[derive(Debug, Clone)]
pub struct IntentParts {
    pub id: TransferId,
    pub kind: TransferKind,
    pub account: AccountId,
    pub wallet: WalletId,
    pub amount: Amount,
    pub destination: Address,
    pub reference: Option<String>,
    pub initiator: Actor,
    pub created_at: Timestamp,
}

impl TransferIntent {
    pub fn new(p: IntentParts) -> Result<Self, IntentError> {
        if p.amount.is_zero() {
            return Err(IntentError::ZeroAmount);
        }
        let asset_net = p.amount.asset().network();
        if p.destination.network() != asset_net {
            return Err(IntentError::NetworkMismatch {
                asset: asset_net,
                destination: p.destination.network(),
            });
        }
        if let Some(r) = &p.reference {
            let ok = !r.is_empty()
                && r.chars().count() <= MAX_REFERENCE_LEN
                && !r.chars().any(char::is_control);
            if !ok {
                return Err(IntentError::InvalidReference);
            }
        }
        Ok(TransferIntent {
            id: p.id,
            kind: p.kind,
            account: p.account,
            wallet: p.wallet,
            amount: p.amount,
            destination: p.destination,
            reference: p.reference,
            initiator: p.initiator,
            created_at: p.created_at,
        })
    }

    pub fn id(&self) -> TransferId {
        self.id
    }
    pub fn kind(&self) -> TransferKind {
        self.kind
    }
    pub fn account(&self) -> AccountId {
        self.account
    }
    pub fn wallet(&self) -> WalletId {
        self.wallet
    }
    pub fn amount(&self) -> &Amount {
        &self.amount
    }
    pub fn destination(&self) -> &Address {
        &self.destination
    }
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }
    pub fn initiator(&self) -> &Actor {
        &self.initiator
    }
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The canonical encoding, version [`INTENT_VERSION`]:
    ///
    /// ```text
    /// "SRTI" version:u16 id:16 kind:u8 account:16 wallet:16
    /// asset_id:str symbol:str decimals:u8 units:u128
    /// destination:str reference_present:u8 [reference:str]
    /// initiator:str created_at_ms:i64
    /// ```
    ///
    /// The asset's symbol and decimals are included so that what an approver
    /// saw ("1.5 BTC") is exactly what the digest commits to.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let asset = self.amount.asset();
        let mut w = Writer::new(MAGIC, INTENT_VERSION);
        w.fixed(self.id.as_bytes())
            .u8(self.kind.code())
            .fixed(self.account.as_bytes())
            .fixed(self.wallet.as_bytes())
            .str(&asset.id().to_string())
            .str(asset.symbol().as_str())
            .u8(asset.decimals().get())
            .u128(self.amount.units())
            .str(self.destination.as_str());
        match &self.reference {
            Some(r) => w.u8(1).str(r),
            None => w.u8(0),
        };
        w.str(&self.initiator.to_string())
            .i64(self.created_at.as_millis());
        w.finish()
    }

    pub fn digest(&self) -> IntentDigest {
        IntentDigest(Sha256::digest(self.canonical_bytes()).into())
    }

    /// Reads an intent back from its canonical bytes, checking every field as
    /// [`TransferIntent::new`] does. Signers use this to see for themselves
    /// what they are asked to sign.
    ///
    /// The asset's symbol and decimals in the bytes must equal the reader's
    /// own configuration of that asset (`assets`): otherwise the same units
    /// would be shown at another scale than the one approved.
    pub fn decode(
        bytes: &[u8],
        assets: impl Fn(&crate::AssetId) -> Option<Asset>,
    ) -> Result<Self, IntentError> {
        Self::decode_with(bytes, |id, symbol, decimals| {
            let asset = assets(id).ok_or_else(|| IntentError::UnknownAsset(id.to_string()))?;
            if asset.symbol() != symbol || asset.decimals() != decimals {
                return Err(IntentError::AssetMismatch(id.to_string()));
            }
            Ok(asset)
        })
    }

    /// Reads an intent with the asset as the bytes describe it (symbol and
    /// decimals included), for a reader with no configuration of its own:
    /// an approver's command line. What it shows is exactly what the digest
    /// commits to; the server checks the asset against its configuration.
    pub fn decode_as_written(bytes: &[u8]) -> Result<Self, IntentError> {
        Self::decode_with(bytes, |id, symbol, decimals| {
            Asset::new(id.clone(), symbol.clone(), decimals)
                .map_err(|_| IntentError::AssetMismatch(id.to_string()))
        })
    }

    fn decode_with(
        bytes: &[u8],
        asset_of: impl Fn(
            &crate::AssetId,
            &crate::Symbol,
            crate::Decimals,
        ) -> Result<Asset, IntentError>,
    ) -> Result<Self, IntentError> {
        let (mut r, version) = Reader::new(bytes, MAGIC, "transfer intent")?;
        if version != INTENT_VERSION {
            return Err(DecodeError::Version(version).into());
        }
        let field = |field: &'static str, e: &dyn fmt::Display| DecodeError::Field {
            field,
            reason: e.to_string(),
        };
        let id = TransferId::from_uuid(uuid::Uuid::from_bytes(r.fixed()?));
        let kind = TransferKind::from_code(r.u8()?)
            .ok_or_else(|| field("kind", &"unknown transfer kind"))?;
        let account = AccountId::from_uuid(uuid::Uuid::from_bytes(r.fixed()?));
        let wallet = WalletId::from_uuid(uuid::Uuid::from_bytes(r.fixed()?));
        let asset_id: crate::AssetId = r.str("asset")?.parse().map_err(|e| field("asset", &e))?;
        let symbol = crate::Symbol::new(r.str("symbol")?).map_err(|e| field("symbol", &e))?;
        let decimals = crate::Decimals::new(r.u8()?).map_err(|e| field("decimals", &e))?;
        let units = r.u128()?;
        let network = asset_id.network();
        let asset = asset_of(&asset_id, &symbol, decimals)?;
        let destination = Address::new(network, r.str("destination")?)?;
        let reference = match r.u8()? {
            0 => None,
            1 => Some(r.str("reference")?.to_owned()),
            _ => return Err(field("reference", &"bad presence flag").into()),
        };
        let initiator = r
            .str("initiator")?
            .parse()
            .map_err(|e| field("initiator", &e))?;
        let created_at = Timestamp::from_millis(r.i64()?);
        r.finish()?;
        TransferIntent::new(IntentParts {
            id,
            kind,
            account,
            wallet,
            amount: Amount::from_units(asset, units),
            destination,
            reference,
            initiator,
            created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BitcoinNetwork;

    #[test]
    fn as_written_shows_exactly_what_the_digest_commits_to() {
        let i = sample();
        let back = TransferIntent::decode_as_written(&i.canonical_bytes()).unwrap();
        assert_eq!(back, i);
        assert_eq!(back.digest(), i.digest());
        assert_eq!(back.amount().to_string(), "1.5 BTC");
        let mut bytes = i.canonical_bytes();
        bytes.push(0);
        assert!(TransferIntent::decode_as_written(&bytes).is_err());
    }

    fn sample() -> TransferIntent {
        let btc = Asset::bitcoin(BitcoinNetwork::Mainnet);
        TransferIntent::new(IntentParts {
            id: "0190b5a8-7a3e-7cc1-9d3e-3f1c2a4b5c6d".parse().unwrap(),
            kind: TransferKind::Withdrawal,
            account: "0190b5a8-0000-7000-8000-000000000001".parse().unwrap(),
            wallet: "0190b5a8-0000-7000-8000-000000000002".parse().unwrap(),
            amount: Amount::parse("1.5", &btc).unwrap(),
            destination: Address::new(btc.network(), "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")
                .unwrap(),
            reference: Some("invoice 42".to_owned()),
            initiator: "api-key:0190b5a8-0000-7000-8000-000000000003"
                .parse()
                .unwrap(),
            created_at: Timestamp::from_millis(1_795_322_120_123),
        })
        .unwrap()
    }

    #[test]
    fn canonical_bytes_snapshot() {
        let i = sample();
        let hex = hex::encode(i.canonical_bytes());
        let lines: Vec<&str> = hex
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        expect_test::expect![[r#"
            5352544900010190b5a87a3e7cc19d3e3f1c2a4b5c6d010190b5a80000700080
            000000000000010190b5a800007000800000000000000200000016626974636f
            696e3a6d61696e6e65742f6e6174697665000000034254430800000000000000
            000000000008f0d1800000002a62633171617230737272723778666b7679356c
            3634336c79646e77397265353967747a7a7766356d6471010000000a696e766f
            6963652034320000002c6170692d6b65793a30313930623561382d303030302d
            373030302d383030302d303030303030303030303033000001a2018987bb"#]]
        .assert_eq(&lines.join("\n"));
        expect_test::expect!["88589f1cd533172412ec8bb7430790849514ff63ae562004ca9f1d976d148f7a"]
            .assert_eq(&i.digest().to_string());
    }

    fn known(id: &crate::AssetId) -> Option<Asset> {
        let btc = Asset::bitcoin(BitcoinNetwork::Mainnet);
        (btc.id() == id).then_some(btc)
    }

    #[test]
    fn decode_round_trips_and_is_strict() {
        let i = sample();
        let bytes = i.canonical_bytes();
        assert_eq!(TransferIntent::decode(&bytes, known).unwrap(), i);

        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(TransferIntent::decode(&trailing, known).is_err());
        for cut in [0, 3, 6, 20, bytes.len() - 1] {
            assert!(
                TransferIntent::decode(&bytes[..cut], known).is_err(),
                "cut {cut}"
            );
        }
        let mut v2 = bytes.clone();
        v2[5] = 2;
        assert!(matches!(
            TransferIntent::decode(&v2, known),
            Err(IntentError::Decode(DecodeError::Version(2)))
        ));
        assert!(matches!(
            TransferIntent::decode(&bytes, |_| None),
            Err(IntentError::UnknownAsset(_))
        ));
    }

    #[test]
    fn decode_refuses_other_decimals_for_a_known_asset() {
        let mut bytes = sample().canonical_bytes();
        // The decimals byte follows the length-prefixed asset id and symbol.
        let at = 4 + 2 + 16 + 1 + 16 + 16 + 4 + "bitcoin:mainnet/native".len() + 4 + 3;
        assert_eq!(bytes[at], 8);
        bytes[at] = 14;
        assert!(matches!(
            TransferIntent::decode(&bytes, known),
            Err(IntentError::AssetMismatch(_))
        ));
    }

    #[test]
    fn every_field_changes_the_digest() {
        let base = sample();
        let parts = || IntentParts {
            id: base.id(),
            kind: base.kind(),
            account: base.account(),
            wallet: base.wallet(),
            amount: base.amount().clone(),
            destination: base.destination().clone(),
            reference: base.reference().map(str::to_owned),
            initiator: base.initiator().clone(),
            created_at: base.created_at(),
        };
        assert_eq!(
            TransferIntent::new(parts()).unwrap().digest(),
            base.digest()
        );
        let other_uuid = uuid::Uuid::from_u128(0x0190b5a8_0000_7000_8000_0000000000ff);
        let testnet = Asset::bitcoin(BitcoinNetwork::Testnet);
        type Change<'a> = (&'a str, Box<dyn Fn(&mut IntentParts) + 'a>);
        let changes: Vec<Change> = vec![
            ("id", Box::new(|p| p.id = TransferId::from_uuid(other_uuid))),
            ("kind", Box::new(|p| p.kind = TransferKind::Sweep)),
            (
                "account",
                Box::new(|p| p.account = AccountId::from_uuid(other_uuid)),
            ),
            (
                "wallet",
                Box::new(|p| p.wallet = WalletId::from_uuid(other_uuid)),
            ),
            (
                "units",
                Box::new(|p| p.amount = Amount::from_units(p.amount.asset().clone(), 150_000_001)),
            ),
            (
                "asset",
                Box::new(|p| {
                    p.amount = Amount::from_units(testnet.clone(), 150_000_000);
                    p.destination =
                        Address::new(testnet.network(), p.destination.as_str()).unwrap();
                }),
            ),
            (
                "symbol",
                Box::new(|p| {
                    let a = p.amount.asset();
                    let xbt = Asset::new(
                        a.id().clone(),
                        crate::Symbol::new("XBT").unwrap(),
                        a.decimals(),
                    )
                    .unwrap();
                    p.amount = Amount::from_units(xbt, 150_000_000);
                }),
            ),
            (
                "destination",
                Box::new(|p| {
                    p.destination = Address::new(p.destination.network(), "bc1qother").unwrap();
                }),
            ),
            (
                "reference",
                Box::new(|p| p.reference = Some("invoice 43".into())),
            ),
            ("no reference", Box::new(|p| p.reference = None)),
            ("initiator", Box::new(|p| p.initiator = Actor::System)),
            (
                "created_at",
                Box::new(|p| p.created_at = Timestamp::from_millis(1)),
            ),
        ];
        for (field, change) in changes {
            let mut p = parts();
            change(&mut p);
            let changed = TransferIntent::new(p).unwrap();
            assert_ne!(
                changed.digest(),
                base.digest(),
                "{field} is not covered by the digest"
            );
        }
    }

    #[test]
    fn refuses_inconsistent_intents() {
        let base = sample();
        let eth_dest = Address::new(
            Network::Evm { chain_id: 1 },
            "0x0000000000000000000000000000000000000001".trim_start_matches("0x"),
        )
        .unwrap();
        let parts = |f: &dyn Fn(&mut IntentParts)| {
            let mut p = IntentParts {
                id: base.id(),
                kind: base.kind(),
                account: base.account(),
                wallet: base.wallet(),
                amount: base.amount().clone(),
                destination: base.destination().clone(),
                reference: None,
                initiator: base.initiator().clone(),
                created_at: base.created_at(),
            };
            f(&mut p);
            TransferIntent::new(p)
        };
        assert_eq!(
            parts(&|p| p.amount = Amount::zero(p.amount.asset().clone())),
            Err(IntentError::ZeroAmount)
        );
        assert!(matches!(
            parts(&|p| p.destination = eth_dest.clone()),
            Err(IntentError::NetworkMismatch { .. })
        ));
        assert_eq!(
            parts(&|p| p.reference = Some("a\nb".into())),
            Err(IntentError::InvalidReference)
        );
        assert_eq!(
            parts(&|p| p.reference = Some(String::new())),
            Err(IntentError::InvalidReference)
        );
        assert!(Address::new(Network::Evm { chain_id: 1 }, "0x 12").is_err());
        assert!(Address::new(Network::Evm { chain_id: 1 }, "").is_err());
    }
}

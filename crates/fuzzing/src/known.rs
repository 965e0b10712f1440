//! The fixed things fuzzed input is checked against: an approval statement
//! and its approver, a Bitcoin plan and the key that signs it, an approved
//! Ethereum payment and its sender's key, an audit key. Test keys only:
//! they guard nothing.

use std::sync::OnceLock;

use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::{OutPoint, Psbt, Txid};
use chain_btc::{BtcAddress, BtcPlan, Payout, Spend, Utxo};
use domain::intent::IntentParts;
use domain::{
    AccountId, Actor, Address, Amount, Asset, BitcoinNetwork, IntentDigest, Timestamp, TransferId,
    TransferIntent, TransferKind,
};
use ed25519_dalek::Signer as _;
use policy::{ApprovalSignature, ApprovalStatement, ApproverKey, RelyingParty, Vote};

/// The approval statement approvers sign in these tests.
pub fn statement() -> ApprovalStatement {
    ApprovalStatement {
        intent: IntentDigest([7; 32]),
        policy_version: 3,
        decision_id: [9; 16],
        expires_at: Timestamp::from_millis(1_900_000_000_000),
        vote: Vote::Approve,
    }
}

fn approver() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[5; 32])
}

/// The approver's key.
pub fn approver_key() -> ApproverKey {
    ApproverKey::Ed25519(approver().verifying_key().to_bytes())
}

/// The approver's signature of [`statement`].
pub fn approval_signature() -> ApprovalSignature {
    ApprovalSignature::Ed25519(approver().sign(&statement().message()).to_bytes())
}

/// The relying party passkeys are checked against.
pub fn relying_party() -> RelyingParty {
    RelyingParty {
        rp_id: "localhost".into(),
        origins: vec!["http://localhost:8080".into()],
    }
}

/// An intent: 1.5 ETH on chain 31337 to a fixed address.
pub fn intent() -> TransferIntent {
    let asset = Asset::ether(31337);
    let network = asset.network();
    let id = |n: u128| uuid_of(n);
    TransferIntent::new(IntentParts {
        id: TransferId::from_uuid(id(0xaa)),
        kind: TransferKind::Withdrawal,
        account: AccountId::from_uuid(id(0xbb)),
        wallet: domain::WalletId::from_uuid(id(1)),
        amount: Amount::from_units(asset, 1_500_000_000_000_000_000),
        destination: Address::new(network, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
            .expect("a fixed address"),
        reference: Some("invoice 17".into()),
        initiator: Actor::System,
        created_at: Timestamp::from_millis(1_700_000_000_000),
    })
    .expect("a fixed intent")
}

fn uuid_of(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x01900000_0000_7000_8000_000000000000 | n)
}

/// The key that signs the Bitcoin plan.
pub fn btc_secret() -> SecretKey {
    SecretKey::from_slice(&[0x11; 32]).expect("a fixed key")
}

fn btc_spend() -> Spend {
    let pk = btc_secret().public_key(&Secp256k1::new());
    Spend::P2wpkh {
        pubkey: pk.serialize(),
    }
}

/// The approved Bitcoin plan: one P2WPKH input of 10 000 sat pays 9 000.
pub fn btc_plan() -> &'static BtcPlan {
    static PLAN: OnceLock<BtcPlan> = OnceLock::new();
    PLAN.get_or_init(|| BtcPlan {
        inputs: vec![Utxo {
            outpoint: OutPoint {
                txid: Txid::from_byte_array([1; 32]),
                vout: 1,
            },
            value_sat: 10_000,
            spend: btc_spend(),
        }],
        payouts: vec![Payout {
            script_pubkey: BtcAddress::parse(
                "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
                BitcoinNetwork::Mainnet,
            )
            .expect("a fixed address")
            .script_pubkey(),
            value_sat: 9_000,
        }],
        change: None,
        rbf: true,
    })
}

/// [`btc_plan`]'s PSBT, signed by its key.
pub fn signed_psbt() -> Psbt {
    let plan = btc_plan();
    let mut psbt = plan.psbt().expect("the plan's PSBT");
    let tasks = chain_btc::signing_tasks(&psbt, &[btc_spend()]).expect("its tasks");
    let secp = Secp256k1::new();
    for task in &tasks {
        let chain_btc::SigningTask::Ecdsa { digest, .. } = task else {
            continue;
        };
        let sig = secp.sign_ecdsa(&Message::from_digest(*digest), &btc_secret());
        chain_btc::add_ecdsa(&mut psbt, task, &sig.serialize_compact()).expect("a good signature");
    }
    psbt
}

/// The sender's key of the Ethereum payment.
pub fn eth_key() -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(&[7; 32]).expect("a fixed key")
}

/// The approved Ethereum payment of [`intent`] from [`eth_key`]'s address.
pub fn eth_approved() -> &'static chain_eth::Approved {
    static APPROVED: OnceLock<chain_eth::Approved> = OnceLock::new();
    APPROVED.get_or_init(|| {
        let i = intent();
        let public = eth_key().verifying_key().to_encoded_point(true);
        let from = chain_eth::EthAddress::from_public_key(public.as_bytes()).expect("an address");
        let sender = chain_eth::Sender {
            address: from,
            wallet: i.wallet(),
        };
        let to = i.destination().as_str().parse().expect("the destination");
        let plan = chain_eth::TxPlan::native(
            31337,
            7,
            to,
            1_500_000_000_000_000_000,
            chain_eth::Fees::Eip1559 {
                max_fee_per_gas: 20_000_000_000,
                max_priority_fee_per_gas: 1_000_000_000,
            },
        );
        let caps = chain_eth::FeeCaps {
            max_fee_per_gas: 500_000_000_000,
            max_total_fee: 10_000_000_000_000_000,
        };
        let intended = chain_eth::Intended::of(&i).expect("an Ethereum intent");
        chain_eth::approve(&intended, &sender, &caps, chain_eth::Kind::Payment, plan)
            .expect("the plan pays the intent")
    })
}

/// [`eth_approved`], signed by its sender.
pub fn signed_eth() -> chain_eth::SignedTx {
    let approved = eth_approved();
    let (sig, _) = eth_key()
        .sign_prehash_recoverable(&approved.signing_hash())
        .expect("a signature");
    let sig = sig.normalize_s().unwrap_or(sig);
    [0u8, 1]
        .into_iter()
        .find_map(|recovery_id| {
            approved
                .finish(chain_eth::EcdsaParts {
                    r: sig.r().to_bytes().into(),
                    s: sig.s().to_bytes().into(),
                    recovery_id,
                })
                .ok()
        })
        .expect("one recovery id recovers to the sender")
}

/// The audit key checkpoints are signed with.
pub fn audit_key() -> audit::AuditSigningKey {
    audit::AuditSigningKey::from_seed(&zeroize::Zeroizing::new([3; 32]))
}

/// A checkpoint signed by [`audit_key`].
pub fn checkpoint() -> audit::Checkpoint {
    audit_key().sign_checkpoint(
        audit::Head {
            seq: 41,
            hash: audit::Hash([0x42; 32]),
        },
        Timestamp::from_millis(1_800_000_000_000),
    )
}

/// A backup manifest, and the head of a backup holding it signed by
/// [`audit_key`] (SHA-256 of the manifest's bytes, `SRBM` v1).
pub fn backup_manifest() -> audit::backup::Manifest {
    audit::backup::Manifest {
        format: audit::backup::FORMAT.into(),
        version: audit::backup::VERSION,
        created_at_ms: 1_800_000_000_000,
        instance: "7".repeat(64),
        database: "sqlite".into(),
        schema_version: 31,
        audit_seq: 41,
        audit_hash: "42".repeat(32),
        audit_key: audit_key().public().to_string(),
        keys: vec!["treasury".into()],
        entries: ["database", "checkpoints", "config"]
            .into_iter()
            .map(|name| audit::backup::ManifestEntry {
                name: name.into(),
                size: 3,
                sha256: "ab".repeat(32),
            })
            .collect(),
    }
}

/// [`backup_manifest`]'s bytes and [`audit_key`]'s signature over them.
pub fn signed_backup_manifest() -> (Vec<u8>, [u8; 64]) {
    use sha2::Digest as _;
    let bytes = backup_manifest().to_bytes().expect("a manifest serialises");
    let digest: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    let sig = audit_key().sign_backup(&digest);
    (bytes, sig)
}

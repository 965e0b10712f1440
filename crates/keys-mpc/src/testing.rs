//! For tests (feature `test-support`): approvers, and Bitcoin payments
//! approved by them as a signer node expects to see them.

use domain::intent::IntentParts;
use domain::{
    AccountId, Actor, Address, Amount, Asset, BitcoinNetwork, Network, Timestamp, TransferId,
    TransferIntent, TransferKind, WalletId,
};
use ed25519_dalek::{Signer as _, SigningKey};
use policy::{ApprovalStatement, Vote};

use crate::cosign::{Approval, ApprovedTransfer, CosignPolicy};

/// The wallet test keys are made for.
pub const WALLET: &str = "0190a5e0-0000-7000-8000-000000000001";

/// Approver `i`'s key (fixed seeds: tests only).
pub fn approver(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i.wrapping_add(40); 32])
}

/// A demanding policy: approvers 1 to 3 enrolled, two needed above
/// 10 000 sat, fees up to 5 000 sat, raw messages as `allow_raw`.
pub fn policy(allow_raw: bool) -> CosignPolicy {
    CosignPolicy {
        bitcoin_network: "bitcoin:regtest".into(),
        approvers: (1..=3)
            .map(|i| hex::encode(approver(i).verifying_key().as_bytes()))
            .collect(),
        min_approvals: 2,
        unapproved_limit: 10_000,
        max_fee: 5_000,
        signatures_per_hour: 10_000,
        allow_raw,
    }
}

/// A regtest address of a fixed test key (P2WPKH); `seed` 1 to 100.
pub fn address(seed: u8) -> String {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[seed.clamp(1, 100); 32])
        .unwrap_or_else(|e| panic!("{e}"));
    let pk = bitcoin::CompressedPublicKey(sk.public_key(&secp));
    bitcoin::Address::p2wpkh(&pk, bitcoin::Network::Regtest).to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A withdrawal of [`WALLET`] of `sat` to `to` (regtest), approved by
/// `approvers` (their indices), valid for an hour.
pub fn payment(to: &str, sat: u64, approvers: &[u8]) -> ApprovedTransfer {
    payment_of(WALLET, to, sat, approvers)
}

/// [`payment`] from another wallet.
pub fn payment_of(wallet: &str, to: &str, sat: u64, approvers: &[u8]) -> ApprovedTransfer {
    let net = BitcoinNetwork::Regtest;
    let intent = TransferIntent::new(IntentParts {
        id: TransferId::from_uuid(uuid::Uuid::now_v7()),
        kind: TransferKind::Withdrawal,
        account: AccountId::from_uuid(uuid::Uuid::now_v7()),
        wallet: wallet.parse::<WalletId>().unwrap_or_else(|e| panic!("{e}")),
        amount: Amount::from_units(Asset::bitcoin(net), u128::from(sat)),
        destination: Address::new(Network::Bitcoin(net), to).unwrap_or_else(|e| panic!("{e}")),
        reference: None,
        initiator: Actor::System,
        created_at: Timestamp::from_millis(now_ms()),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let decision = uuid::Uuid::now_v7();
    let expires = now_ms() + 3_600_000;
    let approvals = approvers
        .iter()
        .map(|i| {
            let statement = ApprovalStatement {
                intent: intent.digest(),
                policy_version: 1,
                decision_id: *decision.as_bytes(),
                expires_at: Timestamp::from_millis(expires),
                vote: Vote::Approve,
            };
            let key = approver(*i);
            Approval {
                approver: hex::encode(key.verifying_key().as_bytes()),
                expires_at_ms: expires,
                signature: hex::encode(key.sign(&statement.message()).to_bytes()),
            }
        })
        .collect();
    ApprovedTransfer {
        intent: hex::encode(intent.canonical_bytes()),
        policy_version: 1,
        decision_id: decision.to_string(),
        approvals,
    }
}

//! The co-signer checks: what a signer node verifies itself before it
//! contributes to a signature, so that a compromised server alone cannot
//! move money. The node derives the message it signs from the transaction
//! it is shown — never takes it from the server — and checks that the
//! transaction pays exactly transfers approved by enough of the approvers
//! enrolled in its own configuration, within its own fee cap.

use bitcoin::hashes::Hash as _;
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use domain::{AssetKind, Network, Timestamp, TransferIntent};
use policy::{ApprovalSignature, ApprovalStatement, ApproverKey, Vote};

pub use crate::passkeys::PasskeyApprover;
pub use crate::people::Person;
use serde::{Deserialize, Serialize};

use crate::envelope::Abort;

/// A node's own rules (`[policy]` in `signer.toml`). Every limit is
/// explicit: there are no permissive defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignPolicy {
    /// The Bitcoin network this node signs for (`bitcoin:mainnet`,
    /// `bitcoin:regtest`, …): an intent for another network is refused,
    /// even though its addresses may share scripts with this one's.
    pub bitcoin_network: String,
    /// Approvers' Ed25519 public keys (hex), enrolled with this node.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Approvers who approve with a passkey (`[[policy.passkey_approvers]]`),
    /// enrolled with this node: each assertion is verified here against the
    /// RP ID and origins listed, never the server's.
    #[serde(default)]
    pub passkey_approvers: Vec<PasskeyApprover>,
    /// Who holds which of those keys (`[[policy.people]]`): one person's
    /// keys count once. A key no person lists is a person of its own.
    #[serde(default)]
    pub people: Vec<Person>,
    /// Distinct people among the enrolled approvers who must have approved
    /// each transfer above `unapproved_limit`.
    pub min_approvals: u16,
    /// What one transaction may pay, in all, to transfers without
    /// approvals (base units); 0: every transfer needs `min_approvals`.
    pub unapproved_limit: u64,
    /// The largest fee (base units) of a transaction this node signs.
    pub max_fee: u64,
    /// Signature shares this node gives out in any hour, at most.
    pub signatures_per_hour: u32,
    /// Sign raw messages no transaction explains (blind signing), audited,
    /// for Ed25519 keys (whose chains are not integrated yet). Never for
    /// Taproot keys, whatever this says: they sign checked transactions.
    #[serde(default)]
    pub allow_raw: bool,
    /// Ethereum transactions this node signs with threshold ECDSA keys
    /// (`[policy.ethereum]`); without it, none.
    #[serde(default)]
    pub ethereum: Option<EthereumPolicy>,
}

/// A node's rules for Ethereum transactions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EthereumPolicy {
    /// The one EVM network (`eip155:<chain id>`) this node signs for: a
    /// transaction or an intent for another chain is refused.
    pub network: String,
    /// The most a transaction may pay for gas (gas limit × max fee per
    /// gas), in wei.
    pub max_fee: u64,
    /// Wei a transfer may pay without approvals (0, the default: every
    /// one needs `min_approvals`). `unapproved_limit` above is in sats.
    #[serde(default)]
    pub unapproved_limit: u64,
    /// ERC-20 tokens this node pays, as its operator knows them (never as
    /// a request describes them).
    #[serde(default)]
    pub tokens: Vec<EthereumToken>,
}

/// An ERC-20 token a node pays: `transfer(recipient, amount)` calls of its
/// contract, nothing else.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EthereumToken {
    pub symbol: String,
    /// `0x` and 40 hex digits.
    pub contract: String,
    pub decimals: u8,
    /// Base units of the token a transfer may pay without approvals (0,
    /// the default: every one needs `min_approvals`).
    #[serde(default)]
    pub unapproved_limit: u64,
}

impl EthereumPolicy {
    /// Ether and the configured tokens on `chain_id`.
    fn assets(&self, chain_id: u64) -> Result<Vec<domain::Asset>, String> {
        let mut assets = vec![domain::Asset::ether(chain_id)];
        for t in &self.tokens {
            let contract: domain::ContractAddress = t
                .contract
                .to_ascii_lowercase()
                .parse()
                .map_err(|e| format!("token {}: {e}", t.symbol))?;
            let id = domain::AssetId::new(Network::Evm { chain_id }, AssetKind::Erc20(contract))
                .map_err(|e| format!("token {}: {e}", t.symbol))?;
            let asset = domain::Asset::new(
                id,
                domain::Symbol::new(&t.symbol).map_err(|e| format!("token {}: {e}", t.symbol))?,
                domain::Decimals::new(t.decimals)
                    .map_err(|e| format!("token {}: {e}", t.symbol))?,
            )
            .map_err(|e| format!("token {}: {e}", t.symbol))?;
            if assets.iter().any(|a| a.id() == asset.id()) {
                return Err(format!("token {} is listed twice", t.symbol));
            }
            assets.push(asset);
        }
        Ok(assets)
    }
}

/// What a signer is asked to sign, in a form it can check itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Subject {
    /// One Taproot key-path input of a Bitcoin transaction.
    BitcoinTaproot {
        /// The unsigned transaction, consensus encoding, hex.
        tx: String,
        /// Every input's previous output, in order.
        prevouts: Vec<Prevout>,
        /// The input this key signs.
        input: u32,
        /// The transfers the transaction pays, each with its approvals.
        transfers: Vec<ApprovedTransfer>,
    },
    /// An Ethereum transaction (EIP-1559) paying one approved transfer of
    /// ether.
    Ethereum {
        tx: EthereumTx,
        /// The transfer it pays, with its approvals (exactly one).
        transfers: Vec<ApprovedTransfer>,
    },
    /// A message no transaction explains; refused unless `allow_raw`.
    Raw { message: String },
}

/// An unsigned EIP-1559 transaction, field by field (amounts as decimal
/// strings: they may exceed what JSON numbers carry).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EthereumTx {
    pub chain_id: u64,
    pub nonce: u64,
    /// `0x` and 40 hex digits.
    pub to: String,
    pub value: String,
    /// Calldata, hex (empty for a payment of ether).
    pub data: String,
    pub gas_limit: u64,
    pub max_fee_per_gas: String,
    pub max_priority_fee_per_gas: String,
}

impl EthereumTx {
    pub fn from_plan(p: &chain_eth::TxPlan) -> Option<EthereumTx> {
        let chain_eth::Fees::Eip1559 {
            max_fee_per_gas,
            max_priority_fee_per_gas,
        } = p.fees
        else {
            return None;
        };
        Some(EthereumTx {
            chain_id: p.chain_id,
            nonce: p.nonce,
            to: p.to.to_lower_hex(),
            value: p.value.to_string(),
            data: hex::encode(&p.data),
            gas_limit: p.gas_limit,
            max_fee_per_gas: max_fee_per_gas.to_string(),
            max_priority_fee_per_gas: max_priority_fee_per_gas.to_string(),
        })
    }

    /// The transaction as `chain-eth` builds and signs it.
    pub fn plan(&self) -> Result<chain_eth::TxPlan, Abort> {
        let int = |s: &str, what: &str| {
            s.parse::<u128>()
                .map_err(|_| refused(format!("{what} is not a decimal integer")))
        };
        let (to, _) =
            chain_eth::EthAddress::parse(&self.to).map_err(|e| refused(format!("to: {e}")))?;
        Ok(chain_eth::TxPlan {
            chain_id: self.chain_id,
            nonce: self.nonce,
            to,
            value: int(&self.value, "value")?,
            data: hex::decode(&self.data).map_err(|_| refused("data is not hex"))?,
            gas_limit: self.gas_limit,
            fees: chain_eth::Fees::Eip1559 {
                max_fee_per_gas: int(&self.max_fee_per_gas, "max_fee_per_gas")?,
                max_priority_fee_per_gas: int(
                    &self.max_priority_fee_per_gas,
                    "max_priority_fee_per_gas",
                )?,
            },
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prevout {
    pub value: u64,
    /// Hex.
    pub script_pubkey: String,
}

/// A transfer as it was judged and approved.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovedTransfer {
    /// The intent's canonical bytes, hex (their digest is what approvers
    /// signed).
    pub intent: String,
    pub policy_version: u64,
    /// The decision's id (a UUID).
    pub decision_id: String,
    pub approvals: Vec<Approval>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The approver's key: hex Ed25519, or `webauthn:<credential id>:<P-256 key>`.
    pub approver: String,
    pub expires_at_ms: i64,
    /// Over the approval statement: hex Ed25519, or a passkey's WebAuthn
    /// assertion (`webauthn:…`, whose challenge is the statement's digest).
    pub signature: String,
}

/// The message to sign and what the node records about it.
#[derive(Debug)]
pub struct Checked {
    pub message: Vec<u8>,
    pub summary: serde_json::Value,
    /// The intents (digests) the transaction pays, and the outpoints it
    /// spends: a node records them, and pays an intent again only in a
    /// transaction that spends one of the same outpoints (a replacement,
    /// of which only one can confirm).
    pub pays: Vec<String>,
    pub spends: Vec<String>,
}

fn refused(why: impl Into<String>) -> Abort {
    Abort::Policy(why.into())
}

/// Checks `subject` for a key of `wallet` (`taproot`: its output key,
/// x-only, for a Taproot key), at `now`, and derives the message to sign.
pub fn check(
    policy: &CosignPolicy,
    taproot: Option<[u8; 32]>,
    wallet: &str,
    subject: &Subject,
    now: Timestamp,
) -> Result<Checked, Abort> {
    match subject {
        Subject::Raw { message } => {
            if taproot.is_some() {
                return Err(refused(
                    "a raw message for a Bitcoin key: it signs only transactions it checks",
                ));
            }
            if !policy.allow_raw {
                return Err(refused(
                    "a raw message: this node signs only transactions it can check",
                ));
            }
            let message = hex::decode(message).map_err(|_| refused("message is not hex"))?;
            Ok(Checked {
                summary: serde_json::json!({ "raw_sha256": hex::encode(sha2_256(&message)) }),
                message,
                pays: Vec::new(),
                spends: Vec::new(),
            })
        }
        Subject::BitcoinTaproot {
            tx,
            prevouts,
            input,
            transfers,
        } => {
            let key = taproot.ok_or_else(|| refused("a Bitcoin input for a non-Taproot key"))?;
            bitcoin_taproot(policy, key, wallet, tx, prevouts, *input, transfers, now)
        }
        Subject::Ethereum { .. } => Err(refused(
            "an Ethereum transaction for a Schnorr or Ed25519 key",
        )),
    }
}

/// Checks `subject` for a threshold ECDSA key (`key`: SEC1 compressed) of
/// `wallet`: only Ethereum transactions, each paying exactly one approved
/// transfer of ether on this node's network from this key's address;
/// derives the bytes to sign (the transaction's signing encoding, which
/// the node hashes with keccak-256 itself).
pub fn check_ethereum(
    policy: &CosignPolicy,
    key: &[u8; 33],
    wallet: &str,
    subject: &Subject,
    now: Timestamp,
) -> Result<Checked, Abort> {
    let Subject::Ethereum { tx, transfers } = subject else {
        return Err(refused(
            "an ECDSA key signs only Ethereum transactions this node checks",
        ));
    };
    let rules = policy
        .ethereum
        .as_ref()
        .ok_or_else(|| refused("this node signs no Ethereum transactions ([policy.ethereum])"))?;
    let Ok(network @ Network::Evm { chain_id }) = rules.network.parse::<Network>() else {
        return Err(Abort::Internal(
            "[policy.ethereum] network is not an EVM network".into(),
        ));
    };
    let plan = tx.plan()?;
    if plan.chain_id != chain_id {
        return Err(refused(format!(
            "chain id {}: this node signs for {chain_id}",
            plan.chain_id
        )));
    }
    let fee = plan.max_fee().ok_or_else(|| refused("the fee overflows"))?;
    if fee > u128::from(rules.max_fee) {
        return Err(refused(format!(
            "a fee of up to {fee} wei, over this node's cap of {}",
            rules.max_fee
        )));
    }
    let [t] = transfers.as_slice() else {
        return Err(refused("an Ethereum transaction pays exactly one transfer"));
    };
    let assets = rules.assets(chain_id).map_err(Abort::Internal)?;
    let a = approval(policy, &assets, wallet, t, now)?;
    // The same check the server's signing gate makes (`chain_eth::approve`):
    // the transaction pays exactly this intent — recipient, amount, asset,
    // ERC-20 calldata byte for byte — from this key's address, and nothing
    // else.
    let from = chain_eth::EthAddress::from_public_key(key)
        .map_err(|_| Abort::Internal("the group key is not a point".into()))?;
    let intended = chain_eth::Intended::of(&a.intent)
        .map_err(|e| refused(format!("intent {}: {e}", a.digest)))?;
    let sender = chain_eth::Sender {
        address: from,
        wallet: a.intent.wallet(),
    };
    // This node's cap is on the whole fee (checked above).
    let caps = chain_eth::FeeCaps {
        max_fee_per_gas: u128::MAX,
        max_total_fee: u128::from(rules.max_fee),
    };
    chain_eth::approve(
        &intended,
        &sender,
        &caps,
        chain_eth::Kind::Payment,
        plan.clone(),
    )
    .map_err(|e| {
        refused(format!(
            "the transaction does not pay transfer {}: {e}",
            a.digest
        ))
    })?;
    // Each asset its own limit, in its own base units.
    let limit = match a.intent.amount().asset().id().kind() {
        AssetKind::Native => rules.unapproved_limit,
        AssetKind::Erc20(c) => rules
            .tokens
            .iter()
            .find(|t| {
                t.contract
                    .to_ascii_lowercase()
                    .parse::<domain::ContractAddress>()
                    .is_ok_and(|k| k == *c)
            })
            .map_or(0, |t| t.unapproved_limit),
    };
    if !a.approved && a.amount > u128::from(limit) {
        return Err(refused(format!(
            "transfer {} of {} has too few valid approvals by enrolled approvers; \
             this node needs {}",
            a.digest, a.amount, policy.min_approvals
        )));
    }
    Ok(Checked {
        message: plan.signing_payload(),
        pays: vec![a.digest.clone()],
        // Transactions from one address with one nonce conflict: only one
        // can be mined.
        spends: vec![format!("{network}:{}:{}", from.to_lower_hex(), plan.nonce)],
        summary: serde_json::json!({
            "chain_id": chain_id,
            "from": from.to_lower_hex(),
            "nonce": plan.nonce,
            "max_fee": fee.to_string(),
            "transfers": [{ "intent": a.digest, "amount": a.amount.to_string() }],
        }),
    })
}

fn sha2_256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).into()
}

#[allow(clippy::too_many_arguments)]
fn bitcoin_taproot(
    policy: &CosignPolicy,
    key: [u8; 32],
    wallet: &str,
    tx: &str,
    prevouts: &[Prevout],
    input: u32,
    transfers: &[ApprovedTransfer],
    now: Timestamp,
) -> Result<Checked, Abort> {
    let bytes = hex::decode(tx).map_err(|_| refused("transaction is not hex"))?;
    let tx: bitcoin::Transaction = bitcoin::consensus::deserialize(&bytes)
        .map_err(|e| refused(format!("transaction does not decode: {e}")))?;
    if tx
        .input
        .iter()
        .any(|i| !i.witness.is_empty() || !i.script_sig.is_empty())
    {
        return Err(refused("the transaction is already (partly) signed"));
    }
    if tx.output.len() > MAX_OUTPUTS {
        return Err(refused(format!(
            "{} outputs: this node signs at most {MAX_OUTPUTS}",
            tx.output.len()
        )));
    }
    let Ok(Network::Bitcoin(network)) = policy.bitcoin_network.parse::<Network>() else {
        return Err(Abort::Internal(
            "bitcoin_network is not a Bitcoin network".into(),
        ));
    };
    let prevouts: Vec<bitcoin::TxOut> = prevouts
        .iter()
        .map(|p| {
            Ok(bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(p.value),
                script_pubkey: bitcoin::ScriptBuf::from_bytes(
                    hex::decode(&p.script_pubkey).map_err(|_| refused("prevout script"))?,
                ),
            })
        })
        .collect::<Result<_, Abort>>()?;
    if prevouts.len() != tx.input.len() {
        return Err(refused("one previous output per input is needed"));
    }
    let index = usize::try_from(input).map_err(|_| refused("input index"))?;
    let own = bitcoin::ScriptBuf::new_p2tr_tweaked(
        bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(
            bitcoin::key::XOnlyPublicKey::from_slice(&key)
                .map_err(|_| Abort::Internal("the group key is not a point".into()))?,
        ),
    );
    match prevouts.get(index) {
        Some(p) if p.script_pubkey == own => {}
        Some(_) => return Err(refused("the input does not spend this key's output")),
        None => return Err(refused("no such input")),
    }
    // Amounts: the fee, within this node's cap.
    let spent = prevouts
        .iter()
        .try_fold(0u64, |a, p| a.checked_add(p.value.to_sat()))
        .ok_or_else(|| refused("input amounts overflow"))?;
    let paid = tx
        .output
        .iter()
        .try_fold(0u64, |a, o| a.checked_add(o.value.to_sat()))
        .ok_or_else(|| refused("output amounts overflow"))?;
    let fee = spent
        .checked_sub(paid)
        .ok_or_else(|| refused("the outputs pay more than the inputs hold"))?;
    if fee > policy.max_fee {
        return Err(refused(format!(
            "a fee of {fee}, over this node's cap of {}",
            policy.max_fee
        )));
    }
    // Outputs: change back to this key, and each approved transfer paid
    // exactly once — nothing else.
    let mut unpaid: Vec<(bitcoin::ScriptBuf, u64, String)> = Vec::new();
    let mut summary = Vec::new();
    let mut unapproved: u64 = 0;
    let mut pays = Vec::new();
    for t in transfers {
        let a = approved(policy, network, wallet, t, now)?;
        // One approved transfer is paid once: listing it twice would pay it
        // twice on the strength of one set of approvals.
        if unpaid.iter().any(|(_, _, d)| *d == a.digest) {
            return Err(refused(format!("transfer {} is listed twice", a.digest)));
        }
        if !a.approved {
            unapproved = unapproved
                .checked_add(a.amount)
                .filter(|u| *u <= policy.unapproved_limit)
                .ok_or_else(|| {
                    refused(format!(
                        "transfers without approvals over {} in one transaction",
                        policy.unapproved_limit
                    ))
                })?;
        }
        summary.push(serde_json::json!({ "intent": a.digest, "amount": a.amount }));
        pays.push(a.digest.clone());
        unpaid.push((a.script, a.amount, a.digest));
    }
    for (i, o) in tx.output.iter().enumerate() {
        if o.script_pubkey == own {
            continue;
        }
        let Some(at) = unpaid
            .iter()
            .position(|(s, a, _)| *s == o.script_pubkey && *a == o.value.to_sat())
        else {
            return Err(refused(format!(
                "output {i} pays something no one approved"
            )));
        };
        unpaid.swap_remove(at);
    }
    if let Some((_, _, d)) = unpaid.first() {
        return Err(refused(format!(
            "approved transfer {d} is not paid by this transaction"
        )));
    }
    let sighash = SighashCache::new(&tx)
        .taproot_key_spend_signature_hash(index, &Prevouts::All(&prevouts), TapSighashType::Default)
        .map_err(|e| refused(format!("sighash: {e}")))?;
    Ok(Checked {
        pays,
        spends: tx
            .input
            .iter()
            .map(|i| i.previous_output.to_string())
            .collect(),
        message: sighash.to_byte_array().to_vec(),
        summary: serde_json::json!({
            "txid": tx.compute_txid().to_string(),
            "input": input,
            "fee": fee,
            "transfers": summary,
        }),
    })
}

/// The most outputs a transaction this node signs may have: the server's.
const MAX_OUTPUTS: usize = chain_btc::MAX_PAYOUTS;

/// A transfer as the node read it.
struct Read {
    script: bitcoin::ScriptBuf,
    amount: u64,
    digest: String,
    /// Whether enough enrolled approvers approved it (otherwise it counts
    /// against `unapproved_limit`).
    approved: bool,
}

/// Reads an approved transfer: its intent (a payment of this node's own
/// network's bitcoin, as this node knows the asset — not as the bytes
/// describe it), and its approvals checked against this node's enrolled
/// approvers.
fn approved(
    policy: &CosignPolicy,
    network: domain::BitcoinNetwork,
    wallet: &str,
    t: &ApprovedTransfer,
    now: Timestamp,
) -> Result<Read, Abort> {
    let btc = domain::Asset::bitcoin(network);
    let a = approval(policy, std::slice::from_ref(&btc), wallet, t, now)?;
    let digest = &a.digest;
    let amount = u64::try_from(a.amount).map_err(|_| refused("amount out of range"))?;
    let address = chain_btc::BtcAddress::parse(a.intent.destination().as_str(), network)
        .map_err(|e| refused(format!("intent {digest}: {e}")))?;
    if !a.approved && amount > policy.unapproved_limit {
        return Err(refused(format!(
            "transfer {digest} of {amount} has too few valid approvals by enrolled approvers; \
             this node needs {}",
            policy.min_approvals
        )));
    }
    Ok(Read {
        script: address.script_pubkey(),
        amount,
        digest: a.digest,
        approved: a.approved,
    })
}

/// An intent as the node read it, and whether enough enrolled approvers
/// approved it.
struct Approved {
    intent: TransferIntent,
    digest: String,
    amount: u128,
    approved: bool,
}

/// Reads an approved transfer: its intent (a payment of one of `assets`,
/// as this node knows them — not as the bytes describe them — from
/// `wallet`), and its approvals checked against this node's enrolled
/// approvers.
fn approval(
    policy: &CosignPolicy,
    assets: &[domain::Asset],
    wallet: &str,
    t: &ApprovedTransfer,
    now: Timestamp,
) -> Result<Approved, Abort> {
    let bytes = hex::decode(&t.intent).map_err(|_| refused("intent is not hex"))?;
    let intent = TransferIntent::decode(&bytes, |id| assets.iter().find(|a| a.id() == id).cloned())
        .map_err(|e| {
            refused(format!(
                "intent is not a payment on this node's network: {e}"
            ))
        })?;
    let digest = intent.digest();
    // Approved for one wallet, paid from that wallet's key only.
    if intent.wallet().to_string() != wallet {
        return Err(refused(format!(
            "intent {digest} is a transfer of another wallet than this key's"
        )));
    }
    if !assets.iter().any(|a| a == intent.amount().asset()) {
        return Err(refused(format!(
            "intent {digest} is not a payment of an asset this node pays"
        )));
    }
    let amount = intent.amount().units();
    let decision_id = uuid_bytes(&t.decision_id)?;
    let mut by: Vec<String> = Vec::new();
    for a in &t.approvals {
        let key: ApproverKey = a
            .approver
            .parse()
            .map_err(|e| refused(format!("approver key {}: {e}", a.approver)))?;
        // Only approvers this node enrolled count, a passkey with the
        // relying party this node was told.
        let rp = match &key {
            ApproverKey::Ed25519(k) => {
                if !policy
                    .approvers
                    .iter()
                    .any(|e| parse_key(e).is_ok_and(|e| e == *k))
                {
                    continue;
                }
                None
            }
            ApproverKey::Passkey { .. } => {
                let Some((_, rp)) = policy
                    .passkey_approvers
                    .iter()
                    .filter_map(|p| p.key().ok())
                    .find(|(k, _)| *k == key)
                else {
                    continue;
                };
                Some(rp)
            }
        };
        // Unexpired, and not signed to live longer than this node allows:
        // an approval is a signature over an expiry the page proposed.
        if a.expires_at_ms <= now.as_millis()
            || a.expires_at_ms > now.as_millis().saturating_add(MAX_APPROVAL_MS)
        {
            continue;
        }
        let sig: ApprovalSignature = a
            .signature
            .parse()
            .map_err(|e| refused(format!("approval signature: {e}")))?;
        let statement = ApprovalStatement {
            intent: digest,
            policy_version: t.policy_version,
            decision_id,
            expires_at: Timestamp::from_millis(a.expires_at_ms),
            vote: Vote::Approve,
        };
        // One key is one approver, whatever credential id names it; one
        // person's keys are one approver.
        let person = crate::people::person_of(&policy.people, key.point());
        if statement.verify_by(&key, &sig, rp.as_ref()).is_ok() && !by.contains(&person) {
            by.push(person);
        }
    }
    Ok(Approved {
        digest: digest.to_string(),
        approved: by.len() >= usize::from(policy.min_approvals),
        amount,
        intent,
    })
}

/// The longest an approval may be signed to live (the server's
/// `max_approval_ttl_hours` is at most 30 days).
const MAX_APPROVAL_MS: i64 = 30 * 24 * 3_600_000;

fn parse_key(s: &str) -> Result<[u8; 32], Abort> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| refused("approver key is not 32 bytes of hex"))
}

fn uuid_bytes(s: &str) -> Result<[u8; 16], Abort> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    hex::decode(hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| refused("decision id is not a UUID"))
}

/// Parses an approver key list entry (for configuration checks).
pub fn check_policy(p: &CosignPolicy) -> Result<(), String> {
    if !matches!(p.bitcoin_network.parse(), Ok(Network::Bitcoin(_))) {
        return Err(format!(
            "bitcoin_network {:?}: bitcoin:mainnet, bitcoin:testnet, bitcoin:signet or bitcoin:regtest",
            p.bitcoin_network
        ));
    }
    if p.min_approvals == 0 {
        return Err("min_approvals must be at least 1".into());
    }
    if let Some(e) = &p.ethereum {
        let Ok(Network::Evm { chain_id }) = e.network.parse::<Network>() else {
            return Err(format!(
                "ethereum.network {:?}: eip155:<chain id>",
                e.network
            ));
        };
        e.assets(chain_id)?;
    }
    let mut seen: Vec<&String> = Vec::new();
    for k in &p.approvers {
        if seen.contains(&k) {
            return Err(format!("approver key {k} is enrolled twice"));
        }
        seen.push(k);
        let key = parse_key(k).map_err(|e| e.to_string())?;
        if ed25519_dalek::VerifyingKey::from_bytes(&key).map_or(true, |k| k.is_weak()) {
            return Err(format!("approver key {k} is not a usable Ed25519 key"));
        }
    }
    let mut passkeys: Vec<ApproverKey> = Vec::new();
    for a in &p.passkey_approvers {
        let (key, _) = a.key()?;
        if passkeys.iter().any(|k| k.point() == key.point()) {
            return Err(format!(
                "passkey approver {} is enrolled twice",
                a.public_key
            ));
        }
        passkeys.push(key);
    }
    let mut points: Vec<Vec<u8>> = Vec::new();
    for k in &p.approvers {
        points.push(parse_key(k).map_err(|e| e.to_string())?.to_vec());
    }
    points.extend(passkeys.iter().map(|k| k.point().to_vec()));
    let enrolled = crate::people::check_people(&p.people, &points)?;
    if p.min_approvals > 0 && usize::from(p.min_approvals) > enrolled {
        return Err(format!(
            "min_approvals = {} but the enrolled approvers are only {enrolled} people",
            p.min_approvals,
        ));
    }
    Ok(())
}

/// The intents a node has signed payments of, with the outpoints the
/// first such transaction spent: one JSON line each, synced before the
/// share leaves. An approved transfer is paid again only by a transaction
/// that spends one of those outpoints — a fee bump or another version of
/// the same payment, which conflicts with the first so only one confirms —
/// never by a second, independent transaction.
#[derive(Debug)]
pub struct PaidJournal {
    lines: crate::journal::Lines,
    paid: std::collections::HashMap<String, Vec<String>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PaidLine {
    intent: String,
    spends: Vec<String>,
}

impl PaidJournal {
    /// Every intent paid (digests, hex), sorted.
    pub fn intents(&self) -> Vec<String> {
        let mut v: Vec<String> = self.paid.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn open(path: &std::path::Path) -> std::io::Result<PaidJournal> {
        let (lines, records) = crate::journal::Lines::open::<PaidLine>(path)?;
        let mut paid: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for l in records {
            // Each line narrows the set: the intersection of every spend
            // set signed for the intent.
            match paid.get_mut(&l.intent) {
                Some(common) => common.retain(|o| l.spends.contains(o)),
                None => {
                    paid.insert(l.intent, l.spends);
                }
            }
        }
        Ok(PaidJournal { lines, paid })
    }

    /// Refuses a transaction that pays an intent already paid unless it
    /// spends an outpoint *every* transaction signed for that intent
    /// spent: then all of them conflict pairwise, and at most one can
    /// confirm. (Sharing an outpoint with only the first would let two
    /// later ones that share different outpoints with it both confirm.)
    pub fn check(&self, c: &Checked) -> Result<(), Abort> {
        for d in &c.pays {
            if let Some(common) = self.paid.get(d)
                && !common.iter().any(|o| c.spends.contains(o))
            {
                return Err(refused(format!(
                    "transfer {d} was already paid by another transaction"
                )));
            }
        }
        Ok(())
    }

    /// Records what `c` pays: the outpoints every transaction signed for
    /// each intent has in common, narrowed by this one.
    pub fn record(&mut self, c: &Checked) -> std::io::Result<()> {
        for d in &c.pays {
            let next: Vec<String> = match self.paid.get(d) {
                Some(common) => common
                    .iter()
                    .filter(|o| c.spends.contains(o))
                    .cloned()
                    .collect(),
                None => c.spends.clone(),
            };
            if self.paid.get(d) == Some(&next) {
                continue;
            }
            self.lines.append(&PaidLine {
                intent: d.clone(),
                spends: next.clone(),
            })?;
            self.paid.insert(d.clone(), next);
        }
        Ok(())
    }
}

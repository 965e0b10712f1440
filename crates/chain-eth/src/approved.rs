//! The one check between an approved transfer and an Ethereum signature.
//!
//! [`approve`] takes what an approved intent asks for ([`Intended`]), the
//! sending wallet's own address ([`Sender`]), the fee caps and a built
//! [`TxPlan`], and returns an [`Approved`] plan — or says why not. Nothing
//! else can make an `Approved`: its fields are private and it has no other
//! constructor, so a signer that takes one signs only what passed here.
//!
//! ```compile_fail
//! // Outside this crate an approved plan cannot be assembled by hand.
//! fn forge(plan: chain_eth::TxPlan, from: chain_eth::EthAddress) -> chain_eth::Approved {
//!     chain_eth::Approved { plan, from }
//! }
//! ```

use domain::{AssetKind, IntentDigest, Network, TransferIntent, TransferKind, WalletId};

use crate::address::EthAddress;
use crate::calls::erc20_transfer;
use crate::fees::{FeeCaps, FeeError};
use crate::tx::{EcdsaParts, SignedTx, TxError, TxPlan, decode};

/// Gas of a plain ether payment (and of a cancel): no code runs.
pub const PLAIN_GAS: u64 = 21_000;

/// What an approved transfer intent requires of the transaction that pays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intended {
    digest: IntentDigest,
    wallet: WalletId,
    chain_id: u64,
    recipient: EthAddress,
    amount: u128,
    /// The token contract, or `None` for ether.
    token: Option<EthAddress>,
    /// A sweep of a rotated key's funds to its successor's address.
    sweep: bool,
}

impl Intended {
    /// Reads what `intent` asks of an Ethereum transaction.
    pub fn of(intent: &TransferIntent) -> Result<Intended, Refusal> {
        if intent.kind() == TransferKind::Consolidation {
            return Err(Refusal::NotEthereum(
                "a consolidation (Bitcoin outputs only)".into(),
            ));
        }
        let asset = intent.amount().asset();
        let Network::Evm { chain_id } = asset.network() else {
            return Err(Refusal::NotEthereum(asset.network().to_string()));
        };
        let (recipient, _) = EthAddress::parse(intent.destination().as_str())
            .map_err(|e| Refusal::Destination(e.to_string()))?;
        let token = match asset.id().kind() {
            AssetKind::Native => None,
            AssetKind::Erc20(c) => Some(EthAddress::from(*c)),
        };
        if token.is_some() && intent.kind() == TransferKind::GasTopUp {
            return Err(Refusal::TopUpInToken);
        }
        Ok(Intended {
            digest: intent.digest(),
            wallet: intent.wallet(),
            chain_id,
            recipient,
            amount: intent.amount().units(),
            token,
            sweep: intent.kind() == TransferKind::Sweep,
        })
    }

    /// A sweep of a rotated key's funds to its successor.
    pub fn is_sweep(&self) -> bool {
        self.sweep
    }

    pub fn digest(&self) -> IntentDigest {
        self.digest
    }

    pub fn wallet(&self) -> WalletId {
        self.wallet
    }

    pub fn recipient(&self) -> EthAddress {
        self.recipient
    }

    pub fn amount(&self) -> u128 {
        self.amount
    }

    pub fn token(&self) -> Option<EthAddress> {
        self.token
    }
}

/// The address that signs, and the wallet it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    pub address: EthAddress,
    pub wallet: WalletId,
}

/// What a plan is meant to be.
#[derive(Debug, Clone, Copy)]
pub enum Kind<'a> {
    /// The transaction that pays the intent.
    Payment,
    /// The same payment with higher fees, under the original's nonce.
    SpeedUp { original: &'a TxPlan },
    /// Zero ether to the sender itself under the original's nonce: the
    /// payment never happens if the cancel is mined first.
    Cancel { original: &'a TxPlan },
}

/// The kind of an approved plan, without its original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovedKind {
    Payment,
    SpeedUp,
    Cancel,
}

/// Why a plan is not what was approved. Each is a refusal to sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("the intent is for {0}, not an EVM network")]
    NotEthereum(String),
    #[error("the intent's destination: {0}")]
    Destination(String),
    #[error("the intent belongs to wallet {intent}; the sender to wallet {sender}")]
    OtherWallet { intent: WalletId, sender: WalletId },
    #[error("the plan is for chain {plan}; the intent for chain {intent}")]
    OtherChain { plan: u64, intent: u64 },
    #[error("the intent pays the sender itself")]
    PaysSender,
    #[error("a gas top-up pays ether only")]
    TopUpInToken,
    #[error("the plan pays {paid} base units to {to}; {amount} to {recipient} was approved")]
    Pays {
        to: EthAddress,
        paid: u128,
        recipient: EthAddress,
        amount: u128,
    },
    #[error("an ether payment carries calldata")]
    CalldataOnEther,
    #[error("an ether payment uses {0} gas: only plain transfers are sent")]
    GasOnEther(u64),
    #[error("the plan calls {called}, not the token contract {token}")]
    OtherContract {
        called: EthAddress,
        token: EthAddress,
    },
    #[error("a token transfer that also sends {0} wei")]
    EtherWithToken(u128),
    #[error("the calldata is not exactly transfer({recipient}, {amount})")]
    Calldata { recipient: EthAddress, amount: u128 },
    #[error("a cancel that pays something: it must send nothing to the sender itself")]
    CancelPays,
    #[error("a replacement under nonce {plan}; the original has nonce {original}")]
    Nonce { plan: u64, original: u64 },
    #[error("a replacement that does not pay more per gas than the original")]
    NotHigher,
    #[error("a speed-up that changes what the original pays")]
    SpeedUpChanges,
    #[error("fees: {0}")]
    Fee(#[from] FeeError),
    #[error("the signed bytes: {0}")]
    Signed(#[from] TxError),
    #[error("the signed bytes decode to another transaction or sender")]
    SignedDiffers,
}

/// A plan that pays exactly one approved intent (or replaces such a
/// payment), within the fee caps: the only thing an Ethereum key signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    plan: TxPlan,
    from: EthAddress,
    kind: ApprovedKind,
    intent: IntentDigest,
    wallet: WalletId,
    /// The intent's recipient, when the intent is a sweep.
    sweep_to: Option<EthAddress>,
}

/// Checks `plan` against what was approved. See the module documentation.
pub fn approve(
    intended: &Intended,
    sender: &Sender,
    caps: &FeeCaps,
    kind: Kind<'_>,
    plan: TxPlan,
) -> Result<Approved, Refusal> {
    if intended.wallet != sender.wallet {
        return Err(Refusal::OtherWallet {
            intent: intended.wallet,
            sender: sender.wallet,
        });
    }
    if plan.chain_id != intended.chain_id {
        return Err(Refusal::OtherChain {
            plan: plan.chain_id,
            intent: intended.chain_id,
        });
    }
    if intended.recipient == sender.address {
        return Err(Refusal::PaysSender);
    }
    let approved_kind = match kind {
        Kind::Payment => {
            pays_intended(intended, &plan)?;
            ApprovedKind::Payment
        }
        Kind::SpeedUp { original } => {
            pays_intended(intended, &plan)?;
            replaces(original, &plan)?;
            let same = original.to == plan.to
                && original.value == plan.value
                && original.data == plan.data
                && original.gas_limit == plan.gas_limit;
            if !same {
                return Err(Refusal::SpeedUpChanges);
            }
            ApprovedKind::SpeedUp
        }
        Kind::Cancel { original } => {
            if plan.to != sender.address
                || plan.value != 0
                || !plan.data.is_empty()
                || plan.gas_limit != PLAIN_GAS
            {
                return Err(Refusal::CancelPays);
            }
            replaces(original, &plan)?;
            ApprovedKind::Cancel
        }
    };
    caps.check(&plan)?;
    Ok(Approved {
        plan,
        from: sender.address,
        kind: approved_kind,
        intent: intended.digest,
        wallet: intended.wallet,
        sweep_to: intended.sweep.then_some(intended.recipient),
    })
}

/// The plan pays the intent: its recipient, its amount, its asset, and
/// nothing else.
fn pays_intended(intended: &Intended, plan: &TxPlan) -> Result<(), Refusal> {
    let (recipient, amount) = (intended.recipient, intended.amount);
    match intended.token {
        None => {
            if !plan.data.is_empty() {
                return Err(Refusal::CalldataOnEther);
            }
            if plan.to != recipient || plan.value != amount {
                return Err(Refusal::Pays {
                    to: plan.to,
                    paid: plan.value,
                    recipient,
                    amount,
                });
            }
            if plan.gas_limit != PLAIN_GAS {
                return Err(Refusal::GasOnEther(plan.gas_limit));
            }
        }
        Some(token) => {
            if plan.to != token {
                return Err(Refusal::OtherContract {
                    called: plan.to,
                    token,
                });
            }
            if plan.value != 0 {
                return Err(Refusal::EtherWithToken(plan.value));
            }
            // Byte for byte: no trailing bytes, no dirty padding.
            if plan.data != erc20_transfer(recipient, amount) {
                return Err(Refusal::Calldata { recipient, amount });
            }
        }
    }
    Ok(())
}

fn replaces(original: &TxPlan, plan: &TxPlan) -> Result<(), Refusal> {
    if original.chain_id != plan.chain_id {
        return Err(Refusal::OtherChain {
            plan: plan.chain_id,
            intent: original.chain_id,
        });
    }
    if original.nonce != plan.nonce {
        return Err(Refusal::Nonce {
            plan: plan.nonce,
            original: original.nonce,
        });
    }
    if plan.fees.max_per_gas() <= original.fees.max_per_gas() {
        return Err(Refusal::NotHigher);
    }
    Ok(())
}

impl Approved {
    pub fn plan(&self) -> &TxPlan {
        &self.plan
    }

    /// The address whose key signs.
    pub fn from(&self) -> EthAddress {
        self.from
    }

    pub fn kind(&self) -> ApprovedKind {
        self.kind
    }

    /// The digest of the intent this plan pays (or replaces the payment of).
    pub fn intent(&self) -> IntentDigest {
        self.intent
    }

    pub fn wallet(&self) -> WalletId {
        self.wallet
    }

    /// Where the plan sweeps a rotated key's funds (the intent's recipient),
    /// when it pays a sweep or replaces (speeds up, cancels) its payment: a
    /// key no longer active signs only plans whose sweep goes to its
    /// successor.
    pub fn sweep_to(&self) -> Option<EthAddress> {
        self.sweep_to
    }

    /// What the key signs, derived from the plan here and nowhere else.
    pub fn signing_hash(&self) -> [u8; 32] {
        self.plan.signing_hash()
    }

    /// The bytes whose keccak-256 is the signing hash, for signers that hash
    /// for themselves.
    pub fn signing_payload(&self) -> Vec<u8> {
        self.plan.signing_payload()
    }

    /// Attaches a signature and accepts the result only if its bytes decode
    /// back to this very plan, signed by the sender.
    pub fn finish(&self, sig: EcdsaParts) -> Result<SignedTx, Refusal> {
        let signed = self.plan.into_signed(sig, self.from)?;
        let decoded = decode(&signed.raw)?;
        if decoded.plan != self.plan || decoded.from != self.from || decoded.hash != signed.hash {
            return Err(Refusal::SignedDiffers);
        }
        Ok(signed)
    }
}

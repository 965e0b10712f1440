//! The one check between approved transfers and a Bitcoin signature.
//!
//! [`approve`] takes what the approved intents ask for ([`Intended`]),
//! the wallet, the outputs reserved for the send, the wallet's own scripts,
//! the fee caps and the unsigned transaction, and returns an [`Approved`]
//! plan — or says why not. Nothing else can make an `Approved`: its fields
//! are private and it has no other constructor, so whatever signs one signs
//! only what passed here.
//!
//! ```compile_fail
//! // Outside this crate an approved plan cannot be assembled by hand.
//! fn forge(plan: chain_btc::BtcPlan) -> chain_btc::Approved {
//!     chain_btc::Approved { plan }
//! }
//! ```

use bitcoin::psbt::Psbt;
use bitcoin::{OutPoint, ScriptBuf, Transaction, TxOut};
use domain::{
    AssetKind, BitcoinNetwork, IntentDigest, Network, TransferIntent, TransferKind, WalletId,
};

use crate::address::BtcAddress;
use crate::psbt::{BtcError, BtcPlan, Payout, SigningTask, Utxo, accept_signed, signing_tasks};
use crate::select::{FeeCaps, FeeError};

/// The most payouts one transaction carries (the signer nodes' limit too).
pub const MAX_PAYOUTS: usize = 256;

/// What one approved intent requires: one output paying its address its
/// amount, from its wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intended {
    digest: IntentDigest,
    wallet: WalletId,
    payout: Payout,
    /// A sweep of a rotated key's outputs: where to (the intent's address).
    sweep_to: Option<String>,
    /// A consolidation: small outputs of the wallet into one of its own.
    consolidation: bool,
}

impl Intended {
    /// Reads what `intent` asks of a transaction on `network`.
    pub fn of(intent: &TransferIntent, network: BitcoinNetwork) -> Result<Intended, Refusal> {
        let asset = intent.amount().asset();
        if intent.kind() == TransferKind::GasTopUp {
            return Err(Refusal::NotThisNetwork(
                "a gas top-up (Ethereum deposit addresses only)".into(),
            ));
        }
        if asset.network() != Network::Bitcoin(network) || *asset.id().kind() != AssetKind::Native {
            return Err(Refusal::NotThisNetwork(asset.id().to_string()));
        }
        let to = BtcAddress::parse(intent.destination().as_str(), network)
            .map_err(|e| Refusal::Destination(e.to_string()))?;
        let value_sat = u64::try_from(intent.amount().units())
            .map_err(|_| Refusal::Amount(intent.amount().units()))?;
        Ok(Intended {
            digest: intent.digest(),
            wallet: intent.wallet(),
            payout: Payout {
                script_pubkey: to.script_pubkey(),
                value_sat,
            },
            sweep_to: (intent.kind() == TransferKind::Sweep).then(|| to.to_string()),
            consolidation: intent.kind() == TransferKind::Consolidation,
        })
    }

    /// A consolidation of the wallet's small outputs into its own.
    pub fn is_consolidation(&self) -> bool {
        self.consolidation
    }

    /// A sweep of a rotated key's outputs to its successor.
    pub fn is_sweep(&self) -> bool {
        self.sweep_to.is_some()
    }

    /// Where a sweep goes (the intent's address).
    pub fn sweep_to(&self) -> Option<&str> {
        self.sweep_to.as_deref()
    }

    pub fn digest(&self) -> IntentDigest {
        self.digest
    }

    pub fn wallet(&self) -> WalletId {
        self.wallet
    }

    pub fn payout(&self) -> &Payout {
        &self.payout
    }
}

/// The wallet that pays, and what it may spend and take change to.
#[derive(Debug, Clone, Copy)]
pub struct Paying<'a> {
    pub wallet: WalletId,
    /// The outputs reserved for this send: the only ones it may spend.
    pub reserved: &'a [Utxo],
    /// Every script of the wallet: its inputs' and its change's.
    pub own: &'a [ScriptBuf],
}

/// Why a transaction is not what was approved. Each is a refusal to sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("the intent is for {0}, not this network's bitcoin")]
    NotThisNetwork(String),
    #[error("the intent's destination: {0}")]
    Destination(String),
    #[error("an amount of {0} base units does not fit a Bitcoin output")]
    Amount(u128),
    #[error("no approved payouts")]
    NoPayouts,
    #[error("{0} payouts in one transaction: at most {MAX_PAYOUTS}")]
    TooManyPayouts(usize),
    #[error("an intent of wallet {intent} in a send of wallet {wallet}")]
    OtherWallet { intent: WalletId, wallet: WalletId },
    #[error("input {0} is not an output reserved for this send")]
    ForeignInput(OutPoint),
    #[error("input {0} is spent twice")]
    DuplicateInput(OutPoint),
    #[error("input {0} spends an output outside the wallet")]
    InputOutsideWallet(OutPoint),
    #[error("{outputs} outputs for {payouts} approved payouts")]
    Outputs { outputs: usize, payouts: usize },
    #[error("the change output pays a script outside the wallet")]
    ForeignChange,
    #[error("the approved payouts make no transaction: {0}")]
    Unbuildable(BtcError),
    #[error("the transaction is not the approved payouts (order, amounts, scripts or fields)")]
    NotThePayouts,
    #[error("fees: {0}")]
    Fee(#[from] FeeError),
    #[error("a sweep goes alone, and all of it (its change too) to its destination")]
    SweepNotAlone,
    #[error("a consolidation goes alone, to the wallet's own script")]
    ConsolidationElsewhere,
}

/// A transaction that pays exactly the approved payouts, spends only
/// outputs reserved for it, takes change only to the wallet, within the fee
/// caps: the only thing a Bitcoin key signs.
#[derive(Debug, Clone, PartialEq)]
pub struct Approved {
    plan: BtcPlan,
    psbt: Psbt,
    intents: Vec<IntentDigest>,
    wallet: WalletId,
    sweep_to: Option<String>,
}

/// Checks `unsigned` against what was approved. See the module documentation.
pub fn approve(
    intended: &[Intended],
    paying: Paying<'_>,
    caps: &FeeCaps,
    unsigned: &Transaction,
) -> Result<Approved, Refusal> {
    if intended.is_empty() {
        return Err(Refusal::NoPayouts);
    }
    if intended.len() > MAX_PAYOUTS {
        return Err(Refusal::TooManyPayouts(intended.len()));
    }
    if let Some(i) = intended.iter().find(|i| i.wallet != paying.wallet) {
        return Err(Refusal::OtherWallet {
            intent: i.wallet,
            wallet: paying.wallet,
        });
    }
    let mut inputs: Vec<Utxo> = Vec::with_capacity(unsigned.input.len());
    for i in &unsigned.input {
        let o = i.previous_output;
        if inputs.iter().any(|u| u.outpoint == o) {
            return Err(Refusal::DuplicateInput(o));
        }
        let u = paying
            .reserved
            .iter()
            .find(|u| u.outpoint == o)
            .ok_or(Refusal::ForeignInput(o))?;
        let script = u.spend.script_pubkey().map_err(Refusal::Unbuildable)?;
        if !paying.own.contains(&script) {
            return Err(Refusal::InputOutsideWallet(o));
        }
        inputs.push(u.clone());
    }
    let payouts: Vec<Payout> = intended.iter().map(|i| i.payout.clone()).collect();
    let outs = &unsigned.output;
    let change = match outs.len().checked_sub(payouts.len()) {
        Some(0) => None,
        Some(1) => {
            let last: &TxOut = outs.last().ok_or(Refusal::NotThePayouts)?;
            if !paying.own.contains(&last.script_pubkey) {
                return Err(Refusal::ForeignChange);
            }
            Some(Payout {
                script_pubkey: last.script_pubkey.clone(),
                value_sat: last.value.to_sat(),
            })
        }
        _ => {
            return Err(Refusal::Outputs {
                outputs: outs.len(),
                payouts: payouts.len(),
            });
        }
    };
    // A sweep is a transaction of its own, and whatever its fee leaves
    // goes to its destination too: a rotated key signs nothing else.
    let sweep_to = match intended {
        [one] if one.is_sweep() => {
            if change
                .as_ref()
                .is_some_and(|c| c.script_pubkey != one.payout.script_pubkey)
            {
                return Err(Refusal::SweepNotAlone);
            }
            one.sweep_to.clone()
        }
        _ if intended.iter().any(Intended::is_sweep) => return Err(Refusal::SweepNotAlone),
        _ => None,
    };
    // A consolidation pays the wallet itself, alone in its transaction.
    if intended.iter().any(Intended::is_consolidation)
        && (intended.len() > 1 || !paying.own.contains(&intended[0].payout.script_pubkey))
    {
        return Err(Refusal::ConsolidationElsewhere);
    }
    let rbf = unsigned.input.first().is_some_and(|i| i.sequence.is_rbf());
    let plan = BtcPlan {
        inputs,
        payouts,
        change,
        rbf,
    };
    let psbt = plan.psbt().map_err(Refusal::Unbuildable)?;
    // Field by field: order, amounts, scripts, version, lock time, sequences.
    if psbt.unsigned_tx != *unsigned {
        return Err(Refusal::NotThePayouts);
    }
    caps.check(&plan)?;
    Ok(Approved {
        plan,
        psbt,
        intents: intended.iter().map(|i| i.digest).collect(),
        wallet: paying.wallet,
        sweep_to,
    })
}

impl Approved {
    pub fn plan(&self) -> &BtcPlan {
        &self.plan
    }

    /// The unsigned PSBT, built from the approved plan here.
    pub fn psbt(&self) -> &Psbt {
        &self.psbt
    }

    /// The digests of the intents it pays, in output order.
    pub fn intents(&self) -> &[IntentDigest] {
        &self.intents
    }

    pub fn wallet(&self) -> WalletId {
        self.wallet
    }

    /// Where a sweep goes (its address), when this transaction is one: a
    /// key no longer in force signs only a sweep to its successor.
    pub fn sweep_to(&self) -> Option<&str> {
        self.sweep_to.as_deref()
    }

    /// The signatures it needs, derived from the plan here.
    pub fn signing_tasks(&self) -> Result<Vec<SigningTask>, BtcError> {
        let spends: Vec<_> = self.plan.inputs.iter().map(|u| u.spend.clone()).collect();
        signing_tasks(&self.psbt, &spends)
    }

    /// Accepts a signed PSBT only if it is this transaction, finalised and
    /// verified input by input by Bitcoin Core's interpreter.
    pub fn accept(&self, signed: Psbt) -> Result<Transaction, BtcError> {
        accept_signed(&self.plan, signed)
    }
}

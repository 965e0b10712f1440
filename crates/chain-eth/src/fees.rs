//! Fee estimates by urgency, replacement bumps and the caps that stop a
//! fee drain before anything is signed. All in wei, all checked.

use crate::tx::{Fees, TxPlan};

/// How soon a transaction should be mined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    Slow,
    Normal,
    Fast,
}

impl Urgency {
    /// The reward percentile asked of `eth_feeHistory` for this urgency.
    pub const PERCENTILES: [f64; 3] = [10.0, 50.0, 90.0];

    fn index(self) -> usize {
        match self {
            Urgency::Slow => 0,
            Urgency::Normal => 1,
            Urgency::Fast => 2,
        }
    }
}

/// What `eth_feeHistory` answered, reduced to integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeHistory {
    /// Base fee of each block asked about and, last, of the next block.
    pub base_fee_per_gas: Vec<u128>,
    /// Per block, the priority fee paid at the 10th, 50th and 90th percentile.
    pub reward: Vec<[u128; 3]>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    #[error("the node's fee history is empty")]
    NoHistory,
    #[error("fee arithmetic overflowed")]
    Overflow,
    #[error("max fee per gas {fee} wei is over the cap of {cap} wei")]
    PerGasOverCap { fee: u128, cap: u128 },
    #[error("the transaction may cost up to {fee} wei in fees, over the cap of {cap} wei")]
    TotalOverCap { fee: u128, cap: u128 },
    #[error("a replacement must pay more than the transaction it replaces")]
    NotHigher,
}

/// Estimates EIP-1559 fees: the priority fee is the median over recent
/// blocks of the urgency's percentile (at least `min_priority`); the max
/// fee covers the next block's base fee doubling (normal, fast) or rising
/// one step of 12.5 % (slow), plus the priority fee.
pub fn estimate(
    history: &FeeHistory,
    urgency: Urgency,
    min_priority: u128,
) -> Result<Fees, FeeError> {
    let next_base = *history.base_fee_per_gas.last().ok_or(FeeError::NoHistory)?;
    let mut tips: Vec<u128> = history.reward.iter().map(|r| r[urgency.index()]).collect();
    tips.sort_unstable();
    let tip = tips
        .get(tips.len() / 2)
        .copied()
        .unwrap_or(0)
        .max(min_priority);
    let base_allowance = match urgency {
        Urgency::Slow => next_base
            .checked_add(next_base / 8)
            .ok_or(FeeError::Overflow)?,
        Urgency::Normal | Urgency::Fast => next_base.checked_mul(2).ok_or(FeeError::Overflow)?,
    };
    Ok(Fees::Eip1559 {
        max_fee_per_gas: base_allowance.checked_add(tip).ok_or(FeeError::Overflow)?,
        max_priority_fee_per_gas: tip,
    })
}

/// Fees for a transaction that replaces one already sent with the same
/// nonce: every field at least 12.5 % above the old one (nodes demand
/// 10 %), and no lower than the current estimate.
pub fn bump(old: Fees, current: Fees) -> Result<Fees, FeeError> {
    let up = |v: u128| -> Result<u128, FeeError> {
        v.checked_add(v.div_ceil(8).max(1))
            .ok_or(FeeError::Overflow)
    };
    match (old, current) {
        (
            Fees::Eip1559 {
                max_fee_per_gas: of,
                max_priority_fee_per_gas: op,
            },
            Fees::Eip1559 {
                max_fee_per_gas: cf,
                max_priority_fee_per_gas: cp,
            },
        ) => {
            let priority = up(op)?.max(cp);
            let max_fee = up(of)?.max(cf).max(priority);
            Ok(Fees::Eip1559 {
                max_fee_per_gas: max_fee,
                max_priority_fee_per_gas: priority,
            })
        }
        (Fees::Legacy { gas_price: o }, c) => Ok(Fees::Legacy {
            gas_price: up(o)?.max(c.max_per_gas()),
        }),
        (Fees::Eip1559 { .. }, Fees::Legacy { .. }) => Err(FeeError::NotHigher),
    }
}

/// The operators' ceilings on what one transaction may spend on fees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeCaps {
    pub max_fee_per_gas: u128,
    pub max_total_fee: u128,
}

impl FeeCaps {
    /// Refuses a plan whose fees could exceed either cap.
    pub fn check(&self, plan: &TxPlan) -> Result<(), FeeError> {
        let per_gas = plan.fees.max_per_gas();
        if per_gas > self.max_fee_per_gas {
            return Err(FeeError::PerGasOverCap {
                fee: per_gas,
                cap: self.max_fee_per_gas,
            });
        }
        let total = plan.max_fee().ok_or(FeeError::Overflow)?;
        if total > self.max_total_fee {
            return Err(FeeError::TotalOverCap {
                fee: total,
                cap: self.max_total_fee,
            });
        }
        Ok(())
    }
}

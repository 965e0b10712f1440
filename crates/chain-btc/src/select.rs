//! Coin selection and fees: branch-and-bound for a change-less match, a
//! largest-first fallback with change (never dust), consolidation, the
//! fee caps (like Bitcoin Core's `maxfeerate`), BIP-125 replacement and
//! CPFP. Sizes are the largest the signed transaction can have, so a fee
//! is never short.

use bitcoin::ScriptBuf;

use crate::psbt::{BtcError, BtcPlan, Payout, Spend, Utxo};

/// Ceilings on what one transaction may pay in fees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeCaps {
    /// Sat per virtual byte.
    pub max_fee_rate: u64,
    /// Sat in all.
    pub max_fee: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeeError {
    #[error("fee rate {rate} sat/vB is over the cap of {cap}")]
    RateOverCap { rate: u64, cap: u64 },
    #[error("fee {fee} sat is over the cap of {cap}")]
    FeeOverCap { fee: u64, cap: u64 },
    #[error(
        "a replacement must pay at least {needed} sat (BIP-125), the change allows {available}"
    )]
    CannotBump { needed: u64, available: u64 },
    #[error("the fee rate must be at least 1 sat/vB")]
    RateTooLow,
    #[error(transparent)]
    Plan(#[from] BtcError),
}

impl FeeCaps {
    /// Refuses a plan whose fee or fee rate is over a cap.
    pub fn check(&self, plan: &BtcPlan) -> Result<(), FeeError> {
        let fee = plan.fee_sat()?;
        let vsize = plan.max_vsize()?.max(1);
        // The rate at the smallest the transaction can be is at most this.
        let rate = fee / vsize;
        if rate > self.max_fee_rate {
            return Err(FeeError::RateOverCap {
                rate,
                cap: self.max_fee_rate,
            });
        }
        if fee > self.max_fee {
            return Err(FeeError::FeeOverCap {
                fee,
                cap: self.max_fee,
            });
        }
        Ok(())
    }
}

/// The fee of `weight` weight units at `rate` sat/vB, rounded up.
pub fn fee_for_weight(weight: u64, rate: u64) -> Result<u64, BtcError> {
    Ok(weight
        .checked_mul(rate)
        .ok_or(BtcError::Overflow)?
        .div_ceil(4))
}

/// The fee a plan owes at `rate`: on its largest possible weight.
pub fn fee_owed(plan: &BtcPlan, rate: u64) -> Result<u64, BtcError> {
    fee_for_weight(plan.max_weight()?.to_wu(), rate)
}

/// Weight units an input of this kind adds, at most.
fn input_weight(s: &Spend) -> Result<u64, BtcError> {
    // outpoint 36, script length 1, sequence 4 = 41 bytes, ×4 weight
    Ok(41 * 4 + s.max_witness_weight()?.to_wu())
}

/// Picks inputs from `candidates` to pay `payouts` at `fee_rate`, with
/// change to `change` if any is left above dust.
pub fn select(
    candidates: &[Utxo],
    payouts: &[Payout],
    change: &ScriptBuf,
    fee_rate: u64,
    rbf: bool,
) -> Result<BtcPlan, FeeError> {
    if fee_rate == 0 {
        return Err(FeeError::RateTooLow);
    }
    for (index, p) in payouts.iter().enumerate() {
        if p.value_sat < p.script_pubkey.minimal_non_dust().to_sat() {
            return Err(BtcError::Dust {
                index,
                value: p.value_sat,
            }
            .into());
        }
    }
    if payouts.is_empty() {
        return Err(BtcError::Empty.into());
    }
    let plan_of = |inputs: Vec<Utxo>, change_sat: Option<u64>| BtcPlan {
        inputs,
        payouts: payouts.to_vec(),
        change: change_sat.map(|v| Payout {
            script_pubkey: change.clone(),
            value_sat: v,
        }),
        rbf,
    };
    let paying = payouts
        .iter()
        .try_fold(0u64, |a, p| a.checked_add(p.value_sat))
        .ok_or(BtcError::Overflow)?;
    // Everything in quarter-satoshis (sat/vB × weight units), so that sums
    // of parts are exact and the rounding happens once, on the whole.
    let q = |sat: u64| sat.checked_mul(4).ok_or(BtcError::Overflow);
    let base_wu = plan_of(Vec::new(), None).max_weight()?.to_wu();
    let change_wu = plan_of(Vec::new(), Some(0)).max_weight()?.to_wu() - base_wu;
    let change_cost = change_wu.checked_mul(fee_rate).ok_or(BtcError::Overflow)?;
    let dust = change.minimal_non_dust().to_sat();
    // Effective values: what each input brings after paying for itself.
    let mut pool: Vec<(u64, &Utxo)> = Vec::new();
    for u in candidates {
        let cost = input_weight(&u.spend)?
            .checked_mul(fee_rate)
            .ok_or(BtcError::Overflow)?;
        let value = q(u.value_sat)?;
        if value > cost {
            pool.push((value - cost, u));
        }
    }
    pool.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.outpoint.cmp(&b.1.outpoint)));
    let target = q(paying)?
        .checked_add(base_wu.checked_mul(fee_rate).ok_or(BtcError::Overflow)?)
        .ok_or(BtcError::Overflow)?;

    // Branch and bound: a set whose effective value lands in
    // [target, target + cost of change] needs no change output.
    if let Some(set) = bnb(&pool, target, change_cost) {
        let plan = plan_of(set.into_iter().map(|i| pool[i].1.clone()).collect(), None);
        return finish(plan, fee_rate);
    }
    // Largest first, with change.
    let need = target.checked_add(change_cost).ok_or(BtcError::Overflow)?;
    let mut chosen = Vec::new();
    let mut eff = 0u64;
    for (e, u) in &pool {
        chosen.push((*u).clone());
        eff = eff.checked_add(*e).ok_or(BtcError::Overflow)?;
        if eff >= need {
            break;
        }
    }
    if eff < target {
        let have: u64 = candidates.iter().map(|u| u.value_sat).sum();
        return Err(BtcError::InsufficientFunds {
            inputs: have,
            needed: paying,
        }
        .into());
    }
    let mut plan = plan_of(chosen, Some(0));
    let fee = fee_owed(&plan, fee_rate)?;
    let left = plan
        .input_total()?
        .checked_sub(paying)
        .and_then(|v| v.checked_sub(fee))
        .unwrap_or(0);
    if left >= dust {
        plan.change = Some(Payout {
            script_pubkey: change.clone(),
            value_sat: left,
        });
        Ok(plan)
    } else {
        // Dust change is given to the miners instead.
        plan.change = None;
        finish(plan, fee_rate)
    }
}

/// Checks that a change-less plan pays at least its fee.
fn finish(plan: BtcPlan, fee_rate: u64) -> Result<BtcPlan, FeeError> {
    let needed = fee_owed(&plan, fee_rate)?;
    let fee = plan.fee_sat()?;
    if fee < needed {
        return Err(BtcError::InsufficientFunds {
            inputs: plan.input_total()?,
            needed: plan.output_total()? + needed,
        }
        .into());
    }
    Ok(plan)
}

/// Depth-first search over inputs sorted by effective value (descending),
/// bounded to 100 000 steps; the match that wastes least wins.
fn bnb(pool: &[(u64, &Utxo)], target: u64, slack: u64) -> Option<Vec<usize>> {
    struct Search<'a, 'b> {
        pool: &'a [(u64, &'b Utxo)],
        remaining: Vec<u64>,
        target: u64,
        slack: u64,
        stack: Vec<usize>,
        best: Option<(u64, Vec<usize>)>,
        steps: u32,
    }
    impl Search<'_, '_> {
        fn go(&mut self, i: usize, sum: u64) {
            self.steps += 1;
            if self.steps > 100_000 || sum > self.target + self.slack {
                return;
            }
            if sum >= self.target {
                let waste = sum - self.target;
                if self.best.as_ref().is_none_or(|(w, _)| waste < *w) {
                    self.best = Some((waste, self.stack.clone()));
                }
                return;
            }
            if i == self.pool.len() || sum + self.remaining[i] < self.target {
                return;
            }
            self.stack.push(i);
            self.go(i + 1, sum + self.pool[i].0);
            self.stack.pop();
            self.go(i + 1, sum);
        }
    }
    let total: u64 = pool.iter().map(|p| p.0).sum();
    if total < target {
        return None;
    }
    let mut remaining = vec![0u64; pool.len() + 1];
    for i in (0..pool.len()).rev() {
        remaining[i] = remaining[i + 1] + pool[i].0;
    }
    let mut s = Search {
        pool,
        remaining,
        target,
        slack,
        stack: Vec::new(),
        best: None,
        steps: 0,
    };
    s.go(0, 0);
    s.best.map(|(_, set)| set)
}

/// Spends many small outputs into one, when fees are low.
pub fn consolidate(
    candidates: &[Utxo],
    to: &ScriptBuf,
    fee_rate: u64,
    max_inputs: usize,
) -> Result<BtcPlan, FeeError> {
    let mut small: Vec<&Utxo> = candidates.iter().collect();
    small.sort_by_key(|u| u.value_sat);
    let mut plan = BtcPlan {
        inputs: Vec::new(),
        payouts: vec![Payout {
            script_pubkey: to.clone(),
            value_sat: 0,
        }],
        change: None,
        rbf: true,
    };
    for u in small.into_iter().take(max_inputs) {
        // Only inputs worth more than they cost to spend.
        if u.value_sat > fee_for_weight(input_weight(&u.spend)?, fee_rate)? {
            plan.inputs.push(u.clone());
        }
    }
    let fee = fee_owed(&plan, fee_rate)?;
    let total = plan.input_total()?;
    plan.payouts[0].value_sat = total.checked_sub(fee).ok_or(BtcError::InsufficientFunds {
        inputs: total,
        needed: fee,
    })?;
    plan.check()?;
    Ok(plan)
}

/// A BIP-125 replacement of `old` at `new_rate`: same inputs and payouts,
/// the extra fee taken from the change. Pays at least the old fee plus the
/// minimum relay fee (1 sat/vB) for its own size, and a higher rate.
pub fn bump(old: &BtcPlan, new_rate: u64) -> Result<BtcPlan, FeeError> {
    let old_fee = old.fee_sat()?;
    let vsize = old.max_vsize()?;
    let needed = fee_owed(old, new_rate)?.max(old_fee + vsize);
    let change = old.change.as_ref().map_or(0, |c| c.value_sat);
    let extra = needed.saturating_sub(old_fee);
    let mut new = old.clone();
    new.rbf = true;
    match &mut new.change {
        Some(c) if change >= extra + c.script_pubkey.minimal_non_dust().to_sat() => {
            c.value_sat = change - extra;
        }
        _ => {
            return Err(FeeError::CannotBump {
                needed,
                available: old_fee + change,
            });
        }
    }
    Ok(new)
}

/// Child-pays-for-parent: spends `ours` (an output of a stuck parent) to
/// `to`, paying enough that parent and child together reach `rate`.
pub fn cpfp(
    ours: Utxo,
    parent_vsize: u64,
    parent_fee: u64,
    to: &ScriptBuf,
    rate: u64,
) -> Result<BtcPlan, FeeError> {
    let mut child = BtcPlan {
        inputs: vec![ours],
        payouts: vec![Payout {
            script_pubkey: to.clone(),
            value_sat: 0,
        }],
        change: None,
        rbf: true,
    };
    let package = fee_for_weight((parent_vsize + child.max_vsize()?) * 4, rate)?;
    let fee = package.saturating_sub(parent_fee).max(child.max_vsize()?);
    let value = child.input_total()?;
    child.payouts[0].value_sat = value.checked_sub(fee).ok_or(BtcError::InsufficientFunds {
        inputs: value,
        needed: fee,
    })?;
    child.check()?;
    Ok(child)
}

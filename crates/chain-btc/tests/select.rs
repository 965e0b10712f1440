//! Coin selection, fee caps, replacement and CPFP.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, ScriptBuf, Txid};
use chain_btc::*;

fn key(n: u8) -> [u8; 33] {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[n.max(1); 32]).unwrap();
    bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize()
}

fn utxo(n: u32, sat: u64) -> Utxo {
    Utxo {
        outpoint: OutPoint {
            txid: Txid::from_byte_array([7; 32]),
            vout: n,
        },
        value_sat: sat,
        spend: Spend::P2wpkh { pubkey: key(1) },
    }
}

fn pay(sat: u64) -> Payout {
    Payout {
        script_pubkey: Spend::P2wpkh { pubkey: key(9) }.script_pubkey().unwrap(),
        value_sat: sat,
    }
}

fn change() -> ScriptBuf {
    Spend::P2wpkh { pubkey: key(2) }.script_pubkey().unwrap()
}

#[test]
fn an_exact_match_needs_no_change() {
    // One input + one output at 10 sat/vB: 10.5 + 68.25 + 31 → at most 110 vB.
    let rate = 10;
    let probe = BtcPlan {
        inputs: vec![utxo(0, 0)],
        payouts: vec![pay(50_000)],
        change: None,
        rbf: true,
    };
    let fee = fee_owed(&probe, rate).unwrap();
    let exact = utxo(1, 50_000 + fee);
    let plan = select(
        &[utxo(2, 200_000), exact.clone(), utxo(3, 7_000)],
        &[pay(50_000)],
        &change(),
        rate,
        true,
    )
    .unwrap();
    assert_eq!(plan.inputs, vec![exact]);
    assert!(plan.change.is_none());
    assert_eq!(plan.fee_sat().unwrap(), fee);
}

#[test]
fn otherwise_change_comes_back_and_is_never_dust() {
    let rate = 5;
    let pool = [utxo(0, 30_000), utxo(1, 80_000), utxo(2, 1_000)];
    let plan = select(&pool, &[pay(90_000)], &change(), rate, true).unwrap();
    plan.check().unwrap();
    let fee = plan.fee_sat().unwrap();
    assert_eq!(
        fee,
        plan.max_vsize().unwrap() * rate,
        "the fee is exactly rate × largest size"
    );
    let c = plan.change.as_ref().unwrap();
    assert!(c.value_sat >= 294);
    // Change that would be dust goes to the miners.
    let total = 80_000 + 30_000;
    let almost_all = total - fee_owed(&plan, rate).unwrap() - 100;
    let plan = select(&pool[..2], &[pay(almost_all)], &change(), rate, true).unwrap();
    assert!(plan.change.is_none());
    assert!(plan.fee_sat().unwrap() >= fee_owed(&plan, rate).unwrap());
    // Not enough.
    assert!(matches!(
        select(&pool, &[pay(200_000)], &change(), rate, true),
        Err(FeeError::Plan(BtcError::InsufficientFunds { .. }))
    ));
    // Inputs worth less than their own fee are left alone.
    let plan = select(
        &[utxo(0, 100_000), utxo(1, 300)],
        &[pay(10_000)],
        &change(),
        10,
        true,
    )
    .unwrap();
    assert_eq!(plan.inputs.len(), 1);
    assert_eq!(
        select(&pool, &[pay(1_000)], &change(), 0, true),
        Err(FeeError::RateTooLow)
    );
}

#[test]
fn caps_refuse_fee_drains() {
    let caps = FeeCaps {
        max_fee_rate: 100,
        max_fee: 50_000,
    };
    let plan = select(&[utxo(0, 1_000_000)], &[pay(10_000)], &change(), 20, true).unwrap();
    caps.check(&plan).unwrap();
    let greedy = select(&[utxo(0, 1_000_000)], &[pay(10_000)], &change(), 300, true).unwrap();
    assert!(matches!(
        caps.check(&greedy),
        Err(FeeError::RateOverCap { .. })
    ));
    let many: Vec<Utxo> = (0..200).map(|i| utxo(i, 10_000)).collect();
    let big = select(&many, &[pay(500_000)], &change(), 90, true).unwrap();
    assert!(matches!(caps.check(&big), Err(FeeError::FeeOverCap { .. })));
    // A change output that swallowed the fee is a plan with a huge fee: refused.
    let mut drained = plan.clone();
    drained.change.as_mut().unwrap().value_sat = 1_000;
    assert!(caps.check(&drained).is_err());
}

#[test]
fn replacement_and_cpfp() {
    let plan = select(&[utxo(0, 100_000)], &[pay(40_000)], &change(), 2, true).unwrap();
    let old_fee = plan.fee_sat().unwrap();
    let vsize = plan.max_vsize().unwrap();
    let new = bump(&plan, 10).unwrap();
    assert_eq!(new.inputs, plan.inputs);
    assert_eq!(new.payouts, plan.payouts);
    let new_fee = new.fee_sat().unwrap();
    assert!(
        new_fee >= old_fee + vsize,
        "BIP-125 rule 4: pays for its own relay"
    );
    assert!(new_fee >= fee_owed(&new, 10).unwrap());
    // No change to take the fee from: refused.
    let exact = BtcPlan {
        change: None,
        ..plan.clone()
    };
    assert!(matches!(bump(&exact, 10), Err(FeeError::CannotBump { .. })));

    // A stuck parent of 200 vB paying 200 sat; our output in it is 20 000 sat.
    let child = cpfp(utxo(5, 20_000), 200, 200, &change(), 20).unwrap();
    let package_fee = 200 + child.fee_sat().unwrap();
    let package_vsize = 200 + child.max_vsize().unwrap();
    assert!(package_fee >= package_vsize * 20);
}

#[test]
fn small_outputs_consolidate_into_one() {
    let many: Vec<Utxo> = (0..30).map(|i| utxo(i, 2_000 + u64::from(i))).collect();
    let plan = consolidate(&many, &change(), 1, 20).unwrap();
    assert_eq!(plan.inputs.len(), 20);
    assert_eq!(plan.payouts.len(), 1);
    assert_eq!(plan.fee_sat().unwrap(), fee_owed(&plan, 1).unwrap());
}

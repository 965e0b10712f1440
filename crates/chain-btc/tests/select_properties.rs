//! Properties of coin selection over random wallets and payouts: no
//! output spent twice or from outside the candidates, change never dust,
//! the fee never short of what the largest transaction owes and never more
//! than a change output would have cost plus dust, and a wallet that can
//! pay is never refused.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, ScriptBuf, Txid};
use chain_btc::*;
use proptest::prelude::*;

fn key(n: u8) -> [u8; 33] {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[n.max(1); 32]).unwrap();
    bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize()
}

/// The kinds of input a wallet spends.
fn spend(kind: u8) -> Spend {
    match kind % 3 {
        0 => Spend::P2wpkh { pubkey: key(1) },
        1 => Spend::P2tr {
            internal_key: key(3)[1..].try_into().unwrap(),
        },
        _ => Spend::P2wshMulti {
            threshold: 2,
            pubkeys: vec![key(4), key(5), key(6)],
        },
    }
}

fn change() -> ScriptBuf {
    Spend::P2wpkh { pubkey: key(2) }.script_pubkey().unwrap()
}

prop_compose! {
    fn wallet()(coins in prop::collection::vec((1u64..50_000_000, any::<u8>(), any::<bool>()), 0..24))
        -> Vec<Utxo> {
        coins
            .into_iter()
            .enumerate()
            .map(|(i, (sat, kind, other_tx))| Utxo {
                outpoint: OutPoint {
                    txid: Txid::from_byte_array([u8::from(other_tx) + 7; 32]),
                    vout: u32::try_from(i).unwrap(),
                },
                value_sat: sat,
                spend: spend(kind),
            })
            .collect()
    }
}

prop_compose! {
    fn payouts()(values in prop::collection::vec((330u64..20_000_000, any::<u8>()), 1..5))
        -> Vec<Payout> {
        values
            .into_iter()
            .map(|(sat, to)| Payout {
                script_pubkey: Spend::P2tr {
                    internal_key: key(to % 200 + 10)[1..].try_into().unwrap(),
                }
                .script_pubkey()
                .unwrap(),
                value_sat: sat,
            })
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn selection_spends_each_output_once_and_pays_a_fair_fee(
        candidates in wallet(),
        pay in payouts(),
        rate in 1u64..400,
        rbf in any::<bool>(),
    ) {
        let change = change();
        match select(&candidates, &pay, &change, rate, rbf) {
            Ok(plan) => {
                plan.check().unwrap();
                let mut seen = std::collections::BTreeSet::new();
                for input in &plan.inputs {
                    prop_assert!(seen.insert(input.outpoint), "{:?} twice", input.outpoint);
                    prop_assert!(candidates.contains(input), "{:?} is not a candidate", input);
                }
                prop_assert_eq!(&plan.payouts, &pay);
                prop_assert_eq!(plan.rbf, rbf);
                let dust = change.minimal_non_dust().to_sat();
                if let Some(c) = &plan.change {
                    prop_assert!(c.value_sat >= dust, "change {} is dust", c.value_sat);
                    prop_assert_eq!(&c.script_pubkey, &change);
                }
                let fee = plan.fee_sat().unwrap();
                let owed = fee_owed(&plan, rate).unwrap();
                prop_assert!(fee >= owed, "fee {} short of {}", fee, owed);
                // More than owed only by what was not worth a change
                // output: under dust plus the change output's own fee.
                let with_change = BtcPlan {
                    change: Some(Payout { script_pubkey: change.clone(), value_sat: 0 }),
                    ..plan.clone()
                };
                let change_fee = fee_owed(&with_change, rate).unwrap() - fee_owed(
                    &BtcPlan { change: None, ..plan.clone() },
                    rate,
                ).unwrap();
                prop_assert!(
                    fee <= owed + dust + change_fee,
                    "fee {} over owed {} + dust {} + change {}",
                    fee, owed, dust, change_fee
                );
                // The caps see exactly this fee.
                let caps = FeeCaps { max_fee_rate: u64::MAX, max_fee: fee };
                caps.check(&plan).unwrap();
                let tight = FeeCaps { max_fee_rate: u64::MAX, max_fee: fee - 1 };
                prop_assert!(tight.check(&plan).is_err());
            }
            Err(e) => {
                // Refused only when spending everything could not pay.
                let all = BtcPlan {
                    inputs: candidates.clone(),
                    payouts: pay.clone(),
                    change: Some(Payout { script_pubkey: change.clone(), value_sat: 0 }),
                    rbf,
                };
                let have: u64 = candidates.iter().map(|u| u.value_sat).sum();
                let paying: u64 = pay.iter().map(|p| p.value_sat).sum();
                let needed = paying + fee_owed(&all, rate).unwrap() + change.minimal_non_dust().to_sat();
                prop_assert!(have < needed, "refused ({}) though {} covers {}", e, have, needed);
            }
        }
    }
}

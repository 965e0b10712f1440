//! Properties of the evaluator over generated policies and facts:
//! a stricter rule placed first never loosens a decision, and missing
//! facts (an error) never let more through.

mod common;

use common::*;
use domain::{Decimals, Timestamp};
use policy::document::{ActionKind, RangeDoc, RequirementDoc, RuleDoc, WindowDoc};
use policy::{
    Destination, DestinationKind, Facts, Policy, PolicyDocument, Tier, TxType, WindowPer,
    WindowUnit, evaluate,
};
use proptest::prelude::*;

fn rule_doc() -> impl Strategy<Value = RuleDoc> {
    (
        (
            prop::option::of(prop::sample::subsequence(
                vec![Tier::Hot, Tier::Warm, Tier::Cold],
                1..=3,
            )),
            prop::option::of(prop::sample::subsequence(
                vec![
                    DestinationKind::Whitelisted,
                    DestinationKind::Internal,
                    DestinationKind::OneTime,
                ],
                1..=3,
            )),
            prop::option::of(prop::sample::subsequence(
                vec![TxType::Transfer, TxType::ContractCall, TxType::AdminCall],
                1..=3,
            )),
            prop::option::of(prop::sample::subsequence(
                vec![ETH.to_owned(), BTC.to_owned()],
                1..=2,
            )),
        ),
        (
            prop::option::of((0u32..40, prop::bool::ANY)),
            prop::option::of((0u32..40, prop::bool::ANY)),
            prop::option::of((0u32..60, 1u64..3, prop::bool::ANY, prop::bool::ANY)),
            0u8..3,
            prop::option::of(0u64..5000),
        ),
    )
        .prop_map(
            |((tiers, dests, types, assets), (amount, usd, window, action, lock))| {
                let range = |(v, above): (u32, bool)| {
                    if above {
                        RangeDoc {
                            above: Some(v.to_string()),
                            at_most: None,
                        }
                    } else {
                        RangeDoc {
                            above: None,
                            at_most: Some(v.to_string()),
                        }
                    }
                };
                let action = match action {
                    0 => ActionKind::Allow,
                    1 => ActionKind::Block,
                    _ => ActionKind::RequireApproval,
                };
                RuleDoc {
                    name: String::new(),
                    initiators: None,
                    wallets: None,
                    tiers,
                    destinations: dests,
                    address_groups: None,
                    assets,
                    types,
                    amount: amount.map(range),
                    usd: usd.map(|(v, a)| range((v * 1000, a))),
                    window: window.map(|(v, s, per, usd)| WindowDoc {
                        seconds: s * 3600,
                        per: if per {
                            WindowPer::Wallet
                        } else {
                            WindowPer::Destination
                        },
                        unit: if usd {
                            WindowUnit::Usd
                        } else {
                            WindowUnit::Asset
                        },
                        above: None,
                        at_most: Some(if usd {
                            (v * 1000).to_string()
                        } else {
                            v.to_string()
                        }),
                    }),
                    hours: None,
                    approvals: (action == ActionKind::RequireApproval).then(|| RequirementDoc {
                        group: Some("g".into()),
                        threshold: Some(1),
                        ..RequirementDoc::default()
                    }),
                    initiator_may_approve: None,
                    time_lock_seconds: if action == ActionKind::Block {
                        None
                    } else {
                        lock
                    },
                    action,
                }
            },
        )
}

fn policy(mut rules: Vec<RuleDoc>) -> Policy {
    for (i, r) in rules.iter_mut().enumerate() {
        r.name = format!("r{i}");
    }
    Policy::from_document(PolicyDocument {
        description: None,
        price_max_age_seconds: Some(600),
        groups: vec![policy::document::GroupDoc {
            name: "g".into(),
            members: vec![format!("user:{BOB}")],
        }],
        breakers: vec![],
        rules,
    })
    .expect("generated policies are valid")
}

fn vary(
    f: &mut Facts,
    (tier, dest, ty, btc, amount, earlier, fresh): (u8, u8, u8, bool, u64, u64, bool),
) {
    f.tier = [Tier::Hot, Tier::Warm, Tier::Cold][usize::from(tier % 3)];
    f.destination = match dest % 3 {
        0 => Destination::Whitelisted {
            groups: Default::default(),
        },
        1 => Destination::Internal,
        _ => Destination::OneTime,
    };
    f.tx_type = [TxType::Transfer, TxType::ContractCall, TxType::AdminCall][usize::from(ty % 3)];
    if btc {
        f.asset = BTC.parse().expect("asset");
        f.decimals = Decimals::new(8).expect("decimals");
    }
    f.amount = u128::from(amount) * 10u128.pow(u32::from(f.decimals.get()) - 2);
    for w in &mut f.windows {
        w.asset_units = u128::from(earlier) * 10u128.pow(u32::from(f.decimals.get()) - 2);
        w.usd_micro = Some(u128::from(earlier) * 10_000);
    }
    if !fresh && let Some(p) = &mut f.price {
        p.as_of = Timestamp::from_millis(WED_10 - 3_600_000);
    }
}

fn facts_strategy() -> impl Strategy<Value = (u8, u8, u8, bool, u64, u64, bool)> {
    (
        0u8..3,
        0u8..3,
        0u8..3,
        prop::bool::ANY,
        1u64..5000,
        0u64..5000,
        prop::bool::weighted(0.9),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_blocking_rule_first_never_loosens(
        rules in prop::collection::vec(rule_doc(), 0..8),
        first in rule_doc(),
        v in facts_strategy(),
    ) {
        let p = policy(rules.clone());
        let mut f = facts(&p);
        vary(&mut f, v);
        let before = evaluate(&p, &f);

        let mut strict = first;
        strict.action = ActionKind::Block;
        strict.approvals = None;
        strict.time_lock_seconds = None;
        let mut with = vec![strict];
        with.extend(rules);
        let q = policy(with);
        let mut g = facts(&q);
        vary(&mut g, v);
        let after = evaluate(&q, &g);
        prop_assert!(after.outcome.strictness() >= before.outcome.strictness(), "{before}\n---\n{after}");
    }

    #[test]
    fn a_rule_placed_first_decides_exactly_when_it_matches(
        rules in prop::collection::vec(rule_doc(), 0..8),
        first in rule_doc(),
        v in facts_strategy(),
    ) {
        let p = policy(rules.clone());
        let mut f = facts(&p);
        vary(&mut f, v);
        let before = evaluate(&p, &f);
        let mut with = vec![first];
        with.extend(rules);
        let q = policy(with);
        let mut g = facts(&q);
        vary(&mut g, v);
        let after = evaluate(&q, &g);
        if after.error {
            prop_assert_eq!(after.outcome, policy::Outcome::Block);
        } else if after.rule.as_deref() != Some("r0") && !before.error {
            // Not matched: the rest decides as before.
            prop_assert_eq!(&after.outcome, &before.outcome);
        }
    }

    #[test]
    fn missing_facts_never_loosen_and_errors_block(
        rules in prop::collection::vec(rule_doc(), 0..8),
        v in facts_strategy(),
        drop_windows in prop::bool::ANY,
    ) {
        let p = policy(rules);
        let mut f = facts(&p);
        vary(&mut f, v);
        let full = evaluate(&p, &f);
        if drop_windows { f.windows.clear() } else { f.price = None }
        let partial = evaluate(&p, &f);
        if partial.error {
            prop_assert_eq!(&partial.outcome, &policy::Outcome::Block);
        }
        prop_assert!(partial.outcome.strictness() >= full.outcome.strictness(), "{full}\n---\n{partial}");
    }
}

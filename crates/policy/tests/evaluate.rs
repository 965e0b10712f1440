//! The evaluator, driven by data: a policy, a change to the base facts,
//! and the decision with its whole explanation.

mod common;

use common::*;
use domain::{Decimals, Role, Timestamp};
use expect_test::{Expect, expect};
use policy::{Destination, Facts, Policy, Tier, TxType};

fn check(policy: &str, change: impl FnOnce(&mut Facts), expect: Expect) {
    let p = Policy::from_toml(policy).expect("policy");
    let mut f = facts(&p);
    change(&mut f);
    let d = policy::evaluate(&p, &f);
    if d.error {
        assert!(
            matches!(d.outcome, policy::Outcome::Block),
            "an error must block"
        );
    }
    expect.assert_eq(&d.to_string());
}

fn refused(policy: &str, expect: Expect) {
    let e = Policy::from_toml(policy).expect_err("the policy must be refused");
    expect.assert_eq(&e.to_string());
}

const TIERED: &str = r#"
price_max_age_seconds = 600

[[groups]]
name = "finance"
members = ["user:00000000-0000-7000-8000-00000000000b", "user:00000000-0000-7000-8000-00000000000c"]

[[groups]]
name = "security"
members = ["user:00000000-0000-7000-8000-00000000000d"]

[[rules]]
name = "never cold by api"
tiers = ["cold"]
initiators = { api_keys = ["00000000-0000-7000-8000-0000000000ee"] }
action = "block"

[[rules]]
name = "admin calls"
types = ["admin_call"]
action = "require_approval"
approvals = { all_of = [{ group = "finance", threshold = 2 }, { group = "security", threshold = 1 }] }
time_lock_seconds = 86400

[[rules]]
name = "small to exchanges"
destinations = ["whitelisted"]
address_groups = ["exchanges"]
amount = { at_most = "5" }
window = { seconds = 86400, per = "wallet", unit = "asset", at_most = "20" }
action = "allow"

[[rules]]
name = "office hours"
hours = { days = ["mon", "tue", "wed", "thu", "fri"], from = "08:00", to = "18:00" }
usd = { at_most = "10000" }
action = "allow"

[[rules]]
name = "large"
usd = { above = "10000" }
action = "require_approval"
approvals = { any_of = [{ group = "finance", threshold = 2 }, { group = "security", threshold = 1 }] }

[[rules]]
name = "out of hours"
action = "allow"
time_lock_seconds = 3600
"#;

#[test]
fn a_small_transfer_in_office_hours_is_allowed() {
    check(
        TIERED,
        |_| {},
        expect![[r#"
            rule 1 never cold by api: no match: tier hot is not listed
            rule 2 admin calls: no match: type Transfer is not listed
            rule 3 small to exchanges: no match: destination kind OneTime is not listed
            rule 4 office hours: matched: every condition holds: allow
            => allow"#]],
    );
}

#[test]
fn whitelisted_exchange_within_the_window() {
    check(
        TIERED,
        |f| {
            f.destination = Destination::Whitelisted {
                groups: ["exchanges".to_owned()].into(),
            };
            f.windows[0].asset_units = 19_000_000_000_000_000_000;
        },
        expect![[r#"
            rule 1 never cold by api: no match: tier hot is not listed
            rule 2 admin calls: no match: type Transfer is not listed
            rule 3 small to exchanges: matched: every condition holds: allow
            => allow"#]],
    );
}

#[test]
fn the_window_counts_earlier_transfers() {
    check(
        TIERED,
        |f| {
            f.destination = Destination::Whitelisted {
                groups: ["exchanges".to_owned()].into(),
            };
            f.windows[0].asset_units = 19_500_000_000_000_000_000;
            f.now = Timestamp::from_millis(WED_10 + 9 * 3_600_000);
            if let Some(p) = &mut f.price {
                p.as_of = f.now;
            }
        },
        expect![[r#"
            rule 1 never cold by api: no match: tier hot is not listed
            rule 2 admin calls: no match: type Transfer is not listed
            rule 3 small to exchanges: no match: 86400 s total 20.5 is above 20
            rule 4 office hours: no match: 19:00 UTC is outside 08:00-18:00
            rule 5 large: no match: dollar value $3000 is not above $10000
            rule 6 out of hours: matched: every condition holds: allow after a 3600 s time lock
            => allow after a 3600 s time lock"#]],
    );
}

#[test]
fn whitelisted_but_in_another_group() {
    check(
        TIERED,
        |f| {
            f.destination = Destination::Whitelisted {
                groups: ["payroll".to_owned()].into(),
            };
            f.amount = 4_000_000_000_000_000_000;
        },
        expect![[r#"
            rule 1 never cold by api: no match: tier hot is not listed
            rule 2 admin calls: no match: type Transfer is not listed
            rule 3 small to exchanges: no match: destination is in none of the address groups
            rule 4 office hours: no match: dollar value $12000 is above $10000
            rule 5 large: matched: every condition holds: require approval: (2 of 2 in finance or 1 of 1 in security)
            => require approval: (2 of 2 in finance or 1 of 1 in security)"#]],
    );
}

#[test]
fn large_transfers_need_approvals() {
    check(
        TIERED,
        |f| f.amount = 3_333_333_333_333_333_334,
        expect![[r#"
            rule 1 never cold by api: no match: tier hot is not listed
            rule 2 admin calls: no match: type Transfer is not listed
            rule 3 small to exchanges: no match: destination kind OneTime is not listed
            rule 4 office hours: no match: dollar value $10000.000001 is above $10000
            rule 5 large: matched: every condition holds: require approval: (2 of 2 in finance or 1 of 1 in security)
            => require approval: (2 of 2 in finance or 1 of 1 in security)"#]],
    );
}

#[test]
fn admin_surface_calls_need_both_groups_and_wait() {
    check(
        TIERED,
        |f| f.tx_type = TxType::AdminCall,
        expect![[r#"
            rule 1 never cold by api: no match: tier hot is not listed
            rule 2 admin calls: matched: every condition holds: require approval: (2 of 2 in finance and 1 of 1 in security); then a 86400 s time lock
            => require approval: (2 of 2 in finance and 1 of 1 in security); then a 86400 s time lock"#]],
    );
}

#[test]
fn the_cold_wallet_refuses_api_keys_but_not_people() {
    check(
        TIERED,
        |f| {
            f.tier = Tier::Cold;
            f.initiator = domain::Actor::ApiKey(KEY.parse().expect("id"));
        },
        expect![[r#"
            rule 1 never cold by api: matched: every condition holds: block
            => block"#]],
    );
    check(
        TIERED,
        |f| f.tier = Tier::Cold,
        expect![[r#"
            rule 1 never cold by api: no match: initiator user:00000000-0000-7000-8000-00000000000a is not listed
            rule 2 admin calls: no match: type Transfer is not listed
            rule 3 small to exchanges: no match: destination kind OneTime is not listed
            rule 4 office hours: matched: every condition holds: allow
            => allow"#]],
    );
}

#[test]
fn a_stale_or_missing_price_blocks_a_dollar_rule() {
    check(
        TIERED,
        |f| f.now = Timestamp::from_millis(WED_10 + 3_600_000),
        expect![[r#"
            rule 1 never cold by api: no match: tier hot is not listed
            rule 2 admin calls: no match: type Transfer is not listed
            rule 3 small to exchanges: no match: destination kind OneTime is not listed
            rule 4 office hours: ERROR: the asset's price is stale: blocked
            => block"#]],
    );
    check(
        TIERED,
        |f| f.price = None,
        expect![[r#"
            rule 1 never cold by api: no match: tier hot is not listed
            rule 2 admin calls: no match: type Transfer is not listed
            rule 3 small to exchanges: no match: destination kind OneTime is not listed
            rule 4 office hours: ERROR: no price is known for the asset: blocked
            => block"#]],
    );
}

#[test]
fn a_missing_window_total_blocks() {
    check(
        TIERED,
        |f| {
            f.destination = Destination::Whitelisted {
                groups: ["exchanges".to_owned()].into(),
            };
            f.windows.clear();
        },
        expect![[r#"
            rule 1 never cold by api: no match: tier hot is not listed
            rule 2 admin calls: no match: type Transfer is not listed
            rule 3 small to exchanges: ERROR: no total was given for the 86400 s window per Wallet: blocked
            => block"#]],
    );
}

#[test]
fn no_match_is_a_block() {
    check(
        r#"
[[rules]]
name = "btc only"
assets = ["bitcoin:mainnet/native"]
action = "allow"
"#,
        |_| {},
        expect![[r#"
            rule 1 btc only: no match: asset eip155:1/native is not listed
            default: matched: no rule matched: blocked
            => block"#]],
    );
}

#[test]
fn initiators_by_role_and_group() {
    let p = r#"
[[groups]]
name = "desk"
members = ["user:00000000-0000-7000-8000-00000000000b"]

[[rules]]
name = "desk"
initiators = { groups = ["desk"] }
action = "allow"

[[rules]]
name = "initiators"
initiators = { roles = ["initiator"] }
action = "require_approval"
approvals = { group = "desk", threshold = 1 }
initiator_may_approve = true
"#;
    check(
        p,
        |f| f.initiator = user(BOB),
        expect![[r#"
            rule 1 desk: matched: every condition holds: allow
            => allow"#]],
    );
    check(
        p,
        |_| {},
        expect![[r#"
            rule 1 desk: no match: initiator user:00000000-0000-7000-8000-00000000000a is not listed
            rule 2 initiators: matched: every condition holds: require approval: 1 of 1 in desk; the initiator may approve
            => require approval: 1 of 1 in desk; the initiator may approve"#]],
    );
    check(
        p,
        |f| f.initiator_roles = [Role::Viewer].into(),
        expect![[r#"
            rule 1 desk: no match: initiator user:00000000-0000-7000-8000-00000000000a is not listed
            rule 2 initiators: no match: initiator user:00000000-0000-7000-8000-00000000000a is not listed
            default: matched: no rule matched: blocked
            => block"#]],
    );
}

#[test]
fn a_limit_finer_than_the_asset_is_an_error() {
    check(
        r#"
[[rules]]
name = "dust"
amount = { at_most = "0.000000001" }
action = "allow"
"#,
        |f| {
            f.asset = BTC.parse().expect("asset");
            f.decimals = Decimals::new(8).expect("decimals");
            f.amount = 1;
        },
        expect![[r#"
            rule 1 dust: ERROR: limit "0.000000001": amount "0.000000001" has more decimal places than the asset's 8: blocked
            => block"#]],
    );
}

const BREAKER: &str = r#"
[[breakers]]
name = "hot eth"
seconds = 3600
asset = "eip155:1/native"
max = "50"

[[rules]]
name = "everything"
action = "allow"
"#;

#[test]
fn the_circuit_breaker_trips_before_any_rule() {
    check(
        BREAKER,
        |f| f.windows[0].asset_units = 49_000_000_000_000_000_000,
        expect![[r#"
            breaker hot eth: no match: outflow within its limit
            rule 1 everything: matched: every condition holds: allow
            => allow"#]],
    );
    check(
        BREAKER,
        |f| f.windows[0].asset_units = 49_000_000_000_000_000_001,
        expect![[r#"
            breaker hot eth: TRIPPED: wallet outflow 50.000000000000000001 over 3600 s would pass 50
            => block"#]],
    );
    let p = Policy::from_toml(BREAKER).expect("policy");
    let mut f = facts(&p);
    f.windows[0].asset_units = 49_000_000_000_000_000_001;
    assert_eq!(policy::evaluate(&p, &f).breaker.as_deref(), Some("hot eth"));
}

/// A count breaker: the wallet's sixth transfer within ten minutes trips
/// it, whatever the amounts (Harmony, 2022: many withdrawals in minutes).
#[test]
fn a_count_breaker_trips_on_many_small_transfers() {
    let doc = r#"
[[breakers]]
name = "many"
seconds = 600
max_count = 5

[[rules]]
name = "everything"
action = "allow"
"#;
    check(
        doc,
        |f| {
            f.windows[0].count = 4;
            f.amount = 1;
        },
        expect![[r#"
            breaker many: no match: outflow within its limit
            rule 1 everything: matched: every condition holds: allow
            => allow"#]],
    );
    check(
        doc,
        |f| {
            f.windows[0].count = 5;
            f.amount = 1;
        },
        expect![[r#"
            breaker many: TRIPPED: wallet made 6 transfers over 600 s, more than 5
            => block"#]],
    );
    let zero = doc.replace("max_count = 5", "max_count = 0");
    assert!(Policy::from_toml(&zero).is_err());
    let both = doc.replace("max_count = 5", "max_count = 5\nmax_usd = \"10\"");
    assert!(Policy::from_toml(&both).is_err());
}

#[test]
fn overnight_hours() {
    let p = r#"
[[rules]]
name = "night"
hours = { from = "22:00", to = "06:00" }
action = "block"

[[rules]]
name = "day"
action = "allow"
"#;
    check(
        p,
        |f| f.now = Timestamp::from_millis(WED_10 - 5 * 3_600_000),
        expect![[r#"
            rule 1 night: matched: every condition holds: block
            => block"#]],
    );
    check(
        p,
        |_| {},
        expect![[r#"
            rule 1 night: no match: 10:00 UTC is outside 22:00-06:00
            rule 2 day: matched: every condition holds: allow
            => allow"#]],
    );
}

#[test]
fn json_and_toml_are_the_same_policy() {
    let t = Policy::from_toml(TIERED).expect("toml");
    let j = Policy::parse(&t.canonical_json()).expect("json");
    assert_eq!(t, j);
    assert_eq!(t.digest(), j.digest());
    assert_eq!(t.digest().len(), 64);
}

#[test]
fn malformed_policies_are_refused_with_the_rule_named() {
    refused(
        "[[rules]]\nname = \"a\"\naction = \"allow\"\namonut = { at_most = \"1\" }\n",
        expect![[
            r#"the policy document does not parse: unknown field `amonut`, expected one of `name`, `initiators`, `wallets`, `tiers`, `destinations`, `address_groups`, `assets`, `types`, `amount`, `usd`, `window`, `hours`, `action`, `approvals`, `initiator_may_approve`, `time_lock_seconds`"#
        ]],
    );
    refused(
        "[[rules]]\nname = \"a\"\naction = \"require_approval\"\napprovals = { group = \"nobody\", threshold = 1 }\n",
        expect![[r#"rule "a": no group named "nobody""#]],
    );
    refused(
        "[[groups]]\nname = \"g\"\nmembers = [\"user:00000000-0000-7000-8000-00000000000b\"]\n[[rules]]\nname = \"a\"\naction = \"require_approval\"\napprovals = { group = \"g\", threshold = 2 }\n",
        expect![[r#"rule "a": threshold 2 for group "g" must be 1 to its 1 members"#]],
    );
    refused(
        "[[rules]]\nname = \"a\"\ntiers = []\naction = \"allow\"\n",
        expect![[
            r#"rule "a": tiers is empty (it would match nothing; leave it out to match anything)"#
        ]],
    );
    refused(
        "[[rules]]\nname = \"a\"\nusd = { at_most = \"5\" }\naction = \"allow\"\n",
        expect!["price_max_age_seconds is required when a rule or breaker is written in USD"],
    );
    refused(
        "[[rules]]\nname = \"a\"\namount = { at_most = \"1.5.2\" }\naction = \"allow\"\n",
        expect![[
            r#"rule "a" amount: "1.5.2" is not a decimal amount: amount "1.5.2" is not a plain decimal number (digits, optionally one '.' and more digits)"#
        ]],
    );
    refused(
        "[[rules]]\nname = \"a\"\naction = \"block\"\ntime_lock_seconds = 5\n",
        expect![[r#"rule "a": a blocking rule has no time lock"#]],
    );
    refused(
        "[[rules]]\nname = \"a\"\naction = \"allow\"\n[[rules]]\nname = \"a\"\naction = \"block\"\n",
        expect![[r#"rule "a" is defined twice"#]],
    );
    refused(
        "[[rules]]\nname = \"a\"\nhours = { from = \"25:00\", to = \"06:00\" }\naction = \"allow\"\n",
        expect![[r#"rule "a": "25:00" is not HH:MM"#]],
    );
    // One person never counts for two parts of all_of.
    refused(
        "[[groups]]\nname = \"g\"\nmembers = [\"user:00000000-0000-7000-8000-00000000000b\", \"user:00000000-0000-7000-8000-00000000000c\"]\n[[rules]]\nname = \"a\"\naction = \"require_approval\"\napprovals = { all_of = [{ group = \"g\", threshold = 1 }, { group = \"g\", threshold = 1 }] }\n",
        expect![[
            r#"rule "a": the parts of all_of share the member user:00000000-0000-7000-8000-00000000000b: one person would count for two parts"#
        ]],
    );
    refused(
        "[[groups]]\nname = \"g\"\nmembers = [\"user:00000000-0000-7000-8000-00000000000b\", \"user:00000000-0000-7000-8000-00000000000c\"]\n[[groups]]\nname = \"h\"\nmembers = [\"user:00000000-0000-7000-8000-00000000000c\"]\n[[rules]]\nname = \"a\"\naction = \"require_approval\"\napprovals = { all_of = [{ group = \"g\", threshold = 1 }, { any_of = [{ group = \"h\", threshold = 1 }] }] }\n",
        expect![[
            r#"rule "a": the parts of all_of share the member user:00000000-0000-7000-8000-00000000000c: one person would count for two parts"#
        ]],
    );
    refused(
        "[[groups]]\nname = \"g\"\nmembers = [\"operator:root\"]\n[[rules]]\nname = \"a\"\naction = \"allow\"\n",
        expect![[r#"group "g": member "operator:root" is not user:<uuid> or api-key:<uuid>"#]],
    );
}

/// The sweep rule of docs/runbooks/suspected-key-compromise.md: a rotated
/// key's sweep to the wallet's own successor address goes through; a
/// transfer to the same address, or a sweep anywhere else, does not match.
#[test]
fn a_rule_for_sweeps_to_our_own_successor() {
    const SWEEPS: &str = r#"
[[rules]]
name = "sweeps to our own successor"
action = "allow"
types = ["sweep"]
destinations = ["internal"]

[[rules]]
name = "everything else"
action = "block"
"#;
    let mut out = Vec::new();
    for (tx_type, destination) in [
        (TxType::Sweep, Destination::Internal),
        (TxType::Transfer, Destination::Internal),
        (TxType::Sweep, Destination::OneTime),
    ] {
        let p = Policy::from_toml(SWEEPS).expect("policy");
        let mut f = facts(&p);
        f.tx_type = tx_type;
        f.destination = destination;
        out.push(policy::evaluate(&p, &f).to_string());
    }
    expect![[r#"
        rule 1 sweeps to our own successor: matched: every condition holds: allow
        => allow
        ---
        rule 1 sweeps to our own successor: no match: type Transfer is not listed
        rule 2 everything else: matched: every condition holds: block
        => block
        ---
        rule 1 sweeps to our own successor: no match: destination kind OneTime is not listed
        rule 2 everything else: matched: every condition holds: block
        => block"#]]
    .assert_eq(&out.join("\n---\n"));
}

//! Evaluation time for policies of 10, 100 and 1 000 rules, each with a
//! rolling window, judged against a transfer that only the last rule
//! matches (the worst case: every rule is tried).
//!
//! `cargo bench -p policy --bench evaluate`

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::Instant;

use domain::{Actor, AssetId, Decimals, Role, Timestamp, UserId, WalletId};
use policy::{Destination, Facts, Policy, Price, Tier, TxType, WindowTotal, evaluate};

fn policy(n: usize) -> Policy {
    let mut doc = String::from(
        "price_max_age_seconds = 600\n[[groups]]\nname = \"finance\"\nmembers = [\"user:00000000-0000-7000-8000-000000000001\", \"user:00000000-0000-7000-8000-000000000002\"]\n",
    );
    let pers = ["wallet", "initiator", "destination"];
    for i in 0..n - 1 {
        // Each rule looks at its own window length, so the service would
        // have to total n distinct windows: the expensive case.
        let per = pers[i % 3];
        let unit = if i % 2 == 0 { "asset" } else { "usd" };
        doc.push_str(&format!(
            "[[rules]]\nname = \"r{i}\"\ntiers = [\"hot\", \"warm\"]\nassets = [\"eip155:1/native\"]\nwindow = {{ seconds = {}, per = \"{per}\", unit = \"{unit}\", at_most = \"{}\" }}\naction = \"allow\"\n",
            3600 + i,
            i % 5
        ));
    }
    doc.push_str("[[rules]]\nname = \"last\"\nwindow = { seconds = 86400, per = \"wallet\", unit = \"asset\", above = \"0\" }\naction = \"require_approval\"\napprovals = { group = \"finance\", threshold = 2 }\n");
    Policy::from_toml(&doc).expect("bench policy")
}

fn facts(p: &Policy) -> Facts {
    let wallet: WalletId = "00000000-0000-7000-8000-0000000000aa".parse().expect("id");
    let user: UserId = "00000000-0000-7000-8000-0000000000bb".parse().expect("id");
    let windows = p
        .window_specs()
        .into_iter()
        .map(|spec| WindowTotal {
            spec,
            asset_units: 9_000_000_000_000_000_000,
            usd_micro: Some(50_000_000_000_000),
            count: 40,
        })
        .collect();
    Facts {
        initiator: Actor::User(user),
        initiator_roles: BTreeSet::from([Role::Initiator]),
        wallet,
        tier: Tier::Hot,
        destination: Destination::OneTime,
        asset: "eip155:1/native".parse::<AssetId>().expect("asset"),
        decimals: Decimals::new(18).expect("decimals"),
        amount: 1_500_000_000_000_000_000,
        tx_type: TxType::Transfer,
        price: Some(Price {
            micro_usd_per_unit: 3_000_000_000,
            as_of: Timestamp::from_millis(1_000),
        }),
        now: Timestamp::from_millis(2_000),
        windows,
    }
}

fn main() {
    println!("| rules | windows | evaluations | mean per evaluation |");
    println!("|---:|---:|---:|---:|");
    for n in [10usize, 100, 1000] {
        let p = policy(n);
        let f = facts(&p);
        let d = evaluate(&p, &f);
        assert_eq!(d.rule.as_deref(), Some("last"), "{d}");
        let iters = 200_000 / n;
        let start = Instant::now();
        for _ in 0..iters {
            black_box(evaluate(black_box(&p), black_box(&f)));
        }
        let per = start.elapsed() / u32::try_from(iters).expect("iters");
        println!("| {n} | {} | {iters} | {per:.2?} |", f.windows.len());
    }
}

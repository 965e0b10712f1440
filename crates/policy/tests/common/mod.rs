//! Facts for the tests: one ETH withdrawal from a hot wallet, on a
//! Wednesday at 10:00 UTC, with every window the policy asks for at zero.

#![allow(dead_code)]

use std::collections::BTreeSet;

use domain::{Actor, AssetId, Decimals, Role, Timestamp, UserId, WalletId};
use policy::{Destination, Facts, Policy, Price, Tier, TxType, WindowTotal};

pub const ALICE: &str = "00000000-0000-7000-8000-00000000000a";
pub const BOB: &str = "00000000-0000-7000-8000-00000000000b";
pub const CAROL: &str = "00000000-0000-7000-8000-00000000000c";
pub const DAVE: &str = "00000000-0000-7000-8000-00000000000d";
pub const KEY: &str = "00000000-0000-7000-8000-0000000000ee";
pub const HOT: &str = "00000000-0000-7000-8000-0000000000f1";
pub const COLD: &str = "00000000-0000-7000-8000-0000000000f2";
pub const ETH: &str = "eip155:1/native";
pub const BTC: &str = "bitcoin:mainnet/native";
/// 2026-11-25 10:00:00 UTC, a Wednesday.
pub const WED_10: i64 = 1_795_600_800_000;

pub fn user(s: &str) -> Actor {
    Actor::User(s.parse::<UserId>().expect("user id"))
}

pub fn facts(policy: &Policy) -> Facts {
    let windows = policy
        .window_specs()
        .into_iter()
        .map(|spec| WindowTotal {
            spec,
            asset_units: 0,
            usd_micro: Some(0),
            count: 0,
        })
        .collect();
    Facts {
        initiator: user(ALICE),
        initiator_roles: BTreeSet::from([Role::Initiator]),
        wallet: HOT.parse::<WalletId>().expect("wallet"),
        tier: Tier::Hot,
        destination: Destination::OneTime,
        asset: ETH.parse::<AssetId>().expect("asset"),
        decimals: Decimals::new(18).expect("decimals"),
        amount: 1_000_000_000_000_000_000,
        tx_type: TxType::Transfer,
        price: Some(Price {
            micro_usd_per_unit: 3_000_000_000,
            as_of: Timestamp::from_millis(WED_10 - 60_000),
        }),
        now: Timestamp::from_millis(WED_10),
        windows,
    }
}

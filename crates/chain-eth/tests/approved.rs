//! `approve`: every way a built plan can differ from what was approved,
//! each refused, as data. One table, one snapshot of its verdicts.

use chain_eth::approved::PLAIN_GAS;
use chain_eth::{EthAddress, FeeCaps, Fees, Intended, Kind, Refusal, Sender, TxPlan, approve};
use domain::intent::IntentParts;
use domain::{
    AccountId, Actor, Address, Amount, Asset, AssetId, AssetKind, Decimals, Network, Symbol,
    Timestamp, TransferId, TransferIntent, TransferKind, WalletId,
};
use expect_test::expect;

const CHAIN: u64 = 31337;
const WALLET: &str = "01900000-0000-7000-8000-000000000001";
const OTHER_WALLET: &str = "01900000-0000-7000-8000-000000000002";
const SENDER: &str = "0x1111111111111111111111111111111111111111";
const BOB: &str = "0x2222222222222222222222222222222222222222";
const CAROL: &str = "0x3333333333333333333333333333333333333333";
const TOKEN: &str = "0x4444444444444444444444444444444444444444";

fn addr(s: &str) -> EthAddress {
    s.parse().expect("test address")
}

fn token_asset() -> Asset {
    let contract = TOKEN.parse().expect("contract");
    let id = AssetId::new(Network::Evm { chain_id: CHAIN }, AssetKind::Erc20(contract))
        .expect("asset id");
    Asset::new(
        id,
        Symbol::new("TOK").expect("symbol"),
        Decimals::new(6).expect("decimals"),
    )
    .expect("asset")
}

fn intent(wallet: &str, asset: Asset, to: &str, units: u128) -> Intended {
    let network = asset.network();
    let intent = TransferIntent::new(IntentParts {
        id: TransferId::from_uuid("01900000-0000-7000-8000-0000000000aa".parse().expect("id")),
        kind: TransferKind::Withdrawal,
        account: AccountId::from_uuid("01900000-0000-7000-8000-0000000000bb".parse().expect("id")),
        wallet: wallet.parse().expect("wallet"),
        amount: Amount::from_units(asset, units),
        destination: Address::new(network, to).expect("destination"),
        reference: None,
        initiator: Actor::System,
        created_at: Timestamp::from_millis(1_700_000_000_000),
    })
    .expect("intent");
    Intended::of(&intent).expect("an Ethereum intent")
}

fn fees(max: u128) -> Fees {
    Fees::Eip1559 {
        max_fee_per_gas: max,
        max_priority_fee_per_gas: 1_000_000_000,
    }
}

fn caps() -> FeeCaps {
    FeeCaps {
        max_fee_per_gas: 500_000_000_000,
        max_total_fee: 10_000_000_000_000_000,
    }
}

fn sender() -> Sender {
    Sender {
        address: addr(SENDER),
        wallet: WALLET.parse().expect("wallet"),
    }
}

fn ether_plan() -> TxPlan {
    TxPlan::native(CHAIN, 7, addr(BOB), 1_500, fees(20_000_000_000))
}

fn token_plan() -> TxPlan {
    TxPlan::erc20(
        CHAIN,
        7,
        addr(TOKEN),
        addr(BOB),
        250,
        60_000,
        fees(20_000_000_000),
    )
}

enum K {
    Pay,
    SpeedUp,
    Cancel,
}

fn verdict(intended: &Intended, k: K, plan: TxPlan) -> String {
    let original = match intended.token() {
        None => ether_plan(),
        Some(_) => token_plan(),
    };
    let kind = match k {
        K::Pay => Kind::Payment,
        K::SpeedUp => Kind::SpeedUp {
            original: &original,
        },
        K::Cancel => Kind::Cancel {
            original: &original,
        },
    };
    match approve(intended, &sender(), &caps(), kind, plan) {
        Ok(a) => format!("approved {:?}", a.kind()),
        Err(e) => format!("refused: {e}"),
    }
}

#[test]
fn every_difference_from_the_approval_is_refused() {
    let ether = intent(WALLET, Asset::ether(CHAIN), BOB, 1_500);
    let tokens = intent(WALLET, token_asset(), BOB, 250);
    let other_wallet = intent(OTHER_WALLET, Asset::ether(CHAIN), BOB, 1_500);
    let to_self = intent(WALLET, Asset::ether(CHAIN), SENDER, 1_500);
    let with = |f: fn(&mut TxPlan), mut p: TxPlan| {
        f(&mut p);
        p
    };
    let mut trailing = token_plan().data;
    trailing.push(0);
    let cases: Vec<(&str, &Intended, K, TxPlan)> = vec![
        ("ether as approved", &ether, K::Pay, ether_plan()),
        ("token as approved", &tokens, K::Pay, token_plan()),
        (
            "another recipient",
            &ether,
            K::Pay,
            with(|p| p.to = addr(CAROL), ether_plan()),
        ),
        (
            "one wei more",
            &ether,
            K::Pay,
            with(|p| p.value += 1, ether_plan()),
        ),
        (
            "calldata on ether",
            &ether,
            K::Pay,
            with(|p| p.data = vec![0xde, 0xad, 0xbe, 0xef], ether_plan()),
        ),
        (
            "gas on ether",
            &ether,
            K::Pay,
            with(|p| p.gas_limit = 100_000, ether_plan()),
        ),
        (
            "another chain",
            &ether,
            K::Pay,
            with(|p| p.chain_id = 1, ether_plan()),
        ),
        (
            "an intent of another wallet",
            &other_wallet,
            K::Pay,
            ether_plan(),
        ),
        ("an intent paying the sender", &to_self, K::Pay, {
            TxPlan::native(CHAIN, 7, addr(SENDER), 1_500, fees(20_000_000_000))
        }),
        (
            "token calldata with a trailing byte",
            &tokens,
            K::Pay,
            TxPlan {
                data: trailing,
                ..token_plan()
            },
        ),
        (
            "token to another recipient",
            &tokens,
            K::Pay,
            TxPlan::erc20(
                CHAIN,
                7,
                addr(TOKEN),
                addr(CAROL),
                250,
                60_000,
                fees(20_000_000_000),
            ),
        ),
        (
            "token, another contract",
            &tokens,
            K::Pay,
            with(|p| p.to = addr(CAROL), token_plan()),
        ),
        (
            "token with ether",
            &tokens,
            K::Pay,
            with(|p| p.value = 1, token_plan()),
        ),
        (
            "token paid as ether",
            &tokens,
            K::Pay,
            TxPlan::native(CHAIN, 7, addr(BOB), 250, fees(20_000_000_000)),
        ),
        (
            "fee per gas over the cap",
            &ether,
            K::Pay,
            with(|p| p.fees = fees(600_000_000_000), ether_plan()),
        ),
        (
            "speed-up as approved",
            &ether,
            K::SpeedUp,
            with(|p| p.fees = fees(30_000_000_000), ether_plan()),
        ),
        ("speed-up, not higher", &ether, K::SpeedUp, ether_plan()),
        (
            "speed-up, another nonce",
            &ether,
            K::SpeedUp,
            with(
                |p| {
                    p.nonce = 8;
                    p.fees = fees(30_000_000_000);
                },
                ether_plan(),
            ),
        ),
        (
            "speed-up, another recipient",
            &ether,
            K::SpeedUp,
            with(
                |p| {
                    p.to = addr(CAROL);
                    p.fees = fees(30_000_000_000);
                },
                ether_plan(),
            ),
        ),
        (
            "cancel as approved",
            &ether,
            K::Cancel,
            TxPlan::native(CHAIN, 7, addr(SENDER), 0, fees(30_000_000_000)),
        ),
        (
            "cancel paying the recipient",
            &ether,
            K::Cancel,
            TxPlan::native(CHAIN, 7, addr(BOB), 0, fees(30_000_000_000)),
        ),
        (
            "cancel paying the sender ether",
            &ether,
            K::Cancel,
            TxPlan::native(CHAIN, 7, addr(SENDER), 1, fees(30_000_000_000)),
        ),
        (
            "cancel with calldata",
            &ether,
            K::Cancel,
            with(
                |p| p.data = vec![1],
                TxPlan::native(CHAIN, 7, addr(SENDER), 0, fees(30_000_000_000)),
            ),
        ),
        (
            "cancel under another nonce",
            &ether,
            K::Cancel,
            TxPlan::native(CHAIN, 9, addr(SENDER), 0, fees(30_000_000_000)),
        ),
    ];
    let got: String = cases
        .into_iter()
        .map(|(name, intended, k, plan)| format!("{name}: {}\n", verdict(intended, k, plan)))
        .collect();
    expect![[r#"
        ether as approved: approved Payment
        token as approved: approved Payment
        another recipient: refused: the plan pays 1500 base units to 0x3333333333333333333333333333333333333333; 1500 to 0x2222222222222222222222222222222222222222 was approved
        one wei more: refused: the plan pays 1501 base units to 0x2222222222222222222222222222222222222222; 1500 to 0x2222222222222222222222222222222222222222 was approved
        calldata on ether: refused: an ether payment carries calldata
        gas on ether: refused: an ether payment uses 100000 gas: only plain transfers are sent
        another chain: refused: the plan is for chain 1; the intent for chain 31337
        an intent of another wallet: refused: the intent belongs to wallet 01900000-0000-7000-8000-000000000002; the sender to wallet 01900000-0000-7000-8000-000000000001
        an intent paying the sender: refused: the intent pays the sender itself
        token calldata with a trailing byte: refused: the calldata is not exactly transfer(0x2222222222222222222222222222222222222222, 250)
        token to another recipient: refused: the calldata is not exactly transfer(0x2222222222222222222222222222222222222222, 250)
        token, another contract: refused: the plan calls 0x3333333333333333333333333333333333333333, not the token contract 0x4444444444444444444444444444444444444444
        token with ether: refused: a token transfer that also sends 1 wei
        token paid as ether: refused: the plan calls 0x2222222222222222222222222222222222222222, not the token contract 0x4444444444444444444444444444444444444444
        fee per gas over the cap: refused: fees: max fee per gas 600000000000 wei is over the cap of 500000000000 wei
        speed-up as approved: approved SpeedUp
        speed-up, not higher: refused: a replacement that does not pay more per gas than the original
        speed-up, another nonce: refused: a replacement under nonce 8; the original has nonce 7
        speed-up, another recipient: refused: the plan pays 1500 base units to 0x3333333333333333333333333333333333333333; 1500 to 0x2222222222222222222222222222222222222222 was approved
        cancel as approved: approved Cancel
        cancel paying the recipient: refused: a cancel that pays something: it must send nothing to the sender itself
        cancel paying the sender ether: refused: a cancel that pays something: it must send nothing to the sender itself
        cancel with calldata: refused: a cancel that pays something: it must send nothing to the sender itself
        cancel under another nonce: refused: a replacement under nonce 9; the original has nonce 7
    "#]]
    .assert_eq(&got);
    assert_eq!(PLAIN_GAS, 21_000);
}

#[test]
fn an_approved_plan_is_finished_only_by_the_senders_signature() {
    use k256::ecdsa::SigningKey;
    let key = SigningKey::from_slice(&[7u8; 32]).expect("key");
    let public = key.verifying_key().to_encoded_point(true);
    let from = EthAddress::from_public_key(public.as_bytes()).expect("address");
    let s = Sender {
        address: from,
        wallet: WALLET.parse::<WalletId>().expect("wallet"),
    };
    let ether = intent(WALLET, Asset::ether(CHAIN), BOB, 1_500);
    let approved = approve(&ether, &s, &caps(), Kind::Payment, ether_plan()).expect("approved");
    let (sig, rid) = key
        .sign_prehash_recoverable(&approved.signing_hash())
        .expect("sign");
    let sig = sig.normalize_s().map_or(sig, |n| n);
    let parts = |rid: u8| chain_eth::EcdsaParts {
        r: sig.r().to_bytes().into(),
        s: sig.s().to_bytes().into(),
        recovery_id: rid,
    };
    // The recovery id after normalisation is one of two; the right one
    // recovers to the sender and is accepted.
    let ok = [0u8, 1]
        .into_iter()
        .filter_map(|r| approved.finish(parts(r)).ok())
        .count();
    assert_eq!(ok, 1, "exactly one recovery id recovers to the sender");
    let _ = rid;
    // Another sender's approval is not finished by this key.
    let stranger = Sender {
        address: addr(SENDER),
        ..s
    };
    let theirs =
        approve(&ether, &stranger, &caps(), Kind::Payment, ether_plan()).expect("approved");
    assert!(theirs.finish(parts(0)).is_err() && theirs.finish(parts(1)).is_err());
}

/// A call: the selector of `sig`, then its 32-byte words.
fn call(sig: &str, words: &[[u8; 32]]) -> Vec<u8> {
    let mut v = alloy_primitives::keccak256(sig.as_bytes())[..4].to_vec();
    for w in words {
        v.extend_from_slice(w);
    }
    v
}

fn word_addr(a: &str) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(addr(a).as_bytes());
    w
}

fn word(n: u128) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[16..].copy_from_slice(&n.to_be_bytes());
    w
}

/// The attacker's contract.
const MALLORY: &str = "0x6666666666666666666666666666666666666666";

/// Bybit, 2025: the signers' screens showed a transfer; what they signed
/// was a `delegatecall` that upgraded their wallet. Here no request can
/// carry calldata (the API has no field for it); whatever a plan carries
/// must be byte for byte the payment the approved intent describes, so a
/// delegatecall, a proxy upgrade, an allowance, an operator approval or a
/// call to the wallet itself is refused, in a token or an ether payment.
#[test]
fn bybit_2025_a_plan_that_is_not_the_approved_payment_is_refused() {
    let token = intent(WALLET, token_asset(), BOB, 250);
    let ether = intent(WALLET, Asset::ether(CHAIN), BOB, 1_500);
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        (
            "a Safe execTransaction with operation 1 (delegatecall)",
            call(
                "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)",
                &[
                    word_addr(MALLORY),
                    word(0),
                    word(320),
                    word(1),
                    word(0),
                    word(0),
                    word(0),
                    word(0),
                    word(0),
                    word(352),
                    word(0),
                    word(0),
                ],
            ),
        ),
        (
            "a proxy upgrade",
            call("upgradeTo(address)", &[word_addr(MALLORY)]),
        ),
        (
            "an unlimited allowance",
            call(
                "approve(address,uint256)",
                &[word_addr(MALLORY), [0xff; 32]],
            ),
        ),
        (
            "an operator for every token",
            call(
                "setApprovalForAll(address,bool)",
                &[word_addr(MALLORY), word(1)],
            ),
        ),
        (
            "a new owner",
            call("transferOwnership(address)", &[word_addr(MALLORY)]),
        ),
    ];
    for (what, data) in payloads {
        // In place of a token transfer, to the token itself.
        let plan = TxPlan {
            data: data.clone(),
            ..token_plan()
        };
        let r = approve(&token, &sender(), &caps(), Kind::Payment, plan);
        assert!(matches!(r, Err(Refusal::Calldata { .. })), "{what}: {r:?}");
        // Riding along an ether payment.
        let plan = TxPlan {
            data: data.clone(),
            ..ether_plan()
        };
        let r = approve(&ether, &sender(), &caps(), Kind::Payment, plan);
        assert!(
            matches!(r, Err(Refusal::CalldataOnEther | Refusal::GasOnEther(_))),
            "{what}: {r:?}"
        );
        // Sent to the wallet itself (its own sender) or to the attacker.
        for to in [SENDER, MALLORY] {
            let plan = TxPlan {
                to: addr(to),
                data: data.clone(),
                ..token_plan()
            };
            let r = approve(&token, &sender(), &caps(), Kind::Payment, plan);
            assert!(
                matches!(r, Err(Refusal::OtherContract { .. })),
                "{what} to {to}: {r:?}"
            );
        }
    }
    // An intent that pays the wallet's own sender is not one.
    let own = intent(WALLET, Asset::ether(CHAIN), SENDER, 1_500);
    let plan = TxPlan {
        to: addr(SENDER),
        ..ether_plan()
    };
    assert!(matches!(
        approve(&own, &sender(), &caps(), Kind::Payment, plan),
        Err(Refusal::PaysSender)
    ));
}

/// WazirX, 2024: an upgrade of the multisig was shown to its signers as
/// a token transfer. Calldata that is anything but exactly
/// `transfer(recipient, amount)` of the approved intent, to the token's
/// own contract, is refused: wrapped in an upgrade, with bytes appended,
/// with dirty padding, or sent through another contract (a proxy).
#[test]
fn wazirx_2024_an_upgrade_dressed_as_a_token_transfer_is_refused() {
    let token = intent(WALLET, token_asset(), BOB, 250);
    let transfer = call("transfer(address,uint256)", &[word_addr(BOB), word(250)]);
    assert_eq!(
        transfer,
        token_plan().data,
        "the calldata a payment carries"
    );
    let mut appended = transfer.clone();
    appended.extend_from_slice(&call("upgradeTo(address)", &[word_addr(MALLORY)]));
    let mut dirty = transfer.clone();
    dirty[4] = 0x01; // a high byte of the address word
    let mut wrapped = call(
        "upgradeToAndCall(address,bytes)",
        &[word_addr(MALLORY), word(64), word(68)],
    );
    wrapped.extend_from_slice(&transfer);
    wrapped.extend_from_slice(&[0; 28]);
    for (what, data) in [
        ("an upgrade wrapping the transfer", wrapped),
        ("an upgrade appended to the transfer", appended),
        ("dirty padding in the address word", dirty),
    ] {
        let plan = TxPlan {
            data,
            ..token_plan()
        };
        let r = approve(&token, &sender(), &caps(), Kind::Payment, plan);
        assert!(matches!(r, Err(Refusal::Calldata { .. })), "{what}: {r:?}");
    }
    // The exact transfer, but through a proxy that is not the token.
    let plan = TxPlan {
        to: addr(MALLORY),
        ..token_plan()
    };
    let r = approve(&token, &sender(), &caps(), Kind::Payment, plan);
    assert!(matches!(r, Err(Refusal::OtherContract { .. })), "{r:?}");
    // And the approved transfer itself passes.
    assert!(approve(&token, &sender(), &caps(), Kind::Payment, token_plan()).is_ok());
}

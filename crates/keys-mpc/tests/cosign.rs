//! The co-signer checks on their own: a node derives the Taproot sighash
//! from the transaction it is shown, and signs only transactions that pay
//! exactly approved transfers (enough enrolled approvers, unexpired,
//! bound to the intent), change back to its key, within its fee cap.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use bitcoin::hashes::Hash as _;
use bitcoin::key::{TweakedPublicKey, XOnlyPublicKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use domain::Timestamp;
use keys_mpc::Abort;
use keys_mpc::cosign::{ApprovedTransfer, CosignPolicy, Prevout, Subject, check};
use keys_mpc::testing::{WALLET, address, payment, payment_of, policy};

fn key() -> [u8; 32] {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[9; 32]).unwrap();
    sk.x_only_public_key(&secp).0.serialize()
}

fn own_script() -> bitcoin::ScriptBuf {
    bitcoin::ScriptBuf::new_p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(
        XOnlyPublicKey::from_slice(&key()).unwrap(),
    ))
}

fn script_of(a: &str) -> bitcoin::ScriptBuf {
    a.parse::<bitcoin::Address<_>>()
        .unwrap()
        .require_network(bitcoin::Network::Regtest)
        .unwrap()
        .script_pubkey()
}

/// A transaction spending 100 000 sat of this key: `outputs`, then change.
fn spend(
    outputs: &[(bitcoin::ScriptBuf, u64)],
    change: u64,
) -> (bitcoin::Transaction, Vec<Prevout>) {
    let mut output: Vec<bitcoin::TxOut> = outputs
        .iter()
        .map(|(s, v)| bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(*v),
            script_pubkey: s.clone(),
        })
        .collect();
    if change > 0 {
        output.push(bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(change),
            script_pubkey: own_script(),
        });
    }
    let tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: bitcoin::OutPoint {
                txid: bitcoin::Txid::from_byte_array([3; 32]),
                vout: 0,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: bitcoin::Witness::new(),
        }],
        output,
    };
    let prevouts = vec![Prevout {
        value: 100_000,
        script_pubkey: hex::encode(own_script().as_bytes()),
    }];
    (tx, prevouts)
}

fn subject(
    tx: &bitcoin::Transaction,
    prevouts: &[Prevout],
    transfers: Vec<ApprovedTransfer>,
) -> Subject {
    Subject::BitcoinTaproot {
        tx: hex::encode(bitcoin::consensus::serialize(tx)),
        prevouts: prevouts.to_vec(),
        input: 0,
        transfers,
    }
}

fn now() -> Timestamp {
    Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
}

fn run(p: &CosignPolicy, s: &Subject) -> Result<Vec<u8>, Abort> {
    check(p, Some(key()), WALLET, s, now()).map(|c| c.message)
}

fn refused(r: Result<Vec<u8>, Abort>, why: &str) {
    match r {
        Err(Abort::Policy(reason)) => assert!(reason.contains(why), "{reason:?} lacks {why:?}"),
        other => panic!("expected a refusal ({why}), got {other:?}"),
    }
}

#[test]
fn an_approved_payment_is_signed_over_the_sighash_the_node_derives() {
    let p = policy(false);
    let to = address(5);
    let (tx, prevouts) = spend(&[(script_of(&to), 50_000)], 49_000);
    let msg = run(
        &p,
        &subject(&tx, &prevouts, vec![payment(&to, 50_000, &[1, 2])]),
    )
    .unwrap();
    let txouts: Vec<bitcoin::TxOut> = vec![bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(100_000),
        script_pubkey: own_script(),
    }];
    let expected = SighashCache::new(&tx)
        .taproot_key_spend_signature_hash(0, &Prevouts::All(&txouts), TapSighashType::Default)
        .unwrap()
        .to_byte_array();
    assert_eq!(msg, expected);
    // Three approvals, or two payments each approved: fine too.
    let to2 = address(6);
    let (tx2, pv2) = spend(
        &[(script_of(&to), 30_000), (script_of(&to2), 20_000)],
        49_000,
    );
    run(
        &p,
        &subject(
            &tx2,
            &pv2,
            vec![
                payment(&to2, 20_000, &[2, 3]),
                payment(&to, 30_000, &[1, 2, 3]),
            ],
        ),
    )
    .unwrap();
    // Small payments need no approvals under this node's policy.
    let (tx3, pv3) = spend(&[(script_of(&to), 10_000)], 89_000);
    run(&p, &subject(&tx3, &pv3, vec![payment(&to, 10_000, &[])])).unwrap();
}

#[test]
fn not_enough_valid_approvals_by_enrolled_approvers_is_refused() {
    let p = policy(false);
    let to = address(5);
    let (tx, pv) = spend(&[(script_of(&to), 50_000)], 49_000);
    refused(
        run(&p, &subject(&tx, &pv, vec![payment(&to, 50_000, &[1])])),
        "needs 2",
    );
    // Approver 7 is not enrolled with this node.
    refused(
        run(&p, &subject(&tx, &pv, vec![payment(&to, 50_000, &[1, 7])])),
        "needs 2",
    );
    // The same approver twice counts once.
    refused(
        run(&p, &subject(&tx, &pv, vec![payment(&to, 50_000, &[2, 2])])),
        "needs 2",
    );
    // Approvals of another transfer, pasted onto this one.
    let mut t = payment(&to, 50_000, &[]);
    t.approvals = payment(&to, 50_000, &[1, 2]).approvals;
    refused(run(&p, &subject(&tx, &pv, vec![t])), "needs 2");
    // An expiry moved forward: the signature no longer matches.
    let mut t = payment(&to, 50_000, &[1, 2]);
    for a in &mut t.approvals {
        a.expires_at_ms += 1;
    }
    refused(run(&p, &subject(&tx, &pv, vec![t])), "needs 2");
    // Expired approvals.
    let t = payment(&to, 50_000, &[1, 2]);
    let later = Timestamp::from_millis(now().as_millis() + 2 * 3_600_000);
    assert!(matches!(
        check(&p, Some(key()), WALLET, &subject(&tx, &pv, vec![t]), later),
        Err(Abort::Policy(_))
    ));
}

/// Ronin, 2022, at the node: approvers 1 and 2 are one person's keys
/// (`[[policy.people]]`), so their two approvals are one; with approver 3,
/// a second person, the payment is approved. The configuration refuses a
/// person whose key is not enrolled, a key held by two people, and a
/// `min_approvals` above the people the keys are.
#[test]
fn one_person_s_keys_supply_one_approval_at_the_node() {
    let mut p = policy(false);
    p.people = vec![keys_mpc::cosign::Person {
        name: "alice".into(),
        keys: vec![p.approvers[0].clone(), p.approvers[1].clone()],
    }];
    assert!(keys_mpc::cosign::check_policy(&p).is_ok());
    let to = address(5);
    let (tx, pv) = spend(&[(script_of(&to), 50_000)], 49_000);
    refused(
        run(&p, &subject(&tx, &pv, vec![payment(&to, 50_000, &[1, 2])])),
        "needs 2",
    );
    run(&p, &subject(&tx, &pv, vec![payment(&to, 50_000, &[1, 3])])).unwrap();
    run(&p, &subject(&tx, &pv, vec![payment(&to, 50_000, &[2, 3])])).unwrap();
    // Without the people, the same two keys are two approvers.
    run(
        &policy(false),
        &subject(&tx, &pv, vec![payment(&to, 50_000, &[1, 2])]),
    )
    .unwrap();

    let with = |people: Vec<(&str, Vec<String>)>, min: u16| {
        let mut q = policy(false);
        q.min_approvals = min;
        q.people = people
            .into_iter()
            .map(|(name, keys)| keys_mpc::cosign::Person {
                name: name.into(),
                keys,
            })
            .collect();
        keys_mpc::cosign::check_policy(&q)
    };
    let k = policy(false).approvers;
    assert!(
        with(vec![("alice", vec!["11".repeat(32)])], 2).is_err(),
        "not enrolled"
    );
    assert!(
        with(
            vec![("alice", vec![k[0].clone()]), ("bob", vec![k[0].clone()])],
            2
        )
        .is_err(),
        "one key, two people"
    );
    assert!(
        with(
            vec![("alice", vec![k[0].clone()]), ("alice", vec![k[1].clone()])],
            2
        )
        .is_err()
    );
    // Three keys, two people: two approvals can be met, three cannot.
    let pair = vec![("alice", vec![k[0].clone(), k[1].clone()])];
    assert!(with(pair.clone(), 2).is_ok());
    let e = with(pair, 3).unwrap_err();
    assert!(e.contains("only 2 people"), "{e}");
}

#[test]
fn transactions_that_pay_anything_else_are_refused() {
    let p = policy(false);
    let to = address(5);
    let thief = address(66);
    let approved = || vec![payment(&to, 50_000, &[1, 2])];
    // An extra output no one approved.
    let (tx, pv) = spend(
        &[(script_of(&to), 50_000), (script_of(&thief), 10_000)],
        39_000,
    );
    refused(run(&p, &subject(&tx, &pv, approved())), "no one approved");
    // The approved destination, another amount.
    let (tx, pv) = spend(&[(script_of(&to), 50_001)], 48_999);
    refused(run(&p, &subject(&tx, &pv, approved())), "no one approved");
    // Another destination for the approved amount.
    let (tx, pv) = spend(&[(script_of(&thief), 50_000)], 49_000);
    refused(run(&p, &subject(&tx, &pv, approved())), "no one approved");
    // An approved transfer left unpaid.
    let (tx, pv) = spend(&[], 99_000);
    refused(run(&p, &subject(&tx, &pv, approved())), "is not paid");
    // A fee over the node's cap.
    let (tx, pv) = spend(&[(script_of(&to), 50_000)], 40_000);
    refused(
        run(&p, &subject(&tx, &pv, approved())),
        "over this node's cap",
    );
    // Outputs worth more than the inputs.
    let (tx, pv) = spend(&[(script_of(&to), 50_000)], 60_000);
    refused(
        run(&p, &subject(&tx, &pv, approved())),
        "more than the inputs",
    );
}

#[test]
fn inputs_and_encodings_are_checked() {
    let p = policy(false);
    let to = address(5);
    let (tx, mut pv) = spend(&[(script_of(&to), 50_000)], 49_000);
    let ok = || vec![payment(&to, 50_000, &[1, 2])];
    // The input spends someone else's output.
    let mut other = pv.clone();
    other[0].script_pubkey = hex::encode(script_of(&address(7)).as_bytes());
    refused(run(&p, &subject(&tx, &other, ok())), "this key's output");
    // Prevouts missing; an input that does not exist.
    refused(run(&p, &subject(&tx, &[], ok())), "per input");
    let Subject::BitcoinTaproot { tx: t, .. } = subject(&tx, &pv, ok()) else {
        unreachable!()
    };
    let far = Subject::BitcoinTaproot {
        tx: t,
        prevouts: pv.clone(),
        input: 5,
        transfers: ok(),
    };
    refused(run(&p, &far), "no such input");
    // Already signed.
    let mut signed = tx.clone();
    signed.input[0].witness.push([1u8; 64]);
    refused(run(&p, &subject(&signed, &pv, ok())), "already");
    // Garbage.
    let bad = Subject::BitcoinTaproot {
        tx: "zz".into(),
        prevouts: pv.clone(),
        input: 0,
        transfers: ok(),
    };
    refused(run(&p, &bad), "not hex");
    pv[0].script_pubkey = "zz".into();
    refused(run(&p, &subject(&tx, &pv, ok())), "prevout script");
    // A Taproot input for a key that is not a Taproot key.
    let (tx, pv) = spend(&[(script_of(&to), 50_000)], 49_000);
    assert!(matches!(
        check(&p, None, WALLET, &subject(&tx, &pv, ok()), now()),
        Err(Abort::Policy(_))
    ));
    // A transfer whose intent is not a bitcoin payment, or not hex.
    let mut t = payment(&to, 50_000, &[1, 2]);
    t.intent = "00".into();
    refused(run(&p, &subject(&tx, &pv, vec![t])), "intent");
}

#[test]
fn one_approval_pays_once_and_small_unapproved_payments_have_a_ceiling() {
    let p = policy(false);
    let to = address(5);
    // The same approved transfer listed twice, paid twice: refused.
    let t = payment(&to, 50_000, &[1, 2]);
    let (tx, pv) = spend(&[(script_of(&to), 50_000), (script_of(&to), 50_000)], 0);
    let mut pv2 = pv.clone();
    pv2[0].value = 101_000;
    refused(
        run(&p, &subject(&tx, &pv2, vec![t.clone(), t])),
        "listed twice",
    );
    // Many small payments without approvals: together over the ceiling.
    let outs: Vec<_> = (0..3).map(|_| (script_of(&address(8)), 4_000)).collect();
    let (tx, pv) = spend(&outs, 87_000);
    let smalls = (0..3).map(|_| payment(&address(8), 4_000, &[])).collect();
    refused(
        run(&p, &subject(&tx, &pv, smalls)),
        "without approvals over",
    );
    // Two of them fit.
    let (tx, pv) = spend(&outs[..2], 91_000);
    let smalls = (0..2).map(|_| payment(&address(8), 4_000, &[])).collect();
    run(&p, &subject(&tx, &pv, smalls)).unwrap();
    // An intent for another network (its script would be the same).
    let mut mainnet = p.clone();
    mainnet.bitcoin_network = "bitcoin:mainnet".into();
    let (tx, pv) = spend(&[(script_of(&to), 50_000)], 49_000);
    refused(
        run(
            &mainnet,
            &subject(&tx, &pv, vec![payment(&to, 50_000, &[1, 2])]),
        ),
        "this node's network",
    );
    // Approved for another wallet: not payable with this wallet's key.
    let other = payment_of("0190a5e0-0000-7000-8000-0000000000ff", &to, 50_000, &[1, 2]);
    refused(run(&p, &subject(&tx, &pv, vec![other])), "another wallet");
}

#[test]
fn raw_messages_only_where_the_operator_allows_them() {
    let raw = Subject::Raw {
        message: hex::encode(b"anything"),
    };
    refused(run(&policy(false), &raw), "raw message");
    // Never for a Taproot key, even where raw messages are allowed.
    refused(run(&policy(true), &raw), "raw message for a Bitcoin key");
    assert_eq!(
        check(&policy(true), None, WALLET, &raw, now())
            .unwrap()
            .message,
        b"anything"
    );
    assert!(matches!(
        check(&policy(false), None, WALLET, &raw, now()),
        Err(Abort::Policy(_))
    ));
    // Configuration: approvals needed from more approvers than enrolled.
    let mut p = policy(false);
    p.min_approvals = 4;
    assert!(keys_mpc::cosign::check_policy(&p).is_err());
    p.min_approvals = 2;
    p.approvers.push("00".repeat(32));
    assert!(keys_mpc::cosign::check_policy(&p).is_err());
    let mut p = policy(false);
    p.approvers.push(p.approvers[0].clone());
    assert!(keys_mpc::cosign::check_policy(&p).is_err());
    let mut p = policy(false);
    p.min_approvals = 0;
    assert!(keys_mpc::cosign::check_policy(&p).is_err());
    let mut p = policy(false);
    p.bitcoin_network = "eip155:1".into();
    assert!(keys_mpc::cosign::check_policy(&p).is_err());
    assert!(keys_mpc::cosign::check_policy(&policy(true)).is_ok());
}

#[test]
fn an_approved_transfer_is_paid_by_one_transaction_or_its_replacements_only() {
    use keys_mpc::cosign::PaidJournal;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paid");
    let p = policy(false);
    let to = address(5);
    let t = payment(&to, 50_000, &[1, 2]);
    let (tx, pv) = spend(&[(script_of(&to), 50_000)], 49_000);
    let first = check(
        &p,
        Some(key()),
        WALLET,
        &subject(&tx, &pv, vec![t.clone()]),
        now(),
    )
    .unwrap();
    let mut j = PaidJournal::open(&path).unwrap();
    j.check(&first).unwrap();
    j.record(&first).unwrap();
    // A fee bump of the same payment (same outpoint): allowed.
    let (bump, pv) = spend(&[(script_of(&to), 50_000)], 48_000);
    let bumped = check(
        &p,
        Some(key()),
        WALLET,
        &subject(&bump, &pv, vec![t.clone()]),
        now(),
    )
    .unwrap();
    j.check(&bumped).unwrap();
    // The same approved transfer in an independent transaction: refused,
    // also after a restart.
    let mut other = tx.clone();
    other.input[0].previous_output.vout = 7;
    let again = check(
        &p,
        Some(key()),
        WALLET,
        &subject(&other, &pv, vec![t]),
        now(),
    )
    .unwrap();
    assert!(matches!(j.check(&again), Err(Abort::Policy(r)) if r.contains("already paid")));
    drop(j);
    let j = PaidJournal::open(&path).unwrap();
    assert!(j.check(&again).is_err());
    j.check(&bumped).unwrap();
}

#[test]
fn replacements_must_all_conflict_with_each_other() {
    use keys_mpc::cosign::PaidJournal;
    let dir = tempfile::tempdir().unwrap();
    let mut j = PaidJournal::open(&dir.path().join("paid")).unwrap();
    let p = policy(false);
    let to = address(5);
    let t = payment(&to, 50_000, &[1, 2]);
    // Spends outputs `vouts` of this key (60 000 sat each): pays `to`,
    // the rest back as change less 1 000 of fee.
    let spend_of = |vouts: &[u32]| {
        let (mut tx, mut pv) = spend(&[(script_of(&to), 50_000)], 0);
        let template = tx.input[0].clone();
        tx.input = vouts
            .iter()
            .map(|v| {
                let mut i = template.clone();
                i.previous_output.vout = *v;
                i
            })
            .collect();
        pv = vouts
            .iter()
            .map(|_| Prevout {
                value: 60_000,
                ..pv[0].clone()
            })
            .collect();
        tx.output.push(bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(60_000 * vouts.len() as u64 - 51_000),
            script_pubkey: own_script(),
        });
        check(
            &p,
            Some(key()),
            WALLET,
            &subject(&tx, &pv, vec![t.clone()]),
            now(),
        )
        .unwrap()
    };
    let first = spend_of(&[1, 2]);
    j.check(&first).unwrap();
    j.record(&first).unwrap();
    // Shares outpoint 1 with the first: a replacement.
    let second = spend_of(&[1, 3]);
    j.check(&second).unwrap();
    j.record(&second).unwrap();
    // Shares outpoint 2 with the first but nothing with the second: both
    // could confirm. Refused.
    let third = spend_of(&[2, 4]);
    assert!(matches!(j.check(&third), Err(Abort::Policy(r)) if r.contains("already paid")));
    // Spending outpoint 1 still conflicts with both.
    j.check(&spend_of(&[1, 5])).unwrap();
    drop(j);
    let j = PaidJournal::open(&dir.path().join("paid")).unwrap();
    assert!(j.check(&third).is_err());
}

/// ERC-20 payments under a threshold ECDSA key: only tokens in the node's
/// own list, only `transfer(recipient, amount)` of exactly the approved
/// amount to the approved recipient, no ether with it.
#[test]
fn an_erc20_payment_is_read_with_the_node_s_own_token_list() {
    use chain_eth::{EthAddress, Fees, TxPlan};
    use domain::{Asset, AssetId, AssetKind, Decimals, Network, Symbol};
    use keys_mpc::cosign::{EthereumToken, EthereumTx, check_ethereum};
    const USDC: &str = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48";
    const TO: &str = "0x1111111111111111111111111111111111111111";
    let chain = keys_mpc::testing::ETH_CHAIN;
    let mut p = policy(false);
    let with_token = |p: &mut CosignPolicy| {
        p.ethereum.as_mut().unwrap().tokens = vec![EthereumToken {
            symbol: "USDC".into(),
            contract: USDC.into(),
            decimals: 6,
            unapproved_limit: 1_000_000,
        }];
    };
    with_token(&mut p);
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let key = bitcoin::secp256k1::SecretKey::from_slice(&[9; 32])
        .unwrap()
        .public_key(&secp)
        .serialize();
    let usdc_asset = || {
        Asset::new(
            AssetId::new(
                Network::Evm { chain_id: chain },
                AssetKind::Erc20(USDC.parse().unwrap()),
            )
            .unwrap(),
            Symbol::new("USDC").unwrap(),
            Decimals::new(6).unwrap(),
        )
        .unwrap()
    };
    let usdc = usdc_asset();
    let transfer = keys_mpc::testing::approved(
        WALLET,
        usdc,
        Network::Evm { chain_id: chain },
        TO,
        5_000_000,
        &[1, 2],
    );
    let fees = Fees::Eip1559 {
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
    };
    let addr = |a: &str| EthAddress::parse(a).unwrap().0;
    let run = |p: &CosignPolicy, plan: &TxPlan| {
        let s = Subject::Ethereum {
            tx: EthereumTx::from_plan(plan).unwrap(),
            transfers: vec![transfer.clone()],
        };
        check_ethereum(p, &key, WALLET, &s, now()).map(|c| c.message)
    };
    let good = TxPlan::erc20(chain, 0, addr(USDC), addr(TO), 5_000_000, 60_000, fees);
    assert_eq!(run(&p, &good).unwrap(), good.signing_payload());
    // Another amount, another recipient, ether beside it, another contract.
    let mut more = TxPlan::erc20(chain, 0, addr(USDC), addr(TO), 5_000_001, 60_000, fees);
    refused(run(&p, &more), "does not pay");
    more = TxPlan::erc20(chain, 0, addr(USDC), addr(USDC), 5_000_000, 60_000, fees);
    refused(run(&p, &more), "does not pay");
    more = good.clone();
    more.value = 1;
    refused(run(&p, &more), "does not pay");
    more = TxPlan::erc20(chain, 0, addr(TO), addr(TO), 5_000_000, 60_000, fees);
    refused(run(&p, &more), "does not pay");
    // A node without the token in its list pays none of it.
    let bare = policy(false);
    refused(run(&bare, &good), "not a payment");
    // Without approvals: up to the token's own limit, in its own units.
    let unapproved = |units: u128| {
        let t = keys_mpc::testing::approved(
            WALLET,
            usdc_asset(),
            Network::Evm { chain_id: chain },
            TO,
            units,
            &[],
        );
        let plan = TxPlan::erc20(chain, 0, addr(USDC), addr(TO), units, 60_000, fees);
        let s = Subject::Ethereum {
            tx: EthereumTx::from_plan(&plan).unwrap(),
            transfers: vec![t],
        };
        check_ethereum(&p, &key, WALLET, &s, now()).map(|c| c.message)
    };
    assert!(unapproved(1_000_000).is_ok());
    refused(unapproved(1_000_001), "too few valid approvals");
}

/// A passkey approver enrolled with the node (its relying party) and what
/// its authenticator returns for `t`'s statement, from `origin`.
fn passkey_approval(t: &ApprovedTransfer, origin: &str) -> keys_mpc::cosign::Approval {
    use base64::Engine as _;
    use p256::ecdsa::signature::Signer as _;
    use sha2::Digest as _;
    let sk = p256::ecdsa::SigningKey::from_bytes(&[0x42; 32].into()).unwrap();
    let key = policy::ApproverKey::passkey(
        &[0xab; 16],
        sk.verifying_key().to_encoded_point(true).as_bytes(),
    )
    .unwrap();
    let expires = t.approvals[0].expires_at_ms;
    let bytes = hex::decode(&t.intent).unwrap();
    let intent = domain::TransferIntent::decode(&bytes, |_| {
        Some(domain::Asset::bitcoin(domain::BitcoinNetwork::Regtest))
    })
    .unwrap();
    let statement = policy::ApprovalStatement {
        intent: intent.digest(),
        policy_version: t.policy_version,
        decision_id: *uuid::Uuid::parse_str(&t.decision_id).unwrap().as_bytes(),
        expires_at: Timestamp::from_millis(expires),
        vote: policy::Vote::Approve,
    };
    let mut data = sha2::Sha256::digest(b"localhost").to_vec();
    data.extend_from_slice(&[0x05, 0, 0, 0, 1]);
    let client = serde_json::to_vec(&serde_json::json!({
        "type": "webauthn.get",
        "challenge": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(statement.challenge()),
        "origin": origin,
    }))
    .unwrap();
    let mut signed = data.clone();
    signed.extend_from_slice(&sha2::Sha256::digest(&client));
    let sig: p256::ecdsa::Signature = sk.sign(&signed);
    keys_mpc::cosign::Approval {
        approver: key.to_string(),
        expires_at_ms: expires,
        signature: policy::ApprovalSignature::WebAuthn(policy::Assertion {
            authenticator_data: data,
            client_data_json: client,
            signature: sig.to_der().as_bytes().to_vec(),
        })
        .to_string(),
    }
}

#[test]
fn a_passkey_approval_counts_against_the_node_s_own_relying_party() {
    let mut p = policy(false);
    let to = address(5);
    let (tx, pv) = spend(&[(script_of(&to), 50_000)], 49_000);
    let with_passkey = |origin: &str| {
        let mut t = payment(&to, 50_000, &[1]);
        let a = passkey_approval(&t, origin);
        t.approvals.push(a);
        t
    };
    // Not enrolled with this node: it does not count.
    refused(
        run(
            &p,
            &subject(&tx, &pv, vec![with_passkey("http://localhost:8080")]),
        ),
        "needs 2",
    );
    let sk = p256::ecdsa::SigningKey::from_bytes(&[0x42; 32].into()).unwrap();
    p.passkey_approvers.push(keys_mpc::cosign::PasskeyApprover {
        public_key: hex::encode(sk.verifying_key().to_encoded_point(true).as_bytes()),
        credential_id: hex::encode([0xab; 16]),
        rp_id: "localhost".into(),
        origins: vec!["http://localhost:8080".into()],
    });
    keys_mpc::cosign::check_policy(&p).unwrap();
    // The same key under another credential id is the same approver.
    let mut twice = p.clone();
    let mut alias = twice.passkey_approvers[0].clone();
    alias.credential_id = hex::encode([0xcd; 16]);
    twice.passkey_approvers.push(alias);
    assert!(keys_mpc::cosign::check_policy(&twice).is_err());
    // A relying party a browser would never name: refused at load.
    let mut odd = p.clone();
    odd.passkey_approvers[0].origins = vec!["https://evil.example".into()];
    assert!(keys_mpc::cosign::check_policy(&odd).is_err());
    run(
        &p,
        &subject(&tx, &pv, vec![with_passkey("http://localhost:8080")]),
    )
    .unwrap();
    // Made on a page of another origin: refused.
    refused(
        run(
            &p,
            &subject(&tx, &pv, vec![with_passkey("http://localhost:9999")]),
        ),
        "needs 2",
    );
    // Moved to another transfer: its challenge is the other statement's.
    let mut t = payment(&to, 50_000, &[1]);
    t.approvals
        .push(with_passkey("http://localhost:8080").approvals[1].clone());
    refused(run(&p, &subject(&tx, &pv, vec![t])), "needs 2");
}

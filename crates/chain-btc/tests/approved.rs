//! `approve`: every way an unsigned transaction can differ from the
//! approved payouts, each refused, as data; and an approved one signed,
//! accepted and verified by Bitcoin Core's interpreter.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::{Amount as Sats, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use chain_btc::{BtcPlan, FeeCaps, Intended, Paying, Payout, SigningTask, Spend, Utxo, approve};
use domain::intent::IntentParts;
use domain::{
    AccountId, Actor, Address, Amount, Asset, BitcoinNetwork, Network, Timestamp, TransferId,
    TransferIntent, TransferKind, WalletId,
};
use expect_test::expect;

const NET: BitcoinNetwork = BitcoinNetwork::Regtest;
const WALLET: &str = "01900000-0000-7000-8000-000000000001";
const OTHER_WALLET: &str = "01900000-0000-7000-8000-000000000002";

fn secret(n: u8) -> SecretKey {
    SecretKey::from_slice(&[n; 32]).expect("secret")
}

fn pubkey(n: u8) -> [u8; 33] {
    secret(n).public_key(&Secp256k1::new()).serialize()
}

fn spend(n: u8) -> Spend {
    Spend::P2wpkh { pubkey: pubkey(n) }
}

fn script(n: u8) -> ScriptBuf {
    spend(n).script_pubkey().expect("script")
}

fn address(n: u8) -> String {
    bitcoin::Address::from_script(&script(n), bitcoin::Network::Regtest)
        .expect("address")
        .to_string()
}

fn outpoint(n: u8) -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array([n; 32]),
        vout: u32::from(n),
    }
}

fn utxo(n: u8, key: u8, sat: u64) -> Utxo {
    Utxo {
        outpoint: outpoint(n),
        value_sat: sat,
        spend: spend(key),
    }
}

fn intent(wallet: &str, to: u8, sat: u128) -> Intended {
    intent_of(TransferKind::Withdrawal, wallet, to, sat)
}

fn intent_of(kind: TransferKind, wallet: &str, to: u8, sat: u128) -> Intended {
    let network = Network::Bitcoin(NET);
    let intent = TransferIntent::new(IntentParts {
        id: TransferId::from_uuid("01900000-0000-7000-8000-0000000000aa".parse().expect("id")),
        kind,
        account: AccountId::from_uuid("01900000-0000-7000-8000-0000000000bb".parse().expect("id")),
        wallet: wallet.parse().expect("wallet"),
        amount: Amount::from_units(Asset::bitcoin(NET), sat),
        destination: Address::new(network, &address(to)).expect("destination"),
        reference: None,
        initiator: Actor::System,
        created_at: Timestamp::from_millis(1_700_000_000_000),
    })
    .expect("intent");
    Intended::of(&intent, NET).expect("a regtest intent")
}

/// Keys 1 and 2 are the wallet's; 7, 8 and 9 are payees and strangers.
const OWN_KEY: u8 = 1;
const CHANGE_KEY: u8 = 2;

fn reserved() -> Vec<Utxo> {
    vec![
        utxo(1, OWN_KEY, 60_000),
        utxo(2, OWN_KEY, 50_000),
        // Reserved, but of a key the wallet does not have.
        utxo(3, 9, 70_000),
    ]
}

fn own() -> Vec<ScriptBuf> {
    vec![script(OWN_KEY), script(CHANGE_KEY)]
}

fn caps() -> FeeCaps {
    FeeCaps {
        max_fee_rate: 100,
        max_fee: 20_000,
    }
}

fn payouts() -> Vec<Intended> {
    vec![intent(WALLET, 7, 30_000), intent(WALLET, 8, 40_000)]
}

/// The approved transaction: two inputs, two payouts, change to key 2.
fn good() -> Transaction {
    let r = reserved();
    BtcPlan {
        inputs: vec![r[0].clone(), r[1].clone()],
        payouts: payouts().iter().map(|i| i.payout().clone()).collect(),
        change: Some(Payout {
            script_pubkey: script(CHANGE_KEY),
            value_sat: 39_000,
        }),
        rbf: true,
    }
    .psbt()
    .expect("psbt")
    .unsigned_tx
}

fn verdict(intended: &[Intended], unsigned: &Transaction) -> String {
    let (reserved, own) = (reserved(), own());
    let paying = Paying {
        wallet: WALLET.parse::<WalletId>().expect("wallet"),
        reserved: &reserved,
        own: &own,
    };
    match approve(intended, paying, &caps(), unsigned) {
        Ok(a) => format!("approved, paying {} intents", a.intents().len()),
        Err(e) => format!("refused: {e}"),
    }
}

#[test]
fn every_difference_from_the_approval_is_refused() {
    let with = |f: &dyn Fn(&mut Transaction)| {
        let mut t = good();
        f(&mut t);
        t
    };
    let cases: Vec<(&str, Vec<Intended>, Transaction)> = vec![
        ("as approved", payouts(), good()),
        (
            "an extra output",
            payouts(),
            with(&|t| {
                t.output.push(TxOut {
                    value: Sats::from_sat(5_000),
                    script_pubkey: script(9),
                })
            }),
        ),
        (
            "change to a foreign script",
            payouts(),
            with(&|t| t.output[2].script_pubkey = script(9)),
        ),
        (
            "no change, one payout short",
            payouts(),
            with(&|t| {
                t.output.truncate(1);
            }),
        ),
        ("payouts swapped", payouts(), with(&|t| t.output.swap(0, 1))),
        (
            "one sat more to a payee",
            payouts(),
            with(&|t| t.output[0].value = Sats::from_sat(30_001)),
        ),
        (
            "a payee replaced",
            payouts(),
            with(&|t| t.output[1].script_pubkey = script(9)),
        ),
        (
            "an input not reserved",
            payouts(),
            with(&|t| t.input[1].previous_output = outpoint(4)),
        ),
        (
            "a reserved input outside the wallet",
            payouts(),
            with(&|t| t.input[1].previous_output = outpoint(3)),
        ),
        (
            "an input spent twice",
            payouts(),
            with(&|t| t.input[1].previous_output = outpoint(1)),
        ),
        (
            "another lock time",
            payouts(),
            with(&|t| t.lock_time = LockTime::from_height(800_000).expect("height")),
        ),
        (
            "an intent of another wallet",
            vec![intent(WALLET, 7, 30_000), intent(OTHER_WALLET, 8, 40_000)],
            good(),
        ),
        ("no intents", Vec::new(), good()),
        (
            "a fee over the cap",
            payouts(),
            with(&|t| t.output[2].value = Sats::from_sat(9_000)),
        ),
    ];
    let got: String = cases
        .into_iter()
        .map(|(name, intended, tx)| format!("{name}: {}\n", verdict(&intended, &tx)))
        .collect();
    expect![[r#"
        as approved: approved, paying 2 intents
        an extra output: refused: 4 outputs for 2 approved payouts
        change to a foreign script: refused: the change output pays a script outside the wallet
        no change, one payout short: refused: 1 outputs for 2 approved payouts
        payouts swapped: refused: the transaction is not the approved payouts (order, amounts, scripts or fields)
        one sat more to a payee: refused: the transaction is not the approved payouts (order, amounts, scripts or fields)
        a payee replaced: refused: the transaction is not the approved payouts (order, amounts, scripts or fields)
        an input not reserved: refused: input 0404040404040404040404040404040404040404040404040404040404040404:4 is not an output reserved for this send
        a reserved input outside the wallet: refused: input 0303030303030303030303030303030303030303030303030303030303030303:3 spends an output outside the wallet
        an input spent twice: refused: input 0101010101010101010101010101010101010101010101010101010101010101:1 is spent twice
        another lock time: refused: the transaction is not the approved payouts (order, amounts, scripts or fields)
        an intent of another wallet: refused: an intent of wallet 01900000-0000-7000-8000-000000000002 in a send of wallet 01900000-0000-7000-8000-000000000001
        no intents: refused: no approved payouts
        a fee over the cap: refused: fees: fee rate 129 sat/vB is over the cap of 100
    "#]]
    .assert_eq(&got);
}

/// The payouts approved in the good transaction.
fn approved_good() -> chain_btc::Approved {
    let (reserved, own) = (reserved(), own());
    let paying = Paying {
        wallet: WALLET.parse::<WalletId>().expect("wallet"),
        reserved: &reserved,
        own: &own,
    };
    approve(&payouts(), paying, &caps(), &good()).expect("approved")
}

#[test]
fn an_approved_transaction_is_signed_and_verified_by_core() {
    let approved = approved_good();
    let secp = Secp256k1::new();
    let mut psbt = approved.psbt().clone();
    for task in approved.signing_tasks().expect("tasks") {
        let SigningTask::Ecdsa { digest, .. } = task else {
            panic!("P2WPKH inputs sign ECDSA");
        };
        let sig = secp.sign_ecdsa(&Message::from_digest(digest), &secret(OWN_KEY));
        chain_btc::add_ecdsa(&mut psbt, &task, &sig.serialize_compact()).expect("added");
    }
    let tx = approved.accept(psbt).expect("Core verifies every input");
    assert_eq!(tx.compute_txid(), good().compute_txid());
    // A PSBT of another transaction is not accepted as this one.
    let mut other = approved.psbt().clone();
    other.unsigned_tx.lock_time = LockTime::from_height(1).expect("height");
    assert!(approved.accept(other).is_err());
}

/// A PSBT signed elsewhere is read for its signatures only: another
/// sighash type, a high-S signature, a signature by a key that does not
/// spend the input, or one that does not verify is refused; a final
/// witness it brings is ignored (what is broadcast is built here).
#[test]
fn only_good_signatures_are_taken_from_a_signed_psbt() {
    let approved = approved_good();
    let secp = Secp256k1::new();
    let tasks = approved.signing_tasks().expect("tasks");
    let sign = |key: u8, sighash: bitcoin::EcdsaSighashType, high_s: bool| {
        let mut psbt = approved.psbt().clone();
        for task in &tasks {
            let SigningTask::Ecdsa { digest, input, .. } = *task else {
                panic!("P2WPKH inputs sign ECDSA");
            };
            let sig = secp.sign_ecdsa(&Message::from_digest(digest), &secret(key));
            let mut compact = sig.serialize_compact();
            if high_s {
                // s' = n - s: the same signature, malleated.
                let n = bitcoin::secp256k1::constants::CURVE_ORDER;
                let mut borrow = 0i16;
                for i in (32..64).rev() {
                    let v = i16::from(n[i - 32]) - i16::from(compact[i]) - borrow;
                    compact[i] = v.rem_euclid(256) as u8;
                    borrow = i16::from(v < 0);
                }
            }
            let signature =
                bitcoin::secp256k1::ecdsa::Signature::from_compact(&compact).expect("compact");
            let pk = bitcoin::PublicKey::from_slice(&pubkey(key)).expect("key");
            psbt.inputs[input].partial_sigs.insert(
                pk,
                bitcoin::ecdsa::Signature {
                    signature,
                    sighash_type: sighash,
                },
            );
        }
        psbt
    };
    use bitcoin::EcdsaSighashType::{All, None as NoOutputs};
    let refused = |psbt| approved.accept(psbt).expect_err("refused").to_string();
    assert!(refused(sign(OWN_KEY, NoOutputs, false)).contains("sighash type"));
    assert!(refused(sign(OWN_KEY + 1, All, false)).contains("does not spend it"));
    assert!(refused(sign(OWN_KEY, All, true)).contains("does not verify"));
    // A final witness brought along is not what is broadcast.
    let mut forged = sign(OWN_KEY, All, false);
    forged.inputs[0].final_script_witness = Some(bitcoin::Witness::from_slice(&[vec![1u8; 9]]));
    let tx = approved.accept(forged).expect("its signatures are good");
    assert_ne!(tx.input[0].witness.to_vec(), vec![vec![1u8; 9]]);
    assert!(approved.accept(sign(OWN_KEY, All, false)).is_ok());
}

/// A consolidation pays the wallet itself, alone: to a stranger's script,
/// or beside another payout, it is refused; to its own script, approved.
#[test]
fn a_consolidation_pays_only_the_wallet_itself() {
    let consolidation = |to: u8| intent_of(TransferKind::Consolidation, WALLET, to, 100_000);
    let tx = |intended: &[Intended]| {
        let r = reserved();
        BtcPlan {
            inputs: vec![r[0].clone(), r[1].clone()],
            payouts: intended.iter().map(|i| i.payout().clone()).collect(),
            change: None,
            rbf: true,
        }
        .psbt()
        .expect("psbt")
        .unsigned_tx
    };
    let elsewhere = format!("refused: {}", chain_btc::Refusal::ConsolidationElsewhere);
    let to_stranger = [consolidation(7)];
    assert_eq!(verdict(&to_stranger, &tx(&to_stranger)), elsewhere);
    let with_a_payout = [intent(WALLET, 8, 5_000), consolidation(OWN_KEY)];
    assert_eq!(verdict(&with_a_payout, &tx(&with_a_payout)), elsewhere);
    let own = [consolidation(OWN_KEY)];
    assert_eq!(verdict(&own, &tx(&own)), "approved, paying 1 intents");
}

#[test]
fn a_sweep_goes_alone_and_all_of_it_to_its_destination() {
    let r = reserved();
    // A sweep of key 1's outputs to key 2's address (a successor's).
    let sweep = intent_of(TransferKind::Sweep, WALLET, CHANGE_KEY, 99_000);
    assert!(sweep.is_sweep());
    let tx = |change: Option<u8>| {
        BtcPlan {
            inputs: vec![r[0].clone(), r[1].clone()],
            payouts: vec![sweep.payout().clone()],
            change: change.map(|k| Payout {
                script_pubkey: script(k),
                value_sat: 9_000,
            }),
            rbf: true,
        }
        .psbt()
        .expect("psbt")
        .unsigned_tx
    };
    // Its fee's remainder to the same address: approved, and it says where.
    let (reserved, own) = (reserved(), own());
    let paying = Paying {
        wallet: WALLET.parse::<WalletId>().expect("wallet"),
        reserved: &reserved,
        own: &own,
    };
    let a = approve(
        std::slice::from_ref(&sweep),
        paying,
        &caps(),
        &tx(Some(CHANGE_KEY)),
    )
    .expect("a sweep");
    assert_eq!(a.sweep_to(), Some(address(CHANGE_KEY).as_str()));
    assert_eq!(
        verdict(std::slice::from_ref(&sweep), &tx(None)),
        "approved, paying 1 intents"
    );
    // Change to another of the wallet's scripts: refused.
    assert_eq!(
        verdict(std::slice::from_ref(&sweep), &tx(Some(OWN_KEY))),
        "refused: a sweep goes alone, and all of it (its change too) to its destination"
    );
    // With another payout beside it: refused.
    let mixed = [
        intent(WALLET, 7, 5_000),
        intent_of(TransferKind::Sweep, WALLET, CHANGE_KEY, 90_000),
    ];
    let both = BtcPlan {
        inputs: vec![r[0].clone(), r[1].clone()],
        payouts: mixed.iter().map(|i| i.payout().clone()).collect(),
        change: None,
        rbf: true,
    }
    .psbt()
    .expect("psbt")
    .unsigned_tx;
    assert_eq!(
        verdict(&mixed, &both),
        "refused: a sweep goes alone, and all of it (its change too) to its destination"
    );
    // An ordinary payout is no sweep.
    let plain = approve(&payouts(), paying, &caps(), &good()).expect("payouts");
    assert_eq!(plain.sweep_to(), None);
}

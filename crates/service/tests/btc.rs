//! Bitcoin sends through the service on SQLite and PostgreSQL: deposits,
//! selection and reservation committed before signing, keystore keys
//! (P2WPKH and P2TR) signing, Core's verification, bad input.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;

use chain_btc::FeeCaps;
use domain::{Actor, BitcoinNetwork, KeyAlgorithm, KeyBackend, KeyId, KeyPurpose};
use service::btc::{BtcNetwork, BtcSendRequest, BtcServiceError};
use service::{Checkpointer, NewKey, Service, ServiceError, SystemClock};
use storage::testing::TestDb;

storage::on_both!(fixture; a_send_is_planned_reserved_signed_and_verified, bad_input_reserves_and_signs_nothing);

const PAYEE: &str = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw";

struct Fixture {
    db: TestDb,
    svc: Service,
    ecdsa: KeyId,
    schnorr: KeyId,
    change: KeyId,
    _dir: tempfile::TempDir,
}

fn alice() -> Actor {
    "operator:alice".parse().unwrap()
}

async fn fixture(db: TestDb) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cp = Checkpointer::for_tests(dir.path(), 9, 10_000);
    let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
    for s in &svc.init_keystore(&alice(), 2, 2).await.unwrap() {
        svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    svc.add_btc_network(BtcNetwork {
        network: BitcoinNetwork::Regtest,
        fee_caps: FeeCaps {
            max_fee_rate: 100,
            max_fee: 100_000,
        },
        fee_rate: 2,
        batch: Default::default(),
        client: None,
    });
    let key = |algorithm| NewKey {
        purpose: KeyPurpose::TransferSigning,
        algorithm,
        backend: KeyBackend::Keystore,
        cryptoperiod_days: 30,
    };
    let ecdsa = svc
        .create_key(&alice(), key(KeyAlgorithm::EcdsaSecp256k1))
        .await
        .unwrap()
        .id;
    let schnorr = svc
        .create_key(&alice(), key(KeyAlgorithm::SchnorrBip340))
        .await
        .unwrap()
        .id;
    let change = svc
        .create_key(&alice(), key(KeyAlgorithm::EcdsaSecp256k1))
        .await
        .unwrap()
        .id;
    Fixture {
        db,
        svc,
        ecdsa,
        schnorr,
        change,
        _dir: dir,
    }
}

impl Fixture {
    async fn deposit(&self, key: KeyId, n: u8, sat: u64) {
        self.svc
            .btc_record_deposit(
                &alice(),
                BitcoinNetwork::Regtest,
                key,
                &format!("{n:02x}").repeat(32),
                0,
                sat,
            )
            .await
            .unwrap();
    }

    fn request(&self, to: &str, amount: &str, rate: u64) -> BtcSendRequest {
        BtcSendRequest {
            network: BitcoinNetwork::Regtest,
            payouts: vec![(to.to_owned(), amount.to_owned())],
            fee_rate: rate,
            change_key: self.change,
        }
    }

    async fn actions(&self) -> Vec<String> {
        let page = self.db.store.audit_page(0, 10_000).await.unwrap();
        page.into_iter().map(|r| r.action).collect()
    }
}

async fn a_send_is_planned_reserved_signed_and_verified(f: Fixture) {
    assert!(
        f.svc
            .btc_address(f.ecdsa, BitcoinNetwork::Regtest)
            .await
            .unwrap()
            .starts_with("bcrt1q")
    );
    assert!(
        f.svc
            .btc_address(f.schnorr, BitcoinNetwork::Regtest)
            .await
            .unwrap()
            .starts_with("bcrt1p")
    );
    f.deposit(f.ecdsa, 1, 60_000).await;
    f.deposit(f.schnorr, 2, 80_000).await;
    f.deposit(f.ecdsa, 3, 5_000).await;

    let send = f
        .svc
        .btc_send(&alice(), f.request(PAYEE, "0.001", 5))
        .await
        .unwrap();
    assert_eq!(
        send.state, "signed",
        "no node configured: signed, not broadcast"
    );
    let raw = send.raw.clone().unwrap();
    let tx: bitcoin::Transaction = bitcoin::consensus::deserialize(&raw).unwrap();
    assert_eq!(tx.compute_txid().to_string(), send.txid.clone().unwrap());
    // Spends a P2WPKH and a P2TR output, both signed by keystore keys, and
    // Bitcoin Core's interpreter agrees (again, here, from the stored rows).
    let reserved =
        f.db.store
            .btc_utxos("bitcoin:regtest", "reserved")
            .await
            .unwrap();
    assert_eq!(reserved.len(), 2);
    assert!(
        reserved
            .iter()
            .all(|r| r.reserved_by.as_deref() == Some(send.id.as_str()))
    );
    let prevouts: Vec<bitcoin::TxOut> = tx
        .input
        .iter()
        .map(|i| {
            let r = reserved
                .iter()
                .find(|r| r.txid == i.previous_output.txid.to_string())
                .unwrap();
            bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(r.value_sat),
                script_pubkey: bitcoin::ScriptBuf::from_hex(&r.script_pubkey).unwrap(),
            }
        })
        .collect();
    chain_btc::verify_with_core(&tx, &prevouts).unwrap();
    assert_eq!(tx.output[0].value.to_sat(), 100_000);
    let fee: u64 = prevouts.iter().map(|p| p.value.to_sat()).sum::<u64>()
        - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
    assert_eq!(fee, send.fee_sat);
    assert!(fee >= 5 * tx.vsize() as u64);

    let actions = f.actions().await;
    let planned = actions
        .iter()
        .position(|a| a == "btc.send.planned")
        .unwrap();
    let signed = actions.iter().position(|a| a == "btc.tx.signed").unwrap();
    assert!(planned < signed);

    // The reserved outputs are never selected again: what is left cannot pay.
    let again = f
        .svc
        .btc_send(&alice(), f.request(PAYEE, "0.0001", 5))
        .await;
    assert!(
        matches!(again, Err(ServiceError::Btc(BtcServiceError::Plan(_)))),
        "{again:?}"
    );
}

async fn bad_input_reserves_and_signs_nothing(f: Fixture) {
    f.deposit(f.ecdsa, 1, 60_000).await;
    let err = |r: Result<storage::BtcSendRow, ServiceError>| match r {
        Err(ServiceError::Btc(e)) => e,
        other => panic!("expected a Bitcoin error, got {other:?}"),
    };
    // A mainnet address on regtest.
    assert!(matches!(
        err(f
            .svc
            .btc_send(
                &alice(),
                f.request("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "0.0001", 2)
            )
            .await),
        BtcServiceError::Address(chain_btc::AddressError::WrongNetwork { .. })
    ));
    // More decimals than bitcoin has.
    assert!(matches!(
        err(f
            .svc
            .btc_send(&alice(), f.request(PAYEE, "0.000000001", 2))
            .await),
        BtcServiceError::Amount(_)
    ));
    // Dust.
    assert!(matches!(
        err(f
            .svc
            .btc_send(&alice(), f.request(PAYEE, "0.00000100", 2))
            .await),
        BtcServiceError::Plan(_)
    ));
    // More than held.
    assert!(matches!(
        err(f.svc.btc_send(&alice(), f.request(PAYEE, "1", 2)).await),
        BtcServiceError::Plan(_)
    ));
    // Over the fee-rate cap.
    assert!(matches!(
        err(f
            .svc
            .btc_send(&alice(), f.request(PAYEE, "0.0001", 150))
            .await),
        BtcServiceError::Plan(chain_btc::FeeError::RateOverCap { .. })
    ));
    // A network nobody configured.
    let mut other = f.request(PAYEE, "0.0001", 2);
    other.network = BitcoinNetwork::Signet;
    assert!(matches!(
        err(f.svc.btc_send(&alice(), other).await),
        BtcServiceError::NetworkNotConfigured(_)
    ));
    assert!(
        f.db.store
            .btc_utxos("bitcoin:regtest", "reserved")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !f.actions()
            .await
            .iter()
            .any(|a| a.starts_with("btc.send") || a.starts_with("btc.tx"))
    );
    // And a good one still goes through.
    f.svc
        .btc_send(&alice(), f.request(PAYEE, "0.0001", 2))
        .await
        .unwrap();
    // Sealed between planning and signing: the reservation is released and
    // the send marked failed, audited; the output can be spent again.
    f.deposit(f.ecdsa, 2, 70_000).await;
    f.svc.seal(&alice()).await.unwrap();
    assert!(matches!(
        f.svc
            .btc_send(&alice(), f.request(PAYEE, "0.0001", 2))
            .await,
        Err(ServiceError::Sealed)
    ));
    let available =
        f.db.store
            .btc_utxos("bitcoin:regtest", "available")
            .await
            .unwrap();
    assert_eq!(available.len(), 1, "released");
    assert!(f.actions().await.iter().any(|a| a == "btc.send.failed"));
}

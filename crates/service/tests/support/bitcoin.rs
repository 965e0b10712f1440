//! The Bitcoin fixture of the service tests: a service on SQLite or
//! PostgreSQL with regtest (no node: outputs are recorded as deposits),
//! two keystore keys (P2WPKH and P2TR) and a payer whose wallet holds them.

#![allow(dead_code)] // Each test binary uses part of it.

use std::sync::Arc;

use chain_btc::FeeCaps;
use domain::{Actor, Asset, AssetId, BitcoinNetwork, KeyAlgorithm, KeyBackend, KeyId, KeyPurpose};
use service::btc::BtcNetwork;
use service::testing::Payer;
use service::{Checkpointer, NewKey, Service, ServiceError, SystemClock};
use storage::testing::TestDb;

pub const PAYEE: &str = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw";
pub const REGTEST: BitcoinNetwork = BitcoinNetwork::Regtest;

pub struct Fixture {
    pub db: TestDb,
    pub svc: Service,
    pub payer: Payer,
    pub ecdsa: KeyId,
    pub schnorr: KeyId,
    pub _dir: tempfile::TempDir,
}

/// Regtest with these fee caps, its node `client` if any.
pub fn regtest(client: Option<Arc<chain_btc_client::BtcClient>>) -> BtcNetwork {
    BtcNetwork {
        network: REGTEST,
        fee_caps: FeeCaps {
            max_fee_rate: 100,
            max_fee: 20_000,
        },
        fee_rate: 5,
        batch: Default::default(),
        confirmations: 1,
        bump_after_blocks: 2,
        consolidation: None,
        client,
    }
}

pub fn alice() -> Actor {
    "operator:alice".parse().unwrap()
}

pub fn btc() -> AssetId {
    Asset::bitcoin(REGTEST).id().clone()
}

pub async fn fixture(db: TestDb) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cp = Checkpointer::for_tests(dir.path(), 9, 10_000);
    let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
    let shares = svc.init_keystore(&alice(), 2, 2).await.unwrap();
    drop(svc);
    fixture_on(db, dir, &shares).await
}

/// A service over `db`, whose keystore `shares` unseal, with regtest, two
/// keys and a payer whose wallet holds them.
pub async fn fixture_on(
    db: TestDb,
    dir: tempfile::TempDir,
    shares: &[keys::shamir::UnsealShare],
) -> Fixture {
    let cp = Checkpointer::for_tests(dir.path(), 9, 10_000);
    let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
    for s in shares {
        svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    svc.add_btc_network(regtest(None));
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
    let payer = Payer::open(&svc, &alice(), "bitcoin", &[]).await;
    for k in [ecdsa, schnorr] {
        svc.register_btc_key(&alice(), REGTEST, k, payer.wallet())
            .await
            .unwrap();
    }
    Fixture {
        db,
        svc,
        payer,
        ecdsa,
        schnorr,
        _dir: dir,
    }
}

/// The outputs `tx` spends, from the rows its send reserved.
pub fn prevouts(
    tx: &bitcoin::Transaction,
    reserved: &[storage::BtcUtxoRow],
) -> Vec<bitcoin::TxOut> {
    tx.input
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
        .collect()
}

impl Fixture {
    pub async fn deposit(&self, key: KeyId, n: u8, sat: u64) {
        self.svc
            .btc_record_deposit(
                &alice(),
                REGTEST,
                key,
                &format!("{n:02x}").repeat(32),
                0,
                sat,
            )
            .await
            .unwrap();
    }

    /// A payout requested, judged and queued, then carried out by the queue.
    pub async fn pay(&self, to: &str, amount: &str) -> Result<storage::BtcSendRow, ServiceError> {
        let t = self.payer.submit(&btc(), to, amount).await?;
        let pass = self.svc.execute_due().await?;
        assert_eq!(pass.submitted, 1, "{pass:?}");
        let t = self.db.store.transfer(t.id).await?;
        Ok(self.db.store.btc_send(&t.btc_send_id.unwrap()).await?)
    }

    pub async fn actions(&self) -> Vec<String> {
        let page = self.db.store.audit_page(0, 10_000).await.unwrap();
        page.into_iter().map(|r| r.action).collect()
    }
}

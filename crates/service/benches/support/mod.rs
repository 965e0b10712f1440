//! What the Ethereum benchmarks share: a service on SQLite with its
//! keystore unsealed and one anvil configured, and a fresh keystore sender.

use std::sync::Arc;

use chain_eth::FeeCaps;
use chain_eth_client::EthClient;
use chain_eth_client::testing::CHAIN_ID;
use domain::{Actor, KeyAlgorithm, KeyBackend, KeyPurpose};
use service::eth::{EthNetwork, EthNetworkConfig};
use service::{Checkpointer, NewKey, Service, SystemClock};
use storage::testing::TestDb;

/// The service (its database and checkpoint directory kept alive with it)
/// and the operator the benchmarks act as.
pub struct Bench {
    /// Kept for as long as the service runs on them.
    _db: TestDb,
    _dir: tempfile::TempDir,
    pub svc: Service,
    pub actor: Actor,
}

/// A service on SQLite, unsealed, with `client`'s chain configured
/// (one confirmation, generous fee caps).
pub async fn service_on(client: Arc<EthClient>, checkpoint_every: u64) -> Bench {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let cp = Checkpointer::for_tests(dir.path(), 2, checkpoint_every);
    let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
    let actor: Actor = "operator:bench".parse().unwrap();
    for s in &svc.init_keystore(&actor, 2, 2).await.unwrap() {
        svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    svc.add_eth_network(EthNetwork {
        config: EthNetworkConfig {
            chain_id: CHAIN_ID,
            legacy: false,
            confirmations: 1,
            bump_after_blocks: 3,
            fee_caps: FeeCaps {
                max_fee_per_gas: 1_000_000_000_000,
                max_total_fee: 10u128.pow(18),
            },
            min_priority_fee: 1_000_000_000,
            allow_unchecksummed: false,
            tokens: vec![],
        },
        client,
    });
    Bench {
        _db: db,
        _dir: dir,
        svc,
        actor,
    }
}

/// A new keystore key registered as a sender: its address.
pub async fn new_sender(b: &Bench) -> String {
    let key = b
        .svc
        .create_key(
            &b.actor,
            NewKey {
                purpose: KeyPurpose::TransferSigning,
                algorithm: KeyAlgorithm::EcdsaSecp256k1,
                backend: KeyBackend::Keystore,
                cryptoperiod_days: 30,
            },
        )
        .await
        .unwrap();
    b.svc
        .register_eth_sender(&b.actor, key.id, CHAIN_ID)
        .await
        .unwrap()
        .address
}

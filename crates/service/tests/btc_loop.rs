//! The Bitcoin operating loop on SQLite and PostgreSQL, against a regtest
//! chain built here and served in Bitcoin Core's and Esplora's shapes
//! (`support/regtest.rs`): a deposit seen, confirmed and credited; a send
//! broadcast, confirming and completed with its change credited; a
//! two-block reorganisation taking a deposit back; an output taken by a
//! transaction Strongroom never signed, frozen at once; a node serving a
//! block that is not what its header says — all with no console command,
//! and the ledger following each step.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

#[path = "support/regtest.rs"]
mod regtest;

use std::sync::{Arc, Mutex};

use bitcoin::hashes::Hash as _;
use bitcoin::{Amount, OutPoint, ScriptBuf};
use chain_btc::FeeCaps;
use chain_btc_client::{BtcClient, Endpoint, EndpointKind};
use domain::{Actor, Asset, AssetId, BitcoinNetwork, KeyAlgorithm, KeyBackend, KeyPurpose};
use regtest::{Chain, Shared, TestKey};
use service::btc::BtcNetwork;
use service::testing::Payer;
use service::{Checkpointer, NewKey, Service, ServiceError, SystemClock};
use storage::Balances;
use storage::testing::TestDb;

storage::on_both!(fixture; deposits_and_sends_run_with_no_console_command_over_core, a_stuck_send_is_replaced_by_a_faster_one_and_either_may_be_mined, the_same_over_esplora, a_two_block_reorganisation_takes_a_deposit_back, an_output_spent_by_a_transaction_strongroom_never_signed_freezes_its_wallet, a_node_serving_a_block_unlike_its_header_fails_the_pass);

const PAYEE: &str = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw";
const REGTEST: BitcoinNetwork = BitcoinNetwork::Regtest;

struct Fixture {
    db: TestDb,
    svc: Service,
    payer: Payer,
    /// Our address's script.
    ours: ScriptBuf,
    chain: Shared,
    url: String,
    /// The payer outside: it holds the first coinbase.
    outside: TestKey,
    _dir: tempfile::TempDir,
}

fn alice() -> Actor {
    "operator:alice".parse().unwrap()
}

fn btc() -> AssetId {
    Asset::bitcoin(REGTEST).id().clone()
}

async fn fixture(db: TestDb) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cp = Checkpointer::for_tests(dir.path(), 9, 10_000);
    let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
    let shares = svc.init_keystore(&alice(), 2, 2).await.unwrap();
    for s in &shares {
        svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    // A chain with history: 101 blocks, the first coinbase mature.
    let outside = TestKey::new(7);
    let mut chain = Chain::default();
    for _ in 0..101 {
        chain.mine(Vec::new(), &outside.script);
    }
    let chain = Arc::new(Mutex::new(chain));
    let url = regtest::serve(chain.clone()).await;
    let key = svc
        .create_key(
            &alice(),
            NewKey {
                purpose: KeyPurpose::TransferSigning,
                algorithm: KeyAlgorithm::EcdsaSecp256k1,
                backend: KeyBackend::Keystore,
                cryptoperiod_days: 30,
            },
        )
        .await
        .unwrap()
        .id;
    let payer = Payer::open(&svc, &alice(), "bitcoin", &[]).await;
    svc.add_btc_network(network(None));
    let address = svc
        .register_btc_key(&alice(), REGTEST, key, payer.wallet())
        .await
        .unwrap();
    let ours = address
        .parse::<bitcoin::Address<_>>()
        .unwrap()
        .require_network(bitcoin::Network::Regtest)
        .unwrap()
        .script_pubkey();
    Fixture {
        db,
        svc,
        payer,
        ours,
        chain,
        url,
        outside,
        _dir: dir,
    }
}

/// Regtest, three confirmations, its node `client`.
fn network(client: Option<Arc<BtcClient>>) -> BtcNetwork {
    BtcNetwork {
        network: REGTEST,
        fee_caps: FeeCaps {
            max_fee_rate: 100,
            max_fee: 20_000,
        },
        fee_rate: 5,
        batch: Default::default(),
        confirmations: 3,
        bump_after_blocks: 2,
        consolidation: None,
        client,
    }
}

impl Fixture {
    async fn connect(&self, kind: EndpointKind) {
        let url = match kind {
            EndpointKind::Core => self.url.clone(),
            EndpointKind::Esplora => format!("{}/api", self.url),
        };
        let client = BtcClient::connect(
            REGTEST,
            vec![Endpoint {
                kind,
                url,
                auth: Some("strongroom:secret".into()),
            }],
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
        self.svc.add_btc_network(network(Some(Arc::new(client))));
        // The first pass starts at the tip.
        assert_eq!(
            self.svc.btc_watch(REGTEST).await.unwrap(),
            Default::default()
        );
    }

    /// Mines a block of `txs` (and whatever the mempool holds).
    fn mine(&self, txs: Vec<bitcoin::Transaction>) {
        let mut c = self.chain.lock().unwrap();
        let mut all: Vec<_> = std::mem::take(&mut c.mempool);
        all.extend(txs);
        c.mine(all, &self.outside.script);
    }

    /// The outside payer pays `sat` to us from coinbase `n` (1-based).
    fn deposit_tx(&self, n: usize, sat: u64) -> bitcoin::Transaction {
        let c = self.chain.lock().unwrap();
        let coinbase = &c.blocks[n].txdata[0];
        let from = (
            OutPoint {
                txid: coinbase.compute_txid(),
                vout: 0,
            },
            coinbase.output[0].value,
        );
        self.outside.pay(from, &[(self.ours.clone(), sat)])
    }

    async fn actions(&self) -> Vec<String> {
        let page = self.db.store.audit_page(0, 10_000).await.unwrap();
        page.into_iter().map(|r| r.action).collect()
    }

    async fn ledger(&self) -> Balances {
        self.db
            .store
            .ledger_balances(self.payer.wallet())
            .await
            .unwrap()
            .into_iter()
            .find(|(a, _)| *a == btc().to_string())
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
}

async fn deposits_and_sends_run_with_no_console_command_over_core(f: Fixture) {
    deposit_send_confirm(f, EndpointKind::Core).await;
}

async fn the_same_over_esplora(f: Fixture) {
    deposit_send_confirm(f, EndpointKind::Esplora).await;
}

async fn deposit_send_confirm(f: Fixture, kind: EndpointKind) {
    f.connect(kind).await;
    // A deposit: seen in its block (pending), credited three deep.
    let tx = f.deposit_tx(1, 60_000);
    f.mine(vec![tx.clone()]);
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!((pass.seen, pass.credited), (1, 0), "{pass:?}");
    // Its node answered: the status counts it, Prometheus sees it up.
    let st = f.svc.status().await;
    assert_eq!(st.bitcoin.len(), 1, "{st:?}");
    assert_eq!(
        (st.bitcoin[0].endpoints, st.bitcoin[0].healthy),
        (1, 1),
        "{st:?}"
    );
    let registry = f
        .svc
        .metrics_registry(std::time::Duration::from_secs(5))
        .await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.lines().any(|l| l
            .starts_with("strongroom_chain_endpoint_up{network=\"bitcoin:regtest\"")
            && l.ends_with(" 1")),
        "{text}"
    );
    let d = &f
        .db
        .store
        .wallet_deposits(f.payer.wallet(), 10)
        .await
        .unwrap()[0];
    assert_eq!((d.state.as_str(), d.amount), ("seen", 60_000));
    assert_eq!(d.tx_hash, tx.compute_txid().to_string());
    assert_eq!(
        f.ledger().await,
        Balances {
            available: 0,
            pending: 60_000,
            reserved: 0
        }
    );
    let held = |state: &'static str| {
        let store = f.db.store.clone();
        let wallet = f.payer.wallet();
        async move {
            store
                .wallet_btc_utxos(wallet, "bitcoin:regtest", state)
                .await
                .unwrap()
        }
    };
    assert!(
        held("available").await.is_empty(),
        "not spendable before its depth"
    );
    f.mine(Vec::new());
    f.mine(Vec::new());
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!((pass.scanned, pass.credited), (2, 1), "{pass:?}");
    assert_eq!(
        f.ledger().await,
        Balances {
            available: 60_000,
            pending: 0,
            reserved: 0
        }
    );
    assert_eq!(held("available").await.len(), 1);

    // A payout: planned, signed through the gate, broadcast (the node
    // verifies it with Core's interpreter), then mined.
    let t = f.payer.submit(&btc(), PAYEE, "0.0002").await.unwrap();
    f.svc.execute_due().await.unwrap();
    let t = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(t.state, "broadcasting");
    let send =
        f.db.store
            .btc_send(t.btc_send_id.as_ref().unwrap())
            .await
            .unwrap();
    assert_eq!(f.chain.lock().unwrap().mempool.len(), 1, "the node took it");
    assert_eq!(
        f.ledger().await,
        Balances {
            available: 40_000,
            pending: 0,
            reserved: 20_000
        }
    );
    f.mine(Vec::new());
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!(
        (pass.included, pass.seen),
        (1, 1),
        "included, its change seen: {pass:?}"
    );
    assert_eq!(f.db.store.transfer(t.id).await.unwrap().state, "confirming");
    assert_eq!(
        f.db.store.btc_send(&send.id).await.unwrap().state,
        "confirming"
    );
    f.mine(Vec::new());
    f.mine(Vec::new());
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!((pass.completed, pass.credited), (1, 1), "{pass:?}");
    assert_eq!(f.db.store.transfer(t.id).await.unwrap().state, "completed");
    // The change is ours to spend again; the ledger paid and took the fee.
    let change = 60_000 - 20_000 - send.fee_sat;
    let free = held("available").await;
    assert_eq!(free.len(), 1);
    assert_eq!(free[0].value_sat, change);
    assert_eq!(
        f.ledger().await,
        Balances {
            available: i128::from(change),
            pending: 0,
            reserved: 0
        }
    );
    // The wallet's balances show Bitcoin next to everything else.
    let admin = f.payer.admin().await;
    let can = f
        .svc
        .authorize::<service::identity::perm::ReadWallet>(&admin, Some(f.payer.wallet()))
        .unwrap();
    let b = can.balances(f.payer.wallet()).await.unwrap();
    let b = b.iter().find(|b| b.asset.id() == &btc()).unwrap();
    assert_eq!(
        (b.credited, b.incoming, b.reserved),
        (Some(u128::from(change)), 0, 0)
    );
    // The statement lists every movement, with its transaction and block.
    let s = can
        .statement(f.payer.wallet(), domain::Timestamp::from_millis(0), None)
        .await
        .unwrap();
    let kinds: Vec<&str> = s.movements.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "deposit_seen",
            "deposit_credited",
            "reserved",
            "payout",
            "fee"
        ],
        "{s:?}"
    );
    assert_eq!(
        s.movements[0].txid.as_deref(),
        Some(tx.compute_txid().to_string().as_str())
    );
    assert_eq!(s.movements[0].block, Some(102));
    let csv = s.to_csv();
    assert!(csv.starts_with("kind,at_ms,asset,"), "{csv}");
    assert!(
        csv.contains(&format!("closing,{},{}", s.to_ms, btc())),
        "{csv}"
    );
    // Found again by nothing: a further pass changes nothing.
    f.mine(Vec::new());
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!(
        (pass.scanned, pass.seen, pass.credited, pass.completed),
        (1, 0, 0, 0)
    );
}

async fn a_two_block_reorganisation_takes_a_deposit_back(f: Fixture) {
    f.connect(EndpointKind::Core).await;
    let tx = f.deposit_tx(1, 70_000);
    f.mine(vec![tx]);
    f.mine(Vec::new());
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!((pass.scanned, pass.seen), (2, 1), "{pass:?}");
    assert_eq!(f.ledger().await.pending, 70_000);
    // The two blocks are replaced by three others without the deposit.
    {
        let mut c = f.chain.lock().unwrap();
        c.unmine(2);
        c.mempool.clear();
    }
    for _ in 0..3 {
        f.mine(Vec::new());
    }
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!(
        (pass.reorged, pass.scanned, pass.seen),
        (1, 3, 0),
        "{pass:?}"
    );
    let d = &f
        .db
        .store
        .wallet_deposits(f.payer.wallet(), 10)
        .await
        .unwrap()[0];
    assert_eq!(d.state, "reorged");
    assert_eq!(f.ledger().await, Balances::default(), "un-credited");
    let actions = f.actions().await;
    assert!(actions.iter().any(|a| a == "btc.chain.reorged"));
    assert!(actions.iter().any(|a| a == "deposit.reorged"));
    // Mined again on the new branch, it is seen again.
    let tx = f.deposit_tx(1, 70_000);
    f.mine(vec![tx]);
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!(pass.seen, 1, "{pass:?}");
    assert_eq!(f.ledger().await.pending, 70_000);
}

async fn an_output_spent_by_a_transaction_strongroom_never_signed_freezes_its_wallet(f: Fixture) {
    f.connect(EndpointKind::Core).await;
    // An HD account whose words (its paper backup) leaked.
    let (key, address, words) =
        service::testing::hd_account_with_words(&f.svc, &alice(), f.payer.wallet(), REGTEST)
            .await
            .unwrap();
    let script = address
        .parse::<bitcoin::Address<_>>()
        .unwrap()
        .require_network(bitcoin::Network::Regtest)
        .unwrap()
        .script_pubkey();
    let deposit = {
        let c = f.chain.lock().unwrap();
        let coinbase = &c.blocks[1].txdata[0];
        f.outside.pay(
            (
                OutPoint {
                    txid: coinbase.compute_txid(),
                    vout: 0,
                },
                coinbase.output[0].value,
            ),
            &[(script.clone(), 50_000)],
        )
    };
    f.mine(vec![deposit.clone()]);
    f.mine(Vec::new());
    f.mine(Vec::new());
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!((pass.seen, pass.credited), (1, 1), "{pass:?}");
    // The thief derives the address's key from the words and spends it.
    let seed = words.to_seed("");
    let secret = keys::hd::derive_secp256k1(&seed, "m/84'/1'/0'/0/0").unwrap();
    let secret = bitcoin::secp256k1::SecretKey::from_slice(secret.expose()).unwrap();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let thief = TestKey::new(9);
    let mut theft = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: OutPoint {
                txid: deposit.compute_txid(),
                vout: 0,
            },
            script_sig: ScriptBuf::new(),
            sequence: bitcoin::Sequence::MAX,
            witness: bitcoin::Witness::new(),
        }],
        output: vec![bitcoin::TxOut {
            value: Amount::from_sat(49_000),
            script_pubkey: thief.script.clone(),
        }],
    };
    let digest = bitcoin::sighash::SighashCache::new(&theft)
        .p2wpkh_signature_hash(
            0,
            &script,
            Amount::from_sat(50_000),
            bitcoin::EcdsaSighashType::All,
        )
        .unwrap();
    let sig = secp.sign_ecdsa(
        &bitcoin::secp256k1::Message::from_digest(digest.to_byte_array()),
        &secret,
    );
    theft.input[0].witness = bitcoin::Witness::p2wpkh(
        &bitcoin::ecdsa::Signature {
            signature: sig,
            sighash_type: bitcoin::EcdsaSighashType::All,
        },
        &secret.public_key(&secp),
    );
    f.mine(vec![theft.clone()]); // verified by Core's interpreter
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!(pass.taken, 1, "{pass:?}");
    let run = &f.svc.reconciliation_runs(10, None).await.unwrap()[0];
    assert_eq!(run.findings.len(), 1, "{run:?}");
    let found = &run.findings[0];
    assert_eq!(found.kind, "unsigned_outflow");
    assert_eq!(found.key, Some(key));
    assert_eq!(found.wallet, Some(f.payer.wallet()));
    assert!(
        found.detail.contains(&theft.compute_txid().to_string()),
        "{found:?}"
    );
    assert!(found.freeze.is_some());
    assert!(matches!(
        f.payer.submit(&btc(), PAYEE, "0.0001").await,
        Err(ServiceError::Frozen(_))
    ));
    // No longer counted; found once.
    assert!(
        f.db.store
            .wallet_btc_utxos(f.payer.wallet(), "bitcoin:regtest", "available")
            .await
            .unwrap()
            .is_empty()
    );
    f.mine(Vec::new());
    assert_eq!(f.svc.btc_watch(REGTEST).await.unwrap().taken, 0);
}

async fn a_node_serving_a_block_unlike_its_header_fails_the_pass(f: Fixture) {
    f.connect(EndpointKind::Esplora).await;
    let tx = f.deposit_tx(1, 30_000);
    f.mine(vec![tx]);
    f.chain.lock().unwrap().lie = true;
    let err = f.svc.btc_watch(REGTEST).await.unwrap_err();
    assert!(err.to_string().contains("do not match its header"), "{err}");
    assert!(
        f.db.store
            .wallet_deposits(f.payer.wallet(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(f.ledger().await, Balances::default(), "nothing credited");
    // An honest answer again: the same block is read and its deposit seen.
    f.chain.lock().unwrap().lie = false;
    assert_eq!(f.svc.btc_watch(REGTEST).await.unwrap().seen, 1);
}

async fn a_stuck_send_is_replaced_by_a_faster_one_and_either_may_be_mined(f: Fixture) {
    f.connect(EndpointKind::Core).await;
    let tx = f.deposit_tx(1, 80_000);
    f.mine(vec![tx]);
    f.mine(Vec::new());
    f.mine(Vec::new());
    assert_eq!(f.svc.btc_watch(REGTEST).await.unwrap().credited, 1);
    let t = f.payer.submit(&btc(), PAYEE, "0.0003").await.unwrap();
    f.svc.execute_due().await.unwrap();
    let t = f.db.store.transfer(t.id).await.unwrap();
    let id = t.btc_send_id.clone().unwrap();
    let first = f.db.store.btc_send(&id).await.unwrap();
    // Blocks come without it (fees rose): it waits, then is replaced.
    let empty = |f: &Fixture| {
        let mut c = f.chain.lock().unwrap();
        c.mine(Vec::new(), &f.outside.script);
    };
    assert_eq!(f.svc.btc_watch(REGTEST).await.unwrap().replaced, 0);
    empty(&f);
    assert_eq!(
        f.svc.btc_watch(REGTEST).await.unwrap().replaced,
        0,
        "one block is not stuck"
    );
    empty(&f);
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!(pass.replaced, 1, "{pass:?}");
    let second = f.db.store.btc_send(&id).await.unwrap();
    assert_ne!(second.txid, first.txid);
    assert!(
        second.fee_sat > first.fee_sat,
        "{} ≤ {}",
        second.fee_sat,
        first.fee_sat
    );
    assert!(second.fee_sat <= 20_000, "within the cap");
    {
        // The node took the replacement in place of the first.
        let c = f.chain.lock().unwrap();
        let pool: Vec<String> = c
            .mempool
            .iter()
            .map(|t| t.compute_txid().to_string())
            .collect();
        assert_eq!(pool, vec![second.txid.clone().unwrap()]);
    }
    // Both pay exactly the transfer; Core's interpreter accepted both.
    let replacement: bitcoin::Transaction =
        bitcoin::consensus::deserialize(second.raw.as_ref().unwrap()).unwrap();
    let original: bitcoin::Transaction =
        bitcoin::consensus::deserialize(first.raw.as_ref().unwrap()).unwrap();
    assert_eq!(replacement.output[0], original.output[0]);
    assert_eq!(replacement.input.len(), original.input.len());
    // A miner took the first after all: the send adopts it.
    {
        let mut c = f.chain.lock().unwrap();
        c.mempool.clear();
        c.mine(vec![original.clone()], &f.outside.script);
    }
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!(pass.included, 1, "{pass:?}");
    let mined = f.db.store.btc_send(&id).await.unwrap();
    assert_eq!(
        (mined.state.as_str(), mined.txid.clone()),
        ("confirming", first.txid.clone())
    );
    assert_eq!(mined.fee_sat, first.fee_sat);
    empty(&f);
    empty(&f);
    let pass = f.svc.btc_watch(REGTEST).await.unwrap();
    assert_eq!((pass.completed, pass.taken), (1, 0), "{pass:?}");
    assert_eq!(f.db.store.transfer(t.id).await.unwrap().state, "completed");
    // The ledger paid the fee of the transaction mined.
    assert_eq!(
        f.ledger().await,
        Balances {
            available: i128::from(80_000 - 30_000 - first.fee_sat),
            pending: 0,
            reserved: 0
        }
    );
    let actions = f.actions().await;
    assert!(actions.iter().any(|a| a == "btc.tx.replaced"));
}

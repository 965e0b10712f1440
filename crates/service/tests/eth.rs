//! Ethereum sends through the service against a real anvil node, on SQLite
//! and PostgreSQL: nonces from the database, signing behind the keystore's
//! gate, decode-and-compare before broadcast, confirmations, replacement,
//! reorgs, restart, bad input and an HSM-held key.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;

use chain_eth::fees::Urgency;
use chain_eth::{EthAddress, FeeCaps, TxPlan};
use chain_eth_client::testing::{
    Anvil, CHAIN_ID, DevWallet, HoldingProxy, Proxy, deploy_test_token, mine,
};
use chain_eth_client::{ClientOptions, EthClient};
use domain::{Actor, Asset, AssetId, KeyAlgorithm, KeyBackend, KeyPurpose, Symbol};
use service::eth::{EthError, EthNetwork, EthNetworkConfig, EthToken, Replacement, state};
use service::testing::Payer;
use service::{Checkpointer, NewKey, Service, ServiceError, SystemClock};
use storage::testing::TestDb;
use zeroize::Zeroizing;

storage::on_both!(
    fixture;
    ether_to_confirmation,
    concurrent_sends_take_consecutive_nonces,
    bad_input_signs_nothing_and_spends_no_nonce,
    a_freeze_waits_for_a_broadcast_in_flight_and_nothing_starts_after,
    a_compromised_key_sweeps_to_its_successor_and_signs_nothing_else,
    an_outflow_strongroom_did_not_sign_freezes_its_wallet_within_one_pass,
    the_ledger_follows_the_chain_and_a_drift_is_named_once,
    tokens_are_reconciled_the_same_way,
    a_send_waiting_unmined_is_sped_up_after_its_blocks,
);

const ETHER: u128 = 1_000_000_000_000_000_000;

fn alice() -> Actor {
    "operator:alice".parse().unwrap()
}

fn bob() -> EthAddress {
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        .parse()
        .unwrap()
}

fn config(tokens: Vec<EthToken>) -> EthNetworkConfig {
    EthNetworkConfig {
        chain_id: CHAIN_ID,
        legacy: false,
        confirmations: 3,
        bump_after_blocks: 3,
        fee_caps: FeeCaps {
            max_fee_per_gas: 500_000_000_000,
            max_total_fee: ETHER / 10,
        },
        min_priority_fee: 1_000_000_000,
        allow_unchecksummed: false,
        tokens,
    }
}

struct Fixture {
    db: TestDb,
    anvil: Anvil,
    svc: Service,
    client: Arc<EthClient>,
    from: EthAddress,
    /// Pays through the whole pipeline: transfer, judgment, queue, gate.
    payer: Arc<Payer>,
    shares: Vec<keys::shamir::UnsealShare>,
    _dir: tempfile::TempDir,
}

/// What to pay, as an initiator asks for it.
#[derive(Debug, Clone)]
struct Pay {
    asset: AssetId,
    to: String,
    amount: String,
    urgency: Urgency,
}

async fn fixture(db: TestDb) -> Fixture {
    Fixture::new(db, None).await
}

async fn client_for(url: &str) -> Arc<EthClient> {
    Arc::new(
        EthClient::connect(CHAIN_ID, &[url.to_owned()], ClientOptions::default())
            .await
            .unwrap(),
    )
}

/// The network's endpoints as the governance log first records them: a
/// server whose configuration names all of `urls` unseals first (each
/// process of a test then uses one of them; an endpoint outside the
/// recorded set would never be asked).
async fn first_endpoints(f: &Fixture, urls: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let seed = Service::new(
        f.db.store.clone(),
        Arc::new(SystemClock),
        checkpointer(dir.path()),
    );
    let urls: Vec<String> = urls.iter().map(|u| (*u).to_owned()).collect();
    seed.add_eth_network(EthNetwork {
        config: config(vec![]),
        client: Arc::new(
            EthClient::connect(CHAIN_ID, &urls, ClientOptions::default())
                .await
                .unwrap(),
        ),
    });
    for s in &f.shares {
        seed.unseal(&Actor::Anonymous, s).await.unwrap();
    }
}

fn checkpointer(dir: &std::path::Path) -> Checkpointer {
    Checkpointer::for_tests(dir, 8, 1000)
}

impl Fixture {
    /// A service with an unsealed keystore, anvil configured, one ECDSA key
    /// registered as a sender and funded with 100 ether.
    async fn new(db: TestDb, hsm: Option<Arc<dyn keys::Signer>>) -> Fixture {
        Fixture::with_clock(db, hsm, Arc::new(SystemClock)).await
    }

    async fn with_clock(
        db: TestDb,
        hsm: Option<Arc<dyn keys::Signer>>,
        clock: Arc<dyn service::Clock>,
    ) -> Fixture {
        let anvil = Anvil::start();
        let dir = tempfile::tempdir().unwrap();
        let backend = if hsm.is_some() {
            KeyBackend::Pkcs11
        } else {
            KeyBackend::Keystore
        };
        let svc = Service::with_hsm(db.store.clone(), clock, checkpointer(dir.path()), hsm);
        let shares = svc.init_keystore(&alice(), 2, 2).await.unwrap();
        for s in &shares {
            svc.unseal(&Actor::Anonymous, s).await.unwrap();
        }
        let client = client_for(anvil.url()).await;
        svc.add_eth_network(EthNetwork {
            config: config(vec![]),
            client: client.clone(),
        });
        let key = svc
            .create_key(
                &alice(),
                NewKey {
                    purpose: KeyPurpose::TransferSigning,
                    algorithm: KeyAlgorithm::EcdsaSecp256k1,
                    backend,
                    cryptoperiod_days: 30,
                },
            )
            .await
            .unwrap();
        let sender = svc
            .register_eth_sender(&alice(), key.id, CHAIN_ID)
            .await
            .unwrap();
        let from: EthAddress = sender.address.parse().unwrap();
        let payer = Arc::new(Payer::open(&svc, &alice(), "payer", &[(CHAIN_ID, from)]).await);
        let f = Fixture {
            db,
            anvil,
            svc,
            client,
            from,
            payer,
            shares,
            _dir: dir,
        };
        f.fund(from, 100 * ETHER).await;
        f
    }

    async fn fund(&self, to: EthAddress, wei: u128) {
        DevWallet::new(0)
            .await
            .transact(&self.client, |nonce, fees| {
                TxPlan::native(CHAIN_ID, nonce, to, wei, fees)
            })
            .await;
        // Deep enough to count: the funds check reads credited blocks only.
        mine(&self.client, 3).await;
    }

    fn ether(&self, to: &str, amount: &str) -> Pay {
        Pay {
            asset: AssetId::new(
                domain::Network::Evm { chain_id: CHAIN_ID },
                domain::AssetKind::Native,
            )
            .unwrap(),
            to: to.to_owned(),
            amount: amount.to_owned(),
            urgency: Urgency::Normal,
        }
    }

    /// A withdrawal requested, judged, queued, planned, signed and sent.
    async fn pay(&self, p: Pay) -> Result<storage::EthSendRow, ServiceError> {
        pay(&self.payer, p).await
    }

    /// Requested (unsealed: a judgment is authenticated under the keystore),
    /// then planned sealed: the send waits in `signing`, nothing signed.
    async fn pay_sealed(&self, p: Pay) -> Result<storage::EthSendRow, ServiceError> {
        self.payer
            .pay_eth_sealed(&p.asset, &p.to, &p.amount, p.urgency, &alice())
            .await
    }

    /// Deploys the test token from `dev` and configures it on the network.
    async fn with_test_token(&self, dev: &DevWallet) -> (EthAddress, AssetId) {
        let contract = deploy_test_token(&self.client, dev).await;
        let asset_id = AssetId::new(
            domain::Network::Evm { chain_id: CHAIN_ID },
            domain::AssetKind::Erc20(domain::ContractAddress::from_bytes(*contract.as_bytes())),
        )
        .unwrap();
        let asset = Asset::new(
            asset_id.clone(),
            Symbol::new("TUSD").unwrap(),
            domain::Decimals::new(6).unwrap(),
        )
        .unwrap();
        self.svc.add_eth_network(EthNetwork {
            config: config(vec![EthToken {
                asset,
                contract,
                max_gas: 100_000,
            }]),
            client: self.client.clone(),
        });
        (contract, asset_id)
    }

    /// Mines past the confirmation depth: the send is confirmed.
    async fn confirmed(&self, send: &str) {
        mine(&self.client, 3).await;
        self.svc.eth_poll(CHAIN_ID).await.unwrap();
        assert_eq!(
            self.db.store.eth_send(send).await.unwrap().state,
            state::CONFIRMED
        );
    }

    async fn actions(&self) -> Vec<String> {
        self.db
            .store
            .audit_page(0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.action)
            .collect()
    }

    async fn sends(&self) -> Vec<storage::EthSendRow> {
        self.db
            .store
            .eth_sends_of(&format!("eip155:{CHAIN_ID}"), &self.from.to_lower_hex())
            .await
            .unwrap()
    }
}

async fn pay(payer: &Payer, p: Pay) -> Result<storage::EthSendRow, ServiceError> {
    payer.pay_eth(&p.asset, &p.to, &p.amount, p.urgency).await
}

async fn ether_to_confirmation(f: Fixture) {
    let before = f.client.balance(bob()).await.unwrap();
    let send = f.pay(f.ether(&bob().to_string(), "1.5")).await.unwrap();
    assert_eq!(send.state, state::BROADCAST);
    assert_eq!(send.nonce, 0);
    assert_eq!(send.amount, 3 * ETHER / 2);

    // The stored bytes decode to the stored plan, signed by the sender.
    let attempts = f.db.store.eth_attempts(&send.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    let decoded = chain_eth::decode(attempts[0].raw.as_ref().unwrap()).unwrap();
    assert_eq!(decoded.from, f.from);
    assert_eq!(decoded.plan.to, bob());
    assert_eq!(decoded.plan.value, 3 * ETHER / 2);
    assert_eq!(decoded.plan.chain_id, CHAIN_ID);
    assert_eq!(
        attempts[0].tx_hash.as_deref().unwrap(),
        format!("0x{}", hex::encode(decoded.hash))
    );

    // Not mined yet: still broadcast.
    let poll = f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!(poll.still_pending, 1);
    mine(&f.client, 1).await;
    let poll = f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!((poll.included, poll.finalized), (1, 0));
    let s = f.db.store.eth_send(&send.id).await.unwrap();
    assert_eq!(s.state, state::INCLUDED);
    assert!(s.block_number.is_some() && s.block_hash.is_some());
    // Three confirmations are configured.
    mine(&f.client, 2).await;
    let poll = f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!(poll.finalized, 1);
    let s = f.db.store.eth_send(&send.id).await.unwrap();
    assert_eq!(s.state, state::CONFIRMED);
    assert_eq!(
        f.client.balance(bob()).await.unwrap(),
        before + 3 * ETHER / 2
    );
    // Final sends are not watched again.
    assert_eq!(f.svc.eth_poll(CHAIN_ID).await.unwrap(), Default::default());

    // The transfer's history: the request's three lines (one statement),
    // then each move, numbered in order.
    let t =
        f.db.store
            .transfer_of_send(&send.id)
            .await
            .unwrap()
            .unwrap();
    let history = f.db.store.transfer_history(t.id).await.unwrap();
    let lines: Vec<(u32, &str, &str)> = history
        .iter()
        .map(|h| (h.seq, h.state.as_str(), h.why.as_str()))
        .take(3)
        .collect();
    assert_eq!(
        lines,
        [
            (1, "submitted", "requested"),
            (2, "pending_policy", "policy evaluated"),
            (3, "queued", "all"),
        ],
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .enumerate()
            .all(|(i, h)| h.seq as usize == i + 1),
        "{history:?}"
    );
    assert_eq!(history.last().unwrap().state, "completed", "{history:?}");

    let actions = f.actions().await;
    for a in [
        "eth.sender.registered",
        "eth.send.planned",
        "eth.tx.signed",
        "eth.tx.broadcast",
        "eth.tx.included",
        "eth.send.confirmed",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
    let planned = actions
        .iter()
        .position(|a| a == "eth.send.planned")
        .unwrap();
    let signed = actions.iter().position(|a| a == "eth.tx.signed").unwrap();
    let broadcast = actions
        .iter()
        .position(|a| a == "eth.tx.broadcast")
        .unwrap();
    assert!(planned < signed && signed < broadcast);
}

async fn concurrent_sends_take_consecutive_nonces(f: Fixture) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12u32 {
        let payer = f.payer.clone();
        let req = f.ether(&bob().to_string(), &format!("0.{:02}", i + 1));
        tasks.spawn(async move { pay(&payer, req).await });
    }
    let mut nonces = Vec::new();
    while let Some(r) = tasks.join_next().await {
        nonces.push(r.unwrap().unwrap().nonce);
    }
    nonces.sort_unstable();
    assert_eq!(
        nonces,
        (0..12).collect::<Vec<u64>>(),
        "never reused, never skipped"
    );
    mine(&f.client, 3).await;
    let poll = f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!(poll.finalized, 12, "{poll:?}");
    assert!(f.sends().await.iter().all(|s| s.state == state::CONFIRMED));
    let report = f.svc.eth_nonce_report(CHAIN_ID, f.from).await.unwrap();
    assert_eq!(report.chain_latest, 12);
    assert_eq!(report.next_allocated, 12);
    assert!(report.gaps.is_empty() && report.unsigned.is_empty() && !report.foreign_use);
}

async fn bad_input_signs_nothing_and_spends_no_nonce(f: Fixture) {
    let message = |r: Result<storage::EthSendRow, ServiceError>| match r {
        Err(e) => e.to_string(),
        Ok(s) => panic!("expected a refusal, got {s:?}"),
    };
    let lower = bob().to_lower_hex();
    // Refused at the request (nothing judged, nothing planned) or, for a
    // payment to the sender itself, by the approval check before any nonce.
    let cases: Vec<(Pay, &str)> = vec![
        (
            f.ether("0x0000000000000000000000000000000000000000", "1"),
            "is the zero address",
        ),
        (
            f.ether("0x0000000000000000000000000000000000000001", "1"),
            "is a precompile or system contract",
        ),
        (f.ether(&lower, "1"), "carries no checksum"),
        (
            f.ether("0x5aAeb6053f3E94C9b9A09f33669435E7Ef1BeAed", "1"),
            "does not match its EIP-55 checksum",
        ),
        (
            f.ether(&bob().to_string(), "0.0000000000000000001"),
            "more decimal places",
        ),
        (f.ether(&bob().to_string(), "0"), "greater than zero"),
        (f.ether(&bob().to_string(), "-1"), "amount"),
        // Refused when requested (the worker would refuse it later).
        (f.ether(&f.from.to_string(), "1"), "the wallet's own sender"),
    ];
    for (req, expected) in cases {
        let to = req.to.clone();
        let e = message(f.pay(req).await);
        assert!(e.contains(expected), "{to}: {e}");
    }
    // A contract (code runs when paid): refused when requested, as the
    // worker would refuse the plan. The token is deployed, not configured.
    let contract = deploy_test_token(&f.client, &DevWallet::new(1).await).await;
    let e = message(f.pay(f.ether(&contract.to_string(), "1")).await);
    assert!(e.contains("is a contract"), "{e}");
    // Another chain: the chain id comes from configuration, never the request.
    let mut other = f.ether(&bob().to_string(), "1");
    other.asset = "eip155:1/native".parse().unwrap();
    let e = message(f.pay(other).await);
    assert!(e.contains("eip155:1 is not configured"), "{e}");
    // A token nobody configured.
    let mut token = f.ether(&bob().to_string(), "1");
    token.asset = format!("eip155:{CHAIN_ID}/erc20:0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359")
        .parse()
        .unwrap();
    let e = message(f.pay(token).await);
    assert!(e.contains("is not configured"), "{e}");
    // Over the fee caps: refused before signing. (A `Service` clone shares
    // its networks; the caps are replaced, and restored after.)
    let with_caps = |max_fee_per_gas, max_total_fee| {
        f.svc.add_eth_network(EthNetwork {
            config: EthNetworkConfig {
                fee_caps: FeeCaps {
                    max_fee_per_gas,
                    max_total_fee,
                },
                ..config(vec![])
            },
            client: f.client.clone(),
        })
    };
    with_caps(1_000, ETHER);
    let over = f.pay(f.ether(&bob().to_string(), "1")).await;
    assert!(matches!(
        over,
        Err(ServiceError::Eth(EthError::Fee(
            chain_eth::FeeError::PerGasOverCap { .. }
        )))
    ));
    with_caps(ETHER, 21_000);
    let over = f.pay(f.ether(&bob().to_string(), "1")).await;
    assert!(matches!(
        over,
        Err(ServiceError::Eth(EthError::Fee(
            chain_eth::FeeError::TotalOverCap { .. }
        )))
    ));
    // Nothing stored, nothing signed: the next good send takes nonce 0.
    assert!(f.sends().await.is_empty());
    let actions = f.actions().await;
    assert!(
        !actions
            .iter()
            .any(|a| a.starts_with("eth.send.") || a.starts_with("eth.tx."))
    );
    with_caps(
        config(vec![]).fee_caps.max_fee_per_gas,
        config(vec![]).fee_caps.max_total_fee,
    );
    let ok = f.pay(f.ether(&bob().to_string(), "1")).await.unwrap();
    assert_eq!(ok.nonce, 0);
}

/// A freeze and the broadcasts are ordered in the database: a broadcast
/// that started before the freeze (held by a slow node) makes the freeze
/// wait and is named in its answer; nothing starts after it, in this
/// process or another one over the same database.
async fn a_freeze_waits_for_a_broadcast_in_flight_and_nothing_starts_after(f: Fixture) {
    // Planned while sealed: nonce 0 waits to be signed.
    let send = f
        .pay_sealed(f.ether(&bob().to_string(), "1"))
        .await
        .unwrap();
    assert_eq!(send.state, state::SIGNING);
    // Another process whose node holds every raw transaction it is sent.
    let proxy = HoldingProxy::start(f.anvil.url()).await;
    first_endpoints(&f, &[f.anvil.url(), proxy.url()]).await;
    proxy.hold(true);
    let dir = tempfile::tempdir().unwrap();
    let other = Service::new(
        f.db.store.clone(),
        Arc::new(SystemClock),
        checkpointer(dir.path()),
    );
    other.add_eth_network(EthNetwork {
        config: config(vec![]),
        client: client_for(proxy.url()).await,
    });
    for s in &f.shares {
        other.unseal(&Actor::Anonymous, s).await.unwrap();
        f.svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    let resumer = {
        let other = other.clone();
        tokio::spawn(async move { other.eth_resume().await })
    };
    proxy.held(1).await;
    // Signed and on its way: the freeze is placed now.
    let freeze = {
        let svc = f.svc.clone();
        tokio::spawn(async move {
            svc.console_freeze(
                &alice(),
                service::governance::FreezeScope::Global,
                "incident",
            )
            .await
        })
    };
    // Committed at once (every later broadcast sees it)...
    while f.svc.frozen(None, None).await.unwrap().is_none() {
        tokio::task::yield_now().await;
    }
    // ...but it does not answer while the broadcast that started before it
    // is in flight.
    assert!(!freeze.is_finished());
    // A broadcast that starts now is refused, here or in the other process.
    assert_eq!(f.svc.eth_resume().await.unwrap(), 0);
    let hash = f.db.store.eth_attempts(&send.id).await.unwrap()[0]
        .tx_hash
        .clone()
        .unwrap();
    let hash: [u8; 32] = hex::decode(hash.trim_start_matches("0x"))
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(
        f.client.tx_status(hash).await.unwrap(),
        chain_eth_client::TxStatus::Unknown,
        "nothing reached the node but the held broadcast"
    );
    // The slow node answers: the freeze returns and names the broadcast.
    proxy.release();
    let placed = freeze.await.unwrap().unwrap();
    assert_eq!(
        placed.may_have_reached,
        vec![(format!("eth-send:{}#1", send.id), "sent".to_owned())]
    );
    assert_eq!(resumer.await.unwrap().unwrap(), 1);
    assert_eq!(proxy.forwarded_sends(), 1);
    // Nothing starts after it: the other process sends nothing more.
    assert_eq!(other.eth_resume().await.unwrap(), 0);
    assert_eq!(proxy.forwarded_sends(), 1);
    let actions = f.actions().await;
    assert!(actions.iter().any(|a| a == "freeze.broadcasts_drained"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_transfer_with_a_configured_token() {
    let f = Fixture::new(TestDb::sqlite().await, None).await;
    let dev = DevWallet::new(0).await;
    let (contract, asset_id) = f.with_test_token(&dev).await;
    // Give the sender tokens from the deployer.
    dev.transact(&f.client, |nonce, fees| {
        TxPlan::erc20(
            CHAIN_ID,
            nonce,
            contract,
            f.from,
            1_000_000_000,
            100_000,
            fees,
        )
    })
    .await;
    assert_eq!(
        f.client.erc20_balance(contract, f.from).await.unwrap(),
        1_000_000_000
    );
    mine(&f.client, 3).await;

    let req = |amount: &str, to: String| Pay {
        asset: asset_id.clone(),
        to,
        amount: amount.to_owned(),
        urgency: Urgency::Fast,
    };
    // More decimals than the token has.
    assert!(matches!(
        f.pay(req("1.0000001", bob().to_string())).await,
        Err(ServiceError::Invalid(m)) if m.contains("more decimal places")
    ));
    // Tokens sent to the token contract itself are lost.
    let e = f.pay(req("1", contract.to_string())).await.unwrap_err();
    assert!(e.to_string().contains("token contract"), "{e}");
    // Refused when requested, as the worker would refuse it: no transfer.
    assert!(matches!(e, ServiceError::Invalid(_)), "{e:?}");

    let send = f.pay(req("12.5", bob().to_string())).await.unwrap();
    assert_eq!(send.nonce, 0, "refused requests took no nonce");
    assert_eq!(send.amount, 12_500_000);
    let attempts = f.db.store.eth_attempts(&send.id).await.unwrap();
    let decoded = chain_eth::decode(attempts[0].raw.as_ref().unwrap()).unwrap();
    assert_eq!(decoded.plan.to, contract);
    assert_eq!(decoded.plan.value, 0);
    assert_eq!(
        chain_eth::calls::decode_erc20_transfer(&decoded.plan.data).unwrap(),
        (bob(), 12_500_000)
    );
    f.confirmed(&send.id).await;
    assert_eq!(
        f.client.erc20_balance(contract, bob()).await.unwrap(),
        12_500_000
    );

    // A planned (sealed) token payment whose calldata a database writer
    // extends by one byte, with a signing hash to match: refused, frozen.
    let planned = f.pay_sealed(req("1", bob().to_string())).await.unwrap();
    assert_eq!(planned.state, state::SIGNING);
    let a = &f.db.store.eth_attempts(&planned.id).await.unwrap()[0];
    let mut data = a.data.clone();
    data.push(0);
    let plan = TxPlan {
        chain_id: CHAIN_ID,
        nonce: planned.nonce,
        to: contract,
        value: 0,
        data: data.clone(),
        gas_limit: a.gas_limit,
        fees: chain_eth::Fees::Eip1559 {
            max_fee_per_gas: a.max_fee_per_gas,
            max_priority_fee_per_gas: a.max_priority_fee_per_gas,
        },
    };
    let hash = format!("0x{}", hex::encode(plan.signing_hash()));
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE eth_attempts SET data = X'{}', signing_hash = '{hash}' WHERE send_id = '{}'",
            hex::encode(&data),
            planned.id
        ))
        .await
        .unwrap();
    refused_and_frozen(&f, &planned.id, "the calldata is not exactly transfer(").await;
}

/// After a database edit of a planned send, the unsealed resumer signs
/// nothing for it, freezes the wallet and writes one refusal record whose
/// reason (also the transfer's last history line) contains `why`.
async fn refused_and_frozen(f: &Fixture, send: &str, why: &str) {
    for s in &f.shares {
        f.svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    f.svc.eth_resume().await.unwrap();
    // The next pass stops at the freeze: refused once, not at every pass.
    f.svc.eth_resume().await.unwrap();
    let attempts = f.db.store.eth_attempts(send).await.unwrap();
    assert!(attempts.last().unwrap().raw.is_none(), "never signed");
    let frozen = f
        .svc
        .frozen(Some(f.payer.wallet()), None)
        .await
        .unwrap()
        .unwrap();
    assert!(frozen.reason.contains("differs from what was approved"));
    let refusals = f
        .actions()
        .await
        .into_iter()
        .filter(|a| a == "transfer.sign_refused")
        .count();
    assert_eq!(refusals, 1);
    let transfer = f.db.store.transfer_of_send(send).await.unwrap().unwrap();
    let history = f.db.store.transfer_history(transfer.id).await.unwrap();
    let last = &history.last().unwrap().why;
    assert!(
        last.starts_with("signing refused: ") && last.contains(why),
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_of_another_wallet_is_refused_and_freezes_the_wallet() {
    let f = Fixture::new(TestDb::sqlite().await, None).await;
    let planned = f
        .pay_sealed(f.ether(&bob().to_string(), "1"))
        .await
        .unwrap();
    assert_eq!(planned.state, state::SIGNING);
    // The sender is moved to another wallet behind the server's back: the
    // transfer's intent is the first wallet's, the key now another's.
    let other = f
        .svc
        .console_create_wallet(&alice(), "other")
        .await
        .unwrap();
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE eth_senders SET wallet_id = '{}'",
            other.id
        ))
        .await
        .unwrap();
    refused_and_frozen(&f, &planned.id, "the intent belongs to wallet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speed_up_and_cancel_reuse_the_nonce() {
    let f = Fixture::new(TestDb::sqlite().await, None).await;
    let before = f.client.balance(bob()).await.unwrap();
    let first = f.pay(f.ether(&bob().to_string(), "1")).await.unwrap();
    let sped = f
        .svc
        .eth_replace(&alice(), &first.id, Replacement::SpeedUp(Urgency::Fast))
        .await
        .unwrap();
    assert_eq!(sped.nonce, first.nonce);
    let attempts = f.db.store.eth_attempts(&first.id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts[1].max_fee_per_gas > attempts[0].max_fee_per_gas);
    assert!(attempts[1].max_priority_fee_per_gas > attempts[0].max_priority_fee_per_gas);
    // The speed-up is mined before the watcher looks; a resume pass then
    // must not take the original's "nonce too low" for someone else's use.
    mine(&f.client, 1).await;
    f.svc.eth_resume().await.unwrap();
    assert_eq!(
        f.db.store.eth_send(&first.id).await.unwrap().state,
        state::BROADCAST
    );
    mine(&f.client, 2).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    let s = f.db.store.eth_send(&first.id).await.unwrap();
    assert_eq!(
        (s.state.as_str(), s.included_attempt),
        (state::CONFIRMED, Some(2))
    );
    assert_eq!(f.client.balance(bob()).await.unwrap(), before + ETHER);
    // A final send cannot be replaced.
    assert!(matches!(
        f.svc
            .eth_replace(&alice(), &first.id, Replacement::Cancel)
            .await,
        Err(ServiceError::Eth(EthError::NotReplaceable(_)))
    ));

    let second = f.pay(f.ether(&bob().to_string(), "2")).await.unwrap();
    f.svc
        .eth_replace(&alice(), &second.id, Replacement::Cancel)
        .await
        .unwrap();
    // Speeding up the cancel keeps it a cancel.
    f.svc
        .eth_replace(&alice(), &second.id, Replacement::SpeedUp(Urgency::Fast))
        .await
        .unwrap();
    let kinds: Vec<String> =
        f.db.store
            .eth_attempts(&second.id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.kind)
            .collect();
    assert_eq!(kinds, ["original", "cancel", "cancel"]);
    mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    let s = f.db.store.eth_send(&second.id).await.unwrap();
    assert_eq!(s.state, state::CANCELLED);
    assert_eq!(
        f.client.balance(bob()).await.unwrap(),
        before + ETHER,
        "the 2 ether never left"
    );
}

/// A send next in line for its sender that the chain does not mine (here
/// the base fee rose above what it offers; a node pool that never offers
/// it looks the same) is sped up by the watcher after `bump_after_blocks`
/// blocks, within the fee caps; the sends behind it are not touched until
/// they are next; above the cap a send is left as it is.
async fn a_send_waiting_unmined_is_sped_up_after_its_blocks(f: Fixture) {
    let before = f.client.balance(bob()).await.unwrap();
    let first = f.pay(f.ether(&bob().to_string(), "1")).await.unwrap();
    let second = f.pay(f.ether(&bob().to_string(), "2")).await.unwrap();
    assert_eq!((first.nonce, second.nonce), (0, 1));
    let offered = f.db.store.eth_attempts(&first.id).await.unwrap()[0].max_fee_per_gas;
    let base_fee = |wei: u128| {
        let client = f.client.clone();
        async move {
            client
                .raw_call(
                    "anvil_setNextBlockBaseFeePerGas",
                    serde_json::json!([format!("{wei:#x}")]),
                )
                .await
                .unwrap();
        }
    };
    base_fee(offered * 8).await;
    mine(&f.client, 1).await;
    let attempts = |id: String| {
        let store = f.db.store.clone();
        async move { store.eth_attempts(&id).await.unwrap() }
    };
    // Seen waiting at this block; not yet due.
    assert_eq!(f.svc.eth_speed_up_stalled(CHAIN_ID).await.unwrap(), 0);
    mine(&f.client, 2).await;
    assert_eq!(f.svc.eth_speed_up_stalled(CHAIN_ID).await.unwrap(), 0);
    assert_eq!(attempts(first.id.clone()).await.len(), 1);
    mine(&f.client, 1).await;
    assert_eq!(f.svc.eth_speed_up_stalled(CHAIN_ID).await.unwrap(), 1);
    let sped = attempts(first.id.clone()).await;
    assert_eq!(sped.len(), 2);
    assert_eq!(sped[1].kind, "speed-up");
    assert!(sped[1].max_fee_per_gas > offered * 2, "{sped:?}");
    assert_eq!(
        attempts(second.id.clone()).await.len(),
        1,
        "behind it: untouched"
    );
    // The speed-up is mined; the second is next in line now, and waits its
    // own blocks before it is sped up in turn.
    mine(&f.client, 1).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!(
        f.db.store.eth_send(&first.id).await.unwrap().state,
        state::INCLUDED
    );
    assert_eq!(f.svc.eth_speed_up_stalled(CHAIN_ID).await.unwrap(), 0);
    mine(&f.client, 3).await;
    assert_eq!(f.svc.eth_speed_up_stalled(CHAIN_ID).await.unwrap(), 1);
    mine(&f.client, 4).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    for (send, attempt) in [(&first, 2), (&second, 2)] {
        let s = f.db.store.eth_send(&send.id).await.unwrap();
        assert_eq!(
            (s.state.as_str(), s.included_attempt),
            (state::CONFIRMED, Some(attempt))
        );
    }
    assert_eq!(
        f.client.balance(bob()).await.unwrap(),
        before + 3 * ETHER,
        "each paid once"
    );
    let replaced: Vec<_> =
        f.db.store
            .audit_page(0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.action == "eth.send.replacing")
            .collect();
    assert_eq!(replaced.len(), 2);
    assert!(
        replaced
            .iter()
            .all(|r| r.actor == Actor::System.to_string()),
        "{replaced:?}"
    );

    // Blocks asking more than the cap: the send waits, and no speed-up
    // goes past the cap.
    let third = f.pay(f.ether(&bob().to_string(), "3")).await.unwrap();
    base_fee(600_000_000_000).await;
    mine(&f.client, 1).await;
    assert_eq!(f.svc.eth_speed_up_stalled(CHAIN_ID).await.unwrap(), 0);
    mine(&f.client, 3).await;
    assert_eq!(f.svc.eth_speed_up_stalled(CHAIN_ID).await.unwrap(), 0);
    assert_eq!(
        attempts(third.id.clone()).await.len(),
        1,
        "nothing above the cap"
    );
    assert_eq!(
        f.db.store.eth_send(&third.id).await.unwrap().state,
        state::BROADCAST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorganised_inclusion_goes_back_and_lands_again() {
    let f = Fixture::new(TestDb::sqlite().await, None).await;
    let snapshot = f
        .client
        .raw_call("evm_snapshot", serde_json::json!([]))
        .await
        .unwrap();
    let send = f.pay(f.ether(&bob().to_string(), "1")).await.unwrap();
    mine(&f.client, 1).await;
    assert_eq!(f.svc.eth_poll(CHAIN_ID).await.unwrap().included, 1);
    let first_block = f.db.store.eth_send(&send.id).await.unwrap().block_hash;
    // The block with our transaction is replaced by others.
    f.client
        .raw_call("evm_revert", serde_json::json!([snapshot]))
        .await
        .unwrap();
    mine(&f.client, 2).await;
    let poll = f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!(poll.reorged, 1, "{poll:?}");
    assert_eq!(
        f.db.store.eth_send(&send.id).await.unwrap().state,
        state::BROADCAST
    );
    // The same bytes were sent again; they land in a new block.
    mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    let s = f.db.store.eth_send(&send.id).await.unwrap();
    assert_eq!(s.state, state::CONFIRMED);
    assert_ne!(s.block_hash, first_block);
    assert!(f.actions().await.iter().any(|a| a == "eth.tx.reorged"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bytes_survive_a_restart_and_gaps_are_reported() {
    let f = Fixture::new(TestDb::sqlite().await, None).await;
    // Sealed: the plan is committed (nonce 0), the signature is not made.
    // The request is accepted (the send exists, pinned), not failed: a
    // caller must never be invited to send it twice.
    let pending = f
        .pay_sealed(f.ether(&bob().to_string(), "1"))
        .await
        .unwrap();
    assert_eq!(pending.state, state::SIGNING);
    let report = f.svc.eth_nonce_report(CHAIN_ID, f.from).await.unwrap();
    assert_eq!(report.unsigned, vec![0]);
    assert_eq!(f.sends().await[0].state, state::SIGNING);

    // Another process over the same database, whose node dies: its resumer
    // signs nonce 0 from the stored plan and keeps the bytes it could not send.
    let proxy = Proxy::start(f.anvil.url()).await;
    first_endpoints(&f, &[f.anvil.url(), proxy.url()]).await;
    let dying = client_for(proxy.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let other = Service::new(
        f.db.store.clone(),
        Arc::new(SystemClock),
        checkpointer(dir.path()),
    );
    other.add_eth_network(EthNetwork {
        config: config(vec![]),
        client: dying,
    });
    for s in &f.shares {
        other.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    proxy.kill();
    assert_eq!(other.eth_resume().await.unwrap(), 0, "no node took it");
    let zero = &f.sends().await[0];
    assert_eq!(zero.state, state::SIGNED);
    let stored = f.db.store.eth_attempts(&zero.id).await.unwrap()[0].clone();
    let stored_raw = stored.raw.clone().unwrap();
    drop(other);

    // The first process, unsealed again, sends nonce 1: it waits in the
    // pool behind nonce 0, which no node has seen — a gap, and reported.
    for s in &f.shares {
        f.svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    let one = f.pay(f.ether(&bob().to_string(), "2")).await.unwrap();
    assert_eq!(one.nonce, 1);
    let report = f.svc.eth_nonce_report(CHAIN_ID, f.from).await.unwrap();
    assert_eq!(report.gaps, vec![0], "{report:?}");
    assert!(report.unsigned.is_empty());

    // The resumer sends the stored bytes unchanged (nonce 1, which the node
    // holds, is not sent again); both land.
    assert_eq!(f.svc.eth_resume().await.unwrap(), 1);
    let again = f.db.store.eth_attempts(&zero.id).await.unwrap()[0].clone();
    assert_eq!(again.raw.unwrap(), stored_raw);
    assert_eq!(again.tx_hash, stored.tx_hash);
    mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert!(f.sends().await.iter().all(|s| s.state == state::CONFIRMED));
    let report = f.svc.eth_nonce_report(CHAIN_ID, f.from).await.unwrap();
    assert!(report.gaps.is_empty());
    assert_eq!(report.chain_latest, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_the_hsm_receives_and_sends_ether_and_tokens() {
    use keys_pkcs11::Pkcs11Signer;
    use keys_pkcs11::testing::{SoftHsm, USER_PIN};
    let token = SoftHsm::new("eth");
    let hsm = Pkcs11Signer::open(
        &SoftHsm::module(),
        &token.label,
        &Zeroizing::new(USER_PIN.into()),
        2,
    )
    .unwrap();
    let f = Fixture::new(TestDb::sqlite().await, Some(Arc::new(hsm))).await;
    // The fixture funded the HSM key's address with 100 ether.
    assert_eq!(f.client.balance(f.from).await.unwrap(), 100 * ETHER);
    let before = f.client.balance(bob()).await.unwrap();
    let send = f.pay(f.ether(&bob().to_string(), "3")).await.unwrap();
    f.confirmed(&send.id).await;
    assert_eq!(f.client.balance(bob()).await.unwrap(), before + 3 * ETHER);
    assert!(f.client.balance(f.from).await.unwrap() < 97 * ETHER);
    // An ERC-20 transfer, signed in the HSM too, confirmed on chain.
    let dev = DevWallet::new(0).await;
    let (contract, asset_id) = f.with_test_token(&dev).await;
    dev.transact(&f.client, |nonce, fees| {
        TxPlan::erc20(CHAIN_ID, nonce, contract, f.from, 5_000_000, 100_000, fees)
    })
    .await;
    mine(&f.client, 3).await;
    let send = f
        .pay(Pay {
            asset: asset_id,
            to: bob().to_string(),
            amount: "2.5".into(),
            urgency: Urgency::Normal,
        })
        .await
        .unwrap();
    f.confirmed(&send.id).await;
    assert_eq!(
        f.client.erc20_balance(contract, bob()).await.unwrap(),
        2_500_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_send_is_scoped_to_its_wallet() {
    use domain::{Grant, Role, Scope};
    use service::identity::{AuthError, perm};
    let f = Fixture::new(TestDb::sqlite().await, None).await;
    let root: Actor = "operator:root".parse().unwrap();
    let a = f.svc.console_create_wallet(&root, "a").await.unwrap();
    let b = f.svc.console_create_wallet(&root, "b").await.unwrap();
    let send = f.pay(f.ether(&bob().to_string(), "1")).await.unwrap();
    // In the payer's wallet, then moved to wallet a with its sender.
    assert_eq!(
        f.svc.eth_send_wallet(&send.id).await.unwrap(),
        Some(f.payer.wallet())
    );
    f.svc
        .console_assign_eth_sender(&root, CHAIN_ID, f.from, a.id)
        .await
        .unwrap();
    assert_eq!(f.svc.eth_send_wallet(&send.id).await.unwrap(), Some(a.id));

    let principal = |seed: u8, grant: Grant| {
        let svc = f.svc.clone();
        async move {
            use ed25519_dalek::Signer as _;
            let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
            let row = svc
                .console_register_api_key(
                    &"operator:root".parse().unwrap(),
                    "reader",
                    &key.verifying_key().to_bytes(),
                    &[grant],
                    1,
                    None,
                )
                .await
                .unwrap();
            let id = row.id.to_string();
            let ts = service::Clock::now(&SystemClock).as_millis().to_string();
            let nonce = format!("reader-nonce-{seed:08}");
            let m = service::identity::request_message("GET", "/x", "", b"", &ts, &nonce, "");
            let sig = data_encoding::BASE64.encode(&key.sign(&m).to_bytes());
            svc.authenticate_request(&service::identity::SignedRequest {
                key_id: &id,
                timestamp_ms: &ts,
                nonce: &nonce,
                signature: &sig,
                method: "GET",
                path: "/x",
                query: "",
                body: b"",
                idempotency_key: None,
            })
            .await
            .unwrap()
        }
    };
    let in_a = principal(1, Grant::new(Role::Viewer, Scope::Wallet(a.id)).unwrap()).await;
    let in_b = principal(2, Grant::new(Role::Viewer, Scope::Wallet(b.id)).unwrap()).await;
    let auditor = principal(3, Grant::global(Role::Auditor)).await;

    let wallet = f.svc.eth_send_wallet(&send.id).await.unwrap();
    let can = f.svc.authorize::<perm::ReadWallet>(&in_a, wallet).unwrap();
    assert_eq!(can.eth_send(&send.id).await.unwrap().id, send.id);
    assert_eq!(
        f.svc
            .authorize::<perm::ReadWallet>(&in_b, wallet)
            .map(|_| ())
            .unwrap_err(),
        AuthError::Forbidden
    );
    // A capability for wallet B does not reach a send of wallet A either.
    let for_b = f
        .svc
        .authorize::<perm::ReadWallet>(&in_b, Some(b.id))
        .unwrap();
    assert!(matches!(
        for_b.eth_send(&send.id).await,
        Err(ServiceError::Storage(
            storage::StorageError::NotFound { .. }
        ))
    ));
    let global = f
        .svc
        .authorize::<perm::ReadWallet>(&auditor, wallet)
        .unwrap();
    assert_eq!(global.eth_send(&send.id).await.unwrap().id, send.id);
}

/// Wall-clock time plus an offset a test can move forward.
#[derive(Debug, Default)]
struct ShiftedClock(std::sync::atomic::AtomicI64);

impl service::Clock for ShiftedClock {
    fn now(&self) -> domain::Timestamp {
        let now = service::Clock::now(&SystemClock).as_millis();
        domain::Timestamp::from_millis(now + self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// A webhook receiver on loopback that refuses the first `fail` requests.
#[derive(Default)]
struct Receiver {
    fail: std::sync::atomic::AtomicUsize,
    /// (webhook-id, body) of every request it accepted.
    accepted: std::sync::Mutex<Vec<(String, String)>>,
    secret: std::sync::Mutex<Vec<u8>>,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Arc<Receiver>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let secret = r.secret.lock().unwrap().clone();
    let expected = service::webhooks::signature(&secret, &id, ts.parse().unwrap(), &body).unwrap();
    assert_eq!(sig, expected, "every delivery is signed");
    let failing = r
        .fail
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok();
    if failing {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    r.accepted.lock().unwrap().push((id, body));
    axum::http::StatusCode::NO_CONTENT
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_arrive_signed_retried_and_once_by_id() {
    use service::identity::perm;
    let clock = Arc::new(ShiftedClock::default());
    let f = Fixture::with_clock(TestDb::sqlite().await, None, clock.clone()).await;

    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // The receiver speaks HTTPS (a test CA's certificate for localhost).
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = tls::testing::make_pki(pki_dir.path(), "hooks").unwrap();
    let front = tls::testing::TlsFront::start(&plain.to_string(), &pki)
        .await
        .unwrap();
    let url = format!("{}/hook", front.url());
    let test_mode = || service::webhook_target::WebhookPolicy {
        tls: Some(tls::ClientTls::new(&tls::Roots::Bundle(pki.ca_cert.clone())).unwrap()),
        ..service::webhook_target::WebhookPolicy::loopback_for_tests()
    };

    // An admin (through an API key made at bootstrap) subscribes.
    let admin = f.payer.admin().await;
    let hooks = f
        .svc
        .authorize::<perm::ManageWebhooks>(&admin, None)
        .unwrap();
    // Payloads travel over TLS: plain http:// off this machine is refused.
    assert!(
        hooks
            .create_webhook("http://example.com/x", &["*".into()])
            .await
            .is_err(),
    );
    // This host, its database, internal networks and the metadata service
    // are refused: the receiver on loopback needs the test mode.
    for target in [
        url.clone(),
        format!("http://{plain}/hook"),
        "https://127.0.0.1:5432/".to_owned(),
        "http://127.0.0.1:5432/".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[fd00:ec2::254]/".to_owned(),
        "http://10.0.0.1/x".to_owned(),
    ] {
        assert!(
            hooks.create_webhook(&target, &["*".into()]).await.is_err(),
            "{target}"
        );
    }
    f.svc.set_webhook_policy(test_mode());
    assert!(
        hooks
            .create_webhook(&url, &["transfer.exploded".into()])
            .await
            .is_err()
    );
    let (hook, secret) = hooks
        .create_webhook(&url, &["transfer.state_changed".into()])
        .await
        .unwrap();
    let secret = data_encoding::BASE64
        .decode(secret.strip_prefix("whsec_").unwrap().as_bytes())
        .unwrap();
    *receiver.secret.lock().unwrap() = secret;

    // Two transfers: each transfer's moves, and each send broadcast, then
    // included and confirmed.
    // The first as the work of a client's request, named by its id.
    service::with_request_id("client-7".into(), f.pay(f.ether(&bob().to_string(), "1")))
        .await
        .unwrap();
    f.pay(f.ether(&bob().to_string(), "2")).await.unwrap();
    mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();

    receiver.fail.store(3, std::sync::atomic::Ordering::SeqCst);
    let pass = f.svc.deliver_webhooks().await.unwrap();
    let events = pass.delivered + pass.retrying;
    assert_eq!((pass.retrying, pass.failed), (3, 0));
    // Retries wait their turn: nothing is due yet.
    assert_eq!(f.svc.deliver_webhooks().await.unwrap(), Default::default());
    clock
        .0
        .fetch_add(5_001, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(f.svc.deliver_webhooks().await.unwrap().delivered, 3);
    assert_eq!(f.svc.deliver_webhooks().await.unwrap(), Default::default());

    let accepted = receiver.accepted.lock().unwrap().clone();
    let mut ids: Vec<&String> = accepted.iter().map(|(id, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), events, "every event, once each by id");
    assert_eq!(accepted.len(), events);
    // The sends' own events: those that name their nonce.
    let states: Vec<String> = accepted
        .iter()
        .filter_map(|(_, b)| {
            let v = serde_json::from_str::<serde_json::Value>(b).unwrap();
            v["data"].get("nonce")?;
            Some(v["data"]["state"].as_str().unwrap().to_owned())
        })
        .collect();
    for s in ["broadcast", "included", "confirmed"] {
        assert_eq!(states.iter().filter(|x| *x == s).count(), 2, "{states:?}");
    }
    // Events the request caused carry its id; those of the server's own
    // work (the watcher) carry none.
    let ids: Vec<Option<String>> = accepted
        .iter()
        .map(|(_, b)| {
            let v = serde_json::from_str::<serde_json::Value>(b).unwrap();
            v["request_id"].as_str().map(str::to_owned)
        })
        .collect();
    assert!(
        ids.iter().any(|i| i.as_deref() == Some("client-7")),
        "{ids:?}"
    );
    assert!(ids.iter().any(Option::is_none), "{ids:?}");
    assert!(ids.iter().flatten().all(|i| i == "client-7"), "{ids:?}");
    let deliveries = hooks.deliveries(&hook.id).await.unwrap();
    assert!(deliveries.iter().all(|d| d.state == "delivered"));

    // The target is checked again at every delivery: out of the test mode,
    // the loopback receiver is not reached, and the record says only that.
    f.svc
        .set_webhook_policy(service::webhook_target::WebhookPolicy::default());
    hooks.resend(&deliveries[0].id).await.unwrap();
    let before = receiver.accepted.lock().unwrap().len();
    assert_eq!(f.svc.deliver_webhooks().await.unwrap().retrying, 1);
    assert_eq!(receiver.accepted.lock().unwrap().len(), before);
    let refused = hooks.deliveries(&hook.id).await.unwrap();
    let refused = refused.iter().find(|d| d.id == deliveries[0].id).unwrap();
    assert_eq!(refused.last_error.as_deref(), Some("target not allowed"));
    // A receiver whose certificate the roots do not vouch for (the
    // system's store does not know the test CA) is not delivered to.
    f.svc
        .set_webhook_policy(service::webhook_target::WebhookPolicy::loopback_for_tests());
    clock
        .0
        .fetch_add(5_001, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(f.svc.deliver_webhooks().await.unwrap().retrying, 1);
    assert_eq!(receiver.accepted.lock().unwrap().len(), before);
    let untrusted = hooks.deliveries(&hook.id).await.unwrap();
    let untrusted = untrusted.iter().find(|d| d.id == deliveries[0].id).unwrap();
    assert_eq!(untrusted.last_error.as_deref(), Some("unreachable"));
    f.svc.set_webhook_policy(test_mode());
    clock
        .0
        .fetch_add(300_001, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(f.svc.deliver_webhooks().await.unwrap().delivered, 1);

    // A resend goes out again with the same id.
    hooks.resend(&deliveries[0].id).await.unwrap();
    assert_eq!(f.svc.deliver_webhooks().await.unwrap().delivered, 1);
    let last = receiver.accepted.lock().unwrap().last().unwrap().0.clone();
    assert_eq!(last, deliveries[0].event_id);

    // A receiver that never recovers: eight attempts over about a day, then
    // failed and audited (every event of the third transfer alike).
    receiver
        .fail
        .store(usize::MAX, std::sync::atomic::Ordering::SeqCst);
    f.pay(f.ether(&bob().to_string(), "3")).await.unwrap();
    let mut passes = 0;
    loop {
        let pass = f.svc.deliver_webhooks().await.unwrap();
        assert!(pass.retrying + pass.failed > 0, "{pass:?}");
        passes += 1;
        if pass.failed > 0 {
            assert_eq!(pass.retrying, 0, "all fail on the same attempt");
            break;
        }
        clock
            .0
            .fetch_add(36_000_001, std::sync::atomic::Ordering::SeqCst);
    }
    assert_eq!(passes, 8);
    assert!(
        f.actions()
            .await
            .iter()
            .any(|a| a == "webhook.delivery.failed")
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_pays_someone_is_refused_and_freezes_the_wallet() {
    let f = Fixture::new(TestDb::sqlite().await, None).await;
    let send = f.pay(f.ether(&bob().to_string(), "1")).await.unwrap();
    assert_eq!(send.state, state::BROADCAST);
    // A cancel is planned while sealed: stored, not signed.
    f.svc.seal(&alice()).await.unwrap();
    assert!(matches!(
        f.svc
            .eth_replace(&alice(), &send.id, Replacement::Cancel)
            .await,
        Err(ServiceError::Sealed)
    ));
    let attempts = f.db.store.eth_attempts(&send.id).await.unwrap();
    let cancel = attempts.last().unwrap();
    assert_eq!(
        (cancel.kind.as_str(), cancel.raw.is_none()),
        ("cancel", true)
    );
    // Someone with the database makes the "cancel" pay bob, and makes the
    // stored signing hash agree with it.
    let plan = TxPlan::native(
        CHAIN_ID,
        send.nonce,
        bob(),
        ETHER,
        chain_eth::Fees::Eip1559 {
            max_fee_per_gas: cancel.max_fee_per_gas,
            max_priority_fee_per_gas: cancel.max_priority_fee_per_gas,
        },
    );
    let hash = format!("0x{}", hex::encode(plan.signing_hash()));
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE eth_attempts SET to_address = '{}', value = '{ETHER}', signing_hash = '{hash}' \
             WHERE send_id = '{}' AND attempt = {}",
            bob().to_lower_hex(),
            send.id,
            cancel.attempt
        ))
        .await
        .unwrap();
    refused_and_frozen(&f, &send.id, "a cancel that pays something").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_edited_without_its_hash_is_refused_and_freezes_the_wallet() {
    let f = Fixture::new(TestDb::sqlite().await, None).await;
    let planned = f
        .pay_sealed(f.ether(&bob().to_string(), "1"))
        .await
        .unwrap();
    assert_eq!(planned.state, state::SIGNING);
    // The recipient is edited; the stored signing hash is left as it was.
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE eth_attempts SET to_address = '{}' WHERE send_id = '{}'",
            f.from.to_lower_hex(),
            planned.id
        ))
        .await
        .unwrap();
    refused_and_frozen(
        &f,
        &planned.id,
        "the stored plan and its signing hash differ",
    )
    .await;
}

/// A key found leaked with a withdrawal in flight: marked compromised, it
/// signs nothing, not even a speed-up of its own payment. Rotated, the
/// wallet's account moves to the successor and a sweep of its ether goes
/// through the pipeline, signed by the compromised key (the one thing it
/// still signs), confirmed; the wallet then pays from the successor.
async fn a_compromised_key_sweeps_to_its_successor_and_signs_nothing_else(f: Fixture) {
    let network = format!("eip155:{CHAIN_ID}");
    let old =
        f.db.store
            .eth_sender(&network, &f.from.to_lower_hex())
            .await
            .unwrap()
            .key_id;
    let first = f.pay(f.ether(&bob().to_string(), "1")).await.unwrap();
    f.svc
        .set_key_state(&alice(), old, domain::KeyState::Compromised)
        .await
        .unwrap();
    match f
        .svc
        .eth_replace(&alice(), &first.id, Replacement::SpeedUp(Urgency::Fast))
        .await
    {
        Err(ServiceError::KeyNotUsable(m)) => assert!(m.contains("only sweeps"), "{m}"),
        other => panic!("a compromised key signed a speed-up: {other:?}"),
    }
    mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    let held = f.client.balance(f.from).await.unwrap();

    let r = f.svc.rotate_with_sweep(&alice(), old, 30).await.unwrap();
    assert_eq!((r.accounts.len(), r.sweeps.len()), (1, 1), "{r:?}");
    assert!(!r.resumed);
    // Done again (as after a crash of the command), the rotation goes on
    // where it stopped and makes nothing twice: the same successor, the
    // same account, the same sweep (by its external id).
    let again = f.svc.rotate_with_sweep(&alice(), old, 30).await.unwrap();
    assert!(again.resumed);
    assert_eq!(again.successor, r.successor);
    assert_eq!(again.accounts.len(), 1);
    assert_eq!(again.accounts[0].to, r.accounts[0].to);
    assert_eq!(again.sweeps, r.sweeps);
    let to: EthAddress = r.accounts[0].to.parse().unwrap();
    assert_ne!(to, f.from);
    // Deposits go to the successor's address — handed out once a verified
    // backup holds the new key, or its risk was accepted (audited).
    let who = f.payer.initiator().await;
    let can = f
        .svc
        .authorize::<service::identity::perm::InitiateTransfer>(&who, Some(f.payer.wallet()))
        .unwrap();
    assert!(matches!(
        can.eth_deposit_address(f.payer.wallet(), CHAIN_ID, None).await,
        Err(ServiceError::NotBackedUp(k)) if k == r.successor.to_string()
    ));
    f.svc.waive_key_backup(&alice(), r.successor).await.unwrap();
    assert_eq!(
        can.eth_deposit_address(f.payer.wallet(), CHAIN_ID, None)
            .await
            .unwrap(),
        (to.to_string(), None)
    );
    assert_eq!(
        f.db.store.key(old).await.unwrap().state,
        domain::KeyState::Compromised,
        "it stays compromised"
    );
    assert_eq!(f.svc.execute_due().await.unwrap().submitted, 1);
    mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    let sweep: domain::TransferId = r.sweeps[0].parse().unwrap();
    let row = f.db.store.transfer(sweep).await.unwrap();
    assert_eq!(row.state, "completed");
    // It keeps back the most its own fee may be: 21 000 gas at the capped
    // price (0.0105 ether, under the 0.1 ether cap on a whole fee).
    let reserve = config(vec![]).fee_reserve(&format!("eip155:{CHAIN_ID}/native"));
    assert_eq!(reserve, 21_000 * 500_000_000_000);
    assert_eq!(f.client.balance(to).await.unwrap(), held - reserve);
    let left = f.client.balance(f.from).await.unwrap();
    assert!(
        left < reserve,
        "only what the fee did not use is left: {left}"
    );

    // The wallet pays from the successor now; the old key is rotated once.
    let next = f.pay(f.ether(&bob().to_string(), "1")).await.unwrap();
    assert_eq!(next.address, to.to_lower_hex());
    // Once swept, another run finds only the dust the fees left.
    let last = f.svc.rotate_with_sweep(&alice(), old, 30).await.unwrap();
    assert!(last.resumed && last.sweeps.is_empty(), "{last:?}");
    assert_eq!(last.left.len(), 1, "{last:?}");
    let actions = f.actions().await;
    for a in ["key.rotated", "eth.sender.retired"] {
        assert!(actions.iter().any(|x| x == a), "{a}");
    }
}

/// A transaction from a Strongroom address that Strongroom never signed
/// (its key used elsewhere: anvil impersonates the address) is found within
/// one reconciliation pass: the wallet frozen, the finding audited, kept
/// with its run and announced; the next pass finds nothing new; a node that
/// cannot be reached fails the pass loudly, kept incomplete.
async fn an_outflow_strongroom_did_not_sign_freezes_its_wallet_within_one_pass(f: Fixture) {
    let clean = f.svc.reconcile_chains().await.unwrap();
    assert!(clean.complete && clean.findings.is_empty(), "{clean:?}");
    assert_eq!(clean.accounts, 1);
    // Strongroom's own payment is no finding.
    f.pay(f.ether(&bob().to_string(), "1")).await.unwrap();
    mine(&f.client, 1).await;
    assert!(f.svc.reconcile_chains().await.unwrap().findings.is_empty());

    // The key used outside Strongroom.
    let from = f.from.to_string();
    f.client
        .raw_call("anvil_impersonateAccount", serde_json::json!([from]))
        .await
        .unwrap();
    f.client
        .raw_call(
            "eth_sendTransaction",
            serde_json::json!([{ "from": from, "to": bob().to_string(), "value": "0xde0b6b3a7640000" }]),
        )
        .await
        .unwrap();
    mine(&f.client, 1).await;
    let run = f.svc.reconcile_chains().await.unwrap();
    assert!(run.complete);
    assert_eq!(run.findings.len(), 1, "{run:?}");
    let found = &run.findings[0];
    assert_eq!(found.kind, "unsigned_outflow");
    assert_eq!(found.wallet, Some(f.payer.wallet()));
    assert!(found.detail.contains("never signed"), "{}", found.detail);
    assert!(found.freeze.is_some());
    assert!(matches!(
        f.pay(f.ether(&bob().to_string(), "1")).await,
        Err(ServiceError::Frozen(_))
    ));
    let actions = f.actions().await;
    for a in ["reconciliation.finding", "reconciliation.run"] {
        assert!(actions.iter().any(|x| x == a), "{a}");
    }
    // Found once: the next pass finds nothing new (the freeze stays).
    let again = f.svc.reconcile_chains().await.unwrap();
    assert!(again.complete && again.findings.is_empty(), "{again:?}");
    // Kept: the first clean run, the finding and the clean run after it (a
    // clean run like the last kept one is not kept again within the hour).
    let runs = f.svc.reconciliation_runs(10, None).await.unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].id, again.id, "newest first");
    assert_eq!(runs[1].findings, run.findings);

    // The node gone: the pass fails, and says so in its run.
    let Fixture { anvil, svc, .. } = f;
    drop(anvil);
    assert!(svc.reconcile_chains().await.is_err());
    let last = &svc.reconciliation_runs(1, None).await.unwrap()[0];
    assert!(!last.complete && last.error.is_some(), "{last:?}");
}

async fn the_ledger_follows_the_chain_and_a_drift_is_named_once(f: Fixture) {
    let wallet = f.payer.wallet();
    let ether_id = AssetId::new(
        domain::Network::Evm { chain_id: CHAIN_ID },
        domain::AssetKind::Native,
    )
    .unwrap()
    .to_string();
    let ledger = || async {
        f.db.store
            .ledger_balances(wallet)
            .await
            .unwrap()
            .into_iter()
            .find(|(a, _)| *a == ether_id)
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    // Passes after the scanner has read past the confirmation depth.
    let settle = || async {
        mine(&f.client, 3).await;
        f.svc.eth_poll(CHAIN_ID).await.unwrap();
        f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
        f.svc.reconcile_chains().await.unwrap()
    };
    // The first exact comparison opens the ledger with what the sender held.
    let run = settle().await;
    assert!(run.complete && run.findings.is_empty(), "{run:?}");
    let held = f.client.balance(f.from).await.unwrap();
    assert_eq!(
        ledger().await,
        storage::Balances {
            available: held as i128,
            pending: 0,
            reserved: 0
        }
    );
    // A payment through Strongroom: reserved, paid, its fee; no drift.
    f.pay(f.ether(&bob().to_string(), "1")).await.unwrap();
    assert_eq!(ledger().await.reserved, ETHER as i128);
    let run = settle().await;
    assert!(run.findings.is_empty(), "{run:?}");
    let after = f.client.balance(f.from).await.unwrap();
    assert!(after < held - ETHER, "a fee was paid");
    assert_eq!(
        ledger().await,
        storage::Balances {
            available: after as i128,
            pending: 0,
            reserved: 0
        }
    );
    // The node says the sender holds more than any deposit brought: a
    // deposit missed, named once, the ledger set to the chain, no freeze.
    let set = |wei: u128| {
        let client = f.client.clone();
        let from = f.from.to_string();
        async move {
            client
                .raw_call(
                    "anvil_setBalance",
                    serde_json::json!([from, format!("{wei:#x}")]),
                )
                .await
                .unwrap();
        }
    };
    set(after + ETHER).await;
    let run = settle().await;
    assert_eq!(run.findings.len(), 1, "{run:?}");
    assert_eq!(run.findings[0].kind, "deposit_missed");
    assert!(run.findings[0].freeze.is_none());
    assert_eq!(ledger().await.available, (after + ETHER) as i128);
    assert!(settle().await.findings.is_empty(), "named once");
    // Less than the ledger holds, with no transaction Strongroom signed
    // (the node's word, or funds drained): a drift that freezes the wallet.
    set(after / 2).await;
    let run = settle().await;
    assert_eq!(run.findings.len(), 1, "{run:?}");
    let found = &run.findings[0];
    assert_eq!(found.kind, "balance_drift");
    assert_eq!(found.wallet, Some(wallet));
    assert!(found.freeze.is_some());
    assert!(matches!(
        f.pay(f.ether(&bob().to_string(), "1")).await,
        Err(ServiceError::Frozen(_))
    ));
    assert_eq!(ledger().await.available, (after / 2) as i128);
    assert!(settle().await.findings.is_empty(), "named once");
    // The statement tells the whole story.
    let admin = f.payer.admin().await;
    let can = f
        .svc
        .authorize::<service::identity::perm::ReadWallet>(&admin, Some(wallet))
        .unwrap();
    let st = can
        .statement(wallet, domain::Timestamp::from_millis(0), None)
        .await
        .unwrap();
    let kinds: Vec<&str> = st.movements.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["opening", "reserved", "fee", "payout", "drift", "drift"],
        "{st:?}"
    );
}

async fn tokens_are_reconciled_the_same_way(f: Fixture) {
    let dev = DevWallet::new(0).await;
    let (contract, asset_id) = f.with_test_token(&dev).await;
    f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
    // A token deposit: scanned, credited at depth, in the ledger.
    dev.transact(&f.client, |nonce, fees| {
        TxPlan::erc20(
            CHAIN_ID,
            nonce,
            contract,
            f.from,
            500_000_000,
            100_000,
            fees,
        )
    })
    .await;
    let settle = || async {
        mine(&f.client, 3).await;
        f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
        f.svc.reconcile_chains().await.unwrap()
    };
    let run = settle().await;
    assert!(run.findings.is_empty(), "{run:?}");
    assert_eq!(run.accounts, 3, "the sender, ether and the token");
    let token = || async {
        f.db.store
            .ledger_balances(f.payer.wallet())
            .await
            .unwrap()
            .into_iter()
            .find(|(a, _)| *a == asset_id.to_string())
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    assert_eq!(token().await.available, 500_000_000);
    // Tokens leave with no transaction from the sender (an allowance abused,
    // a contract drained): here the token's balance slot is rewritten.
    let key = f
        .client
        .raw_call(
            "web3_sha3",
            serde_json::json!([format!(
                "0x{:0>64}{:0>64}",
                hex::encode(f.from.as_bytes()),
                "1"
            )]),
        )
        .await
        .unwrap();
    f.client
        .raw_call(
            "anvil_setStorageAt",
            serde_json::json!([
                contract.to_string(),
                key,
                format!("0x{:064x}", 100_000_000u64)
            ]),
        )
        .await
        .unwrap();
    assert_eq!(
        f.client.erc20_balance(contract, f.from).await.unwrap(),
        100_000_000
    );
    let run = settle().await;
    assert_eq!(run.findings.len(), 1, "{run:?}");
    let found = &run.findings[0];
    assert_eq!(found.kind, "balance_drift");
    assert!(found.account.ends_with(&asset_id.to_string()), "{found:?}");
    assert!(found.freeze.is_some());
    assert_eq!(token().await.available, 100_000_000);
    assert!(settle().await.findings.is_empty(), "named once");
}

/// One account per network: a second sender is refused for a wallet that
/// has one; a database from before the rule, holding two, lists and counts
/// both (the second spends nothing: transfers leave from the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_account_on_a_network_is_refused_and_an_old_one_still_counted() {
    use service::identity::perm;
    let f = Fixture::new(TestDb::sqlite().await, None).await;
    let root: Actor = "operator:root".parse().unwrap();
    let wallet = f.payer.wallet();
    let key = f
        .svc
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
        .unwrap();
    let second: EthAddress = f
        .svc
        .register_eth_sender(&alice(), key.id, CHAIN_ID)
        .await
        .unwrap()
        .address
        .parse()
        .unwrap();
    match f
        .svc
        .console_assign_eth_sender(&root, CHAIN_ID, second, wallet)
        .await
    {
        Err(ServiceError::Conflict(m)) => assert!(m.contains("one account per network"), "{m}"),
        other => panic!("a second sender: {other:?}"),
    }
    // The same sender again is no change, and no refusal.
    f.svc
        .console_assign_eth_sender(&root, CHAIN_ID, f.from, wallet)
        .await
        .unwrap();
    // As an older server wrote it: two senders in one wallet on one chain.
    let mut tx = f.db.store.begin().await.unwrap();
    tx.set_eth_sender_wallet("eip155:31337", &second.to_lower_hex(), wallet)
        .await
        .unwrap();
    let e = audit::Entry::new(
        root.clone(),
        "eth.sender.assigned",
        format!("eth:eip155:31337:{second}"),
        audit::Details::new(&serde_json::json!({ "wallet": wallet.to_string() })).unwrap(),
    )
    .unwrap();
    tx.commit(&[e], service::Clock::now(&SystemClock))
        .await
        .unwrap();
    f.fund(second, 5 * ETHER).await;
    let admin = f.payer.admin().await;
    let read = f
        .svc
        .authorize::<perm::ReadWallet>(&admin, Some(wallet))
        .unwrap();
    let (_, accounts) = read.wallet(wallet).await.unwrap();
    let listed: Vec<String> = accounts.iter().map(|a| a.address.clone()).collect();
    assert!(listed.contains(&f.from.to_string()) && listed.contains(&second.to_string()));
    let ether: Vec<_> = read
        .balances(wallet)
        .await
        .unwrap()
        .into_iter()
        .filter(|b| b.asset.symbol().as_str() == "ETH")
        .collect();
    assert_eq!(ether.len(), 2, "{ether:?}");
    let old = ether
        .iter()
        .find(|b| b.account.as_deref() == Some(second.to_string().as_str()))
        .unwrap();
    assert_eq!(old.credited, Some(5 * ETHER));
    assert_eq!(old.available, Some(0), "nothing spends from it");
    let first = ether
        .iter()
        .find(|b| b.account.as_deref() == Some(f.from.to_string().as_str()))
        .unwrap();
    assert!(first.available.unwrap() > 90 * ETHER);
}

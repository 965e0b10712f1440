//! The client against a real anvil node.
#![allow(clippy::unwrap_used)]

use chain_eth::fees::{self, Urgency};
use chain_eth::{EthAddress, Fees, TxPlan};
use chain_eth_client::testing::{Anvil, CHAIN_ID, DevWallet, Proxy, deploy_test_token, mine};
use chain_eth_client::{ClientError, ClientOptions, EthClient, NonceTag, TxStatus};
use serde_json::json;

async fn client(anvil: &Anvil) -> EthClient {
    EthClient::connect(
        CHAIN_ID,
        &[anvil.url().to_owned()],
        ClientOptions::default(),
    )
    .await
    .unwrap()
}

fn bob() -> EthAddress {
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        .parse()
        .unwrap()
}

async fn fees(c: &EthClient) -> Fees {
    let history = c.fee_history(5).await.unwrap();
    fees::estimate(&history, Urgency::Normal, 1_000_000_000).unwrap()
}

#[tokio::test]
async fn an_endpoint_on_another_chain_is_refused_at_start() {
    let anvil = Anvil::start();
    let err = EthClient::connect(1, &[anvil.url().to_owned()], ClientOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::WrongChain {
                expected: 1,
                got: CHAIN_ID,
                ..
            }
        ),
        "{err}"
    );
    let err = EthClient::connect(
        CHAIN_ID,
        &["http://127.0.0.1:1".into()],
        ClientOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Unavailable(_)), "{err}");
    assert!(matches!(
        EthClient::connect(CHAIN_ID, &[], ClientOptions::default()).await,
        Err(ClientError::NoEndpoints)
    ));
    assert!(matches!(
        EthClient::connect(
            CHAIN_ID,
            &["ws://node.example".into()],
            ClientOptions::default()
        )
        .await,
        Err(ClientError::BadEndpoint(..))
    ));
}

#[tokio::test]
async fn ether_moves_and_is_confirmed_and_resending_is_harmless() {
    let anvil = Anvil::start();
    let c = client(&anvil).await;
    let alice = DevWallet::new(0).await;
    let before = c.balance(bob()).await.unwrap();
    let nonce = c.nonce(alice.address, NonceTag::Pending).await.unwrap();
    let plan = TxPlan::native(CHAIN_ID, nonce, bob(), 1_234_567, fees(&c).await);
    let signed = alice.sign(&plan).await;
    assert_eq!(
        c.send_raw(&signed.raw, signed.hash).await.unwrap(),
        signed.hash
    );
    assert_eq!(c.tx_status(signed.hash).await.unwrap(), TxStatus::Pending);
    // In the pool: sending the same bytes again is a success ("already known").
    assert_eq!(
        c.send_raw(&signed.raw, signed.hash).await.unwrap(),
        signed.hash
    );
    mine(&c, 1).await;
    // Mined: sending them again is still a success ("nonce too low", our hash).
    assert_eq!(
        c.send_raw(&signed.raw, signed.hash).await.unwrap(),
        signed.hash
    );
    assert_eq!(c.balance(bob()).await.unwrap(), before + 1_234_567);
    let TxStatus::Included {
        receipt,
        confirmations,
    } = c.tx_status(signed.hash).await.unwrap()
    else {
        panic!("not included")
    };
    assert!(receipt.success);
    assert_eq!(receipt.gas_used, 21_000);
    assert_eq!(confirmations, 1);
    mine(&c, 5).await;
    let TxStatus::Included { confirmations, .. } = c.tx_status(signed.hash).await.unwrap() else {
        panic!()
    };
    assert_eq!(confirmations, 6);
    assert_eq!(
        c.nonce(alice.address, NonceTag::Latest).await.unwrap(),
        nonce + 1
    );
}

#[tokio::test]
async fn a_nonce_used_by_someone_else_is_reported_and_an_unknown_hash_is_unknown() {
    let anvil = Anvil::start();
    let c = client(&anvil).await;
    let alice = DevWallet::new(1).await;
    let f = fees(&c).await;
    let first = alice.sign(&TxPlan::native(CHAIN_ID, 0, bob(), 1, f)).await;
    c.send_raw(&first.raw, first.hash).await.unwrap();
    mine(&c, 1).await;
    // Another transaction with the same nonce, never sent before.
    let other = alice.sign(&TxPlan::native(CHAIN_ID, 0, bob(), 2, f)).await;
    assert_eq!(c.tx_status(other.hash).await.unwrap(), TxStatus::Unknown);
    let err = c.send_raw(&other.raw, other.hash).await.unwrap_err();
    assert!(matches!(err, ClientError::NonceTaken(_)), "{err}");
}

#[tokio::test]
async fn a_replacement_needs_higher_fees_and_then_wins() {
    let anvil = Anvil::start();
    let c = client(&anvil).await;
    let alice = DevWallet::new(2).await;
    let f = fees(&c).await;
    let slow = alice.sign(&TxPlan::native(CHAIN_ID, 0, bob(), 1, f)).await;
    c.send_raw(&slow.raw, slow.hash).await.unwrap();
    assert_eq!(c.tx_status(slow.hash).await.unwrap(), TxStatus::Pending);
    // Same fees, other content: the pool refuses it.
    let same = alice.sign(&TxPlan::native(CHAIN_ID, 0, bob(), 2, f)).await;
    assert!(matches!(
        c.send_raw(&same.raw, same.hash).await,
        Err(ClientError::Underpriced)
    ));
    // Bumped: a cancel (zero ether to ourselves) replaces it.
    let bumped = fees::bump(f, fees(&c).await).unwrap();
    let cancel = alice
        .sign(&TxPlan::native(CHAIN_ID, 0, alice.address, 0, bumped))
        .await;
    c.send_raw(&cancel.raw, cancel.hash).await.unwrap();
    mine(&c, 1).await;
    assert!(matches!(
        c.tx_status(cancel.hash).await.unwrap(),
        TxStatus::Included { .. }
    ));
    assert_eq!(c.tx_status(slow.hash).await.unwrap(), TxStatus::Unknown);
}

#[tokio::test]
async fn a_reorganised_block_is_detected_by_its_hash() {
    let anvil = Anvil::start();
    let c = client(&anvil).await;
    let alice = DevWallet::new(3).await;
    mine(&c, 2).await;
    let snapshot = c.raw_call("evm_snapshot", json!([])).await.unwrap();
    let signed = alice
        .sign(&TxPlan::native(CHAIN_ID, 0, bob(), 7, fees(&c).await))
        .await;
    c.send_raw(&signed.raw, signed.hash).await.unwrap();
    mine(&c, 1).await;
    let TxStatus::Included { receipt, .. } = c.tx_status(signed.hash).await.unwrap() else {
        panic!()
    };
    assert!(
        c.is_canonical(receipt.block_number, receipt.block_hash)
            .await
            .unwrap()
    );
    // Back to before the block, and a different block at the same height.
    c.raw_call("evm_revert", json!([snapshot])).await.unwrap();
    mine(&c, 3).await;
    assert!(
        !c.is_canonical(receipt.block_number, receipt.block_hash)
            .await
            .unwrap()
    );
    // The receipt's block is gone: the transaction is not reported included in it.
    let status = c.tx_status(signed.hash).await.unwrap();
    assert!(
        !matches!(&status, TxStatus::Included { receipt: r, .. } if r.block_hash == receipt.block_hash),
        "{status:?}"
    );
}

#[tokio::test]
async fn erc20_transfer_and_balances() {
    let anvil = Anvil::start();
    let c = client(&anvil).await;
    let alice = DevWallet::new(0).await;
    let token = deploy_test_token(&c, &alice).await;
    let supply = 1_000_000_000u128 * 1_000_000;
    assert_eq!(c.erc20_balance(token, alice.address).await.unwrap(), supply);
    let nonce = c.nonce(alice.address, NonceTag::Pending).await.unwrap();
    let data = chain_eth::calls::erc20_transfer(bob(), 2_500_000);
    let gas = c
        .estimate_gas(alice.address, token, 0, &data)
        .await
        .unwrap();
    let plan = TxPlan::erc20(
        CHAIN_ID,
        nonce,
        token,
        bob(),
        2_500_000,
        gas * 5 / 4,
        fees(&c).await,
    );
    let signed = alice.sign(&plan).await;
    c.send_raw(&signed.raw, signed.hash).await.unwrap();
    mine(&c, 1).await;
    let TxStatus::Included { receipt, .. } = c.tx_status(signed.hash).await.unwrap() else {
        panic!()
    };
    assert!(receipt.success);
    assert_eq!(c.erc20_balance(token, bob()).await.unwrap(), 2_500_000);
    assert_eq!(
        c.erc20_balance(token, alice.address).await.unwrap(),
        supply - 2_500_000
    );
    // A transfer the token refuses (more than the balance) reverts: it is
    // mined, and its receipt says it failed.
    let plan = TxPlan::erc20(
        CHAIN_ID,
        nonce + 1,
        token,
        alice.address,
        supply,
        100_000,
        fees(&c).await,
    );
    let signed = alice.sign(&plan).await;
    c.send_raw(&signed.raw, signed.hash).await.unwrap();
    mine(&c, 1).await;
    let TxStatus::Included { receipt, .. } = c.tx_status(signed.hash).await.unwrap() else {
        panic!()
    };
    assert!(
        !receipt.success,
        "a transfer of more than the balance reverts"
    );
}

#[tokio::test]
async fn a_dying_endpoint_fails_over_and_loses_its_score() {
    let anvil = Anvil::start();
    let proxy = Proxy::start(anvil.url()).await;
    let c = EthClient::connect(
        CHAIN_ID,
        &[proxy.url().to_owned(), anvil.url().to_owned()],
        ClientOptions::default(),
    )
    .await
    .unwrap();
    let alice = DevWallet::new(0).await;
    let f = fees(&c).await;
    // Both healthy: the first configured endpoint serves.
    let first = alice.sign(&TxPlan::native(CHAIN_ID, 0, bob(), 1, f)).await;
    c.send_raw(&first.raw, first.hash).await.unwrap();
    let h = c.health();
    assert!(h[0].score > 0 && h[0].consecutive_failures == 0, "{h:?}");

    proxy.kill();
    // Mid-test the first endpoint dies: calls carry on through the second.
    let second = alice.sign(&TxPlan::native(CHAIN_ID, 1, bob(), 1, f)).await;
    c.send_raw(&second.raw, second.hash).await.unwrap();
    mine(&c, 1).await;
    assert!(matches!(
        c.tx_status(second.hash).await.unwrap(),
        TxStatus::Included { .. }
    ));
    let h = c.health();
    assert!(h[0].consecutive_failures >= 1, "{h:?}");
    assert!(h[0].score < h[1].score, "{h:?}");
    assert_eq!(h[0].name, proxy.url());
    // Health checks keep it down and report the head of the live one.
    let best = c.check_health().await.unwrap();
    let h = c.health();
    assert_eq!(h[0].head, None);
    assert_eq!(h[1].head, Some(best));
    // All endpoints down: a typed error, not a hang.
    drop(anvil);
    assert!(matches!(
        c.block_number().await,
        Err(ClientError::Unavailable(_))
    ));
}

/// A node behind TLS: reached over `https://` with the CA that signed its
/// certificate; the system's roots (which do not know that CA) refuse it.
#[tokio::test]
async fn a_node_over_https_is_trusted_only_through_its_ca() {
    let anvil = Anvil::start();
    let dir = tempfile::tempdir().unwrap();
    let pki = tls::testing::make_pki(dir.path(), "node").unwrap();
    let target = anvil.url().trim_start_matches("http://").to_owned();
    let front = tls::testing::TlsFront::start(&target, &pki).await.unwrap();
    let trusting = ClientOptions {
        tls: Some(tls::ClientTls::new(&tls::Roots::Bundle(pki.ca_cert.clone())).unwrap()),
        ..ClientOptions::default()
    };
    let c = EthClient::connect(CHAIN_ID, &[front.url()], trusting)
        .await
        .unwrap();
    assert!(c.block_number().await.unwrap() < 1_000_000);
    let err = EthClient::connect(CHAIN_ID, &[front.url()], ClientOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unavailable(_)), "{err:?}");
    let err = EthClient::connect(
        CHAIN_ID,
        &["ws://127.0.0.1:1".to_owned()],
        ClientOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::BadEndpoint(..)), "{err:?}");
}

//! Bitcoin transfers through the service on SQLite and PostgreSQL: deposits,
//! selection and reservation committed before signing, keystore keys
//! (P2WPKH and P2TR) signing through the gate, Core's verification, bad
//! input — every payment a judged transfer, as in production.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;

use domain::{Actor, Asset, BitcoinNetwork};
use service::transfers::state;
use service::{Checkpointer, Service, ServiceError, SystemClock};
use storage::testing::TestDb;

storage::on_both!(fixture; a_send_is_planned_reserved_signed_and_verified, bad_input_reserves_and_signs_nothing, a_rotated_key_sweeps_its_outputs_to_its_successor, an_output_taken_by_a_transaction_strongroom_did_not_sign_freezes_its_wallet);

#[path = "support/bitcoin.rs"]
mod bitcoin_fixture;
use bitcoin_fixture::*;

async fn a_send_is_planned_reserved_signed_and_verified(f: Fixture) {
    assert!(
        f.svc
            .btc_address(f.ecdsa, REGTEST)
            .await
            .unwrap()
            .starts_with("bcrt1q")
    );
    assert!(
        f.svc
            .btc_address(f.schnorr, REGTEST)
            .await
            .unwrap()
            .starts_with("bcrt1p")
    );
    f.deposit(f.ecdsa, 1, 60_000).await;
    f.deposit(f.schnorr, 2, 80_000).await;
    f.deposit(f.ecdsa, 3, 5_000).await;

    let send = f.pay(PAYEE, "0.001").await.unwrap();
    assert_eq!(
        send.state, "signed",
        "no node configured: signed, not broadcast"
    );
    let raw = send.raw.clone().unwrap();
    let tx: bitcoin::Transaction = bitcoin::consensus::deserialize(&raw).unwrap();
    assert_eq!(tx.compute_txid().to_string(), send.txid.clone().unwrap());
    // Spends a P2WPKH and a P2TR output, both signed by keystore keys, and
    // Bitcoin Core's interpreter agrees (again, here, from the stored rows).
    let reserved = f.db.store.btc_utxos_of_send(&send.id).await.unwrap();
    assert_eq!(reserved.len(), 2);
    assert!(
        reserved
            .iter()
            .all(|r| r.reserved_by.as_deref() == Some(send.id.as_str()))
    );
    let prevouts = prevouts(&tx, &reserved);
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

    // The reserved outputs are never counted again: what is left cannot pay.
    let again = f.payer.submit(&btc(), PAYEE, "0.0001").await;
    assert!(
        matches!(again, Err(ServiceError::InsufficientFunds(_))),
        "{again:?}"
    );
}

async fn bad_input_reserves_and_signs_nothing(f: Fixture) {
    f.deposit(f.ecdsa, 1, 60_000).await;
    let refused = |r: Result<storage::TransferRow, ServiceError>, what: &str| match r {
        Err(e) => assert!(e.to_string().contains(what), "{what}: {e}"),
        Ok(t) => panic!("{what}: accepted {t:?}"),
    };
    // A mainnet address on regtest.
    refused(
        f.payer
            .submit(
                &btc(),
                "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
                "0.0001",
            )
            .await,
        "destination",
    );
    // More decimals than bitcoin has.
    refused(
        f.payer.submit(&btc(), PAYEE, "0.000000001").await,
        "decimal places",
    );
    // Dust.
    refused(f.payer.submit(&btc(), PAYEE, "0.00000100").await, "below");
    // More than held.
    refused(
        f.payer.submit(&btc(), PAYEE, "1").await,
        "insufficient funds",
    );
    // A network nobody configured.
    let signet = Asset::bitcoin(BitcoinNetwork::Signet).id().clone();
    refused(
        f.payer.submit(&signet, PAYEE, "0.0001").await,
        "not configured",
    );
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
    assert_eq!(f.pay(PAYEE, "0.0001").await.unwrap().state, "signed");
    // Sealed between planning and signing: the plan waits with its
    // reservation (for the resumer, once unsealed); nothing is signed.
    f.deposit(f.ecdsa, 2, 70_000).await;
    let t = f.payer.submit(&btc(), PAYEE, "0.0001").await.unwrap();
    f.svc.seal(&alice()).await.unwrap();
    f.svc.execute_due().await.unwrap();
    let t = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(t.state, state::SIGNING);
    let send = f.db.store.btc_send(&t.btc_send_id.unwrap()).await.unwrap();
    assert_eq!(send.state, "planned");
    assert!(matches!(
        f.svc.btc_sign_and_send(&send.id).await,
        Err(ServiceError::Sealed)
    ));
}

/// A database writer edits a planned (sealed, not yet signed) batch's
/// transaction; unsealed, the resumer refuses it, freezes the wallet and
/// writes one refusal record.
async fn tampered_batch_is_refused(
    f: Fixture,
    shares: &[keys::shamir::UnsealShare],
    edit: fn(&mut bitcoin::Transaction),
    why: &str,
) {
    f.deposit(f.ecdsa, 1, 60_000).await;
    let t = f.payer.submit(&btc(), PAYEE, "0.0001").await.unwrap();
    f.svc.seal(&alice()).await.unwrap();
    f.svc.execute_due().await.unwrap();
    let t = f.db.store.transfer(t.id).await.unwrap();
    let send = f.db.store.btc_send(&t.btc_send_id.unwrap()).await.unwrap();
    assert_eq!(send.state, "planned");
    let mut psbt = bitcoin::Psbt::deserialize(&send.psbt).unwrap();
    edit(&mut psbt.unsigned_tx);
    psbt.outputs = vec![Default::default(); psbt.unsigned_tx.output.len()];
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE btc_sends SET psbt = X'{}' WHERE id = '{}'",
            hex::encode(psbt.serialize()),
            send.id
        ))
        .await
        .unwrap();
    for s in shares {
        f.svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    let refused = f.svc.btc_sign_and_send(&send.id).await;
    assert!(
        matches!(&refused, Err(ServiceError::NotApproved(m)) if m.contains(why)),
        "{refused:?}"
    );
    // Tried again, it stops at the freeze: refused once.
    assert!(matches!(
        f.svc.btc_sign_and_send(&send.id).await,
        Err(ServiceError::Frozen(_))
    ));
    assert_eq!(
        f.db.store.btc_send(&send.id).await.unwrap().state,
        "planned"
    );
    let frozen = f.svc.frozen(Some(f.payer.wallet()), None).await.unwrap();
    assert!(frozen.is_some(), "the wallet is frozen");
    let refusals = f
        .actions()
        .await
        .into_iter()
        .filter(|a| a == "transfer.sign_refused")
        .count();
    assert_eq!(refusals, 1);
    let history = f.db.store.transfer_history(t.id).await.unwrap();
    assert!(history.last().unwrap().why.contains(why), "{history:?}");
}

/// The fixture on SQLite with the unseal shares kept (to seal and unseal).
async fn with_shares() -> (Fixture, Vec<keys::shamir::UnsealShare>) {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let cp = Checkpointer::for_tests(dir.path(), 9, 10_000);
    let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
    let shares = svc.init_keystore(&alice(), 2, 2).await.unwrap();
    drop(svc);
    let f = fixture_on(db, dir, &shares).await;
    (f, shares)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_output_is_refused_and_freezes_the_wallet() {
    let (f, shares) = with_shares().await;
    tampered_batch_is_refused(
        f,
        &shares,
        |tx| {
            let stolen = tx.output[0].clone();
            tx.output.push(stolen);
        },
        "outputs for 1 approved payouts",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_to_a_foreign_script_is_refused_and_freezes_the_wallet() {
    let (f, shares) = with_shares().await;
    tampered_batch_is_refused(
        f,
        &shares,
        |tx| {
            let last = tx.output.len() - 1;
            tx.output[last].script_pubkey = chain_btc::BtcAddress::parse(PAYEE, REGTEST)
                .unwrap()
                .script_pubkey();
        },
        "the change output pays a script outside the wallet",
    )
    .await;
}

async fn a_rotated_key_sweeps_its_outputs_to_its_successor(f: Fixture) {
    f.deposit(f.ecdsa, 1, 60_000).await;
    f.deposit(f.ecdsa, 2, 40_000).await;
    f.deposit(f.schnorr, 3, 30_000).await;
    let old_address = f.svc.btc_address(f.ecdsa, REGTEST).await.unwrap();

    let r = f
        .svc
        .rotate_with_sweep(&alice(), f.ecdsa, 30)
        .await
        .unwrap();
    let successor = f.svc.btc_address(r.successor, REGTEST).await.unwrap();
    assert_eq!(r.accounts.len(), 1, "{r:?}");
    assert_eq!(r.accounts[0].network, "bitcoin:regtest");
    assert_eq!(
        (r.accounts[0].from.as_str(), r.accounts[0].to.as_str()),
        (old_address.as_str(), successor.as_str())
    );
    // Everything the old key holds, less the fee cap (20 000 sat).
    assert_eq!(r.sweeps.len(), 1, "{r:?}");
    let sweep: domain::TransferId = r.sweeps[0].parse().unwrap();
    let t = f.db.store.transfer(sweep).await.unwrap();
    assert_eq!(t.state, "queued");

    // The queue plans it alone, from the old key's outputs only; the
    // rotated key signs it (a sweep to its successor) and Core agrees.
    let pass = f.svc.execute_due().await.unwrap();
    assert_eq!(pass.submitted, 1, "{pass:?}");
    let t = f.db.store.transfer(sweep).await.unwrap();
    let send = f.db.store.btc_send(&t.btc_send_id.unwrap()).await.unwrap();
    assert_eq!(send.state, "signed");
    let tx: bitcoin::Transaction = bitcoin::consensus::deserialize(&send.raw.unwrap()).unwrap();
    let reserved = f.db.store.btc_utxos_of_send(&send.id).await.unwrap();
    assert_eq!(
        reserved.len(),
        2,
        "the two outputs of the old key, not the other key's"
    );
    let to = chain_btc::BtcAddress::parse(&successor, REGTEST)
        .unwrap()
        .script_pubkey();
    assert!(
        tx.output.iter().all(|o| o.script_pubkey == to),
        "all of it to the successor"
    );
    assert_eq!(tx.output[0].value.to_sat(), 80_000);
    let prevouts = prevouts(&tx, &reserved);
    chain_btc::verify_with_core(&tx, &prevouts).unwrap();
    let out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    assert_eq!(out + send.fee_sat, 100_000);

    // Payouts go on from the wallet's other keys, never from the rotated
    // one; its change goes to a current key.
    f.deposit(r.successor, 4, 50_000).await;
    let paid = f.pay(PAYEE, "0.0004").await.unwrap();
    assert_eq!(paid.state, "signed");
    for u in f.db.store.btc_utxos_of_send(&paid.id).await.unwrap() {
        assert_ne!(
            u.script_pubkey,
            chain_btc::BtcAddress::parse(&old_address, REGTEST)
                .unwrap()
                .script_pubkey()
                .to_hex_string()
        );
    }
    // Done again, the rotation makes nothing new.
    let again = f
        .svc
        .rotate_with_sweep(&alice(), f.ecdsa, 30)
        .await
        .unwrap();
    assert!(again.resumed && again.sweeps.is_empty(), "{again:?}");
    assert_eq!(again.accounts[0].to, successor);
    let actions = f.actions().await;
    assert!(actions.iter().any(|a| a == "btc.account.retired"));
}

/// A Bitcoin Core node on loopback answering with recorded responses
/// (`chain-btc-client`'s fixtures): regtest's genesis; for `gettxout`
/// "spent" (a null result) for outputs of `spent_txid`, else an unspent
/// output; every transaction known and confirmed.
async fn core_node(spent_txid: String) -> String {
    let fixture = |name: &str| {
        let path = format!(
            "{}/../chain-btc-client/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap()
    };
    let spent = fixture("core-gettxout-null.json");
    let unspent: serde_json::Value = serde_json::from_str(&fixture("core-gettxout.json")).unwrap();
    let unspent = serde_json::json!({ "result": unspent, "error": null, "id": 1 }).to_string();
    let made: serde_json::Value =
        serde_json::from_str(&fixture("core-getrawtransaction-verbose-confirmed.json")).unwrap();
    let made = serde_json::json!({ "result": made, "error": null, "id": 1 }).to_string();
    let tip = fixture("core-getblockchaininfo.json");
    let answer = move |body: String| {
        let req: serde_json::Value = serde_json::from_str(&body).unwrap();
        match req["method"].as_str().unwrap() {
            "getblockhash" => serde_json::json!({
                "result": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
                "error": null, "id": req["id"] })
            .to_string(),
            "gettxout" if req["params"][0] == spent_txid.as_str() => spent.clone(),
            "gettxout" => unspent.clone(),
            // The transaction that made the output: known, confirmed.
            "getrawtransaction" => made.clone(),
            "getblockchaininfo" => tip.clone(),
            m => panic!("unexpected {m}"),
        }
    };
    let router = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: String| {
            let answer = answer.clone();
            async move { answer(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// An output Strongroom holds, spent on the chain by a transaction it never
/// signed (a Core node says so), is found by one reconciliation pass: the
/// wallet frozen, the output no longer counted, found once.
async fn an_output_taken_by_a_transaction_strongroom_did_not_sign_freezes_its_wallet(f: Fixture) {
    f.deposit(f.ecdsa, 1, 60_000).await;
    f.deposit(f.schnorr, 2, 80_000).await;
    let url = core_node("01".repeat(32)).await;
    let client = chain_btc_client::BtcClient::connect(
        REGTEST,
        vec![chain_btc_client::Endpoint {
            kind: chain_btc_client::EndpointKind::Core,
            url,
            auth: Some("strongroom:secret".into()),
        }],
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap();
    f.svc.add_btc_network(regtest(Some(Arc::new(client))));
    let run = f.svc.reconcile_chains().await.unwrap();
    assert!(run.complete, "{run:?}");
    assert_eq!(run.accounts, 1, "one wallet on one network");
    assert_eq!(run.findings.len(), 1, "{run:?}");
    let found = &run.findings[0];
    assert_eq!(found.kind, "unsigned_outflow");
    assert_eq!(
        found.account,
        format!("bitcoin:regtest:{}:0", "01".repeat(32))
    );
    assert_eq!(found.key, Some(f.ecdsa));
    assert!(found.freeze.is_some());
    assert!(matches!(
        f.payer.submit(&btc(), PAYEE, "0.0001").await,
        Err(ServiceError::Frozen(_))
    ));
    // No longer counted or selected; found once.
    let held =
        f.db.store
            .wallet_btc_utxos(f.payer.wallet(), "bitcoin:regtest", "available")
            .await
            .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].txid, "02".repeat(32));
    let again = f.svc.reconcile_chains().await.unwrap();
    assert!(again.findings.is_empty(), "{again:?}");
    assert!(
        f.actions()
            .await
            .iter()
            .any(|a| a == "reconciliation.finding")
    );
}

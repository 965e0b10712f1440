//! The client against recorded real responses (`fixtures/`, sources in
//! `fixtures/SOURCES.md`) served from loopback. Not a live node: none can
//! run here. Two answers are constructed, not recorded: `getblockhash 0`
//! and `/block-height/0`, whose value is the genesis block hash — a
//! consensus constant.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chain_btc_client::{BtcClient, ClientError, Endpoint, EndpointKind, TxState};
use domain::BitcoinNetwork;
use serde_json::{Value, json};

const MAINNET_GENESIS: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";
const TESTNET_GENESIS: &str = "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fixture that holds only a `result` value, in the JSON-RPC envelope.
fn enveloped(name: &str) -> String {
    let v: Value = serde_json::from_str(&fixture(name)).unwrap();
    json!({"result": v, "error": null, "id": 1}).to_string()
}

#[derive(Clone)]
struct Node {
    genesis: &'static str,
    /// Which recorded answer each method gets.
    answers: Arc<std::collections::HashMap<&'static str, String>>,
    hits: Arc<AtomicUsize>,
}

async fn core(State(n): State<Node>, body: String) -> (StatusCode, String) {
    n.hits.fetch_add(1, Ordering::SeqCst);
    let req: Value = serde_json::from_str(&body).unwrap();
    let method = req["method"].as_str().unwrap();
    if method == "getblockhash" {
        return (
            StatusCode::OK,
            json!({"result": n.genesis, "error": null, "id": req["id"]}).to_string(),
        );
    }
    match n.answers.get(method) {
        // Core answers RPC errors with HTTP 500 and the JSON body.
        Some(a) if a.contains("\"code\"") && !a.contains("\"error\":null") => {
            (StatusCode::INTERNAL_SERVER_ERROR, a.clone())
        }
        Some(a) => (StatusCode::OK, a.clone()),
        None => (StatusCode::NOT_FOUND, String::new()),
    }
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

async fn core_node(
    genesis: &'static str,
    answers: Vec<(&'static str, String)>,
) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let node = Node {
        genesis,
        answers: Arc::new(answers.into_iter().collect()),
        hits: hits.clone(),
    };
    let url = serve(axum::Router::new().route("/", post(core)).with_state(node)).await;
    (format!("{url}/"), hits)
}

async fn esplora_node(broadcast: &'static str) -> String {
    let router = axum::Router::new()
        .route("/block-height/0", get(|| async { MAINNET_GENESIS }))
        .route(
            "/blocks/tip/height",
            get(|| async { fixture("esplora-tip-height.txt") }),
        )
        .route(
            "/fee-estimates",
            get(|| async { fixture("esplora-fee-estimates.json") }),
        )
        .route(
            "/tx/{txid}/status",
            get(|| async { fixture("esplora-tx-status.json") }),
        )
        .route(
            "/address/{address}/utxo",
            get(|| async { fixture("esplora-address-utxo.json") }),
        )
        .route(
            "/tx",
            post(move || async move { (StatusCode::BAD_REQUEST, fixture(broadcast)) }),
        );
    serve(router).await
}

fn core_endpoint(url: &str) -> Endpoint {
    Endpoint {
        kind: EndpointKind::Core,
        url: url.to_owned(),
        auth: Some("strongroom:secret".into()),
    }
}

fn esplora_endpoint(url: &str) -> Endpoint {
    Endpoint {
        kind: EndpointKind::Esplora,
        url: url.to_owned(),
        auth: None,
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn bitcoin_core_recorded_answers() {
    let (url, _) = core_node(
        MAINNET_GENESIS,
        vec![
            ("getblockchaininfo", fixture("core-getblockchaininfo.json")),
            ("estimatesmartfee", fixture("core-estimatesmartfee.json")),
            (
                "sendrawtransaction",
                fixture("core-sendrawtransaction.json"),
            ),
            (
                "getrawtransaction",
                enveloped("core-getrawtransaction-verbose-confirmed.json"),
            ),
        ],
    )
    .await;
    let c = BtcClient::connect(BitcoinNetwork::Mainnet, vec![core_endpoint(&url)], TIMEOUT)
        .await
        .unwrap();
    assert_eq!(c.tip_height().await.unwrap(), 933_586);
    // 0.00001 BTC/kvB = 1 sat/vB, read from the decimal text.
    assert_eq!(c.fee_rate(6).await.unwrap(), 1);
    let txid = "eb84c5008038d760805d4d9644ace67849542864220cb2685a1ea2c64176b82d";
    assert_eq!(c.broadcast(b"\x02\x00", txid).await.unwrap(), txid);
    // A node reporting another txid for our bytes is not believed.
    assert!(matches!(
        c.broadcast(b"\x02\x00", &"00".repeat(32)).await,
        Err(ClientError::Malformed(_))
    ));
    // Confirmed 533 285 deep with the tip at 933 586: height 400 302.
    assert_eq!(
        c.tx_state("d6118e27502a9b239c4519351c765667c86b1a4f8ff7592c367e88e4dac63e01")
            .await
            .unwrap(),
        TxState::Confirmed {
            height: 933_586 - 533_285 + 1,
            block_hash: "00000000000335c47dd6ae953912d172a4d9839355f2083165043bb6f43c2f58".into()
        }
    );
}

#[tokio::test]
async fn bitcoin_core_recorded_refusals() {
    let (url, _) = core_node(
        TESTNET_GENESIS,
        vec![
            (
                "estimatesmartfee",
                fixture("core-estimatesmartfee-errors.json"),
            ),
            (
                "sendrawtransaction",
                fixture("core-sendrawtransaction-error-26.json"),
            ),
            (
                "getrawtransaction",
                enveloped("core-getrawtransaction-verbose.json"),
            ),
        ],
    )
    .await;
    let c = BtcClient::connect(BitcoinNetwork::Testnet, vec![core_endpoint(&url)], TIMEOUT)
        .await
        .unwrap();
    let e = c.fee_rate(2).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Refused(m) if m.contains("Insufficient data")),
        "{e}"
    );
    let e = c.broadcast(b"\x02", &"11".repeat(32)).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Refused(m) if m.contains("-26") && m.contains("mandatory-script-verify-flag-failed")),
        "{e}"
    );
    // In the mempool (no blockhash).
    assert_eq!(
        c.tx_state(&"22".repeat(32)).await.unwrap(),
        TxState::Unconfirmed
    );
}

#[tokio::test]
async fn esplora_recorded_answers_and_failover() {
    let url = esplora_node("esplora-post-tx-error.txt").await;
    // The first endpoint is dead: every call fails over to the second.
    let c = BtcClient::connect(
        BitcoinNetwork::Mainnet,
        vec![
            esplora_endpoint("http://127.0.0.1:9"),
            esplora_endpoint(&url),
        ],
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(c.tip_height().await.unwrap(), 698_767);
    // Target 6: 68.285 sat/vB, rounded up; target 7 takes the next lower target (6).
    assert_eq!(c.fee_rate(6).await.unwrap(), 69);
    assert_eq!(c.fee_rate(7).await.unwrap(), 69);
    assert_eq!(c.fee_rate(1008).await.unwrap(), 2);
    assert_eq!(
        c.tx_state(&"33".repeat(32)).await.unwrap(),
        TxState::Confirmed {
            height: 363_348,
            block_hash: "0000000000000000139385d7aa78ffb45469e0c715b8d6ea6cb2ffa98acc7171".into()
        }
    );
    let utxos = c
        .address_utxos("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")
        .await
        .unwrap();
    assert_eq!(utxos.len(), 1);
    assert_eq!(utxos[0].value_sat, 644_951_084);
    assert_eq!(utxos[0].height, Some(698_642));
    let e = c.broadcast(b"\x02", &"44".repeat(32)).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Refused(m) if m.contains("min relay fee not met")),
        "{e}"
    );
    let h = c.health();
    assert!(h[0].2 >= 1 && h[0].1 < h[1].1, "{h:?}");
}

#[tokio::test]
async fn an_endpoint_on_another_network_refuses_to_start() {
    let (url, _) = core_node(TESTNET_GENESIS, vec![]).await;
    let e = BtcClient::connect(BitcoinNetwork::Mainnet, vec![core_endpoint(&url)], TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::WrongNetwork { .. }), "{e}");
    let e = BtcClient::connect(
        BitcoinNetwork::Mainnet,
        vec![esplora_endpoint("http://127.0.0.1:9")],
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ClientError::Unavailable(_)), "{e}");
    assert!(matches!(
        BtcClient::connect(
            BitcoinNetwork::Mainnet,
            vec![esplora_endpoint("ftp://blockstream.info/api")],
            TIMEOUT
        )
        .await,
        Err(ClientError::BadEndpoint(..))
    ));
}

/// Esplora behind TLS: reached over `https://` with the CA that signed
/// its certificate; the system's roots refuse it.
#[tokio::test]
async fn esplora_over_https_is_trusted_only_through_its_ca() {
    let url = esplora_node("esplora-post-tx-error.txt").await;
    let dir = tempfile::tempdir().unwrap();
    let pki = tls::testing::make_pki(dir.path(), "esplora").unwrap();
    let front = tls::testing::TlsFront::start(url.trim_start_matches("http://"), &pki)
        .await
        .unwrap();
    let trusting = tls::ClientTls::new(&tls::Roots::Bundle(pki.ca_cert.clone())).unwrap();
    let c = BtcClient::connect_with(
        BitcoinNetwork::Mainnet,
        vec![esplora_endpoint(&front.url())],
        TIMEOUT,
        &trusting,
    )
    .await
    .unwrap();
    assert!(c.tip_height().await.is_ok());
    assert!(
        BtcClient::connect(
            BitcoinNetwork::Mainnet,
            vec![esplora_endpoint(&front.url())],
            TIMEOUT
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn bitcoin_core_answers_whether_an_output_is_unspent() {
    // An output in the UTXO set (regtest, recorded) and one spent or never
    // made (mainnet, recorded: `result` null).
    let (unspent, _) = core_node(
        MAINNET_GENESIS,
        vec![("gettxout", enveloped("core-gettxout.json"))],
    )
    .await;
    let (spent, _) = core_node(
        MAINNET_GENESIS,
        vec![("gettxout", fixture("core-gettxout-null.json"))],
    )
    .await;
    let txid = "1c9eb55b".repeat(8);
    let c = BtcClient::connect(
        BitcoinNetwork::Mainnet,
        vec![core_endpoint(&unspent)],
        TIMEOUT,
    )
    .await
    .unwrap();
    assert!(c.output_unspent(&txid, 0).await.unwrap());
    let c = BtcClient::connect(
        BitcoinNetwork::Mainnet,
        vec![core_endpoint(&spent)],
        TIMEOUT,
    )
    .await
    .unwrap();
    assert!(!c.output_unspent(&txid, 0).await.unwrap());
    // An Esplora endpoint is not asked: no answer rather than a guess.
    let esplora = esplora_node("esplora-post-tx-error.txt").await;
    let c = BtcClient::connect(
        BitcoinNetwork::Mainnet,
        vec![esplora_endpoint(&esplora)],
        TIMEOUT,
    )
    .await
    .unwrap();
    assert!(c.output_unspent(&txid, 0).await.is_err());
}

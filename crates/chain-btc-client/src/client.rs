//! The client and its two backends.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use domain::BitcoinNetwork;
use serde_json::{Value, json};

use crate::units::{btc_per_kvb_to_sat_per_vb, btc_to_sat, decimal_ceil};

/// Which API an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// Bitcoin Core JSON-RPC (`http://host:8332/`), with a user and password
    /// read from its cookie or configuration.
    Core,
    /// Esplora REST (`http://host/api`).
    Esplora,
}

/// One configured endpoint.
#[derive(Clone)]
pub struct Endpoint {
    pub kind: EndpointKind,
    pub url: String,
    /// `user:password` for Core's basic authentication.
    pub auth: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({:?}, {})", self.kind, name_of(&self.url))
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("endpoint {0} is not usable: {1}")]
    BadEndpoint(String, String),
    #[error("no endpoint configured")]
    NoEndpoints,
    #[error("endpoint {endpoint} is on another network (genesis {genesis})")]
    WrongNetwork { endpoint: String, genesis: String },
    #[error("no endpoint answered (last error: {0})")]
    Unavailable(String),
    #[error("the node refused: {0}")]
    Refused(String),
    #[error("the node's answer is malformed: {0}")]
    Malformed(String),
}

/// Where a transaction stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxState {
    /// Not known to the node.
    Unknown,
    /// In the mempool.
    Unconfirmed,
    Confirmed {
        height: u64,
        block_hash: String,
    },
}

/// A transaction in a node's mempool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolEntry {
    pub vsize: u64,
    /// Its own fee, in sat.
    pub fee_sat: u64,
    /// Signals BIP-125 replaceability.
    pub replaceable: bool,
}

/// An output paying an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtxoEntry {
    pub txid: String,
    pub vout: u32,
    pub value_sat: u64,
    /// `None` while unconfirmed.
    pub height: Option<u64>,
}

fn name_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("?", url));
    let host = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default();
    format!("{scheme}://{host}")
}

/// The genesis block of each network: the network check at start.
fn genesis(network: BitcoinNetwork) -> &'static str {
    match network {
        BitcoinNetwork::Mainnet => {
            "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
        }
        BitcoinNetwork::Testnet => {
            "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943"
        }
        BitcoinNetwork::Signet => {
            "00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6"
        }
        BitcoinNetwork::Regtest => {
            "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
        }
    }
}

#[derive(Debug)]
struct Health {
    score: i32,
    failures: u32,
    /// Whether governance allows it (one it does not is never asked).
    allowed: bool,
}

/// A client for one Bitcoin network's endpoints.
#[derive(Debug)]
pub struct BtcClient {
    endpoints: Vec<(Endpoint, Mutex<Health>)>,
    http: reqwest::Client,
    ids: AtomicU64,
}

enum Failure {
    Transport(String),
    Answer(ClientError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Answer(e)
    }
}

fn malformed(what: &str) -> ClientError {
    ClientError::Malformed(what.to_owned())
}

impl BtcClient {
    /// Makes a client; every endpoint that answers must report the
    /// network's genesis block (one on another network refuses to start).
    pub async fn connect(
        network: BitcoinNetwork,
        endpoints: Vec<Endpoint>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let tls = tls::ClientTls::new(&tls::Roots::System)
            .map_err(|e| ClientError::BadEndpoint("-".into(), e.to_string()))?;
        Self::connect_with(network, endpoints, timeout, &tls).await
    }

    /// [`connect`](Self::connect), `https://` endpoints checked against
    /// `tls`'s roots.
    pub async fn connect_with(
        network: BitcoinNetwork,
        endpoints: Vec<Endpoint>,
        timeout: Duration,
        tls: &tls::ClientTls,
    ) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        for e in &endpoints {
            if !(e.url.starts_with("http://") || e.url.starts_with("https://")) {
                return Err(ClientError::BadEndpoint(
                    name_of(&e.url),
                    "http:// or https://".into(),
                ));
            }
        }
        let http = tls
            .http_client()
            .timeout(timeout)
            .build()
            .map_err(|e| ClientError::BadEndpoint("-".into(), e.to_string()))?;
        let client = BtcClient {
            endpoints: endpoints
                .into_iter()
                .map(|e| {
                    (
                        e,
                        Mutex::new(Health {
                            score: 0,
                            failures: 0,
                            allowed: true,
                        }),
                    )
                })
                .collect(),
            http,
            ids: AtomicU64::new(1),
        };
        let mut answered = 0;
        let mut last = String::new();
        for i in 0..client.endpoints.len() {
            match client.genesis_of(i).await {
                Ok(g) if g == genesis(network) => answered += 1,
                Ok(g) => {
                    return Err(ClientError::WrongNetwork {
                        endpoint: name_of(&client.endpoints[i].0.url),
                        genesis: g,
                    });
                }
                Err(Failure::Transport(e)) => last = e,
                Err(Failure::Answer(e)) => return Err(e),
            }
        }
        if answered == 0 {
            return Err(ClientError::Unavailable(last));
        }
        Ok(client)
    }

    /// Whether one of the endpoints is a Bitcoin Core node (which answers
    /// questions an Esplora endpoint does not, like [`Self::output_unspent`]).
    pub fn has_core(&self) -> bool {
        self.endpoints
            .iter()
            .any(|(e, _)| e.kind == EndpointKind::Core)
    }

    /// (name, score, consecutive failures, allowed by governance) of each
    /// endpoint, in order.
    pub fn health(&self) -> Vec<(String, i32, u32, bool)> {
        self.endpoints
            .iter()
            .map(|(e, h)| {
                let h = h.lock().unwrap_or_else(|p| p.into_inner());
                (name_of(&e.url), h.score, h.failures, h.allowed)
            })
            .collect()
    }

    /// Each endpoint's origin (`scheme://host:port`), in order.
    pub fn origins(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|(e, _)| name_of(&e.url))
            .collect()
    }

    /// Uses only the endpoints whose origin `allowed` says yes to. Returns
    /// the origins refused.
    pub fn restrict(&self, allowed: impl Fn(&str) -> bool) -> Vec<String> {
        let mut refused = Vec::new();
        for (e, h) in &self.endpoints {
            let name = name_of(&e.url);
            let mut h = h.lock().unwrap_or_else(|p| p.into_inner());
            h.allowed = allowed(&name);
            if !h.allowed {
                refused.push(name);
            }
        }
        refused
    }

    /// Endpoint indices, healthiest first; one governance does not allow
    /// is left out.
    fn ranked(&self) -> Vec<usize> {
        let mut v: Vec<(i32, usize)> = self
            .endpoints
            .iter()
            .enumerate()
            .filter_map(|(i, (_, h))| {
                let h = h.lock().unwrap_or_else(|p| p.into_inner());
                h.allowed.then_some((h.score, i))
            })
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        v.into_iter().map(|(_, i)| i).collect()
    }

    fn record(&self, i: usize, ok: bool) {
        let mut h = self.endpoints[i]
            .1
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if ok {
            h.score = (h.score + 1).min(10);
            h.failures = 0;
        } else {
            h.score = (h.score - 10).max(-100);
            h.failures = h.failures.saturating_add(1);
        }
    }

    /// Runs `op` on the healthiest endpoint, failing over on transport errors.
    async fn with_failover<T, F, Fut>(&self, op: F) -> Result<T, ClientError>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut last = String::from("no endpoint of this network is allowed by governance");
        for i in self.ranked() {
            match op(i).await {
                Ok(v) => {
                    self.record(i, true);
                    return Ok(v);
                }
                Err(Failure::Answer(e)) => {
                    self.record(i, true);
                    return Err(e);
                }
                Err(Failure::Transport(e)) => {
                    tracing::warn!(endpoint = %name_of(&self.endpoints[i].0.url), error = %e, "Bitcoin endpoint failed");
                    self.record(i, false);
                    last = e;
                }
            }
        }
        Err(ClientError::Unavailable(last))
    }

    async fn rpc(&self, i: usize, method: &str, params: Value) -> Result<Value, Failure> {
        let text = self.rpc_text(i, method, params).await?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|_| Failure::Transport("unreadable answer".into()))?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
            let message = err.get("message").and_then(Value::as_str).unwrap_or("");
            return Err(Failure::Answer(ClientError::Refused(format!(
                "{message} (code {code})"
            ))));
        }
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    }

    /// The raw body of a JSON-RPC answer.
    async fn rpc_text(&self, i: usize, method: &str, params: Value) -> Result<String, Failure> {
        let (e, _) = &self.endpoints[i];
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .http
            .post(&e.url)
            .json(&json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params}));
        if let Some(auth) = &e.auth {
            let (u, p) = auth.split_once(':').unwrap_or((auth, ""));
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.map_err(|e| Failure::Transport(kind(&e)))?;
        let status = resp.status();
        if status.is_server_error() && status != reqwest::StatusCode::INTERNAL_SERVER_ERROR
            || status == reqwest::StatusCode::UNAUTHORIZED
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            // Core answers RPC errors with HTTP 500 and a JSON body; other 5xx are the endpoint's.
            return Err(Failure::Transport(format!("HTTP {status}")));
        }
        resp.text()
            .await
            .map_err(|_| Failure::Transport("unreadable answer".into()))
    }

    async fn rest(&self, i: usize, path: &str) -> Result<Option<String>, Failure> {
        match self.rest_response(i, path).await? {
            None => Ok(None),
            Some(resp) => {
                Ok(Some(resp.text().await.map_err(|_| {
                    Failure::Transport("unreadable answer".into())
                })?))
            }
        }
    }

    /// A REST GET's successful answer; `None` for 404.
    async fn rest_response(
        &self,
        i: usize,
        path: &str,
    ) -> Result<Option<reqwest::Response>, Failure> {
        let (e, _) = &self.endpoints[i];
        let url = format!("{}{path}", e.url.trim_end_matches('/'));
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Failure::Transport(kind(&e)))?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s if s.is_server_error() || s == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                Err(Failure::Transport(format!("HTTP {s}")))
            }
            s => Err(Failure::Answer(ClientError::Refused(format!("HTTP {s}")))),
        }
    }

    /// [`Self::rest`] for a binary answer.
    async fn rest_bytes(&self, i: usize, path: &str) -> Result<Option<Vec<u8>>, Failure> {
        match self.rest_response(i, path).await? {
            None => Ok(None),
            Some(resp) => Ok(Some(
                resp.bytes()
                    .await
                    .map_err(|_| Failure::Transport("unreadable answer".into()))?
                    .to_vec(),
            )),
        }
    }

    async fn genesis_of(&self, i: usize) -> Result<String, Failure> {
        match self.endpoints[i].0.kind {
            EndpointKind::Core => {
                let v = self.rpc(i, "getblockhash", json!([0])).await?;
                Ok(v.as_str()
                    .ok_or_else(|| malformed("getblockhash"))?
                    .to_owned())
            }
            EndpointKind::Esplora => Ok(self
                .rest(i, "/block-height/0")
                .await?
                .ok_or_else(|| malformed("/block-height/0"))?
                .trim()
                .to_owned()),
        }
    }

    /// The height of the best block.
    pub async fn tip_height(&self) -> Result<u64, ClientError> {
        self.with_failover(|i| async move {
            match self.endpoints[i].0.kind {
                EndpointKind::Core => {
                    let v = self.rpc(i, "getblockchaininfo", json!([])).await?;
                    Ok(v.get("blocks")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| malformed("getblockchaininfo"))?)
                }
                EndpointKind::Esplora => {
                    let t = self
                        .rest(i, "/blocks/tip/height")
                        .await?
                        .ok_or_else(|| malformed("tip"))?;
                    Ok(t.trim()
                        .parse()
                        .map_err(|_| malformed("/blocks/tip/height"))?)
                }
            }
        })
        .await
    }

    /// The hash (display hex) of the best chain's block at `height`; `None`
    /// above the tip.
    pub async fn block_hash(&self, height: u64) -> Result<Option<String>, ClientError> {
        self.with_failover(|i| async move {
            let hash = match self.endpoints[i].0.kind {
                EndpointKind::Core => match self.rpc(i, "getblockhash", json!([height])).await {
                    // -8: height out of range.
                    Err(Failure::Answer(ClientError::Refused(m))) if m.contains("code -8") => {
                        return Ok(None);
                    }
                    r => r?
                        .as_str()
                        .ok_or_else(|| malformed("getblockhash"))?
                        .to_owned(),
                },
                EndpointKind::Esplora => {
                    match self.rest(i, &format!("/block-height/{height}")).await? {
                        None => return Ok(None),
                        Some(t) => t.trim().to_owned(),
                    }
                }
            };
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Failure::Answer(malformed("block hash")));
            }
            Ok(Some(hash.to_ascii_lowercase()))
        })
        .await
    }

    /// A block's consensus bytes (header and every transaction), `None` if
    /// the endpoint does not know it. The caller checks them: their hash
    /// and merkle root are the node's word only.
    pub async fn block(&self, hash: &str) -> Result<Option<Vec<u8>>, ClientError> {
        self.with_failover(|i| async move {
            match self.endpoints[i].0.kind {
                EndpointKind::Core => match self.rpc(i, "getblock", json!([hash, 0])).await {
                    // -5: block not found.
                    Err(Failure::Answer(ClientError::Refused(m))) if m.contains("code -5") => {
                        Ok(None)
                    }
                    r => {
                        let v = r?;
                        let text = v.as_str().ok_or_else(|| malformed("getblock"))?;
                        Ok(Some(hex::decode(text).map_err(|_| malformed("getblock"))?))
                    }
                },
                EndpointKind::Esplora => self.rest_bytes(i, &format!("/block/{hash}/raw")).await,
            }
        })
        .await
    }

    /// A fee rate in sat/vB for confirmation within `blocks` blocks,
    /// rounded up, at least 1.
    pub async fn fee_rate(&self, blocks: u16) -> Result<u64, ClientError> {
        self.with_failover(|i| async move {
            match self.endpoints[i].0.kind {
                EndpointKind::Core => {
                    #[derive(serde::Deserialize)]
                    struct Answer {
                        result: Option<Estimate>,
                        error: Option<Value>,
                    }
                    #[derive(serde::Deserialize)]
                    struct Estimate {
                        feerate: Option<Box<serde_json::value::RawValue>>,
                        #[serde(default)]
                        errors: Vec<String>,
                    }
                    let text = self
                        .rpc_text(i, "estimatesmartfee", json!([blocks]))
                        .await?;
                    let a: Answer =
                        serde_json::from_str(&text).map_err(|_| malformed("estimatesmartfee"))?;
                    if let Some(e) = a.error.filter(|e| !e.is_null()) {
                        return Err(Failure::Answer(ClientError::Refused(e.to_string())));
                    }
                    let est = a.result.ok_or_else(|| malformed("estimatesmartfee"))?;
                    // BTC per kvB, as a JSON number: read as its text, never as a float.
                    let rate = est.feerate.ok_or_else(|| {
                        ClientError::Refused(format!("no fee estimate: {}", est.errors.join("; ")))
                    })?;
                    Ok(
                        btc_per_kvb_to_sat_per_vb(rate.get())
                            .ok_or_else(|| malformed("feerate"))?,
                    )
                }
                EndpointKind::Esplora => {
                    let t = self
                        .rest(i, "/fee-estimates")
                        .await?
                        .ok_or_else(|| malformed("fees"))?;
                    let map: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
                        serde_json::from_str(&t).map_err(|_| malformed("/fee-estimates"))?;
                    // The estimate for the largest target not above `blocks`.
                    let best = map
                        .iter()
                        .filter_map(|(k, v)| Some((k.parse::<u16>().ok()?, v.get().to_owned())))
                        .filter(|(k, _)| *k <= blocks.max(1))
                        .max_by_key(|(k, _)| *k)
                        .ok_or_else(|| malformed("/fee-estimates"))?;
                    Ok(decimal_ceil(&best.1, 0)
                        .ok_or_else(|| malformed("fee"))?
                        .max(1))
                }
            }
        })
        .await
    }

    /// Sends a signed transaction. Idempotent: a node that already has it
    /// (in its mempool or a block) has accepted it. Returns the txid.
    pub async fn broadcast(&self, raw: &[u8], txid: &str) -> Result<String, ClientError> {
        let hex_tx = hex::encode(raw);
        let r = self
            .with_failover(|i| {
                let hex_tx = hex_tx.clone();
                async move {
                    match self.endpoints[i].0.kind {
                        EndpointKind::Core => {
                            let v = self.rpc(i, "sendrawtransaction", json!([hex_tx])).await?;
                            Ok(v.as_str()
                                .ok_or_else(|| malformed("sendrawtransaction"))?
                                .to_owned())
                        }
                        EndpointKind::Esplora => {
                            let (e, _) = &self.endpoints[i];
                            let url = format!("{}/tx", e.url.trim_end_matches('/'));
                            let resp = self
                                .http
                                .post(url)
                                .body(hex_tx)
                                .send()
                                .await
                                .map_err(|e| Failure::Transport(kind(&e)))?;
                            let status = resp.status();
                            let text = resp.text().await.unwrap_or_default();
                            if status.is_success() {
                                Ok(text.trim().to_owned())
                            } else if status.is_server_error() && !text.contains("RPC error") {
                                Err(Failure::Transport(format!("HTTP {status}")))
                            } else {
                                Err(Failure::Answer(ClientError::Refused(text)))
                            }
                        }
                    }
                }
            })
            .await;
        match r {
            Ok(id) if id == txid => Ok(id),
            Ok(_) => Err(malformed("the node reports another txid for our bytes")),
            Err(ClientError::Refused(m)) if already_known(&m) => Ok(txid.to_owned()),
            Err(e) => Err(e),
        }
    }

    /// Where `txid` stands.
    pub async fn tx_state(&self, txid: &str) -> Result<TxState, ClientError> {
        self.with_failover(|i| async move {
            match self.endpoints[i].0.kind {
                EndpointKind::Core => {
                    let v = match self.rpc(i, "getrawtransaction", json!([txid, true])).await {
                        Ok(v) => v,
                        Err(Failure::Answer(ClientError::Refused(m))) if m.contains("code -5") => {
                            return Ok(TxState::Unknown);
                        }
                        Err(e) => return Err(e),
                    };
                    match v.get("blockhash").and_then(Value::as_str) {
                        None => Ok(TxState::Unconfirmed),
                        Some(hash) => {
                            // Height from depth: tip − confirmations + 1.
                            let depth = v
                                .get("confirmations")
                                .and_then(Value::as_u64)
                                .filter(|d| *d >= 1)
                                .ok_or_else(|| malformed("confirmations"))?;
                            let info = self.rpc(i, "getblockchaininfo", json!([])).await?;
                            let tip = info
                                .get("blocks")
                                .and_then(Value::as_u64)
                                .ok_or_else(|| malformed("getblockchaininfo"))?;
                            Ok(TxState::Confirmed {
                                height: (tip + 1)
                                    .checked_sub(depth)
                                    .ok_or_else(|| malformed("confirmations"))?,
                                block_hash: hash.to_owned(),
                            })
                        }
                    }
                }
                EndpointKind::Esplora => {
                    let Some(t) = self.rest(i, &format!("/tx/{txid}/status")).await? else {
                        return Ok(TxState::Unknown);
                    };
                    let v: Value = serde_json::from_str(&t).map_err(|_| malformed("/tx/status"))?;
                    if v.get("confirmed").and_then(Value::as_bool) == Some(true) {
                        Ok(TxState::Confirmed {
                            height: v
                                .get("block_height")
                                .and_then(Value::as_u64)
                                .ok_or_else(|| malformed("block_height"))?,
                            block_hash: v
                                .get("block_hash")
                                .and_then(Value::as_str)
                                .ok_or_else(|| malformed("block_hash"))?
                                .to_owned(),
                        })
                    } else {
                        Ok(TxState::Unconfirmed)
                    }
                }
            }
        })
        .await
    }

    /// Core's `scantxoutset` for a descriptor: the outputs it matches now.
    /// Amounts are read as decimal text and converted to sat exactly.
    pub async fn scan_descriptor(&self, descriptor: &str) -> Result<Vec<UtxoEntry>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            result: Option<Scan>,
            error: Option<Value>,
        }
        #[derive(serde::Deserialize)]
        struct Scan {
            success: bool,
            unspents: Vec<Unspent>,
        }
        #[derive(serde::Deserialize)]
        struct Unspent {
            txid: String,
            vout: u32,
            amount: Box<serde_json::value::RawValue>,
            height: Option<u64>,
        }
        self.with_failover(|i| async move {
            if self.endpoints[i].0.kind != EndpointKind::Core {
                return Err(Failure::Transport("not a Bitcoin Core endpoint".into()));
            }
            let text = self
                .rpc_text(i, "scantxoutset", json!(["start", [descriptor]]))
                .await?;
            let a: Answer = serde_json::from_str(&text).map_err(|_| malformed("scantxoutset"))?;
            if let Some(e) = a.error.filter(|e| !e.is_null()) {
                return Err(Failure::Answer(ClientError::Refused(e.to_string())));
            }
            let scan = a.result.ok_or_else(|| malformed("scantxoutset"))?;
            if !scan.success {
                return Err(Failure::Answer(ClientError::Refused(
                    "the scan did not finish".into(),
                )));
            }
            scan.unspents
                .into_iter()
                .map(|u| {
                    Ok(UtxoEntry {
                        value_sat: btc_to_sat(u.amount.get()).ok_or_else(|| malformed("amount"))?,
                        txid: u.txid,
                        vout: u.vout,
                        height: u.height,
                    })
                })
                .collect::<Result<Vec<_>, ClientError>>()
                .map_err(Failure::Answer)
        })
        .await
    }

    /// Whether output `vout` of `txid` is unspent, the mempool counted
    /// (Core's `gettxout`, which answers nothing for an output spent — or
    /// never made). Esplora endpoints are not asked.
    pub async fn output_unspent(&self, txid: &str, vout: u32) -> Result<bool, ClientError> {
        self.with_failover(|i| async move {
            if self.endpoints[i].0.kind != EndpointKind::Core {
                return Err(Failure::Transport("not a Bitcoin Core endpoint".into()));
            }
            let text = self
                .rpc_text(i, "gettxout", json!([txid, vout, true]))
                .await?;
            let v: Value = serde_json::from_str(&text).map_err(|_| malformed("gettxout"))?;
            if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
                return Err(Failure::Answer(ClientError::Refused(e.to_string())));
            }
            // An answer without its result is not read as "spent".
            match v.get("result") {
                Some(Value::Null) => Ok(false),
                Some(o) if o.get("value").is_some() && o.get("scriptPubKey").is_some() => Ok(true),
                _ => Err(Failure::Answer(malformed("gettxout"))),
            }
        })
        .await
    }

    /// A transaction's mempool entry (Core), `None` if it is not there.
    pub async fn mempool_entry(&self, txid: &str) -> Result<Option<MempoolEntry>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            result: Option<Entry>,
            error: Option<Value>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            vsize: u64,
            fees: Fees,
            #[serde(rename = "bip125-replaceable", default)]
            replaceable: bool,
        }
        #[derive(serde::Deserialize)]
        struct Fees {
            base: Box<serde_json::value::RawValue>,
        }
        self.with_failover(|i| async move {
            if self.endpoints[i].0.kind != EndpointKind::Core {
                return Err(Failure::Transport("not a Bitcoin Core endpoint".into()));
            }
            let text = self.rpc_text(i, "getmempoolentry", json!([txid])).await?;
            let a: Answer =
                serde_json::from_str(&text).map_err(|_| malformed("getmempoolentry"))?;
            if let Some(e) = a.error.filter(|e| !e.is_null()) {
                // -5: not in the mempool.
                if e.get("code").and_then(Value::as_i64) == Some(-5) {
                    return Ok(None);
                }
                return Err(Failure::Answer(ClientError::Refused(e.to_string())));
            }
            let e = a.result.ok_or_else(|| malformed("getmempoolentry"))?;
            Ok(Some(MempoolEntry {
                vsize: e.vsize,
                fee_sat: btc_to_sat(e.fees.base.get()).ok_or_else(|| malformed("fees.base"))?,
                replaceable: e.replaceable,
            }))
        })
        .await
    }

    /// Outputs paying `address` (Esplora; Core needs a scan and is not asked).
    pub async fn address_utxos(&self, address: &str) -> Result<Vec<UtxoEntry>, ClientError> {
        self.with_failover(|i| async move {
            if self.endpoints[i].0.kind != EndpointKind::Esplora {
                return Err(Failure::Transport("not an Esplora endpoint".into()));
            }
            let t = self
                .rest(i, &format!("/address/{address}/utxo"))
                .await?
                .ok_or_else(|| malformed("/utxo"))?;
            let v: Value = serde_json::from_str(&t).map_err(|_| malformed("/utxo"))?;
            let list = v.as_array().ok_or_else(|| malformed("/utxo"))?;
            list.iter()
                .map(|u| {
                    Ok(UtxoEntry {
                        txid: u
                            .get("txid")
                            .and_then(Value::as_str)
                            .ok_or_else(|| malformed("txid"))?
                            .to_owned(),
                        vout: u
                            .get("vout")
                            .and_then(Value::as_u64)
                            .and_then(|v| u32::try_from(v).ok())
                            .ok_or_else(|| malformed("vout"))?,
                        value_sat: u
                            .get("value")
                            .and_then(Value::as_u64)
                            .ok_or_else(|| malformed("value"))?,
                        height: u
                            .get("status")
                            .filter(|s| s.get("confirmed").and_then(Value::as_bool) == Some(true))
                            .and_then(|s| s.get("block_height"))
                            .and_then(Value::as_u64),
                    })
                })
                .collect::<Result<Vec<_>, ClientError>>()
                .map_err(Failure::Answer)
        })
        .await
    }
}

fn kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

/// Messages meaning "the node has this transaction already".
fn already_known(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    m.contains("already in block chain")
        || m.contains("txn-already-known")
        || m.contains("txn-already-in-mempool")
        || m.contains("transaction already in block chain")
        || m.contains("outputs already in utxo set")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_no_credentials() {
        assert_eq!(
            name_of("http://user:pw@node:8332/wallet/x"),
            "http://node:8332"
        );
    }
}

//! The client, its endpoints and the calls Strongroom makes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chain_eth::{EthAddress, FeeHistory, fees::Urgency};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ClientError;
use crate::quantity::{data_bytes, hash32, hex0x, malformed, quantity_u64, quantity_u128};

/// Tuning for one network's client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Per-request timeout.
    pub timeout: Duration,
    /// An endpoint whose head is this many blocks behind the best is unhealthy.
    pub max_lag_blocks: u64,
    /// Whose certificates `https://` endpoints must present (none: the
    /// system's trust store).
    pub tls: Option<tls::ClientTls>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            max_lag_blocks: 5,
            tls: None,
        }
    }
}

/// Which nonce to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceTag {
    /// Transactions mined.
    Latest,
    /// Mined plus those in the node's pool.
    Pending,
}

/// A receipt reduced to what custody needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub block_number: u64,
    pub block_hash: [u8; 32],
    /// `status == 1`: the call did not revert.
    pub success: bool,
    pub gas_used: u64,
    pub effective_gas_price: u128,
}

/// Where a transaction stands, seen from the healthiest endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    /// The node knows nothing of it (dropped, or never received).
    Unknown,
    /// In the node's pool.
    Pending,
    /// In a block that is on the canonical chain now.
    Included {
        receipt: Receipt,
        /// 1 for the head block itself.
        confirmations: u64,
    },
}

/// What the client knows of one endpoint's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointHealth {
    /// Scheme, host and port only: paths and user-info may hold API keys.
    pub name: String,
    /// Rises by one per success (to 10), falls by ten per failure (to -100).
    pub score: i32,
    pub consecutive_failures: u32,
    /// The head block it reported last, if any.
    pub head: Option<u64>,
    pub last_error: Option<String>,
    /// Whether governance allows it (an endpoint it does not allow is
    /// never asked anything).
    pub allowed: bool,
}

#[derive(Debug)]
struct Endpoint {
    url: String,
    health: Mutex<EndpointHealth>,
}

/// A JSON-RPC client for one network's endpoints.
#[derive(Debug)]
pub struct EthClient {
    chain_id: u64,
    endpoints: Vec<Endpoint>,
    http: reqwest::Client,
    options: ClientOptions,
    ids: AtomicU64,
    /// The best head's block time (Unix seconds), as the last health
    /// check read it.
    head_time: Mutex<Option<u64>>,
}

/// `scheme://host:port` of a URL, without user-info, path or query.
fn redact(url: &str) -> Result<String, String> {
    let (scheme, rest) = url.split_once("://").ok_or("no scheme")?;
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "scheme `{scheme}` is not supported (https://, or http:// where allowed)"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok(format!("{scheme}://{host}"))
}

enum Failure {
    /// The endpoint could not answer: try the next one.
    Transport(String),
    /// The node answered with a JSON-RPC error.
    Rpc { code: i64, message: String },
}

#[derive(Deserialize)]
struct RpcResponse {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcErrorBody>,
}

#[derive(Deserialize)]
struct RpcErrorBody {
    code: i64,
    message: String,
}

impl EthClient {
    /// Makes a client and checks every endpoint's chain id. An endpoint on
    /// another chain is a configuration error; an endpoint that does not
    /// answer is kept, unhealthy, as long as one other does.
    pub async fn connect(
        chain_id: u64,
        urls: &[String],
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        if urls.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let mut endpoints = Vec::with_capacity(urls.len());
        for url in urls {
            let name = redact(url).map_err(|e| ClientError::BadEndpoint(redact_lossy(url), e))?;
            endpoints.push(Endpoint {
                url: url.clone(),
                health: Mutex::new(EndpointHealth {
                    name,
                    score: 0,
                    consecutive_failures: 0,
                    head: None,
                    last_error: None,
                    allowed: true,
                }),
            });
        }
        let tls = match &options.tls {
            Some(t) => t.clone(),
            None => tls::ClientTls::new(&tls::Roots::System)
                .map_err(|e| ClientError::BadEndpoint("-".into(), e.to_string()))?,
        };
        let http = tls
            .http_client()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .build()
            .map_err(|e| ClientError::BadEndpoint("-".into(), e.to_string()))?;
        let client = EthClient {
            chain_id,
            endpoints,
            http,
            options,
            ids: AtomicU64::new(1),
            head_time: Mutex::new(None),
        };
        let mut answered = 0;
        let mut last = String::from("none tried");
        for i in 0..client.endpoints.len() {
            match client.call_one(i, "eth_chainId", json!([])).await {
                Ok(v) => {
                    let got = quantity_u64("eth_chainId", &v)?;
                    if got != chain_id {
                        return Err(ClientError::WrongChain {
                            endpoint: client.name(i),
                            expected: chain_id,
                            got,
                        });
                    }
                    answered += 1;
                }
                Err(Failure::Transport(e)) | Err(Failure::Rpc { message: e, .. }) => last = e,
            }
        }
        if answered == 0 {
            return Err(ClientError::Unavailable(last));
        }
        Ok(client)
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// A snapshot of every endpoint's health, in configuration order.
    pub fn health(&self) -> Vec<EndpointHealth> {
        self.endpoints
            .iter()
            .map(|e| lock(&e.health).clone())
            .collect()
    }

    fn name(&self, i: usize) -> String {
        lock(&self.endpoints[i].health).name.clone()
    }

    /// The best head's block time (Unix seconds) at the last health check.
    pub fn head_time(&self) -> Option<u64> {
        *lock(&self.head_time)
    }

    /// Each endpoint's origin (`scheme://host:port`), in configuration order.
    pub fn origins(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|e| lock(&e.health).name.clone())
            .collect()
    }

    /// Uses only the endpoints whose origin `allowed` says yes to (all of
    /// them again when it says yes to all). Returns the origins refused.
    pub fn restrict(&self, allowed: impl Fn(&str) -> bool) -> Vec<String> {
        let mut refused = Vec::new();
        for e in &self.endpoints {
            let mut h = lock(&e.health);
            h.allowed = allowed(&h.name);
            if !h.allowed {
                refused.push(h.name.clone());
            }
        }
        refused
    }

    /// Endpoint indices, healthiest first; configuration order breaks ties.
    /// An endpoint governance does not allow is left out.
    fn ranked(&self) -> Vec<usize> {
        let mut order: Vec<(i32, usize)> = self
            .endpoints
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let h = lock(&e.health);
                h.allowed.then_some((h.score, i))
            })
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        order.into_iter().map(|(_, i)| i).collect()
    }

    fn record(&self, i: usize, outcome: Result<(), &str>) {
        let mut h = lock(&self.endpoints[i].health);
        match outcome {
            Ok(()) => {
                h.score = (h.score + 1).min(10);
                h.consecutive_failures = 0;
            }
            Err(e) => {
                h.score = (h.score - 10).max(-100);
                h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                h.last_error = Some(e.to_owned());
            }
        }
    }

    async fn call_one(&self, i: usize, method: &str, params: Value) -> Result<Value, Failure> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let outcome = async {
            let resp = self
                .http
                .post(&self.endpoints[i].url)
                .json(&body)
                .send()
                .await
                // reqwest's errors may carry the URL: keep only the kind.
                .map_err(|e| Failure::Transport(transport_kind(&e)))?;
            let status = resp.status();
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                return Err(Failure::Transport(format!("HTTP {status}")));
            }
            let parsed: RpcResponse = resp.json().await.map_err(|e| {
                Failure::Transport(format!("unreadable answer: {}", transport_kind(&e)))
            })?;
            match (parsed.result, parsed.error) {
                (_, Some(err)) => Err(Failure::Rpc {
                    code: err.code,
                    message: err.message,
                }),
                (Some(v), None) => Ok(v),
                (None, None) => Ok(Value::Null),
            }
        }
        .await;
        match &outcome {
            Ok(_) | Err(Failure::Rpc { .. }) => self.record(i, Ok(())),
            Err(Failure::Transport(e)) => {
                tracing::warn!(endpoint = %self.name(i), method, error = %e, "endpoint failed");
                self.record(i, Err(e));
            }
        }
        outcome
    }

    /// Calls `method` on the healthiest endpoint, failing over to the next
    /// on transport errors.
    async fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let mut last = String::from("no endpoint of this network is allowed by governance");
        for i in self.ranked() {
            match self.call_one(i, method, params.clone()).await {
                Ok(v) => return Ok(v),
                Err(Failure::Rpc { code, message }) => {
                    return Err(ClientError::Rpc {
                        method: method.to_owned(),
                        code,
                        message,
                    });
                }
                Err(Failure::Transport(e)) => last = format!("{}: {e}", self.name(i)),
            }
        }
        Err(ClientError::Unavailable(last))
    }

    /// Asks every endpoint for its head, updating health: an endpoint that
    /// fails, or lags the best head by more than `max_lag_blocks`, loses score.
    /// Returns the best head.
    pub async fn check_health(&self) -> Result<u64, ClientError> {
        let mut heads = Vec::with_capacity(self.endpoints.len());
        for i in 0..self.endpoints.len() {
            if !lock(&self.endpoints[i].health).allowed {
                heads.push(None);
                continue;
            }
            let head = match self.call_one(i, "eth_blockNumber", json!([])).await {
                Ok(v) => quantity_u64("eth_blockNumber", &v).ok(),
                Err(_) => None,
            };
            lock(&self.endpoints[i].health).head = head;
            heads.push(head);
        }
        let best = heads
            .iter()
            .flatten()
            .copied()
            .max()
            .ok_or_else(|| ClientError::Unavailable("no endpoint reported a head".into()))?;
        // The best head's time: how far the network as a whole lags the
        // clock (every endpoint stuck on one old block lags no other).
        if let Some(i) = heads.iter().position(|h| *h == Some(best))
            && let Ok(block) = self
                .call_one(
                    i,
                    "eth_getBlockByNumber",
                    json!([format!("{best:#x}"), false]),
                )
                .await
        {
            *lock(&self.head_time) = quantity_u64("eth_getBlockByNumber", &block["timestamp"]).ok();
        }
        for (i, head) in heads.into_iter().enumerate() {
            if let Some(h) = head
                && best.saturating_sub(h) > self.options.max_lag_blocks
            {
                self.record(i, Err(&format!("{} blocks behind", best - h)));
            }
        }
        Ok(best)
    }

    pub async fn block_number(&self) -> Result<u64, ClientError> {
        let v = self.call("eth_blockNumber", json!([])).await?;
        quantity_u64("eth_blockNumber", &v)
    }

    /// Ether balance in wei at the latest block.
    pub async fn balance(&self, address: EthAddress) -> Result<u128, ClientError> {
        self.balance_in(address, json!("latest")).await
    }

    /// Ether balance in wei as of block `number` (deposits in later blocks
    /// not yet counted).
    pub async fn balance_at(&self, address: EthAddress, number: u64) -> Result<u128, ClientError> {
        self.balance_in(address, json!(format!("0x{number:x}")))
            .await
    }

    async fn balance_in(&self, address: EthAddress, block: Value) -> Result<u128, ClientError> {
        let v = self
            .call("eth_getBalance", json!([address.to_lower_hex(), block]))
            .await?;
        quantity_u128("eth_getBalance", &v)
    }

    /// The code at `address` in the latest block: empty for an account no
    /// code runs for (EIP-7702 delegations count as code).
    pub async fn code(&self, address: EthAddress) -> Result<Vec<u8>, ClientError> {
        let v = self
            .call("eth_getCode", json!([address.to_lower_hex(), "latest"]))
            .await?;
        data_bytes("eth_getCode", &v)
    }

    /// `balanceOf(holder)` on `token`, in the token's base units.
    pub async fn erc20_balance(
        &self,
        token: EthAddress,
        holder: EthAddress,
    ) -> Result<u128, ClientError> {
        self.erc20_balance_in(token, holder, json!("latest")).await
    }

    /// `balanceOf(holder)` on `token` as of block `number`.
    pub async fn erc20_balance_at(
        &self,
        token: EthAddress,
        holder: EthAddress,
        number: u64,
    ) -> Result<u128, ClientError> {
        self.erc20_balance_in(token, holder, json!(format!("0x{number:x}")))
            .await
    }

    async fn erc20_balance_in(
        &self,
        token: EthAddress,
        holder: EthAddress,
        block: Value,
    ) -> Result<u128, ClientError> {
        let mut data = vec![0x70, 0xa0, 0x82, 0x31]; // balanceOf(address)
        data.extend_from_slice(&[0u8; 12]);
        data.extend_from_slice(holder.as_bytes());
        let v = self
            .call(
                "eth_call",
                json!([{"to": token.to_lower_hex(), "data": hex0x(&data)}, block]),
            )
            .await?;
        let bytes = data_bytes("eth_call", &v)?;
        if bytes.len() != 32 || bytes[..16].iter().any(|&b| b != 0) {
            return Err(malformed(
                "eth_call",
                "balanceOf did not return a uint256 under 2^128",
            ));
        }
        let mut low = [0u8; 16];
        low.copy_from_slice(&bytes[16..]);
        Ok(u128::from_be_bytes(low))
    }

    pub async fn nonce(&self, address: EthAddress, tag: NonceTag) -> Result<u64, ClientError> {
        let tag = match tag {
            NonceTag::Latest => "latest",
            NonceTag::Pending => "pending",
        };
        let v = self
            .call(
                "eth_getTransactionCount",
                json!([address.to_lower_hex(), tag]),
            )
            .await?;
        quantity_u64("eth_getTransactionCount", &v)
    }

    /// The last `blocks` blocks' base fees and priority-fee percentiles.
    pub async fn fee_history(&self, blocks: u64) -> Result<FeeHistory, ClientError> {
        const M: &str = "eth_feeHistory";
        let v = self
            .call(
                M,
                json!([format!("0x{blocks:x}"), "latest", Urgency::PERCENTILES]),
            )
            .await?;
        let base_fee_per_gas = v
            .get("baseFeePerGas")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(M, "no baseFeePerGas"))?
            .iter()
            .map(|q| quantity_u128(M, q))
            .collect::<Result<Vec<_>, _>>()?;
        let mut reward = Vec::new();
        if let Some(rows) = v.get("reward").and_then(Value::as_array) {
            for row in rows {
                let row = row
                    .as_array()
                    .filter(|r| r.len() == 3)
                    .ok_or_else(|| malformed(M, "reward rows must have three percentiles"))?;
                reward.push([
                    quantity_u128(M, &row[0])?,
                    quantity_u128(M, &row[1])?,
                    quantity_u128(M, &row[2])?,
                ]);
            }
        }
        Ok(FeeHistory {
            base_fee_per_gas,
            reward,
        })
    }

    /// What a call from `from` would return now (`eth_call` at the latest
    /// block): a dry run of a transaction before it is signed.
    pub async fn call_from(
        &self,
        from: EthAddress,
        to: EthAddress,
        data: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let v = self
            .call(
                "eth_call",
                json!([{
                    "from": from.to_lower_hex(),
                    "to": to.to_lower_hex(),
                    "data": hex0x(data),
                }, "latest"]),
            )
            .await?;
        data_bytes("eth_call", &v)
    }

    /// Gas a call would use now, from `from`.
    pub async fn estimate_gas(
        &self,
        from: EthAddress,
        to: EthAddress,
        value: u128,
        data: &[u8],
    ) -> Result<u64, ClientError> {
        let v = self
            .call(
                "eth_estimateGas",
                json!([{
                    "from": from.to_lower_hex(),
                    "to": to.to_lower_hex(),
                    "value": format!("0x{value:x}"),
                    "data": hex0x(data),
                }]),
            )
            .await?;
        quantity_u64("eth_estimateGas", &v)
    }

    /// Sends signed bytes. Idempotent: a node that already has the
    /// transaction, or has mined it, has accepted it. Returns the hash.
    pub async fn send_raw(&self, raw: &[u8], hash: [u8; 32]) -> Result<[u8; 32], ClientError> {
        const M: &str = "eth_sendRawTransaction";
        match self.call(M, json!([hex0x(raw)])).await {
            Ok(v) => {
                let got = hash32(M, &v)?;
                if got != hash {
                    return Err(malformed(M, "the node reports another hash for our bytes"));
                }
                Ok(hash)
            }
            Err(ClientError::Rpc { code, message, .. }) => {
                let m = message.to_ascii_lowercase();
                if m.contains("already known")
                    || m.contains("known transaction")
                    || m.contains("already imported")
                    || m.contains("alreadyknown")
                {
                    return Ok(hash);
                }
                if m.contains("nonce too low") || m.contains("nonce has already been used") {
                    // Ours if the node knows our hash; someone else's otherwise.
                    return match self.tx_known(hash).await? {
                        true => Ok(hash),
                        false => Err(ClientError::NonceTaken(hex::encode(hash))),
                    };
                }
                if m.contains("underpriced") {
                    return Err(ClientError::Underpriced);
                }
                Err(ClientError::Rpc {
                    method: M.into(),
                    code,
                    message,
                })
            }
            Err(e) => Err(e),
        }
    }

    pub async fn tx_known(&self, hash: [u8; 32]) -> Result<bool, ClientError> {
        let v = self
            .call("eth_getTransactionByHash", json!([hex0x(&hash)]))
            .await?;
        Ok(!v.is_null())
    }

    pub async fn receipt(&self, hash: [u8; 32]) -> Result<Option<Receipt>, ClientError> {
        const M: &str = "eth_getTransactionReceipt";
        let v = self.call(M, json!([hex0x(&hash)])).await?;
        if v.is_null() {
            return Ok(None);
        }
        let field = |k: &str| v.get(k).ok_or_else(|| malformed(M, &format!("no {k}")));
        Ok(Some(Receipt {
            block_number: quantity_u64(M, field("blockNumber")?)?,
            block_hash: hash32(M, field("blockHash")?)?,
            success: quantity_u64(M, field("status")?)? == 1,
            gas_used: quantity_u64(M, field("gasUsed")?)?,
            effective_gas_price: quantity_u128(M, field("effectiveGasPrice")?)?,
        }))
    }

    /// The hash of the canonical block at `number`, if there is one yet.
    pub async fn block_hash(&self, number: u64) -> Result<Option<[u8; 32]>, ClientError> {
        const M: &str = "eth_getBlockByNumber";
        let v = self
            .call(M, json!([format!("0x{number:x}"), false]))
            .await?;
        if v.is_null() {
            return Ok(None);
        }
        let h = v.get("hash").ok_or_else(|| malformed(M, "no hash"))?;
        Ok(Some(hash32(M, h)?))
    }

    /// Whether the block `(number, hash)` is still on the canonical chain.
    /// A block's hash and the transactions in it that carry ether (with
    /// a recipient: contract creations are left out).
    pub async fn block_payments(
        &self,
        number: u64,
    ) -> Result<([u8; 32], Vec<Payment>), ClientError> {
        const M: &str = "eth_getBlockByNumber";
        let v = self.call(M, json!([format!("0x{number:x}"), true])).await?;
        if v.is_null() {
            return Err(malformed(M, "no such block"));
        }
        let hash = hash32(M, v.get("hash").ok_or_else(|| malformed(M, "no hash"))?)?;
        let txs = v
            .get("transactions")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(M, "no transactions"))?;
        let mut out = Vec::new();
        for t in txs {
            let field = |k: &str| t.get(k).ok_or_else(|| malformed(M, &format!("no {k}")));
            let Some(to) = t.get("to").and_then(Value::as_str) else {
                continue;
            };
            let value = quantity_u128(M, field("value")?)?;
            if value == 0 {
                continue;
            }
            // Nodes write addresses in lower case; compared as bytes.
            let addr = |s: &str| {
                s.to_ascii_lowercase()
                    .parse::<EthAddress>()
                    .map_err(|_| malformed(M, "an address is not 20 bytes of hex"))
            };
            out.push(Payment {
                tx_hash: hash32(M, field("hash")?)?,
                from: addr(field("from")?.as_str().unwrap_or_default())?,
                to: addr(to)?,
                value,
            });
        }
        Ok((hash, out))
    }

    /// ERC-20 `Transfer` events of `tokens` to any of `recipients` in
    /// blocks `from..=to` (events of removed blocks left out).
    pub async fn token_transfers(
        &self,
        from: u64,
        to: u64,
        tokens: &[EthAddress],
        recipients: &[EthAddress],
    ) -> Result<Vec<TokenTransfer>, ClientError> {
        const M: &str = "eth_getLogs";
        // keccak256("Transfer(address,address,uint256)")
        const TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
        if tokens.is_empty() || recipients.is_empty() {
            return Ok(Vec::new());
        }
        let padded: Vec<String> = recipients
            .iter()
            .map(|r| format!("0x{}{}", "0".repeat(24), hex::encode(r.as_bytes())))
            .collect();
        let v = self
            .call(
                M,
                json!([{
                    "fromBlock": format!("0x{from:x}"),
                    "toBlock": format!("0x{to:x}"),
                    "address": tokens.iter().map(|t| t.to_lower_hex()).collect::<Vec<_>>(),
                    "topics": [TOPIC, Value::Null, padded],
                }]),
            )
            .await?;
        let logs = v.as_array().ok_or_else(|| malformed(M, "not a list"))?;
        let mut out = Vec::new();
        for l in logs {
            if l.get("removed").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let field = |k: &str| l.get(k).ok_or_else(|| malformed(M, &format!("no {k}")));
            let topics = field("topics")?
                .as_array()
                .ok_or_else(|| malformed(M, "topics is not a list"))?;
            if topics.len() != 3 || topics[0].as_str() != Some(TOPIC) {
                continue; // not the standard event shape (e.g. ERC-721)
            }
            let word_addr = |w: &Value| -> Result<EthAddress, ClientError> {
                let b = hash32(M, w)?;
                if b[..12].iter().any(|&x| x != 0) {
                    return Err(malformed(M, "an address topic is not padded"));
                }
                let mut a = [0u8; 20];
                a.copy_from_slice(&b[12..]);
                Ok(EthAddress::from_bytes(a))
            };
            let data = data_bytes(M, field("data")?)?;
            if data.len() != 32 || data[..16].iter().any(|&b| b != 0) {
                return Err(malformed(
                    M,
                    "a Transfer amount is not a uint256 under 2^128",
                ));
            }
            let mut low = [0u8; 16];
            low.copy_from_slice(&data[16..]);
            let token = field("address")?
                .as_str()
                .and_then(|s| s.to_ascii_lowercase().parse::<EthAddress>().ok())
                .ok_or_else(|| malformed(M, "a log address is not 20 bytes of hex"))?;
            out.push(TokenTransfer {
                token,
                tx_hash: hash32(M, field("transactionHash")?)?,
                log_index: quantity_u64(M, field("logIndex")?)?,
                block_number: quantity_u64(M, field("blockNumber")?)?,
                block_hash: hash32(M, field("blockHash")?)?,
                from: word_addr(&topics[1])?,
                to: word_addr(&topics[2])?,
                amount: u128::from_be_bytes(low),
            });
        }
        Ok(out)
    }

    pub async fn is_canonical(&self, number: u64, hash: [u8; 32]) -> Result<bool, ClientError> {
        Ok(self.block_hash(number).await? == Some(hash))
    }

    /// Where `hash` stands: unknown, pending, or included in a block that is
    /// canonical now (checked by the block's hash), with its depth.
    pub async fn tx_status(&self, hash: [u8; 32]) -> Result<TxStatus, ClientError> {
        if let Some(receipt) = self.receipt(hash).await? {
            let head = self.block_number().await?;
            if self
                .is_canonical(receipt.block_number, receipt.block_hash)
                .await?
            {
                let confirmations = head.saturating_sub(receipt.block_number).saturating_add(1);
                return Ok(TxStatus::Included {
                    receipt,
                    confirmations,
                });
            }
            // The receipt names a block that was reorganised away: not included.
        }
        Ok(if self.tx_known(hash).await? {
            TxStatus::Pending
        } else {
            TxStatus::Unknown
        })
    }

    /// A raw call for node-specific methods (tests use anvil's).
    pub async fn raw_call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.call(method, params).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Health bookkeeping cannot be left inconsistent by a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn redact_lossy(url: &str) -> String {
    redact(url).unwrap_or_else(|_| "<unparseable endpoint>".into())
}

fn transport_kind(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() {
        "undecodable body"
    } else if e.is_body() {
        "body error"
    } else {
        "request failed"
    };
    kind.to_owned()
}

/// A transaction paying ether, as a block lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub tx_hash: [u8; 32],
    pub from: EthAddress,
    pub to: EthAddress,
    pub value: u128,
}

/// An ERC-20 `Transfer` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTransfer {
    pub token: EthAddress,
    pub tx_hash: [u8; 32],
    pub log_index: u64,
    pub block_number: u64,
    pub block_hash: [u8; 32],
    pub from: EthAddress,
    pub to: EthAddress,
    pub amount: u128,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_never_carry_secrets() {
        assert_eq!(
            redact("http://user:pw@node.example:8545/v3/SECRETKEY?k=1").unwrap(),
            "http://node.example:8545"
        );
        assert_eq!(
            redact("https://u:p@node.example/k").as_deref(),
            Ok("https://node.example")
        );
        assert!(redact("ws://node.example").is_err());
        assert!(redact("node.example:8545").is_err());
        assert!(redact("http:///path").is_err());
    }
}

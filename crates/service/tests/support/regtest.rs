//! A Bitcoin regtest chain built in the test with rust-bitcoin and served on
//! loopback in Bitcoin Core's JSON-RPC shape (`/`) and Esplora's REST shape
//! (`/api`). No Bitcoin node can be installed on these machines: this is
//! the chain the operating loop is tested against. Its blocks are real —
//! the regtest genesis, valid proof of work at regtest's target, merkle
//! roots, BIP-34 heights and witness commitments — and every transaction it
//! accepts into its mempool or a block is verified by Bitcoin Core's
//! interpreter (`bitcoinconsensus`) against the outputs it spends.

#![allow(dead_code)] // Each test binary uses part of it.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::blockdata::constants::genesis_block;
use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxMerkleNode, TxOut, Witness, absolute, block, transaction,
};
use serde_json::{Value, json};

/// The chain and its mempool.
#[derive(Debug)]
pub struct Chain {
    pub blocks: Vec<Block>,
    pub mempool: Vec<Transaction>,
    /// Serve blocks with their last transaction left out (a node that lies).
    pub lie: bool,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            blocks: vec![genesis_block(bitcoin::Network::Regtest)],
            mempool: Vec::new(),
            lie: false,
        }
    }
}

impl Chain {
    pub fn tip(&self) -> u64 {
        self.blocks.len() as u64 - 1
    }

    /// An output of a transaction in a block or the mempool.
    fn output(&self, o: &OutPoint) -> Option<TxOut> {
        self.blocks
            .iter()
            .flat_map(|b| b.txdata.iter())
            .chain(self.mempool.iter())
            .find(|t| t.compute_txid() == o.txid)
            .and_then(|t| t.output.get(o.vout as usize).cloned())
    }

    fn spent(&self, o: &OutPoint) -> bool {
        self.blocks
            .iter()
            .flat_map(|b| b.txdata.iter())
            .chain(self.mempool.iter())
            .any(|t| t.input.iter().any(|i| i.previous_output == *o))
    }

    /// Verifies `tx` with Bitcoin Core's interpreter against what it spends
    /// (unspent, on this chain).
    pub fn verify(&self, tx: &Transaction) -> Result<(), String> {
        let mut prevouts = Vec::new();
        for i in &tx.input {
            let out = self
                .output(&i.previous_output)
                .ok_or_else(|| format!("missing input {}", i.previous_output))?;
            if self.spent(&i.previous_output) {
                return Err(format!("input {} already spent", i.previous_output));
            }
            prevouts.push(out);
        }
        chain_btc::verify_with_core(tx, &prevouts).map_err(|e| e.to_string())
    }

    /// Accepts a transaction into the mempool (verified). One that spends
    /// what a mempool transaction spends replaces it (BIP-125, simplified:
    /// if the old one signals it and the new one pays more).
    pub fn accept(&mut self, tx: Transaction) -> Result<(), String> {
        if self
            .mempool
            .iter()
            .any(|t| t.compute_txid() == tx.compute_txid())
        {
            return Ok(());
        }
        let conflicts: Vec<Transaction> = self
            .mempool
            .iter()
            .filter(|m| {
                m.input.iter().any(|i| {
                    tx.input
                        .iter()
                        .any(|j| j.previous_output == i.previous_output)
                })
            })
            .cloned()
            .collect();
        if conflicts.is_empty() {
            self.verify(&tx)?;
        } else {
            let signals = conflicts
                .iter()
                .all(|c| c.input.iter().any(|i| i.sequence.is_rbf()));
            let old: u64 = conflicts.iter().map(|c| self.fee(c)).sum();
            if !signals || self.fee(&tx) <= old {
                return Err("txn-mempool-conflict".into());
            }
            let gone: Vec<_> = conflicts.iter().map(Transaction::compute_txid).collect();
            self.mempool.retain(|m| !gone.contains(&m.compute_txid()));
            if let Err(e) = self.verify(&tx) {
                self.mempool.extend(conflicts);
                return Err(e);
            }
        }
        self.mempool.push(tx);
        Ok(())
    }

    /// What `tx` pays in fees (its inputs must be known).
    pub fn fee(&self, tx: &Transaction) -> u64 {
        let inputs: u64 = tx
            .input
            .iter()
            .map(|i| self.output(&i.previous_output).unwrap().value.to_sat())
            .sum();
        inputs - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>()
    }

    /// Mines a block of `txs` (each verified first), its coinbase paying
    /// `reward_to`; returns its hash.
    pub fn mine(&mut self, txs: Vec<Transaction>, reward_to: &ScriptBuf) -> BlockHash {
        for t in &txs {
            self.mempool
                .retain(|m| m.compute_txid() != t.compute_txid());
            self.verify(t).unwrap();
            // Spent within this block by the next ones: counted as mempool.
            self.mempool.push(t.clone());
        }
        for t in &txs {
            self.mempool
                .retain(|m| m.compute_txid() != t.compute_txid());
        }
        let height = self.blocks.len() as u64;
        let prev = self.blocks.last().unwrap().header;
        let height_push = bitcoin::script::Builder::new()
            .push_int(height as i64)
            .push_opcode(bitcoin::opcodes::OP_0) // coinbase scripts are at least 2 bytes
            .into_script();
        let mut witness = Witness::new();
        witness.push([0u8; 32]);
        let coinbase = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: height_push,
                sequence: Sequence::MAX,
                witness,
            }],
            output: vec![TxOut {
                value: Amount::from_sat(50 * 100_000_000),
                script_pubkey: reward_to.clone(),
            }],
        };
        let mut txdata = vec![coinbase];
        txdata.extend(txs);
        let mut block = Block {
            header: block::Header {
                version: block::Version::from_consensus(0x2000_0000),
                prev_blockhash: prev.block_hash(),
                merkle_root: TxMerkleNode::all_zeros(),
                time: prev.time + 600,
                bits: CompactTarget::from_consensus(0x207f_ffff),
                nonce: 0,
            },
            txdata,
        };
        let root = block.witness_root().unwrap();
        let commitment = Block::compute_witness_commitment(&root, &[0u8; 32]);
        let mut script = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
        script.extend_from_slice(commitment.as_byte_array());
        block.txdata[0].output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::from_bytes(script),
        });
        block.header.merkle_root = block.compute_merkle_root().unwrap();
        while block.header.validate_pow(block.header.target()).is_err() {
            block.header.nonce += 1;
        }
        assert!(block.check_merkle_root() && block.check_witness_commitment());
        let hash = block.block_hash();
        self.blocks.push(block);
        hash
    }

    /// Drops the top `depth` blocks (a reorganisation's first half: the
    /// test mines the other branch); their transactions are forgotten.
    pub fn unmine(&mut self, depth: usize) {
        let keep = self.blocks.len() - depth;
        self.blocks.truncate(keep);
    }

    /// A block as served: altered when the node lies.
    fn served(&self, b: &Block) -> Vec<u8> {
        let mut b = b.clone();
        if self.lie && b.txdata.len() > 1 {
            b.txdata.pop();
        }
        bitcoin::consensus::serialize(&b)
    }

    fn find_tx(&self, txid: &str) -> Option<(Option<u64>, &Transaction)> {
        for (h, b) in self.blocks.iter().enumerate() {
            if let Some(t) = b
                .txdata
                .iter()
                .find(|t| t.compute_txid().to_string() == txid)
            {
                return Some((Some(h as u64), t));
            }
        }
        self.mempool
            .iter()
            .find(|t| t.compute_txid().to_string() == txid)
            .map(|t| (None, t))
    }
}

/// A key the test holds (a payer outside Strongroom), P2WPKH.
pub struct TestKey {
    secret: SecretKey,
    pub script: ScriptBuf,
    pubkey: bitcoin::secp256k1::PublicKey,
}

impl TestKey {
    pub fn new(byte: u8) -> TestKey {
        let secp = Secp256k1::new();
        let secret = SecretKey::from_slice(&[byte; 32]).unwrap();
        let pubkey = secret.public_key(&secp);
        let cpk = bitcoin::CompressedPublicKey(pubkey);
        TestKey {
            secret,
            script: ScriptBuf::new_p2wpkh(&cpk.wpubkey_hash()),
            pubkey,
        }
    }

    /// Pays `to` from `from` (an output paying this key): `outputs`, and
    /// the rest less a 1 000 sat fee back to this key. Signed (BIP-143).
    pub fn pay(&self, from: (OutPoint, Amount), outputs: &[(ScriptBuf, u64)]) -> Transaction {
        let paid: u64 = outputs.iter().map(|(_, v)| v).sum();
        let mut output: Vec<TxOut> = outputs
            .iter()
            .map(|(s, v)| TxOut {
                value: Amount::from_sat(*v),
                script_pubkey: s.clone(),
            })
            .collect();
        output.push(TxOut {
            value: Amount::from_sat(from.1.to_sat() - paid - 1_000),
            script_pubkey: self.script.clone(),
        });
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: from.0,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output,
        };
        let sighash = SighashCache::new(&tx)
            .p2wpkh_signature_hash(0, &self.script, from.1, EcdsaSighashType::All)
            .unwrap();
        let secp = Secp256k1::new();
        let sig = secp.sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), &self.secret);
        let sig = bitcoin::ecdsa::Signature {
            signature: sig,
            sighash_type: EcdsaSighashType::All,
        };
        tx.input[0].witness = Witness::p2wpkh(&sig, &self.pubkey);
        tx
    }
}

/// The chain, shared with the server.
pub type Shared = Arc<Mutex<Chain>>;

/// Serves `chain` on loopback: Core's JSON-RPC at `/`, Esplora at `/api`.
/// Returns the base URL.
pub async fn serve(chain: Shared) -> String {
    let app = Router::new()
        .route("/", post(core))
        .route("/api/blocks/tip/height", get(tip_height))
        .route("/api/block-height/{h}", get(block_at))
        .route("/api/block/{hash}/raw", get(block_raw))
        .route("/api/tx/{txid}/status", get(tx_status))
        .route("/api/tx", post(tx_post))
        .route("/api/fee-estimates", get(fees))
        .with_state(chain);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn rpc_ok(id: &Value, result: Value) -> Json<Value> {
    Json(json!({ "result": result, "error": null, "id": id }))
}

fn rpc_err(id: &Value, code: i64, message: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "result": null, "error": { "code": code, "message": message }, "id": id })),
    )
}

async fn core(
    State(chain): State<Shared>,
    Json(req): Json<Value>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let id = req["id"].clone();
    let p = &req["params"];
    let mut c = chain.lock().unwrap();
    match req["method"].as_str().unwrap_or_default() {
        "getblockchaininfo" => Ok(rpc_ok(
            &id,
            json!({ "chain": "regtest", "blocks": c.tip() }),
        )),
        "getblockhash" => {
            let h = p[0].as_u64().unwrap_or(u64::MAX);
            match c.blocks.get(h as usize) {
                Some(b) => Ok(rpc_ok(&id, json!(b.block_hash().to_string()))),
                None => Err(rpc_err(&id, -8, "Block height out of range")),
            }
        }
        "getblock" => {
            let hash = p[0].as_str().unwrap_or_default();
            match c.blocks.iter().find(|b| b.block_hash().to_string() == hash) {
                Some(b) => Ok(rpc_ok(&id, json!(hex::encode(c.served(b))))),
                None => Err(rpc_err(&id, -5, "Block not found")),
            }
        }
        "getrawtransaction" => {
            let txid = p[0].as_str().unwrap_or_default();
            let tip = c.tip();
            match c.find_tx(txid) {
                Some((Some(h), t)) => Ok(rpc_ok(
                    &id,
                    json!({ "txid": txid, "hex": hex::encode(bitcoin::consensus::serialize(t)),
                            "blockhash": c.blocks[h as usize].block_hash().to_string(),
                            "confirmations": tip - h + 1 }),
                )),
                Some((None, t)) => Ok(rpc_ok(
                    &id,
                    json!({ "txid": txid, "hex": hex::encode(bitcoin::consensus::serialize(t)) }),
                )),
                None => Err(rpc_err(
                    &id,
                    -5,
                    "No such mempool or blockchain transaction",
                )),
            }
        }
        "sendrawtransaction" => {
            let bytes = hex::decode(p[0].as_str().unwrap_or_default()).unwrap_or_default();
            let Ok(tx) = bitcoin::consensus::deserialize::<Transaction>(&bytes) else {
                return Err(rpc_err(&id, -22, "TX decode failed"));
            };
            let txid = tx.compute_txid().to_string();
            if c.find_tx(&txid).is_some_and(|(h, _)| h.is_some()) {
                return Err(rpc_err(&id, -27, "Transaction already in block chain"));
            }
            match c.accept(tx) {
                Ok(()) => Ok(rpc_ok(&id, json!(txid))),
                Err(e) => Err(rpc_err(
                    &id,
                    -26,
                    &format!("mandatory-script-verify-flag-failed ({e})"),
                )),
            }
        }
        "gettxout" => {
            let o = OutPoint {
                txid: p[0].as_str().unwrap_or_default().parse().unwrap(),
                vout: p[1].as_u64().unwrap_or(0) as u32,
            };
            match c.output(&o).filter(|_| !c.spent(&o)) {
                Some(out) => Ok(rpc_ok(
                    &id,
                    json!({ "value": format!("{}", out.value.to_btc()),
                            "scriptPubKey": { "hex": out.script_pubkey.to_hex_string() } }),
                )),
                None => Ok(rpc_ok(&id, Value::Null)),
            }
        }
        "estimatesmartfee" => Ok(rpc_ok(&id, json!({ "feerate": 0.0002, "blocks": 2 }))),
        "getmempoolentry" => Err(rpc_err(&id, -5, "Transaction not in mempool")),
        other => Err(rpc_err(&id, -32601, &format!("Method not found: {other}"))),
    }
}

async fn tip_height(State(chain): State<Shared>) -> String {
    chain.lock().unwrap().tip().to_string()
}

async fn block_at(State(chain): State<Shared>, Path(h): Path<u64>) -> (StatusCode, String) {
    match chain.lock().unwrap().blocks.get(h as usize) {
        Some(b) => (StatusCode::OK, b.block_hash().to_string()),
        None => (StatusCode::NOT_FOUND, "Block not found".into()),
    }
}

async fn block_raw(State(chain): State<Shared>, Path(hash): Path<String>) -> (StatusCode, Vec<u8>) {
    let c = chain.lock().unwrap();
    match c.blocks.iter().find(|b| b.block_hash().to_string() == hash) {
        Some(b) => (StatusCode::OK, c.served(b)),
        None => (StatusCode::NOT_FOUND, b"Block not found".to_vec()),
    }
}

async fn tx_status(State(chain): State<Shared>, Path(txid): Path<String>) -> (StatusCode, String) {
    let c = chain.lock().unwrap();
    match c.find_tx(&txid) {
        Some((Some(h), _)) => (
            StatusCode::OK,
            json!({ "confirmed": true, "block_height": h,
                    "block_hash": c.blocks[h as usize].block_hash().to_string() })
            .to_string(),
        ),
        Some((None, _)) => (StatusCode::OK, json!({ "confirmed": false }).to_string()),
        None => (StatusCode::NOT_FOUND, "Transaction not found".into()),
    }
}

async fn tx_post(State(chain): State<Shared>, body: String) -> (StatusCode, String) {
    let bytes = hex::decode(body.trim()).unwrap_or_default();
    let Ok(tx) = bitcoin::consensus::deserialize::<Transaction>(&bytes) else {
        return (
            StatusCode::BAD_REQUEST,
            "sendrawtransaction RPC error: TX decode failed".into(),
        );
    };
    let txid = tx.compute_txid().to_string();
    match chain.lock().unwrap().accept(tx) {
        Ok(()) => (StatusCode::OK, txid),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("sendrawtransaction RPC error: {e}"),
        ),
    }
}

async fn fees() -> String {
    json!({ "1": 3.0, "2": 2.0, "6": 1.0, "144": 1.0 }).to_string()
}

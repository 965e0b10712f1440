//! A real anvil node for tests: spawned on a free loopback port with the
//! published test mnemonic, its memory bounded, killed on drop.
//!
//! The binary comes from the npm package `@foundry-rs/anvil-linux-amd64`,
//! which `scripts/test` installs under `.tools/`; `STRONGROOM_ANVIL` may
//! name another. A missing binary fails the test: it is never skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The private keys of anvil's first accounts (mnemonic
/// `test test test test test test test test test test test junk`), each
/// funded with 10 000 ether at genesis.
pub const DEV_KEYS: [&str; 4] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

/// The chain id anvil uses unless told otherwise.
pub const CHAIN_ID: u64 = 31337;

/// A running anvil. Dropping it kills the process.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    url: String,
    _home: tempfile::TempDir,
}

impl Anvil {
    /// Starts anvil without automatic mining: tests mine with [`mine`], so
    /// that what is in a block is decided by the test, not by a race with
    /// anvil's background miner.
    pub fn start() -> Anvil {
        Anvil::start_with(&["--no-mining"])
    }

    /// Starts anvil with these arguments (`--block-time 1`, ...).
    pub fn start_with(extra: &[&str]) -> Anvil {
        let binary = binary();
        let home = tempfile::tempdir().expect("a temp dir for anvil's HOME");
        // Bounded: anvil can run away in memory when flooded (DEPENDENCIES.md).
        let mut child = Command::new("prlimit")
            .arg("--as=4294967296")
            .arg("--")
            .arg(&binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--prune-history",
                "128",
            ])
            .args(extra)
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("anvil's stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut url = None;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("Listening on ") {
                url = Some(format!("http://{}", addr.trim()));
                break;
            }
        }
        let Some(url) = url else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("anvil exited before listening");
        };
        // Drain the rest so anvil never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Anvil {
            child,
            url,
            _home: home,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the anvil binary is: `STRONGROOM_ANVIL`, or `.tools/` at the
/// repository root as `scripts/test` installs it.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STRONGROOM_ANVIL") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate sits two folders below the repository root");
    let p = root.join(".tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(
        p.exists(),
        "anvil is not installed at {} (run scripts/test, or set STRONGROOM_ANVIL)",
        p.display()
    );
    p
}

/// A software key holding one of anvil's funded dev accounts, for tests
/// that need ether from somewhere.
#[derive(Debug)]
pub struct DevWallet {
    signer: keys::SoftwareSigner,
    key: keys::KeyRef,
    pub address: chain_eth::EthAddress,
}

impl DevWallet {
    /// Dev account `index` (0..4).
    pub async fn new(index: usize) -> DevWallet {
        use keys::Signer;
        let signer = keys::SoftwareSigner::new();
        let mut bytes: [u8; 32] = hex::decode(DEV_KEYS[index])
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        let key = signer
            .import(
                keys::Algorithm::EcdsaSecp256k1,
                keys::Secret32::from_bytes(&mut bytes),
            )
            .expect("a valid key");
        let keys::PublicKey::Secp256k1(pk) = signer.public_key(&key).await.expect("public key")
        else {
            panic!("not an ECDSA key")
        };
        let address = chain_eth::EthAddress::from_public_key(&pk).expect("a valid point");
        DevWallet {
            signer,
            key,
            address,
        }
    }

    /// Signs `plan`, checking the signature with libsecp256k1 as well.
    pub async fn sign(&self, plan: &chain_eth::TxPlan) -> chain_eth::SignedTx {
        use keys::Signer;
        let request = keys::SignRequest::EcdsaDigest(plan.signing_hash());
        let sig = self
            .signer
            .sign(&self.key, request.clone())
            .await
            .expect("signing");
        let public = self.signer.public_key(&self.key).await.expect("public key");
        keys::verify::verify(&public, &request, &sig).expect("a valid signature");
        let keys::Signature::Ecdsa(e) = sig else {
            panic!("not ECDSA")
        };
        plan.into_signed(
            chain_eth::EcdsaParts {
                r: e.r,
                s: e.s,
                recovery_id: e.recovery_id,
            },
            self.address,
        )
        .expect("the signature recovers to the wallet")
    }
}

impl DevWallet {
    /// Signs `build(nonce, fees)` at the wallet's pending nonce with
    /// generous fees, sends it and mines one block. Returns the hash.
    pub async fn transact(
        &self,
        client: &crate::EthClient,
        build: impl FnOnce(u64, chain_eth::Fees) -> chain_eth::TxPlan,
    ) -> [u8; 32] {
        let nonce = client
            .nonce(self.address, crate::NonceTag::Pending)
            .await
            .expect("nonce");
        let fees = chain_eth::Fees::Eip1559 {
            max_fee_per_gas: 100_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
        };
        let signed = self.sign(&build(nonce, fees)).await;
        client
            .send_raw(&signed.raw, signed.hash)
            .await
            .expect("anvil takes the transaction");
        mine(client, 1).await;
        signed.hash
    }
}

/// The committed bytecode of `tests/contracts/TestToken.sol` (6 decimals,
/// the whole supply to the deployer).
pub fn test_token_bytecode() -> Vec<u8> {
    hex::decode(include_str!("../tests/contracts/TestToken.bin").trim())
        .expect("the committed bytecode is hex")
}

/// Mines `blocks` blocks (the first takes the pool's transactions) and
/// returns when they are mined.
pub async fn mine(client: &crate::EthClient, blocks: u64) {
    client
        .raw_call("anvil_mine", serde_json::json!([format!("0x{blocks:x}")]))
        .await
        .expect("anvil_mine");
}

/// Deploys the test token from `wallet` and returns its address.
pub async fn deploy_test_token(
    client: &crate::EthClient,
    wallet: &DevWallet,
) -> chain_eth::EthAddress {
    let v = client
        .raw_call(
            "eth_sendTransaction",
            serde_json::json!([{
                "from": wallet.address.to_lower_hex(),
                "data": format!("0x{}", hex::encode(test_token_bytecode())),
                "gas": "0x200000",
            }]),
        )
        .await
        .expect("anvil deploys from its unlocked dev accounts");
    mine(client, 1).await;
    let hash: [u8; 32] = hex::decode(v.as_str().expect("a hash").trim_start_matches("0x"))
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let receipt = client
        .raw_call(
            "eth_getTransactionReceipt",
            serde_json::json!([format!("0x{}", hex::encode(hash))]),
        )
        .await
        .expect("receipt");
    receipt["contractAddress"]
        .as_str()
        .expect("a contract address")
        .parse()
        .expect("an address")
}

/// A loopback TCP proxy in front of anvil that can be killed mid-test.
#[derive(Debug)]
pub struct Proxy {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn start(target: &str) -> Proxy {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy { url, task }
    }

    /// Closes the listener and every connection through it.
    pub fn kill(&self) {
        self.task.abort();
    }
}

/// A loopback JSON-RPC proxy in front of a node that can hold every
/// `eth_sendRawTransaction` until released: a slow node, on demand.
///
/// It speaks just enough HTTP/1.1 for JSON-RPC (keep-alive, requests with a
/// `Content-Length`) and forwards each body to the node. A held send still
/// reaches the node once released, even if the caller gave up waiting.
#[derive(Debug)]
pub struct HoldingProxy {
    url: String,
    task: tokio::task::JoinHandle<()>,
    state: Arc<HoldState>,
}

/// What a [`HoldingProxy`] shares with its connections.
#[derive(Debug)]
struct HoldState {
    holding: AtomicBool,
    /// Raw-transaction sends that arrived while holding.
    arrived: watch::Sender<usize>,
    released: watch::Sender<bool>,
    forwarded: AtomicUsize,
}

impl HoldingProxy {
    /// Starts the proxy in front of `target` (`http://127.0.0.1:8545`), not
    /// holding.
    pub async fn start(target: &str) -> HoldingProxy {
        let target = target.to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        tls::install_default_provider();
        let http = reqwest::Client::builder()
            .build()
            .expect("a reqwest client");
        let state = Arc::new(HoldState {
            holding: AtomicBool::new(false),
            arrived: watch::Sender::new(0),
            released: watch::Sender::new(false),
            forwarded: AtomicUsize::new(0),
        });
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let (state, http, target) = (Arc::clone(&shared), http.clone(), target.clone());
                conns.spawn(async move {
                    let _ = serve(inbound, &state, &http, &target).await;
                });
            }
        });
        HoldingProxy { url, task, state }
    }

    /// The proxy's URL, to give a client in place of the node's.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// From now on, hold (or stop holding) raw-transaction sends. Holding
    /// again after [`release`](Self::release) holds until the next release;
    /// stopping does not let sends already held through.
    pub fn hold(&self, on: bool) {
        if on {
            self.state.released.send_replace(false);
        }
        self.state.holding.store(on, Ordering::SeqCst);
    }

    /// Waits until `n` sends in all have arrived and are being held (or were
    /// held).
    pub async fn held(&self, n: usize) {
        let mut arrived = self.state.arrived.subscribe();
        let _ = arrived.wait_for(|v| *v >= n).await;
    }

    /// Lets every held send (and any later one) through.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }

    /// How many raw-transaction sends reached the node through this proxy
    /// (counted once the node answered).
    pub fn forwarded_sends(&self) -> usize {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection through it; held sends are
    /// dropped, never forwarded.
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one client connection, request after request, until it closes or
/// anything fails.
async fn serve(
    mut conn: tokio::net::TcpStream,
    state: &HoldState,
    http: &reqwest::Client,
    target: &str,
) -> Option<()> {
    const SEND: &[u8] = b"eth_sendRawTransaction";
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = conn.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&buf[..head_end]).ok()?;
        let len: usize = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .map_or(Some(0), |(_, v)| v.trim().parse().ok())?;
        while buf.len() < head_end + len {
            let n = conn.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
        let send = body.windows(SEND.len()).any(|w| w == SEND);
        if send && state.holding.load(Ordering::SeqCst) {
            let mut released = state.released.subscribe();
            state.arrived.send_modify(|n| *n += 1);
            if released.wait_for(|r| *r).await.is_err() {
                return None;
            }
        }
        let resp = http
            .post(target)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .ok()?;
        let status = resp.status();
        let bytes = resp.bytes().await.ok()?;
        if send {
            state.forwarded.fetch_add(1, Ordering::SeqCst);
        }
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Unknown"),
            bytes.len()
        );
        conn.write_all(head.as_bytes()).await.ok()?;
        conn.write_all(&bytes).await.ok()?;
    }
}

//! For tests (feature `test-support`): approvers, and Bitcoin payments
//! approved by them as a signer node expects to see them.

use domain::intent::IntentParts;
use domain::{
    AccountId, Actor, Address, Amount, Asset, BitcoinNetwork, Network, Timestamp, TransferId,
    TransferIntent, TransferKind, WalletId,
};
use ed25519_dalek::{Signer as _, SigningKey};
use policy::{ApprovalStatement, Vote};

use crate::cosign::{Approval, ApprovedTransfer, CosignPolicy};

/// The wallet test keys are made for.
pub const WALLET: &str = "0190a5e0-0000-7000-8000-000000000001";

/// Approver `i`'s key (fixed seeds: tests only).
pub fn approver(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i.wrapping_add(40); 32])
}

/// A demanding policy: approvers 1 to 3 enrolled, two needed above
/// 10 000 sat, fees up to 5 000 sat, raw messages as `allow_raw`.
pub fn policy(allow_raw: bool) -> CosignPolicy {
    CosignPolicy {
        bitcoin_network: "bitcoin:regtest".into(),
        approvers: (1..=3)
            .map(|i| hex::encode(approver(i).verifying_key().as_bytes()))
            .collect(),
        passkey_approvers: Vec::new(),
        people: Vec::new(),
        min_approvals: 2,
        unapproved_limit: 10_000,
        max_fee: 5_000,
        signatures_per_hour: 10_000,
        allow_raw,
        ethereum: Some(crate::cosign::EthereumPolicy {
            network: format!("eip155:{ETH_CHAIN}"),
            max_fee: 10_000_000_000_000_000,
            unapproved_limit: 0,
            tokens: Vec::new(),
        }),
    }
}

/// The EVM chain test policies sign for (anvil's default).
pub const ETH_CHAIN: u64 = 31337;

/// A regtest address of a fixed test key (P2WPKH); `seed` 1 to 100.
pub fn address(seed: u8) -> String {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[seed.clamp(1, 100); 32])
        .unwrap_or_else(|e| panic!("{e}"));
    let pk = bitcoin::CompressedPublicKey(sk.public_key(&secp));
    bitcoin::Address::p2wpkh(&pk, bitcoin::Network::Regtest).to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A withdrawal of [`WALLET`] of `sat` to `to` (regtest), approved by
/// `approvers` (their indices), valid for an hour.
pub fn payment(to: &str, sat: u64, approvers: &[u8]) -> ApprovedTransfer {
    payment_of(WALLET, to, sat, approvers)
}

/// [`payment`] from another wallet.
pub fn payment_of(wallet: &str, to: &str, sat: u64, approvers: &[u8]) -> ApprovedTransfer {
    let net = BitcoinNetwork::Regtest;
    approved(
        wallet,
        Asset::bitcoin(net),
        Network::Bitcoin(net),
        to,
        u128::from(sat),
        approvers,
    )
}

/// A withdrawal of [`WALLET`] of `wei` ether on [`ETH_CHAIN`] to `to`,
/// approved by `approvers`.
pub fn ether_payment(to: &str, wei: u128, approvers: &[u8]) -> ApprovedTransfer {
    approved(
        WALLET,
        Asset::ether(ETH_CHAIN),
        Network::Evm {
            chain_id: ETH_CHAIN,
        },
        to,
        wei,
        approvers,
    )
}

/// A withdrawal of `units` of `asset`, approved by `approvers`.
pub fn approved(
    wallet: &str,
    asset: Asset,
    network: Network,
    to: &str,
    units: u128,
    approvers: &[u8],
) -> ApprovedTransfer {
    let intent = TransferIntent::new(IntentParts {
        id: TransferId::from_uuid(uuid::Uuid::now_v7()),
        kind: TransferKind::Withdrawal,
        account: AccountId::from_uuid(uuid::Uuid::now_v7()),
        wallet: wallet.parse::<WalletId>().unwrap_or_else(|e| panic!("{e}")),
        amount: Amount::from_units(asset, units),
        destination: Address::new(network, to).unwrap_or_else(|e| panic!("{e}")),
        reference: None,
        initiator: Actor::System,
        created_at: Timestamp::from_millis(now_ms()),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let decision = uuid::Uuid::now_v7();
    let expires = now_ms() + 3_600_000;
    let approvals = approvers
        .iter()
        .map(|i| {
            let statement = ApprovalStatement {
                intent: intent.digest(),
                policy_version: 1,
                decision_id: *decision.as_bytes(),
                expires_at: Timestamp::from_millis(expires),
                vote: Vote::Approve,
            };
            let key = approver(*i);
            Approval {
                approver: hex::encode(key.verifying_key().as_bytes()),
                expires_at_ms: expires,
                signature: hex::encode(key.sign(&statement.message()).to_bytes()),
            }
        })
        .collect();
    ApprovedTransfer {
        intent: hex::encode(intent.canonical_bytes()),
        policy_version: 1,
        decision_id: decision.to_string(),
        approvals,
    }
}

/// Safe primes for parties 1 to 3 (published test data, made by
/// `examples/safe_primes.rs`): never for real keys.
pub fn test_primes(party: u16) -> Vec<String> {
    let all: Vec<Vec<String>> =
        serde_json::from_str(include_str!("../tests/data/cggmp-primes.json"))
            .unwrap_or_else(|e| panic!("test primes: {e}"));
    all.get(usize::from(party).wrapping_sub(1))
        .cloned()
        .unwrap_or_else(|| panic!("no test primes for party {party}"))
}

/// The passphrase of [`Loopback`] nodes.
pub const PASSPHRASE: &str = "a passphrase of some length";

/// Three signer nodes in this process, on loopback ports, each with its
/// own store, journals and audit log (test primes given), and a cluster
/// pinned to them. Nodes not in `up` are made but not served.
pub struct Loopback {
    pub dir: tempfile::TempDir,
    pub cluster: crate::cluster::Cluster,
    pub nodes: Vec<std::sync::Arc<crate::node::Node>>,
    pub tasks: Vec<(u16, tokio::task::JoinHandle<()>)>,
    endpoints: Vec<crate::cluster::SignerEndpoint>,
}

impl std::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loopback({})", self.dir.path().display())
    }
}

impl Loopback {
    pub async fn start(up: &[u16], policy: CosignPolicy) -> Loopback {
        Loopback::start_with(up, policy, |_, n| n).await
    }

    /// [`Loopback::start`], each node passed through `adjust` (a fault).
    pub async fn start_with(
        up: &[u16],
        policy: CosignPolicy,
        adjust: impl Fn(u16, crate::node::Node) -> crate::node::Node,
    ) -> Loopback {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let server = crate::net::TlsIdentity::generate().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("server")).unwrap_or_else(|e| panic!("{e}"));
        server
            .save(&dir.path().join("server"))
            .unwrap_or_else(|e| panic!("{e}"));
        let publics: Vec<_> = (1..=3u16)
            .map(|i| {
                crate::node::init(&dir.path().join(format!("n{i}")), i, PASSPHRASE)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let mut endpoints = Vec::new();
        let mut tasks = Vec::new();
        let mut nodes = Vec::new();
        for i in 1..=3u16 {
            let cfg = crate::node::NodeConfig {
                index: i,
                listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
                data_dir: dir.path().join(format!("n{i}")),
                servers: vec![server.fingerprint().to_string()],
                peers: publics.iter().filter(|p| p.index != i).cloned().collect(),
                policy: policy.clone(),
                ecdsa: true,
            };
            let node = crate::node::Node::open(&cfg, PASSPHRASE).unwrap_or_else(|e| panic!("{e}"));
            node.use_test_primes(&test_primes(i))
                .unwrap_or_else(|e| panic!("{e}"));
            let node = std::sync::Arc::new(adjust(i, node));
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            endpoints.push(crate::cluster::SignerEndpoint {
                index: i,
                addr: listener
                    .local_addr()
                    .unwrap_or_else(|e| panic!("{e}"))
                    .to_string(),
                fingerprint: node
                    .public()
                    .fingerprint
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            });
            if up.contains(&i) {
                let n = node.clone();
                tasks.push((
                    i,
                    tokio::spawn(async move {
                        let _ = n.serve(listener).await;
                    }),
                ));
            }
            nodes.push(node);
        }
        Loopback {
            dir,
            cluster: crate::cluster::Cluster::new(
                server,
                endpoints.clone(),
                std::time::Duration::from_secs(60),
            ),
            nodes,
            tasks,
            endpoints,
        }
    }

    /// Stops node `party` (its port closes) and reconnects the cluster,
    /// whose connections to it would otherwise outlive it.
    pub async fn stop(&mut self, party: u16) {
        if let Some(at) = self.tasks.iter().position(|(i, _)| *i == party) {
            let (_, t) = self.tasks.remove(at);
            t.abort();
            let _ = t.await;
        }
        self.cluster = self.cluster_again();
    }

    /// Another cluster pinned to these nodes, with its own connections.
    pub fn cluster_again(&self) -> crate::cluster::Cluster {
        let server = crate::net::TlsIdentity::load(&self.dir.path().join("server"))
            .unwrap_or_else(|e| panic!("{e}"));
        crate::cluster::Cluster::new(
            server,
            self.endpoints.clone(),
            std::time::Duration::from_secs(60),
        )
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        for (_, t) in &self.tasks {
            t.abort();
        }
    }
}

/// A Taproot key-path spend of 100 000 sat held by `key` (x-only output
/// key) at an outpoint made from `seed`, paying `sat` to [`address`]`(7)`
/// approved by approvers 1 and 2, change back to the key; with the
/// message a node derives from it.
pub fn taproot_payment(key: [u8; 32], seed: u64, sat: u64) -> (crate::cosign::Subject, Vec<u8>) {
    use bitcoin::hashes::Hash as _;
    let own = bitcoin::ScriptBuf::new_p2tr_tweaked(
        bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(
            bitcoin::key::XOnlyPublicKey::from_slice(&key).unwrap_or_else(|e| panic!("{e}")),
        ),
    );
    let to = address(7);
    let pay = bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(sat),
        script_pubkey: to
            .parse::<bitcoin::Address<_>>()
            .unwrap_or_else(|e| panic!("{e}"))
            .assume_checked()
            .script_pubkey(),
    };
    let change = bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(100_000 - sat - 1_000),
        script_pubkey: own.clone(),
    };
    let mut txid = [0u8; 32];
    txid[..8].copy_from_slice(&seed.to_le_bytes());
    let tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: bitcoin::OutPoint {
                txid: bitcoin::Txid::from_byte_array(txid),
                vout: 0,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: bitcoin::Witness::new(),
        }],
        output: vec![pay, change],
    };
    let subject = crate::cosign::Subject::BitcoinTaproot {
        tx: hex::encode(bitcoin::consensus::serialize(&tx)),
        prevouts: vec![crate::cosign::Prevout {
            value: 100_000,
            script_pubkey: hex::encode(own.as_bytes()),
        }],
        input: 0,
        transfers: vec![payment(&to, sat, &[1, 2])],
    };
    let message = crate::cosign::check(
        &policy(false),
        Some(key),
        WALLET,
        &subject,
        Timestamp::from_millis(now_ms()),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .message;
    (subject, message)
}

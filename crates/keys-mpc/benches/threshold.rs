//! Threshold signing latency: the same FROST protocol in one process and
//! across three signer nodes over loopback (mutual TLS, node-signed and
//! encrypted messages, each nonce journaled with an fsync), in the same
//! run; and key-generation ceremony times.
//!
//! `cargo bench -p keys-mpc --bench threshold` (`-- --bench` for the full
//! run; without it a quick smoke run, as `cargo test --benches` does).

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keys_mpc::cluster::{Cluster, SignerEndpoint};
use keys_mpc::dkg::{Dkg, GroupPublic, KeyShare};
use keys_mpc::net::TlsIdentity;
use keys_mpc::node::{Node, NodeConfig};
use keys_mpc::sign::{Coordinator, commit, sign};
use keys_mpc::{Ed25519, Envelope, NonceJournal, PartyIndex, SessionId, Suite, Taproot};

const PASS: &str = "benchmark passphrase";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A 2-of-3 ceremony with every party in this thread.
fn dkg_local<C: Suite>() -> Vec<KeyShare<C>> {
    let s = SessionId::random(&mut keys_mpc::os_rng());
    let mut rng = keys_mpc::os_rng();
    let (mut parties, r1): (Vec<Dkg<C>>, Vec<Envelope>) = (1..=3)
        .map(|i| Dkg::<C>::start(s, PartyIndex::new(i).unwrap(), 3, 2, &mut rng).unwrap())
        .unzip();
    let r2: Vec<Envelope> = parties
        .iter_mut()
        .enumerate()
        .flat_map(|(i, d)| {
            let others: Vec<Envelope> = r1
                .iter()
                .filter(|m| m.from != i as u16 + 1)
                .cloned()
                .collect();
            d.round1(&others).unwrap()
        })
        .collect();
    parties
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let mine: Vec<Envelope> = r2
                .iter()
                .filter(|m| m.to == Some(i as u16 + 1))
                .cloned()
                .collect();
            d.round2(&mine).unwrap()
        })
        .collect()
}

/// Parties 1 and 2 sign in this thread (journals on disk, as a node's).
fn sign_local<C: Suite>(shares: &[KeyShare<C>], journals: &mut [NonceJournal], m: &[u8]) {
    let s = SessionId::random(&mut keys_mpc::os_rng());
    let mut rng = keys_mpc::os_rng();
    let mut c = Coordinator::new(s, shares[0].public(), m);
    let (n1, c1) = commit(&shares[0], s, &mut rng).unwrap();
    let (n2, c2) = commit(&shares[1], s, &mut rng).unwrap();
    let p = c.package(&[c1, c2]).unwrap();
    let s1 = sign(&shares[0], n1, &p[0], m, &mut journals[0]).unwrap();
    let s2 = sign(&shares[1], n2, &p[1], m, &mut journals[1]).unwrap();
    c.aggregate(&[s1, s2]).unwrap();
}

struct Nodes {
    _dir: tempfile::TempDir,
    cluster: Cluster,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Three signer nodes on loopback ports, each with its own store, journal
/// and audit log, serving one pinned server.
async fn nodes(up: &[u16]) -> Nodes {
    let dir = tempfile::tempdir().unwrap();
    let server = TlsIdentity::generate().unwrap();
    let publics: Vec<_> = (1..=3u16)
        .map(|i| keys_mpc::node::init(&dir.path().join(format!("n{i}")), i, PASS).unwrap())
        .collect();
    let mut endpoints = Vec::new();
    let mut tasks = Vec::new();
    for i in 1..=3u16 {
        let cfg = NodeConfig {
            index: i,
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join(format!("n{i}")),
            servers: vec![server.fingerprint().to_string()],
            peers: publics.iter().filter(|p| p.index != i).cloned().collect(),
            policy: keys_mpc::cosign::CosignPolicy {
                bitcoin_network: "bitcoin:regtest".into(),
                approvers: vec![],
                min_approvals: 1,
                unapproved_limit: 0,
                max_fee: 0,
                signatures_per_hour: 1_000_000,
                // The bench signs a bare message: the checks' cost for a
                // transaction is measured apart (co-signer checks).
                allow_raw: true,
            },
        };
        let node = Arc::new(Node::open(&cfg, PASS).unwrap());
        let listener = tokio::net::TcpListener::bind(cfg.listen).await.unwrap();
        endpoints.push(SignerEndpoint {
            index: i,
            addr: listener.local_addr().unwrap().to_string(),
            fingerprint: node.public().fingerprint.parse().unwrap(),
        });
        if up.contains(&i) {
            tasks.push(tokio::spawn(async move {
                let _ = node.serve(listener).await;
            }));
        }
    }
    Nodes {
        _dir: dir,
        cluster: Cluster::new(server, endpoints, Duration::from_secs(60)),
        _tasks: tasks,
    }
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 3 } else { 200 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut journals: Vec<NonceJournal> = (0..2)
        .map(|i| NonceJournal::open(&dir.path().join(format!("j{i}"))).unwrap())
        .collect();
    println!("2-of-3 FROST, median of {n}:");
    rt.block_on(async {
        let all = nodes(&[1, 2, 3]).await;
        for (name, local_ms, net_ms, dkg_local_ms, dkg_net_ms) in [
            bench::<Taproot>(&all.cluster, &mut journals, n, "tr").await,
            bench::<Ed25519>(&all.cluster, &mut journals, n, "ed").await,
        ] {
            println!(
                "  {name:20} sign: one process {local_ms:6.2} ms, three nodes over loopback {net_ms:6.2} ms ({:.1}×); \
                 key generation: one process {dkg_local_ms:6.2} ms, three nodes {dkg_net_ms:6.2} ms",
                net_ms / local_ms
            );
        }
    });
}

async fn bench<C: Suite>(
    cluster: &Cluster,
    journals: &mut [NonceJournal],
    n: usize,
    tag: &str,
) -> (&'static str, f64, f64, f64, f64) {
    let m = [7u8; 32];
    let shares = dkg_local::<C>();
    let mut local = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        sign_local(&shares, journals, &m);
        local.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let key = cluster
        .generate(
            C::NAME,
            &format!("bench-{tag}"),
            keys_mpc::testing::WALLET,
            2,
        )
        .await
        .unwrap();
    let group = GroupPublic::<C>::from_bytes(&key.public).unwrap();
    let mut net = Vec::with_capacity(n);
    let raw = keys_mpc::cosign::Subject::Raw {
        message: hex::encode(m),
    };
    for _ in 0..n {
        let t = Instant::now();
        cluster
            .sign(&format!("bench-{tag}"), &group, &m, &raw)
            .await
            .unwrap();
        net.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let rounds = n.min(20);
    let mut dkg_l = Vec::new();
    let mut dkg_n = Vec::new();
    for i in 0..rounds {
        let t = Instant::now();
        dkg_local::<C>();
        dkg_l.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        cluster
            .generate(
                C::NAME,
                &format!("bench-{tag}-{i}"),
                keys_mpc::testing::WALLET,
                2,
            )
            .await
            .unwrap();
        dkg_n.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (
        C::NAME,
        median(local),
        median(net),
        median(dkg_l),
        median(dkg_n),
    )
}

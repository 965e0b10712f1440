//! Threshold signing latency: the same FROST protocol in one process and
//! across three signer nodes over loopback (mutual TLS, node-signed and
//! encrypted messages, each nonce journaled with an fsync, each request's
//! co-signer checks), in the same run; key-generation ceremony times; and
//! threshold ECDSA (CGGMP24): the ceremony, presignatures per second per
//! signer, and online signing latency with a warm presignature pool.
//!
//! `cargo bench -p keys-mpc --bench threshold` (`-- --bench` for the full
//! run; without it a quick smoke run, as `cargo test --benches` does).

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::time::Instant;

use keys_mpc::cluster::Cluster;
use keys_mpc::cosign::{EthereumTx, Subject};
use keys_mpc::dkg::{Dkg, GroupPublic, KeyShare};
use keys_mpc::sign::{Coordinator, commit, sign};
use keys_mpc::testing::{Loopback, WALLET, ether_payment, policy, taproot_payment};
use keys_mpc::{Ed25519, Envelope, NonceJournal, PartyIndex, SessionId, Suite, Taproot};

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
        // Raw messages allowed: for the Ed25519 keys (no chain checks them).
        let all = Loopback::start(&[1, 2, 3], policy(true)).await;
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
        ecdsa(&all, quick).await;
    });
}

/// Threshold ECDSA among the three nodes.
async fn ecdsa(all: &Loopback, quick: bool) {
    let c = &all.cluster;
    let t = Instant::now();
    c.ecdsa_aux().await.unwrap();
    let aux_s = t.elapsed().as_secs_f64();
    let rounds = if quick { 2 } else { 10 };
    let mut keygen = Vec::new();
    let mut pk = [0u8; 33];
    for i in 0..rounds {
        let t = Instant::now();
        pk = c
            .ecdsa_generate(&format!("bench-ecdsa-{i}"), WALLET, 2)
            .await
            .unwrap();
        keygen.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let key = format!("bench-ecdsa-{}", rounds - 1);
    let n = if quick { 3 } else { 40 };
    // Presignatures one after another, each by two signers at once.
    let t = Instant::now();
    c.refill(&key, 2, n).await.unwrap();
    let presign_s = t.elapsed().as_secs_f64();
    let mut online = Vec::new();
    for nonce in 0..n as u64 {
        let wei = 1_000_000_000_000_000u128;
        let plan = chain_eth::TxPlan::native(
            keys_mpc::testing::ETH_CHAIN,
            nonce,
            chain_eth::EthAddress::parse("0x1111111111111111111111111111111111111111")
                .unwrap()
                .0,
            wei,
            chain_eth::Fees::Eip1559 {
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000_000,
            },
        );
        let subject = Subject::Ethereum {
            tx: EthereumTx::from_plan(&plan).unwrap(),
            transfers: vec![ether_payment(
                "0x1111111111111111111111111111111111111111",
                wei,
                &[1, 2],
            )],
        };
        assert!(c.pooled(&key) > 0, "the pool ran dry");
        let t = Instant::now();
        c.sign_ecdsa(&key, &pk, 2, &subject).await.unwrap();
        online.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "2-of-3 CGGMP24 ECDSA: auxiliary-information ceremony {aux_s:.1} s (once per group of signers, \
         test primes); key generation median {:.1} ms of {rounds}; presignatures {:.2}/s per signer \
         ({n} in {presign_s:.1} s, two signers each, one at a time); online signing with a warm pool \
         median {:.2} ms of {n}",
        median(keygen),
        n as f64 / presign_s,
        median(online),
    );
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
    for i in 0..n {
        // Taproot keys sign checked transactions only; Ed25519 keys a raw
        // message (allowed by these nodes' policy).
        let (subject, message) = if C::NAME == Taproot::NAME {
            taproot_payment(key.group_key, i as u64, 20_000)
        } else {
            (
                Subject::Raw {
                    message: hex::encode(m),
                },
                m.to_vec(),
            )
        };
        let t = Instant::now();
        cluster
            .sign(&format!("bench-{tag}"), &group, &message, &subject)
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

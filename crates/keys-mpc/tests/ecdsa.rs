//! Threshold ECDSA (CGGMP24) among three signer nodes on loopback: the
//! auxiliary-information ceremony, key generation, a presignature pool,
//! and Ethereum transactions each node checks before it gives a partial
//! signature — combined signatures checked by k256 and by alloy's
//! recovery; a presignature used once; a node down; a cheating node named.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use chain_eth::{EcdsaParts, EthAddress, Fees, TxPlan};
use keys_mpc::cluster::ClusterError;
use keys_mpc::cosign::{EthereumTx, Subject};
use keys_mpc::testing::{ETH_CHAIN, Loopback, WALLET, ether_payment, policy};
use keys_mpc::wire::Request;

const TO: &str = "0x1111111111111111111111111111111111111111";
const WEI: u128 = 100_000_000_000_000_000;

fn plan(nonce: u64, wei: u128) -> TxPlan {
    TxPlan::native(
        ETH_CHAIN,
        nonce,
        EthAddress::parse(TO).unwrap().0,
        wei,
        Fees::Eip1559 {
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
        },
    )
}

fn subject(plan: &TxPlan, approved_wei: u128, approvers: &[u8]) -> Subject {
    Subject::Ethereum {
        tx: EthereumTx::from_plan(plan).unwrap(),
        transfers: vec![ether_payment(TO, approved_wei, approvers)],
    }
}

/// A ready key on `l`: auxiliary information (ceremony or test data), a
/// 2-of-3 key for [`WALLET`]; its public key.
async fn key(l: &Loopback, key_id: &str, ceremony: bool) -> [u8; 33] {
    if ceremony {
        l.cluster.ecdsa_aux().await.unwrap();
    } else {
        let aux: Vec<String> = serde_json::from_str(include_str!("data/cggmp-aux.json")).unwrap();
        for (n, a) in l.nodes.iter().zip(&aux) {
            n.use_test_aux(a).unwrap();
        }
    }
    l.cluster.ecdsa_generate(key_id, WALLET, 2).await.unwrap()
}

/// Signs a payment (nonce `nonce`) approved by 2 and 3; the transaction
/// recovers to the key's address (alloy).
async fn signs(l: &Loopback, key_id: &str, pk: &[u8; 33], nonce: u64) {
    let p = plan(nonce, WEI);
    let sig = l
        .cluster
        .sign_ecdsa(key_id, pk, 2, &subject(&p, WEI, &[2, 3]))
        .await
        .unwrap();
    p.into_signed(
        EcdsaParts {
            r: sig.r,
            s: sig.s,
            recovery_id: sig.recovery_id,
        },
        EthAddress::from_public_key(pk).unwrap(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_make_a_key_and_sign_ethereum_transactions_they_checked() {
    let l = Loopback::start(&[1, 2, 3], policy(false)).await;
    let c = &l.cluster;
    let pk = key(&l, "eth-1", true).await;
    if let Ok(path) = std::env::var("STRONGROOM_WRITE_TEST_AUX") {
        let aux: Vec<String> = l.nodes.iter().map(|n| n.test_aux().unwrap()).collect();
        std::fs::write(path, serde_json::to_string_pretty(&aux).unwrap()).unwrap();
    }
    let from = EthAddress::from_public_key(&pk).unwrap();
    // Every node reports the same key; a second ceremony for it is refused.
    assert!(c.ecdsa_generate("eth-1", WALLET, 2).await.is_err());

    // A warm pool: two presignatures, then signatures that use them.
    assert_eq!(c.refill("eth-1", 2, 2).await.unwrap(), 2);
    assert_eq!(c.pooled("eth-1"), 2);
    for nonce in 0..3 {
        let p = plan(nonce, WEI);
        let sig = c
            .sign_ecdsa("eth-1", &pk, 2, &subject(&p, WEI, &[1, 2]))
            .await
            .unwrap();
        // alloy recovers the key's address from the signed transaction.
        let signed = p
            .into_signed(
                EcdsaParts {
                    r: sig.r,
                    s: sig.s,
                    recovery_id: sig.recovery_id,
                },
                from,
            )
            .unwrap();
        assert!(!signed.raw.is_empty());
    }
    // The third was signed with a presignature made on demand.
    assert_eq!(c.pooled("eth-1"), 0);

    // A presignature is used once: asking again for one already used is
    // refused by its signers.
    let pooled = c.presign("eth-1", &[1, 2]).await.unwrap();
    let p = plan(3, WEI);
    c.sign_ecdsa("eth-1", &pk, 2, &subject(&p, WEI, &[1, 3]))
        .await
        .unwrap();
    for s in &c.signers()[..2] {
        let r = c
            .call(
                s,
                &Request::EcdsaSign {
                    key_id: "eth-1".into(),
                    presignature: pooled.session,
                    subject: subject(&plan(4, WEI), WEI, &[1, 2]),
                },
            )
            .await;
        let Err(ClusterError::Refused { reason, .. }) = r else {
            panic!("a used presignature was accepted: {r:?}");
        };
        assert!(reason.contains("no such presignature"), "{reason}");
    }

    // What each node refuses, whatever the server says.
    let refusals: Vec<(&str, Subject)> = vec![
        // Another amount than approved.
        ("does not pay", subject(&plan(4, WEI + 1), WEI, &[1, 2])),
        // One approval short.
        ("approvals", subject(&plan(4, WEI), WEI, &[1])),
        // Another chain than the node's.
        ("chain id", {
            let mut p = plan(4, WEI);
            p.chain_id = 1;
            subject(&p, WEI, &[1, 2])
        }),
        // A fee over the node's cap.
        ("fee", {
            let mut p = plan(4, WEI);
            p.fees = Fees::Eip1559 {
                max_fee_per_gas: 10_000_000_000_000,
                max_priority_fee_per_gas: 1,
            };
            subject(&p, WEI, &[1, 2])
        }),
        // Calldata beside a payment of ether.
        ("calldata", {
            let mut p = plan(4, WEI);
            p.data = vec![0xa9, 0x05, 0x9c, 0xbb];
            subject(&p, WEI, &[1, 2])
        }),
        // An approved transfer paid a second time by another transaction
        // (another nonce): the nodes remember what they signed for.
        ("already paid", {
            let Subject::Ethereum { transfers, .. } = subject(&plan(0, WEI), WEI, &[1, 2]) else {
                unreachable!()
            };
            let first = Subject::Ethereum {
                tx: EthereumTx::from_plan(&plan(5, WEI)).unwrap(),
                transfers: transfers.clone(),
            };
            c.sign_ecdsa("eth-1", &pk, 2, &first).await.unwrap();
            Subject::Ethereum {
                tx: EthereumTx::from_plan(&plan(6, WEI)).unwrap(),
                transfers,
            }
        }),
    ];
    for (why, s) in refusals {
        let e = c.sign_ecdsa("eth-1", &pk, 2, &s).await;
        let msg = match &e {
            Err(ClusterError::Refused { reason, .. }) => reason.clone(),
            Err(e) => e.to_string(),
            Ok(_) => panic!("{why}: signed"),
        };
        assert!(msg.contains(why), "{why}: {msg}");
    }
    // Refused before any node journaled it, the presignature is unused: it
    // went back to the pool (one, used again by each refusal in turn).
    assert_eq!(c.pooled("eth-1"), 1);
    // A raw hash: a node signs only transactions it checks with an ECDSA
    // key (RUSTSEC-2025-0127: never a bare hash with a presignature), even
    // asked directly; the presignature stays unused.
    let pooled = c.presign("eth-1", &[1, 2]).await.unwrap();
    let r = c
        .call(
            &c.signers()[0],
            &Request::EcdsaSign {
                key_id: "eth-1".into(),
                presignature: pooled.session,
                subject: Subject::Raw {
                    message: "00".repeat(32),
                },
            },
        )
        .await;
    let Err(ClusterError::Refused { reason, .. }) = r else {
        panic!("a raw hash was signed: {r:?}");
    };
    assert!(reason.contains("only Ethereum transactions"), "{reason}");
    c.sign_ecdsa("eth-1", &pk, 2, &subject(&plan(7, WEI), WEI, &[2, 3]))
        .await
        .unwrap();
    // The returned one signed; the one asked about directly remains, its
    // node having kept it unused.
    assert_eq!(c.pooled("eth-1"), 1);
    c.sign_ecdsa("eth-1", &pk, 2, &subject(&plan(8, WEI), WEI, &[2, 3]))
        .await
        .unwrap();
    assert_eq!(c.pooled("eth-1"), 0);
    // Each node's audit log holds its refusals.
    let log = std::fs::read_to_string(l.dir.path().join("n1/audit.log")).unwrap();
    assert!(log.contains("mpc.request.refused"));
    assert!(log.contains("mpc.ecdsa.aux"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_node_down_two_of_three_still_sign() {
    // Node 1 is never up: the first quorum (1, 2) fails, (2, 3) signs.
    let l = Loopback::start(&[2, 3], policy(false)).await;
    let aux: Vec<String> = serde_json::from_str(include_str!("data/cggmp-aux.json")).unwrap();
    for (n, a) in l.nodes.iter().zip(&aux) {
        n.use_test_aux(a).unwrap();
    }
    // A ceremony needs every node.
    assert!(
        l.cluster
            .ecdsa_generate("eth-down", WALLET, 2)
            .await
            .is_err()
    );
    // Made while all were up, then node 1 goes down.
    let mut l = Loopback::start(&[1, 2, 3], policy(false)).await;
    let pk = key(&l, "eth-2", false).await;
    l.stop(1).await;
    signs(&l, "eth-2", &pk, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sending_bad_partial_signatures_is_named_and_then_the_key_frozen() {
    let mut l = Loopback::start_with(&[1, 2, 3], policy(false), |i, n| {
        if i == 1 {
            n.with_fault(keys_mpc::node::Fault::BadShare)
        } else {
            n
        }
    })
    .await;
    let ledger =
        keys_mpc::cluster::BlameLedger::open(&l.dir.path().join("blame.jsonl"), 2).unwrap();
    l.cluster.set_blame_ledger(ledger);
    let pk = key(&l, "eth-3", false).await;
    // The first quorum includes node 1: its partial signature does not
    // verify against the presignature's commitments; the coordinator names
    // it and signs without it.
    signs(&l, "eth-3", &pk, 0).await;
    // The second time node 1 cheats, the ledger's limit is reached: the key
    // is frozen until an operator looks.
    let e = l
        .cluster
        .sign_ecdsa("eth-3", &pk, 2, &subject(&plan(1, WEI), WEI, &[2, 3]))
        .await
        .unwrap_err();
    let ClusterError::KeyFrozen { party, count, .. } = e else {
        panic!("not frozen: {e}");
    };
    assert_eq!((party, count), (1, 2));
}

/// The keys conformance suite, for what the threshold backend signs
/// through the generic seam: Ed25519 messages verified by ed25519-dalek,
/// and bare ECDSA and BIP-340 digests refused (the nodes sign those only
/// inside transactions they check, tested above and in the server's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_conformance_suite_for_the_threshold_backend() {
    let l = Loopback::start(&[1, 2, 3], policy(true)).await;
    let aux: Vec<String> = serde_json::from_str(include_str!("data/cggmp-aux.json")).unwrap();
    for (n, a) in l.nodes.iter().zip(&aux) {
        n.use_test_aux(a).unwrap();
    }
    let cluster = l.cluster_again();
    let signer = keys_mpc::signer::ThresholdSigner::new(cluster, 2, WALLET);
    keys::conformance::ed25519(&signer).await;
    keys::conformance::checked_only(&signer).await;
}

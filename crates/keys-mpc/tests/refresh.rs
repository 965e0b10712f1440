//! FROST share refresh among three signer nodes on loopback: the group key
//! stays, the nodes swap their new shares in only when the coordinator
//! commits, a node left out of a refresh is removed (never asked again,
//! its old share useless), a commit done twice answers the same, and
//! signatures before and after verify with libsecp256k1. And the epoch a
//! restored server announces: a server left over from before is refused.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use keys_mpc::cluster::ClusterError;
use keys_mpc::dkg::GroupPublic;
use keys_mpc::testing::{Loopback, WALLET, policy, taproot_payment};
use keys_mpc::wire::{Request, Response};
use keys_mpc::{SessionId, Suite, Taproot};

/// Signs a payment from `key` with the public package `public`; checks the
/// signature with libsecp256k1.
async fn signs(l: &Loopback, key: [u8; 32], public: &[u8], seed: u64) {
    let group = GroupPublic::<Taproot>::from_bytes(public).unwrap();
    let (subject, message) = taproot_payment(key, seed, 10_000);
    let sig = l
        .cluster
        .sign("k1", &group, &message, &subject)
        .await
        .unwrap();
    bitcoin::secp256k1::Secp256k1::verification_only()
        .verify_schnorr(
            &bitcoin::secp256k1::schnorr::Signature::from_slice(&sig).unwrap(),
            &bitcoin::secp256k1::Message::from_digest(message.try_into().unwrap()),
            &bitcoin::secp256k1::XOnlyPublicKey::from_slice(&key).unwrap(),
        )
        .unwrap();
}

fn share_files(l: &Loopback, node: u16) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(l.dir.path().join(format!("n{node}/shares")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_keeps_the_key_and_removes_a_node_left_out() {
    let mut l = Loopback::start(&[1, 2, 3], policy(false)).await;
    let made = l
        .cluster
        .generate(Taproot::NAME, "k1", WALLET, 2)
        .await
        .unwrap();
    signs(&l, made.group_key, &made.public, 1).await;

    // A refresh among all three: staged first, the old shares still sign.
    let (session, staged) = l
        .cluster
        .refresh(Taproot::NAME, "k1", &[1, 2, 3])
        .await
        .unwrap();
    assert_eq!(staged.group_key, made.group_key);
    assert_ne!(staged.public, made.public);
    assert_eq!(share_files(&l, 1).len(), 2);
    signs(&l, made.group_key, &made.public, 2).await;
    let committed = l
        .cluster
        .commit_refresh(Taproot::NAME, "k1", session, &[1, 2, 3])
        .await
        .unwrap();
    assert_eq!(committed, staged);
    assert_eq!(share_files(&l, 1), vec!["k1.refreshed", "k1.share"]);
    // The new shares sign for the same key (the package the coordinator
    // checks each share against is the new one).
    signs(&l, made.group_key, &staged.public, 4).await;
    // A commit done again answers the same; an unknown session is refused.
    let again = l
        .cluster
        .commit_refresh(Taproot::NAME, "k1", session, &[1, 2, 3])
        .await
        .unwrap();
    assert_eq!(again, staged);
    let stranger = SessionId::random(&mut keys_mpc::os_rng());
    assert!(matches!(
        l.cluster
            .commit_refresh(Taproot::NAME, "k1", stranger, &[1])
            .await,
        Err(ClusterError::Refused { .. })
    ));

    // Node 2 is removed: a refresh among 1 and 3 only.
    let (session, removed) = l
        .cluster
        .refresh(Taproot::NAME, "k1", &[1, 3])
        .await
        .unwrap();
    l.cluster
        .commit_refresh(Taproot::NAME, "k1", session, &[1, 3])
        .await
        .unwrap();
    let group = GroupPublic::<Taproot>::from_bytes(&removed.public).unwrap();
    let parties: Vec<u16> = group.parties().iter().map(|p| p.get()).collect();
    assert_eq!(parties, vec![1, 3]);
    // Node 2 is down for good; 1 and 3 sign without asking it.
    l.stop(2).await;
    signs(&l, made.group_key, &removed.public, 5).await;
    // Node 2, down, takes part in nothing more of this key.
    assert!(
        l.cluster
            .refresh(Taproot::NAME, "k1", &[1, 2])
            .await
            .is_err()
    );
    // Below the threshold, a refresh is refused by the nodes themselves.
    let one = l.nodes[0].handle(
        l.cluster.signers()[0].fingerprint,
        Request::RefreshStart {
            suite: Taproot::NAME.into(),
            key_id: "k1".into(),
            session: SessionId::random(&mut keys_mpc::os_rng()),
            parties: vec![1],
        },
    );
    assert!(matches!(one, Response::Refused { .. }), "{one:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_left_over_from_before_a_restore_is_refused() {
    let l = Loopback::start(&[1, 2, 3], policy(false)).await;
    let made = l
        .cluster
        .generate(Taproot::NAME, "k1", WALLET, 2)
        .await
        .unwrap();
    // The old server signs, on its open connections, at epoch 0.
    signs(&l, made.group_key, &made.public, 1).await;

    // The restored server (another process, the same identity from the
    // backup) announces the time of its restore.
    let restored = l.cluster_again();
    restored.set_epoch(1_700_000_000_000);
    assert_eq!(restored.announce_epoch().await, vec![1, 2, 3]);
    for (i, n) in l.nodes.iter().enumerate() {
        assert_eq!(n.epoch(), 1_700_000_000_000);
        let on_disk =
            std::fs::read_to_string(l.dir.path().join(format!("n{}/epoch", i + 1))).unwrap();
        assert_eq!(on_disk, "1700000000000");
    }
    let group = GroupPublic::<Taproot>::from_bytes(&made.public).unwrap();
    let (subject, message) = taproot_payment(made.group_key, 2, 10_000);
    let sig = restored
        .sign("k1", &group, &message, &subject)
        .await
        .unwrap();
    assert_eq!(sig.len(), 64);
    // The nodes that gave a share list the transfer as paid (read only,
    // for the server's reconciliation).
    let keys_mpc::cosign::Subject::BitcoinTaproot { transfers, .. } = &subject else {
        panic!("a Taproot payment");
    };
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(
        hex::decode(&transfers[0].intent).unwrap(),
    ));
    let paid = restored.paid_intents().await;
    let listing: Vec<_> = paid
        .values()
        .filter(|r| r.as_ref().unwrap().contains(&digest))
        .collect();
    assert_eq!(listing.len(), 2, "{paid:?}");

    // The old server: refused on its open connections, and again with an
    // epoch of its own that is older.
    let (subject, message) = taproot_payment(made.group_key, 3, 10_000);
    let e = l
        .cluster
        .sign("k1", &group, &message, &subject)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClusterError::Refused { reason, .. } if reason.contains("left over from before the restore")),
        "{e}"
    );
    l.cluster.set_epoch(1_600_000_000_000);
    assert!(l.cluster.announce_epoch().await.is_empty());
    assert!(
        l.cluster
            .sign("k1", &group, &message, &subject)
            .await
            .is_err()
    );
    // Each node recorded the new epoch and the refusals.
    let log = std::fs::read_to_string(l.dir.path().join("n1/audit.log")).unwrap();
    assert!(log.contains("mpc.epoch.raised"), "{log}");
    assert!(log.contains("left over from before the restore"), "{log}");
}

//! FROST share refresh among three signer nodes on loopback: the group key
//! stays, the nodes swap their new shares in only when the coordinator
//! commits, a node left out of a refresh is removed (never asked again,
//! its old share useless), a commit done twice answers the same, and
//! signatures before and after verify with libsecp256k1.

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

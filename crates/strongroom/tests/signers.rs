//! Threshold signing across three real `strongroom signer` processes on
//! loopback: enrolment, key generation without a dealer, signing with one
//! signer down, mutual TLS with pinned identities, each node's own audit
//! log — the signatures checked by Bitcoin Core's interpreter, libsecp256k1
//! and ed25519-dalek.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::process::Command;
use std::time::Duration;

use keys_mpc::cluster::{Cluster, ClusterError, SignerEndpoint};
use keys_mpc::cosign::Subject;
use keys_mpc::dkg::GroupPublic;
use keys_mpc::net::TlsIdentity;
use keys_mpc::{Ed25519, Taproot};

mod signer_nodes;
use signer_nodes::{BIN, Signers, strongroom};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A key-path spend of 50 000 sat of a P2TR output paying `key`: `pays`
/// (address, sat), change back to the key, 1 000 sat of fee; the
/// transaction, the output spent, its sighash, and what a node is shown.
fn taproot_spend(
    key: &[u8; 32],
    pays: &[(&str, u64)],
    transfers: Vec<keys_mpc::cosign::ApprovedTransfer>,
) -> (bitcoin::Transaction, bitcoin::TxOut, [u8; 32], Subject) {
    use bitcoin::hashes::Hash as _;
    use bitcoin::key::{TweakedPublicKey, XOnlyPublicKey};
    use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
    let q = XOnlyPublicKey::from_slice(key).unwrap();
    let spk = bitcoin::ScriptBuf::new_p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(q));
    let prevout = bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(50_000),
        script_pubkey: spk.clone(),
    };
    let change = 49_000 - pays.iter().map(|p| p.1).sum::<u64>();
    let tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: bitcoin::OutPoint {
                txid: bitcoin::Txid::from_byte_array([1; 32]),
                vout: 0,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: bitcoin::Witness::new(),
        }],
        output: pays
            .iter()
            .map(|(a, v)| bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(*v),
                script_pubkey: a
                    .parse::<bitcoin::Address<_>>()
                    .unwrap()
                    .require_network(bitcoin::Network::Regtest)
                    .unwrap()
                    .script_pubkey(),
            })
            .chain(std::iter::once(bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(change),
                script_pubkey: spk,
            }))
            .collect(),
    };
    let sighash = SighashCache::new(&tx)
        .taproot_key_spend_signature_hash(
            0,
            &Prevouts::All(std::slice::from_ref(&prevout)),
            TapSighashType::Default,
        )
        .unwrap()
        .to_byte_array();
    let subject = Subject::BitcoinTaproot {
        tx: hex::encode(bitcoin::consensus::serialize(&tx)),
        prevouts: vec![keys_mpc::cosign::Prevout {
            value: prevout.value.to_sat(),
            script_pubkey: hex::encode(prevout.script_pubkey.as_bytes()),
        }],
        input: 0,
        transfers,
    };
    (tx, prevout, sighash, subject)
}

#[test]
fn three_signer_processes_make_and_use_taproot_and_ed25519_keys_one_down() {
    let mut signers = Signers::start(3);
    let cluster = signers.server_cluster();
    let rt = rt();

    // Taproot: a 2-of-3 key made by the three; a payment approved by two
    // enrolled approvers, which every node checks against the transaction
    // before it signs; verified by Bitcoin Core's interpreter.
    let key = rt
        .block_on(cluster.generate(
            "frost-secp256k1-tr",
            "treasury-tr",
            keys_mpc::testing::WALLET,
            2,
        ))
        .unwrap();
    let group = GroupPublic::<Taproot>::from_bytes(&key.public).unwrap();
    assert_eq!(group.group_key().unwrap(), key.group_key);
    let customer = keys_mpc::testing::address(5);
    let approved = || vec![keys_mpc::testing::payment(&customer, 20_000, &[1, 3])];
    let (mut tx, prevout, sighash, subject) =
        taproot_spend(&key.group_key, &[(&customer, 20_000)], approved());
    let sig = rt
        .block_on(cluster.sign("treasury-tr", &group, &sighash, &subject))
        .unwrap();
    tx.input[0].witness.push(sig);
    chain_btc::verify_with_core(&tx, std::slice::from_ref(&prevout)).unwrap();

    // A compromised server adds an output of its own: every node refuses,
    // in its own audit log.
    let thief = keys_mpc::testing::address(66);
    let (_, _, sighash_t, subject_t) = taproot_spend(
        &key.group_key,
        &[(&customer, 20_000), (&thief, 20_000)],
        approved(),
    );
    let e = rt
        .block_on(cluster.sign("treasury-tr", &group, &sighash_t, &subject_t))
        .unwrap_err();
    assert!(
        matches!(&e, ClusterError::Refused { reason, .. } if reason.contains("no one approved")),
        "{e}"
    );
    // Nor does a node sign the server's bytes for an honest transaction.
    let e = rt
        .block_on(cluster.sign("treasury-tr", &group, &sighash_t, &subject))
        .unwrap_err();
    assert!(matches!(e, ClusterError::Refused { .. }), "{e}");
    // One approval is not enough for these nodes.
    let (_, _, sighash_1, subject_1) = taproot_spend(
        &key.group_key,
        &[(&customer, 20_000)],
        vec![keys_mpc::testing::payment(&customer, 20_000, &[2])],
    );
    assert!(
        rt.block_on(cluster.sign("treasury-tr", &group, &sighash_1, &subject_1))
            .is_err()
    );
    assert!(signers.audit_log(1).contains("no one approved"));

    // A node frozen by its operator signs nothing; the other two still do.
    let node1 = signers.dir.path().join("node1");
    strongroom(&[
        "signer".as_ref(),
        "freeze".as_ref(),
        "--reason".as_ref(),
        "incident 42".as_ref(),
        "--dir".as_ref(),
        node1.as_os_str(),
    ]);
    let (mut tx_f, prevout_f, sighash_f, subject_f) =
        taproot_spend(&key.group_key, &[(&customer, 20_000)], approved());
    let sig = rt
        .block_on(cluster.sign("treasury-tr", &group, &sighash_f, &subject_f))
        .unwrap();
    tx_f.input[0].witness.push(sig);
    chain_btc::verify_with_core(&tx_f, std::slice::from_ref(&prevout_f)).unwrap();
    assert!(signers.audit_log(1).contains("frozen by its operator"));
    strongroom(&[
        "signer".as_ref(),
        "unfreeze".as_ref(),
        "--dir".as_ref(),
        node1.as_os_str(),
    ]);
    assert!(!node1.join("frozen").exists());

    // Ed25519, verified by ed25519-dalek.
    let ed = rt
        .block_on(cluster.generate("frost-ed25519", "payments-ed", keys_mpc::testing::WALLET, 2))
        .unwrap();
    let ed_group = GroupPublic::<Ed25519>::from_bytes(&ed.public).unwrap();
    let raw = |m: &[u8]| Subject::Raw {
        message: hex::encode(m),
    };
    let sig = rt
        .block_on(cluster.sign("payments-ed", &ed_group, b"pay 5 to X", &raw(b"pay 5 to X")))
        .unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&ed.group_key)
        .unwrap()
        .verify_strict(b"pay 5 to X", &ed25519_dalek::Signature::from_bytes(&sig))
        .unwrap();

    // One of three down: 2-of-3 still signs, with fresh nonces.
    signers.kill(2);
    let (mut tx2, prevout2, sighash2, subject2) =
        taproot_spend(&key.group_key, &[(&customer, 20_000)], approved());
    let sig = rt
        .block_on(cluster.sign("treasury-tr", &group, &sighash2, &subject2))
        .unwrap();
    tx2.input[0].witness.push(sig);
    chain_btc::verify_with_core(&tx2, std::slice::from_ref(&prevout2)).unwrap();
    rt.block_on(cluster.sign("payments-ed", &ed_group, b"again", &raw(b"again")))
        .unwrap();

    // A ceremony needs every signer.
    let e = rt
        .block_on(cluster.generate("frost-ed25519", "needs-all", keys_mpc::testing::WALLET, 2))
        .unwrap_err();
    assert!(
        matches!(e, ClusterError::Unreachable { index: 2, .. }),
        "{e}"
    );

    // Two of three down: no signature.
    signers.kill(3);
    let e = rt
        .block_on(cluster.sign("treasury-tr", &group, &sighash2, &subject2))
        .unwrap_err();
    assert!(
        matches!(e, ClusterError::TooFew { got: 1, needed: 2 }),
        "{e}"
    );

    // Each node kept its own audit trail; its shares are sealed at rest.
    let log = signers.audit_log(1);
    assert!(
        log.contains("mpc.key.created") && log.contains("mpc.sign.share"),
        "{log}"
    );
    assert!(log.contains(&hex::encode(key.group_key)));
    let share = std::fs::read(signers.dir.path().join("node1/shares/treasury-tr.share")).unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&share).is_err());
    assert!(!String::from_utf8_lossy(&share).contains("frost"));
}

#[test]
fn only_pinned_servers_get_through_and_nodes_refuse_what_they_cannot_do() {
    let signers = Signers::start(3);
    let rt = rt();
    // A server whose identity the nodes do not pin.
    let stranger = signers.cluster(TlsIdentity::generate().unwrap());
    let e = rt
        .block_on(stranger.generate("frost-ed25519", "k", keys_mpc::testing::WALLET, 2))
        .unwrap_err();
    assert!(matches!(e, ClusterError::Unreachable { .. }), "{e}");
    // A node that is not the one pinned for its address.
    let mut wrong = signers.server_cluster();
    let endpoints: Vec<SignerEndpoint> = wrong
        .signers()
        .iter()
        .map(|s| SignerEndpoint {
            fingerprint: signers.publics[0].fingerprint.parse().unwrap(),
            ..s.clone()
        })
        .collect();
    wrong = Cluster::new(
        TlsIdentity::load(&signers.dir.path().join("server-identity")).unwrap(),
        endpoints,
        Duration::from_secs(30),
    );
    let e = rt
        .block_on(wrong.generate("frost-ed25519", "k", keys_mpc::testing::WALLET, 2))
        .unwrap_err();
    assert!(
        matches!(e, ClusterError::Unreachable { index: 2 | 3, .. }),
        "{e}"
    );

    let cluster = signers.server_cluster();
    for (suite, id, t, why) in [
        ("frost-p256", "k1", 2, "unknown suite"),
        ("frost-ed25519", "bad id!", 2, "key id"),
        ("frost-ed25519", "k2", 1, "threshold"),
        ("frost-ed25519", "k3", 4, "threshold"),
    ] {
        let e = rt
            .block_on(cluster.generate(suite, id, keys_mpc::testing::WALLET, t))
            .unwrap_err();
        assert!(
            matches!(&e, ClusterError::Refused { reason, .. } if reason.contains(why)),
            "{suite} {id} {t}: {e}"
        );
    }
    rt.block_on(cluster.generate("frost-ed25519", "once", keys_mpc::testing::WALLET, 2))
        .unwrap();
    let e = rt
        .block_on(cluster.generate("frost-ed25519", "once", keys_mpc::testing::WALLET, 2))
        .unwrap_err();
    assert!(matches!(&e, ClusterError::Refused { reason, .. } if reason.contains("exists")));
    // A key signs only in its own suite; an unknown key is refused.
    let ed = GroupPublic::<Ed25519>::from_bytes(
        &rt.block_on(cluster.generate("frost-ed25519", "ed2", keys_mpc::testing::WALLET, 2))
            .unwrap()
            .public,
    )
    .unwrap();
    let raw = Subject::Raw {
        message: hex::encode(b"m"),
    };
    assert!(rt.block_on(cluster.sign("nokey", &ed, b"m", &raw)).is_err());
    assert!(signers.audit_log(1).contains("mpc.request.refused"));

    // A wrong passphrase does not open a node.
    let bad = signers.dir.path().join("bad-pass");
    std::fs::write(&bad, "not the passphrase at all\n").unwrap();
    let out = Command::new(BIN)
        .args(["signer", "run", "--config"])
        .arg(signers.config(1))
        .arg("--passphrase-file")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("passphrase"));
}

/// Three signer nodes and a 2-of-3 Taproot key they made.
fn taproot_key(
    key_id: &str,
) -> (
    Signers,
    tokio::runtime::Runtime,
    keys_mpc::cluster::NewKey,
    GroupPublic<Taproot>,
) {
    let signers = Signers::start(3);
    let rt = rt();
    let key = rt
        .block_on(signers.server_cluster().generate(
            "frost-secp256k1-tr",
            key_id,
            keys_mpc::testing::WALLET,
            2,
        ))
        .unwrap();
    let group = GroupPublic::<Taproot>::from_bytes(&key.public).unwrap();
    (signers, rt, key, group)
}

#[test]
fn a_signer_killed_between_rounds_aborts_its_session_and_the_retry_uses_fresh_nonces() {
    let (mut signers, rt, key, group) = taproot_key("hot-tr");
    // Node 1 answers its commitment, then dies with SIGKILL before it is
    // asked for its share.
    signers.restart_with(1, ("STRONGROOM_SIGNER_CRASH_AT", "commit"));
    let cluster = signers.server_cluster();
    let customer = keys_mpc::testing::address(5);
    let (mut tx, prevout, sighash, subject) = taproot_spend(
        &key.group_key,
        &[(&customer, 20_000)],
        vec![keys_mpc::testing::payment(&customer, 20_000, &[1, 2])],
    );
    let sig = rt
        .block_on(cluster.sign("hot-tr", &group, &sighash, &subject))
        .unwrap();
    tx.input[0].witness.push(sig);
    chain_btc::verify_with_core(&tx, std::slice::from_ref(&prevout)).unwrap();
    let dead = signers.children[0].as_mut().unwrap().try_wait().unwrap();
    assert!(dead.is_some(), "node 1 should have killed itself");
    // Node 2 gave a share in the aborted session and another, with a
    // fresh nonce, in the session that made the signature.
    let log = signers.audit_log(2);
    let sessions: Vec<String> = log
        .lines()
        .filter(|l| l.contains("mpc.sign.share"))
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            let d: serde_json::Value =
                serde_json::from_str(r["details"].as_str().unwrap()).unwrap();
            d["session"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(sessions.len(), 2, "{log}");
    assert_ne!(sessions[0], sessions[1]);
    // Node 1 never signed: its share of the session died with it.
    assert!(!signers.audit_log(1).contains("mpc.sign.share"));
}

#[test]
fn a_party_that_keeps_sending_bad_shares_is_named_and_then_freezes_the_key() {
    use keys_mpc::cluster::BlameLedger;
    let (mut signers, rt, key, group) = taproot_key("warm-tr");
    // Node 3 turns bad; node 1 is down, so node 3 is needed.
    signers.restart_with(3, ("STRONGROOM_SIGNER_FAULT", "bad_share"));
    signers.kill(1);
    let path = signers.dir.path().join("blame.ledger");
    let cluster = || {
        signers
            .server_cluster()
            .with_blame_ledger(BlameLedger::open(&path, 2).unwrap())
    };
    let customer = keys_mpc::testing::address(5);
    let attempt = |c: &Cluster| {
        let (_, _, sighash, subject) = taproot_spend(
            &key.group_key,
            &[(&customer, 20_000)],
            vec![keys_mpc::testing::payment(&customer, 20_000, &[1, 2])],
        );
        rt.block_on(c.sign("warm-tr", &group, &sighash, &subject))
    };
    let c = cluster();
    // The first bad share is named; without node 3 too few remain.
    let e = attempt(&c).unwrap_err();
    assert!(matches!(e, ClusterError::TooFew { .. }), "{e}");
    // The second freezes the key, with an alert.
    let e = attempt(&c).unwrap_err();
    assert!(
        matches!(
            e,
            ClusterError::KeyFrozen {
                party: 3,
                count: 2,
                ..
            }
        ),
        "{e}"
    );
    // Frozen: refused at once, here and after a restart of the server.
    assert!(matches!(
        attempt(&c).unwrap_err(),
        ClusterError::KeyFrozen { .. }
    ));
    drop(c);
    assert!(matches!(
        attempt(&cluster()).unwrap_err(),
        ClusterError::KeyFrozen { .. }
    ));
    let ledger = std::fs::read_to_string(&path).unwrap();
    assert_eq!(ledger.lines().count(), 2, "{ledger}");
    assert!(ledger.contains("signature shares that do not verify"));
    // An operator unfreezes it; other keys were never frozen.
    BlameLedger::open(&path, 2)
        .unwrap()
        .unfreeze("warm-tr", "node 3 replaced")
        .unwrap();
    assert!(
        BlameLedger::open(&path, 2)
            .unwrap()
            .frozen("warm-tr")
            .is_none()
    );
}

//! A signer node's own rules, without sockets: a ceremony's session id is
//! used once ever, refusals land in its audit log, a torn audit line from
//! a crash is cut off, and a wrong passphrase opens nothing.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use keys_mpc::SessionId;
use keys_mpc::net::TlsIdentity;
use keys_mpc::node::{Node, NodeConfig, NodeError, init};
use keys_mpc::wire::{Request, Response};

const PASS: &str = "a passphrase of some length";

fn node(dir: &std::path::Path) -> (NodeConfig, keys_mpc::net::Fingerprint) {
    let publics: Vec<_> = (1..=3u16)
        .map(|i| init(&dir.join(format!("n{i}")), i, PASS).unwrap())
        .collect();
    let server = TlsIdentity::generate().unwrap().fingerprint();
    let cfg = NodeConfig {
        index: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("n1"),
        servers: vec![server.to_string()],
        peers: publics[1..].to_vec(),
        policy: keys_mpc::testing::policy(false),
        ecdsa: true,
    };
    (cfg, server)
}

fn start(session: SessionId, key_id: &str) -> Request {
    Request::DkgStart {
        suite: "frost-ed25519".into(),
        key_id: key_id.into(),
        wallet: keys_mpc::testing::WALLET.into(),
        session,
        threshold: 2,
    }
}

/// A server of another signer protocol is refused at its hello, and says
/// which; this build's is answered with the node's own.
#[test]
fn a_hello_in_another_protocol_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, server) = node(dir.path());
    let n = Node::open(&cfg, PASS).unwrap();
    let Response::Refused { reason, .. } = n.handle(server, Request::Hello { protocol: 999 })
    else {
        panic!("another protocol's hello was taken");
    };
    assert!(
        reason.contains("speaks signer protocol 1, the server 999"),
        "{reason}"
    );
    assert!(matches!(
        n.handle(
            server,
            Request::Hello {
                protocol: keys_mpc::wire::PROTOCOL
            }
        ),
        Response::Hello { protocol: 1 }
    ));
}

/// A node of FROST keys only (`ecdsa = false`) refuses every threshold
/// ECDSA ceremony, and says why.
#[test]
fn a_frost_only_node_refuses_ecdsa() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cfg, server) = node(dir.path());
    cfg.ecdsa = false;
    let n = Node::open(&cfg, PASS).unwrap();
    let session = SessionId::random(&mut keys_mpc::os_rng());
    for req in [
        Request::EcdsaAux { session },
        Request::EcdsaPresign {
            key_id: "k1".into(),
            session,
            parties: vec![1, 2],
        },
    ] {
        let Response::Refused { reason, .. } = n.handle(server, req) else {
            panic!("an ECDSA ceremony on a FROST-only node");
        };
        assert!(reason.contains("threshold ECDSA is off"), "{reason}");
    }
    // FROST ceremonies go on.
    assert!(matches!(
        n.handle(
            server,
            start(SessionId::random(&mut keys_mpc::os_rng()), "k1")
        ),
        Response::Messages { .. }
    ));
}

#[test]
fn a_ceremony_session_is_used_once_and_refusals_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, server) = node(dir.path());
    let n = Node::open(&cfg, PASS).unwrap();
    let s = SessionId::random(&mut keys_mpc::os_rng());
    assert!(matches!(
        n.handle(server, start(s, "k1")),
        Response::Messages { .. }
    ));
    // The same session again, for the same key or another: refused.
    for key in ["k1", "k2"] {
        let Response::Refused { reason, culprits } = n.handle(server, start(s, key)) else {
            panic!("a reused session id was accepted");
        };
        assert!(
            reason.contains("used before") || reason.contains("being made"),
            "{reason}"
        );
        assert!(culprits.is_empty());
    }
    // Another session for a key still being made: refused.
    let t = SessionId::random(&mut keys_mpc::os_rng());
    assert!(matches!(
        n.handle(server, start(t, "k1")),
        Response::Refused { .. }
    ));
    // A wallet that is not a wallet id.
    let Response::Refused { reason, .. } = n.handle(
        server,
        Request::DkgStart {
            suite: "frost-ed25519".into(),
            key_id: "k9".into(),
            wallet: "treasury".into(),
            session: SessionId::random(&mut keys_mpc::os_rng()),
            threshold: 2,
        },
    ) else {
        panic!("a bad wallet id was accepted");
    };
    assert!(reason.contains("wallet"), "{reason}");
    // A round for a ceremony that does not exist.
    assert!(matches!(
        n.handle(
            server,
            Request::DkgRound1 {
                session: SessionId::random(&mut keys_mpc::os_rng()),
                messages: vec![]
            }
        ),
        Response::Refused { .. }
    ));
    drop(n);
    // After a restart the session id is still spent.
    let n = Node::open(&cfg, PASS).unwrap();
    assert!(matches!(
        n.handle(server, start(s, "k3")),
        Response::Refused { .. }
    ));
    drop(n);

    let log = std::fs::read_to_string(cfg.data_dir.join("audit.log")).unwrap();
    assert!(log.contains("mpc.dkg.started") && log.contains("mpc.request.refused"));

    // A crash mid-append leaves a torn last line: cut off, the chain goes on.
    let mut bytes = log.into_bytes();
    bytes.extend_from_slice(b"{\"seq\":99,\"vers");
    std::fs::write(cfg.data_dir.join("audit.log"), &bytes).unwrap();
    let n = Node::open(&cfg, PASS).unwrap();
    assert!(matches!(
        n.handle(server, Request::Info),
        Response::Info { .. }
    ));
    let u = SessionId::random(&mut keys_mpc::os_rng());
    assert!(matches!(
        n.handle(server, start(u, "k4")),
        Response::Messages { .. }
    ));
    drop(n);
    Node::open(&cfg, PASS).unwrap();
    // A record altered in the middle is not a torn tail: refused.
    let log = std::fs::read_to_string(cfg.data_dir.join("audit.log")).unwrap();
    std::fs::write(
        cfg.data_dir.join("audit.log"),
        log.replacen("mpc.dkg.started", "mpc.dkg.stopped", 1),
    )
    .unwrap();
    assert!(matches!(Node::open(&cfg, PASS), Err(NodeError::Audit(_))));
}

#[test]
fn a_wrong_passphrase_opens_nothing_and_a_node_is_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = node(dir.path());
    assert!(matches!(
        Node::open(&cfg, "not the passphrase"),
        Err(NodeError::WrongPassphrase)
    ));
    assert!(init(&cfg.data_dir, 1, PASS).is_err());
    let mut bad = cfg.clone();
    bad.peers[0].index = 1;
    assert!(matches!(Node::open(&bad, PASS), Err(NodeError::Config(_))));
    let mut bad = cfg.clone();
    bad.servers.clear();
    assert!(matches!(Node::open(&bad, PASS), Err(NodeError::Config(_))));
    let mut bad = cfg.clone();
    bad.policy.min_approvals = 9;
    assert!(matches!(Node::open(&bad, PASS), Err(NodeError::Config(_))));
}

#[test]
fn the_blame_ledger_counts_per_key_and_party_survives_crashes_and_unfreezes() {
    use keys_mpc::cluster::BlameLedger;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blame");
    let l = BlameLedger::open(&path, 2).unwrap();
    assert_eq!(l.record("k", 3, "bad share").unwrap(), 1);
    assert_eq!(l.record("other", 3, "bad share").unwrap(), 1);
    assert!(l.frozen("k").is_none());
    drop(l);
    // A line torn by a crash was never counted: cut off, not applied.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"key_id\":\"k\",\"party\":3,\"why\":\"x\"}");
    std::fs::write(&path, &bytes).unwrap();
    let l = BlameLedger::open(&path, 2).unwrap();
    assert!(l.frozen("k").is_none());
    assert_eq!(l.record("k", 3, "bad share").unwrap(), 2);
    assert_eq!(l.frozen("k"), Some((3, 2)));
    assert!(l.frozen("other").is_none());
    drop(l);
    let l = BlameLedger::open(&path, 2).unwrap();
    assert_eq!(l.frozen("k"), Some((3, 2)));
    l.unfreeze("k", "party 3 replaced").unwrap();
    assert!(l.frozen("k").is_none());
    drop(l);
    assert!(BlameLedger::open(&path, 2).unwrap().frozen("k").is_none());
    // A corrupt complete line is an error, not a silent reset.
    std::fs::write(&path, b"not json\n").unwrap();
    assert!(BlameLedger::open(&path, 2).is_err());
}

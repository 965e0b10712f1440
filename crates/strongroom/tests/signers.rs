//! Threshold signing across three real `strongroom signer` processes on
//! loopback: enrolment, key generation without a dealer, signing with one
//! signer down, mutual TLS with pinned identities, each node's own audit
//! log — the signatures checked by Bitcoin Core's interpreter, libsecp256k1
//! and ed25519-dalek.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keys_mpc::cluster::{Cluster, ClusterError, SignerEndpoint};
use keys_mpc::dkg::GroupPublic;
use keys_mpc::net::TlsIdentity;
use keys_mpc::wire::NodePublic;
use keys_mpc::{Ed25519, Taproot};

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");
const PASSPHRASE: &str = "correct horse battery staple\n";

/// Signer processes, killed when dropped.
struct Signers {
    dir: tempfile::TempDir,
    publics: Vec<NodePublic>,
    children: Vec<Option<Child>>,
    addrs: Vec<String>,
    server: TlsIdentity,
}

impl Drop for Signers {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn passphrase_file(dir: &Path) -> PathBuf {
    let p = dir.join("passphrase");
    if !p.exists() {
        std::fs::write(&p, PASSPHRASE).unwrap();
    }
    p
}

impl Signers {
    /// Enrols `n` nodes (each prints its identity; the others and the
    /// server pin it) and starts them.
    fn start(n: u16) -> Signers {
        let dir = tempfile::tempdir().unwrap();
        let pass = passphrase_file(dir.path());
        let server = TlsIdentity::generate().unwrap();
        let publics: Vec<NodePublic> = (1..=n)
            .map(|i| {
                let out = Command::new(BIN)
                    .args(["signer", "init", "--index", &i.to_string(), "--dir"])
                    .arg(dir.path().join(format!("node{i}")))
                    .arg("--passphrase-file")
                    .arg(&pass)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                serde_json::from_slice(&out.stdout).unwrap()
            })
            .collect();
        let mut s = Signers {
            dir,
            publics,
            children: Vec::new(),
            addrs: Vec::new(),
            server,
        };
        for i in 1..=n {
            let (child, addr) = s.spawn(i);
            s.children.push(Some(child));
            s.addrs.push(addr);
        }
        s
    }

    fn config(&self, i: u16) -> PathBuf {
        let peers: Vec<&NodePublic> = self.publics.iter().filter(|p| p.index != i).collect();
        let mut text = format!(
            "index = {i}\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\nservers = [\"{}\"]\n",
            self.dir.path().join(format!("node{i}")),
            self.server.fingerprint()
        );
        for p in peers {
            text.push_str(&format!(
                "\n[[peers]]\nindex = {}\nfingerprint = \"{}\"\ned25519 = \"{}\"\nage = \"{}\"\n",
                p.index, p.fingerprint, p.ed25519, p.age
            ));
        }
        let path = self.dir.path().join(format!("signer{i}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts node `i`; returns it and the address it printed.
    fn spawn(&self, i: u16) -> (Child, String) {
        let mut child = Command::new(BIN)
            .args(["signer", "run", "--config"])
            .arg(self.config(i))
            .arg("--passphrase-file")
            .arg(passphrase_file(self.dir.path()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        assert!(
            line.starts_with(&format!("signer {i} listening on")),
            "{line}"
        );
        (child, addr)
    }

    fn kill(&mut self, i: u16) {
        let mut c = self.children[usize::from(i) - 1].take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    fn cluster(&self, identity: TlsIdentity) -> Cluster {
        let endpoints = self
            .publics
            .iter()
            .zip(&self.addrs)
            .map(|(p, a)| SignerEndpoint {
                index: p.index,
                addr: a.clone(),
                fingerprint: p.fingerprint.parse().unwrap(),
            })
            .collect();
        Cluster::new(identity, endpoints, Duration::from_secs(30))
    }

    fn server_cluster(&self) -> Cluster {
        let dir = self.dir.path().join("server-identity");
        if !dir.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            self.server.save(&dir).unwrap();
        }
        self.cluster(TlsIdentity::load(&dir).unwrap())
    }

    fn audit_log(&self, i: u16) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{i}/audit.log"))).unwrap()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A key-path spend of a P2TR output paying `key`: the transaction and
/// its sighash.
fn taproot_spend(key: &[u8; 32]) -> (bitcoin::Transaction, bitcoin::TxOut, [u8; 32]) {
    use bitcoin::hashes::Hash as _;
    use bitcoin::key::{TweakedPublicKey, XOnlyPublicKey};
    use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
    let q = XOnlyPublicKey::from_slice(key).unwrap();
    let spk = bitcoin::ScriptBuf::new_p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(q));
    let prevout = bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(50_000),
        script_pubkey: spk.clone(),
    };
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
        output: vec![bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(49_000),
            script_pubkey: spk,
        }],
    };
    let sighash = SighashCache::new(&tx)
        .taproot_key_spend_signature_hash(
            0,
            &Prevouts::All(std::slice::from_ref(&prevout)),
            TapSighashType::Default,
        )
        .unwrap()
        .to_byte_array();
    (tx, prevout, sighash)
}

#[test]
fn three_signer_processes_make_and_use_taproot_and_ed25519_keys_one_down() {
    let mut signers = Signers::start(3);
    let cluster = signers.server_cluster();
    let rt = rt();

    // Taproot: a 2-of-3 key made by the three, a spend signed by all
    // that answer, verified by Bitcoin Core's interpreter.
    let key = rt
        .block_on(cluster.generate("frost-secp256k1-tr", "treasury-tr", 2))
        .unwrap();
    let group = GroupPublic::<Taproot>::from_bytes(&key.public).unwrap();
    assert_eq!(group.group_key().unwrap(), key.group_key);
    let (mut tx, prevout, sighash) = taproot_spend(&key.group_key);
    let sig = rt
        .block_on(cluster.sign("treasury-tr", &group, &sighash))
        .unwrap();
    tx.input[0].witness.push(sig);
    chain_btc::verify_with_core(&tx, std::slice::from_ref(&prevout)).unwrap();

    // Ed25519, verified by ed25519-dalek.
    let ed = rt
        .block_on(cluster.generate("frost-ed25519", "payments-ed", 2))
        .unwrap();
    let ed_group = GroupPublic::<Ed25519>::from_bytes(&ed.public).unwrap();
    let sig = rt
        .block_on(cluster.sign("payments-ed", &ed_group, b"pay 5 to X"))
        .unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&ed.group_key)
        .unwrap()
        .verify_strict(b"pay 5 to X", &ed25519_dalek::Signature::from_bytes(&sig))
        .unwrap();

    // One of three down: 2-of-3 still signs, with fresh nonces.
    signers.kill(2);
    let (mut tx2, prevout2, sighash2) = taproot_spend(&key.group_key);
    let sig = rt
        .block_on(cluster.sign("treasury-tr", &group, &sighash2))
        .unwrap();
    tx2.input[0].witness.push(sig);
    chain_btc::verify_with_core(&tx2, std::slice::from_ref(&prevout2)).unwrap();
    rt.block_on(cluster.sign("payments-ed", &ed_group, b"again"))
        .unwrap();

    // A ceremony needs every signer.
    let e = rt
        .block_on(cluster.generate("frost-ed25519", "needs-all", 2))
        .unwrap_err();
    assert!(
        matches!(e, ClusterError::Unreachable { index: 2, .. }),
        "{e}"
    );

    // Two of three down: no signature.
    signers.kill(3);
    let e = rt
        .block_on(cluster.sign("treasury-tr", &group, &sighash2))
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
        .block_on(stranger.generate("frost-ed25519", "k", 2))
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
        .block_on(wrong.generate("frost-ed25519", "k", 2))
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
        let e = rt.block_on(cluster.generate(suite, id, t)).unwrap_err();
        assert!(
            matches!(&e, ClusterError::Refused { reason, .. } if reason.contains(why)),
            "{suite} {id} {t}: {e}"
        );
    }
    rt.block_on(cluster.generate("frost-ed25519", "once", 2))
        .unwrap();
    let e = rt
        .block_on(cluster.generate("frost-ed25519", "once", 2))
        .unwrap_err();
    assert!(matches!(&e, ClusterError::Refused { reason, .. } if reason.contains("exists")));
    // A key signs only in its own suite; an unknown key is refused.
    let ed = GroupPublic::<Ed25519>::from_bytes(
        &rt.block_on(cluster.generate("frost-ed25519", "ed2", 2))
            .unwrap()
            .public,
    )
    .unwrap();
    assert!(rt.block_on(cluster.sign("nokey", &ed, b"m")).is_err());
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

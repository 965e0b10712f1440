//! Signer nodes as real `strongroom signer` processes on loopback, for
//! the tests that need them (threshold signing, threshold wallets).

#![allow(dead_code)] // Each test file uses a part.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keys_mpc::cluster::{Cluster, SignerEndpoint};
use keys_mpc::cosign::CosignPolicy;
use keys_mpc::net::TlsIdentity;
use keys_mpc::wire::NodePublic;

pub const BIN: &str = env!("CARGO_BIN_EXE_strongroom");
pub const PASSPHRASE: &str = "correct horse battery staple\n";

/// Signer processes, killed when dropped.
pub struct Signers {
    pub dir: tempfile::TempDir,
    pub publics: Vec<NodePublic>,
    pub children: Vec<Option<Child>>,
    pub addrs: Vec<String>,
    pub server: TlsIdentity,
    policy: CosignPolicy,
}

impl Drop for Signers {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the binary and returns its standard output; it must succeed.
pub fn strongroom(args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn passphrase_file(dir: &Path) -> PathBuf {
    let p = dir.join("passphrase");
    if !p.exists() {
        std::fs::write(&p, PASSPHRASE).unwrap();
    }
    p
}

impl Signers {
    /// Enrols `n` nodes (each prints its identity; the others and the
    /// server pin it) and starts them.
    pub fn start(n: u16) -> Signers {
        Signers::start_with(n, keys_mpc::testing::policy(true))
    }

    /// [`Signers::start`] with each node's `[policy]`; the nodes take the
    /// published test primes for threshold ECDSA.
    pub fn start_with(n: u16, policy: CosignPolicy) -> Signers {
        let dir = tempfile::tempdir().unwrap();
        let pass = passphrase_file(dir.path());
        let server = TlsIdentity::generate().unwrap();
        let publics: Vec<NodePublic> = (1..=n)
            .map(|i| {
                let node = dir.path().join(format!("node{i}"));
                let index = i.to_string();
                let out = strongroom(&[
                    "signer".as_ref(),
                    "init".as_ref(),
                    "--index".as_ref(),
                    index.as_ref(),
                    "--dir".as_ref(),
                    node.as_os_str(),
                    "--passphrase-file".as_ref(),
                    pass.as_os_str(),
                ]);
                serde_json::from_slice(&out).unwrap()
            })
            .collect();
        let mut s = Signers {
            dir,
            publics,
            children: Vec::new(),
            addrs: Vec::new(),
            server,
            policy,
        };
        for i in 1..=n {
            let (child, addr) = s.spawn(i);
            s.children.push(Some(child));
            s.addrs.push(addr);
        }
        s
    }

    pub fn config(&self, i: u16) -> PathBuf {
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
        // Each node's own policy (by default: approvers 1 to 3 enrolled,
        // two needed above 10 000 sat, fees up to 5 000 sat; raw messages
        // allowed, for the Ed25519 keys here have no chain to check against).
        let p = &self.policy;
        text.push_str(&format!(
            "\n[policy]\nbitcoin_network = {:?}\napprovers = {:?}\nmin_approvals = {}\nunapproved_limit = {}\n\
             max_fee = {}\nsignatures_per_hour = {}\nallow_raw = {}\n",
            p.bitcoin_network,
            p.approvers,
            p.min_approvals,
            p.unapproved_limit,
            p.max_fee,
            p.signatures_per_hour,
            p.allow_raw,
        ));
        for a in &p.passkey_approvers {
            text.push_str(&format!(
                "\n[[policy.passkey_approvers]]\npublic_key = {:?}\ncredential_id = {:?}\n\
                 rp_id = {:?}\norigins = {:?}\n",
                a.public_key, a.credential_id, a.rp_id, a.origins
            ));
        }
        if let Some(e) = &p.ethereum {
            text.push_str(&format!(
                "\n[policy.ethereum]\nnetwork = {:?}\nmax_fee = {}\nunapproved_limit = {}\n",
                e.network, e.max_fee, e.unapproved_limit
            ));
            for t in &e.tokens {
                text.push_str(&format!(
                    "\n[[policy.ethereum.tokens]]\nsymbol = {:?}\ncontract = {:?}\n\
                     decimals = {}\nunapproved_limit = {}\n",
                    t.symbol, t.contract, t.decimals, t.unapproved_limit
                ));
            }
        }
        let path = self.dir.path().join(format!("signer{i}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts node `i`; returns it and the address it printed.
    pub fn spawn(&self, i: u16) -> (Child, String) {
        self.spawn_with(i, None)
    }

    /// Starts node `i` with one more environment variable (a crash point
    /// or a fault).
    pub fn spawn_with(&self, i: u16, env: Option<(&str, &str)>) -> (Child, String) {
        let mut cmd = Command::new(BIN);
        cmd.env(
            "STRONGROOM_SIGNER_TEST_PRIMES",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../keys-mpc/tests/data/cggmp-primes.json"
            ),
        );
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let mut child = cmd
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

    pub fn kill(&mut self, i: u16) {
        let mut c = self.children[usize::from(i) - 1].take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Restarts node `i` with one more environment variable.
    pub fn restart_with(&mut self, i: u16, env: (&str, &str)) {
        self.kill(i);
        let (child, addr) = self.spawn_with(i, Some(env));
        self.children[usize::from(i) - 1] = Some(child);
        self.addrs[usize::from(i) - 1] = addr;
    }

    pub fn cluster(&self, identity: TlsIdentity) -> Cluster {
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

    pub fn server_cluster(&self) -> Cluster {
        let dir = self.dir.path().join("server-identity");
        if !dir.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            self.server.save(&dir).unwrap();
        }
        self.cluster(TlsIdentity::load(&dir).unwrap())
    }

    pub fn audit_log(&self, i: u16) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{i}/audit.log"))).unwrap()
    }
}

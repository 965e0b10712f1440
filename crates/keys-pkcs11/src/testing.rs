//! A SoftHSM2 token in a temp dir, for tests and benchmarks.
//!
//! Writes a private `SOFTHSM2_CONF`, initialises a token with
//! `softhsm2-util`, and removes everything when dropped. Fails, never
//! skips, when SoftHSM2 is not installed: `scripts/test` installs it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The module Debian's `softhsm2` package installs.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const USER_PIN: &str = "123456";
const SO_PIN: &str = "12345678";

#[derive(Debug)]
pub struct SoftHsm {
    pub label: String,
    _dir: tempfile::TempDir,
}

impl SoftHsm {
    /// A fresh token. Sets `SOFTHSM2_CONF` for this process: one token per
    /// test process (nextest runs each test in its own).
    pub fn new(label: &str) -> SoftHsm {
        assert!(
            Path::new(SOFTHSM_MODULE).exists(),
            "{SOFTHSM_MODULE} is missing: install the softhsm2 package (scripts/test does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("token dir");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .expect("write softhsm2.conf");
        set_conf(&conf);
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                USER_PIN,
                "--so-pin",
                SO_PIN,
            ])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util runs (install softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SoftHsm {
            label: label.to_owned(),
            _dir: dir,
        }
    }

    pub fn module() -> PathBuf {
        PathBuf::from(SOFTHSM_MODULE)
    }
}

/// SoftHSM reads its configuration path from the environment only.
#[allow(unsafe_code)]
fn set_conf(conf: &Path) {
    // SAFETY: tests run one per process (cargo nextest) and call this before
    // the PKCS#11 module is loaded, while no other thread reads the environment.
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", conf);
    }
}

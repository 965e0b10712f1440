//! Setting up: checking a configuration, making the audit key, and a
//! development directory.

use std::net::SocketAddr;
use std::path::Path;

use crate::Failure;
use crate::config::{self, Config, ConfigError};

pub(crate) fn config_check(path: &Path) -> Result<(), Failure> {
    let c = Config::load(path)?;
    c.database.resolve()?;
    if let Some(h) = &c.hsm {
        h.pin()?;
    }
    if let config::AuditKey::File(path) = &c.audit_key {
        service::load_audit_key(path).map_err(|e| ConfigError {
            key: "audit.signing_key_file".into(),
            message: e.to_string(),
        })?;
    }
    println!("ok: {}", path.display());
    Ok(())
}

pub(crate) fn init_key(out: &Path) -> Result<(), Failure> {
    let public = service::generate_audit_key(out).map_err(anyhow::Error::from)?;
    println!("audit key written to {}", out.display());
    println!("public key: {public}");
    Ok(())
}

pub(crate) fn dev_init(dir: &Path, listen: SocketAddr, eth: Option<&str>) -> Result<(), Failure> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("strongroom.toml");
    if !config.exists() {
        std::fs::write(&config, config::dev_config(listen, eth))
            .with_context(|| format!("writing {}", config.display()))?;
    }
    let key = dir.join("audit.key");
    if !key.exists() {
        service::generate_audit_key(&key).map_err(anyhow::Error::from)?;
    }
    println!("{}", config.display());
    Ok(())
}

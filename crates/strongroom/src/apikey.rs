//! API keys from the command line: made here (the private half never leaves
//! this machine), registered from the console, and used to sign requests
//! (`operator seal`, `api`).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use domain::{Grant, Role, Scope};
use ed25519_dalek::{Signer, SigningKey};
use zeroize::Zeroizing;

use crate::Failure;
use crate::config::{Config, ConfigError};
use crate::keyctl::console_actor;
use crate::serve::{build_service, runtime};

fn usage(key: &str, message: impl Into<String>) -> Failure {
    Failure::Config(ConfigError {
        key: key.into(),
        message: message.into(),
    })
}

/// A key file: `strongroom-api-key-v1`, the key id, the 32-byte seed in hex.
pub(crate) struct KeyFile {
    pub id: String,
    key: SigningKey,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyFile({}, <redacted>)", self.id)
    }
}

impl KeyFile {
    pub(crate) fn load(path: &Path) -> Result<KeyFile, Failure> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
        let bad = || usage("--key-file", "not a strongroom API key file");
        let mut lines = text.lines();
        if lines.next() != Some("strongroom-api-key-v1") {
            return Err(bad());
        }
        let id = lines
            .next()
            .and_then(|l| l.strip_prefix("id "))
            .ok_or_else(bad)?;
        let seed = lines
            .next()
            .and_then(|l| l.strip_prefix("secret "))
            .ok_or_else(bad)?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(seed, &mut bytes[..]).map_err(|_| bad())?;
        Ok(KeyFile {
            id: id.to_owned(),
            key: SigningKey::from_bytes(&bytes),
        })
    }

    /// The four headers of a signed request (`strongroom-request-v2`,
    /// covering the `Idempotency-Key` the request carries, if any).
    /// Signs `message` with the key (an admin's governance vote: an admin
    /// key made at bootstrap is that admin's signing key).
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.key.sign(message).to_bytes()
    }

    pub(crate) fn headers(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        idempotency_key: Option<&str>,
    ) -> Result<Vec<(&'static str, String)>, Failure> {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_millis()
            .to_string();
        let mut n = [0u8; 18];
        getrandom::fill(&mut n).map_err(|e| anyhow::anyhow!("random: {e}"))?;
        let nonce = data_encoding::BASE64URL_NOPAD.encode(&n);
        let msg = service::identity::request_message(
            method,
            path,
            query,
            body,
            &ts,
            &nonce,
            idempotency_key.unwrap_or(""),
        );
        let sig = data_encoding::BASE64.encode(&self.key.sign(&msg).to_bytes());
        Ok(vec![
            (api_http::KEY_HEADER, self.id.clone()),
            (api_http::TIMESTAMP_HEADER, ts),
            (api_http::NONCE_HEADER, nonce),
            (api_http::SIGNATURE_HEADER, sig),
        ])
    }
}

/// A role at a scope, from the command line.
pub(crate) fn grant_of(role: &str, scope: &str) -> Result<Grant, Failure> {
    let role: Role = role
        .parse()
        .map_err(|e: domain::AccessError| usage("--role", e.to_string()))?;
    let scope: Scope = scope
        .parse()
        .map_err(|e: domain::AccessError| usage("--scope", e.to_string()))?;
    Grant::new(role, scope).map_err(|e| usage("--scope", e.to_string()))
}

/// A fresh key pair: the seed (the private half) and the public key.
pub(crate) fn new_key() -> Result<(Zeroizing<[u8; 32]>, [u8; 32]), Failure> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut seed[..]).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    Ok((seed, public))
}

/// Writes the key file (to `out`, 0600, if given) and prints it once.
pub(crate) fn hand_out(id: &str, seed: &[u8; 32], out: Option<&Path>) -> Result<(), Failure> {
    let file = Zeroizing::new(format!(
        "strongroom-api-key-v1\nid {id}\nsecret {}\n",
        hex::encode(&seed[..])
    ));
    if let Some(path) = out {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(file.as_bytes())
            .context("writing the key file")?;
        f.sync_all().context("writing the key file")?;
    }
    println!("private key (shown once; keep it as a key file):");
    print!("{}", file.as_str());
    Ok(())
}

/// What `apikey create` and `apikey propose` register: a name, one role
/// in a scope, a lifetime, and the user who will hold the key.
pub(crate) struct KeySpec<'a> {
    pub(crate) name: &'a str,
    pub(crate) role: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) valid_days: u32,
    /// A user's name or `user:<uuid>`.
    pub(crate) owner: Option<&'a str>,
}

/// `strongroom apikey create`: a new key pair, its public half registered
/// with the given role from the console — any role during the bootstrap
/// ceremony, read-only roles (viewer, auditor) after it; the private half
/// printed once (and written to `--out`, 0600, if given).
pub(crate) fn create(c: Config, spec: &KeySpec<'_>, out: Option<&Path>) -> Result<(), Failure> {
    let grant = grant_of(spec.role, spec.scope)?;
    if out.is_some_and(Path::exists) {
        return Err(usage("--out", "the file exists"));
    }
    let (seed, public) = new_key()?;
    let row = runtime()?.block_on(async {
        let (svc, store) = build_service(&c).await?;
        let r = match spec.owner {
            None => Ok(None),
            Some(o) => owner_id(&store, o).await.map(Some),
        };
        let r = match r {
            Ok(owner) => svc
                .console_register_api_key(
                    &console_actor(),
                    spec.name,
                    &public,
                    &[grant],
                    spec.valid_days,
                    owner,
                )
                .await
                .map_err(|e| match e {
                    service::ServiceError::Invalid(m) => usage("arguments", m),
                    service::ServiceError::GovernanceInForce(m) => usage("--role", m),
                    other => Failure::Runtime(other.into()),
                }),
            Err(e) => Err(e),
        };
        store.close().await;
        r
    })?;
    println!("key {}", row.id);
    println!("public key {}", row.public_key);
    if let Some(o) = &row.owner {
        println!("owner {o}");
    }
    println!(
        "role {grant_role} scope {scope} expires {}",
        row.expires_at,
        grant_role = grant.role(),
        scope = grant.scope()
    );
    hand_out(&row.id.to_string(), &seed, out)
}

/// A user named by `user:<uuid>` or by their name.
async fn owner_id(store: &storage::Store, owner: &str) -> Result<domain::UserId, Failure> {
    if let Ok(domain::Actor::User(u)) = owner.parse::<domain::Actor>() {
        return Ok(u);
    }
    match store.user_by_name(owner).await {
        Ok(u) => Ok(u.id),
        Err(storage::StorageError::NotFound { .. }) => {
            Err(usage("--owner", format!("no user named {owner:?}")))
        }
        Err(e) => Err(Failure::Runtime(e.into())),
    }
}

//! Key ceremonies from the command line: `init`, and the `key` commands that
//! need the keystore open. These run in the CLI's own process against the
//! database: the quorum types its shares on standard input, the keystore is
//! unsealed for the one operation, and sealed (wiped) when the command ends.

use std::io::BufRead;
use std::path::Path;

use zeroize::Zeroizing;

use anyhow::Context;
use domain::{Actor, KeyAlgorithm, KeyBackend, KeyId, KeyPurpose, KeyState, OperatorName};
use service::keys::shamir::UnsealShare;
use service::{NewKey, SealStatus, Service, ServiceError};

use crate::Failure;
use crate::config::{Config, ConfigError};
use crate::serve::{build_service, runtime};

/// The person at the console, by operating-system user name.
pub(crate) fn console_actor() -> Actor {
    let name = std::env::var("USER").unwrap_or_else(|_| "root".into());
    OperatorName::new(&name)
        .or_else(|_| OperatorName::new("console"))
        .map(Actor::Operator)
        .unwrap_or(Actor::System)
}

fn usage(key: &str, message: impl Into<String>) -> Failure {
    Failure::Config(ConfigError {
        key: key.into(),
        message: message.into(),
    })
}

/// Parses a command-line argument, naming it in the error.
fn arg<T>(flag: &str, value: &str) -> Result<T, Failure>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e: T::Err| usage(flag, e.to_string()))
}

fn service_failure(e: ServiceError) -> Failure {
    match e {
        ServiceError::Invalid(m) => usage("arguments", m),
        other => Failure::Runtime(anyhow::Error::new(other)),
    }
}

/// `strongroom init`: creates the keystore and writes the shares: printed,
/// one file each, or one file each encrypted to its holder's age key.
pub(crate) fn init(
    c: Config,
    threshold: u8,
    shares: u8,
    share_dir: Option<&Path>,
    recipients: Option<&Path>,
    admin: Option<(&str, Option<&str>)>,
) -> Result<(), Failure> {
    // The first admin's password, from standard input, checked first.
    let admin = match admin {
        None => None,
        Some((name, signing_key)) => {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the admin password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']).to_owned();
            if password.chars().count() < 12 {
                return Err(usage(
                    "--admin",
                    "the admin password (one line on standard input) needs at least 12 characters",
                ));
            }
            Some((name.to_owned(), Zeroizing::new(password), signing_key))
        }
    };
    // Recipients are read and checked before anything is created.
    let recipients = match recipients {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                usage(
                    "--share-recipients",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let list: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            if list.len() != usize::from(shares) {
                return Err(usage(
                    "--share-recipients",
                    format!(
                        "{} recipients for {shares} shares: give one per share",
                        list.len()
                    ),
                ));
            }
            Some(list)
        }
    };
    runtime()?.block_on(async move {
        let (svc, store) = build_service(&c).await?;
        if let Some(list) = &recipients {
            // Refuse a bad recipient before the keystore exists.
            let probe = UnsealShare::from_text("srshare1-probe");
            for r in list {
                probe
                    .encrypt_to(r)
                    .map_err(|e| usage("--share-recipients", e.to_string()))?;
            }
        }
        // Every share file is created before the keystore exists: shares
        // that could not be written would leave a keystore nobody can unseal.
        let files = match share_dir {
            Some(dir) => Some(create_share_files(
                dir,
                if recipients.is_some() { "age" } else { "txt" },
                shares,
            )?),
            None => None,
        };
        let result = svc.init_keystore(&console_actor(), threshold, shares).await;
        let admin_made = match (&result, &admin) {
            (Ok(_), Some((name, password, signing_key))) => Some(
                svc.bootstrap_admin(&console_actor(), name, password.to_string(), *signing_key)
                    .await,
            ),
            _ => None,
        };
        store.close().await;
        let split = result.map_err(|e| match e {
            ServiceError::Share(s) => usage("--threshold", s.to_string()),
            other => service_failure(other),
        })?;
        match admin_made {
            Some(Ok(user)) => eprintln!(
                "first admin {} ({}) created: sign in and enrol TOTP before anything else",
                user.name, user.id
            ),
            Some(Err(e)) => eprintln!("error: the first admin was not created: {e}"),
            None => {}
        }
        match (files, recipients) {
            (Some(files), Some(list)) => {
                let texts = split
                    .iter()
                    .zip(&list)
                    .map(|(s, r)| s.encrypt_to(r).map(Zeroizing::new))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Failure::Runtime(anyhow::Error::new(e)))?;
                write_shares(files, &texts, &split)?
            }
            (Some(files), None) => {
                let texts: Vec<Zeroizing<String>> = split
                    .iter()
                    .map(|s| Zeroizing::new(format!("{}\n", s.as_str())))
                    .collect();
                write_shares(files, &texts, &split)?
            }
            (None, _) => {
                println!(
                    "Unseal shares ({threshold} of {shares} unseal). Give one to each holder; they are not stored:"
                );
                for s in &split {
                    println!("{}", s.as_str());
                }
            }
        }
        Ok(())
    })
}

/// Creates (mode 0600, never overwriting) one file per share.
fn create_share_files(
    dir: &Path,
    ext: &str,
    shares: u8,
) -> Result<Vec<(std::path::PathBuf, std::fs::File)>, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    (1..=shares)
        .map(|i| {
            let path = dir.join(format!("share-{i}.{ext}"));
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| {
                    usage(
                        "--share-dir",
                        format!("cannot create {}: {e}", path.display()),
                    )
                })?;
            Ok((path, f))
        })
        .collect()
}

/// Writes the shares into their files. Should a write fail now, the shares
/// are printed instead of lost: the keystore already exists.
fn write_shares(
    files: Vec<(std::path::PathBuf, std::fs::File)>,
    texts: &[Zeroizing<String>],
    split: &[UnsealShare],
) -> Result<(), Failure> {
    use std::io::Write;
    let mut failed = None;
    for ((path, mut f), text) in files.into_iter().zip(texts) {
        match f.write_all(text.as_bytes()).and_then(|()| f.sync_all()) {
            Ok(()) => println!("{}", path.display()),
            Err(e) => failed = Some(format!("{}: {e}", path.display())),
        }
    }
    if let Some(err) = failed {
        eprintln!("error: writing a share failed ({err}); the shares follow, store them now:");
        for s in split {
            println!("{}", s.as_str());
        }
        return Err(Failure::Runtime(anyhow::anyhow!(
            "share files incomplete: {err}"
        )));
    }
    Ok(())
}

/// Unseals from shares on standard input, one per line, until unsealed.
async fn unseal_from_stdin(svc: &Service) -> Result<(), Failure> {
    let actor = console_actor();
    let mut stdin = std::io::stdin().lock();
    loop {
        let mut line = Zeroizing::new(String::new());
        let n = stdin
            .read_line(&mut line)
            .context("reading shares from standard input")?;
        if n == 0 {
            return Err(usage(
                "share",
                "standard input ended before the keystore was unsealed",
            ));
        }
        if line.trim().is_empty() {
            continue;
        }
        match svc.unseal(&actor, &UnsealShare::from_text(&line)).await {
            Ok(SealStatus::Unsealed) => return Ok(()),
            Ok(SealStatus::Sealed { have, need }) => eprintln!("share accepted ({have}/{need})"),
            Ok(SealStatus::Uninitialized) | Err(ServiceError::NotInitialized) => {
                return Err(usage("keystore", "no keystore: run strongroom init first"));
            }
            Err(e @ (ServiceError::Share(_) | ServiceError::WrongShares)) => {
                return Err(usage("share", e.to_string()));
            }
            Err(e) => return Err(service_failure(e)),
        }
    }
}

/// Runs `op` with the keystore unsealed by shares from standard input, then seals.
fn with_unsealed<T>(
    c: Config,
    op: impl AsyncFnOnce(&Service) -> Result<T, Failure>,
) -> Result<T, Failure> {
    runtime()?.block_on(async move {
        let (svc, store) = build_service(&c).await?;
        let result = async {
            unseal_from_stdin(&svc).await?;
            let out = op(&svc).await;
            // The result (a new key, a mnemonic shown once) is never thrown
            // away because the closing audit failed; the process ends now,
            // and its memory with it.
            if let Err(e) = svc.seal(&console_actor()).await {
                eprintln!("warning: sealing again failed: {e}");
            }
            out
        }
        .await;
        store.close().await;
        result
    })
}

pub(crate) fn create(
    c: Config,
    purpose: &str,
    algorithm: &str,
    backend: &str,
    cryptoperiod_days: u32,
) -> Result<(), Failure> {
    let backend: KeyBackend = arg("--backend", backend)?;
    let purpose: KeyPurpose = arg("--purpose", purpose)?;
    let algorithm: KeyAlgorithm = arg("--algorithm", algorithm)?;
    let key = with_unsealed(c, async |svc| {
        svc.create_key(
            &console_actor(),
            NewKey {
                purpose,
                algorithm,
                backend,
                cryptoperiod_days,
            },
        )
        .await
        .map_err(service_failure)
    })?;
    println!("key {}", key.id);
    println!(
        "purpose {} algorithm {} state {}",
        key.purpose, key.algorithm, key.state
    );
    println!("public key {}", key.public_key);
    println!("expires {}", key.expires_at);
    Ok(())
}

/// What `key create-hd` and `key import-mnemonic` were asked.
pub(crate) struct HdArgs<'a> {
    pub purpose: &'a str,
    pub algorithm: &'a str,
    pub account_path: &'a str,
    pub cryptoperiod_days: u32,
    /// A BIP-39 passphrase follows on standard input.
    pub passphrase: bool,
    pub slip132: bool,
    /// The words come on standard input (after the shares).
    pub import: bool,
}

/// One line of standard input that is a secret (words, a passphrase),
/// without its line ending.
fn secret_line(what: &str) -> Result<Zeroizing<String>, Failure> {
    let mut line = Zeroizing::new(String::new());
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    if n == 0 {
        return Err(usage(
            what,
            format!("standard input ended before the {what}"),
        ));
    }
    let end = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(end);
    Ok(line)
}

pub(crate) fn create_hd(c: Config, a: &HdArgs<'_>) -> Result<(), Failure> {
    let purpose: KeyPurpose = arg("--purpose", a.purpose)?;
    let algorithm: KeyAlgorithm = arg("--algorithm", a.algorithm)?;
    service::keys::hd::check_account_path(a.account_path)
        .map_err(|e| usage("--account-path", e.to_string()))?;
    let (key, mnemonic) = with_unsealed(c, async |svc| {
        let words = if a.import {
            let line = secret_line("mnemonic")?;
            Some(
                service::keys::hd::Mnemonic::parse(&line)
                    .map_err(|e| usage("mnemonic", e.to_string()))?,
            )
        } else {
            None
        };
        let passphrase = if a.passphrase {
            secret_line("passphrase")?
        } else {
            Zeroizing::new(String::new())
        };
        svc.create_hd_key_from(
            &console_actor(),
            service::NewHdKey {
                purpose,
                algorithm,
                account_path: a.account_path.to_owned(),
                cryptoperiod_days: a.cryptoperiod_days,
            },
            words,
            &passphrase,
        )
        .await
        .map_err(service_failure)
    })?;
    let xpub = |slip132| {
        service::keys::hd::xpub_for(&key.public_key, a.account_path, slip132)
            .map_err(|e| Failure::Runtime(anyhow::Error::new(e)))
    };
    println!("key {}", key.id);
    println!("xpub {}", xpub(false)?);
    if a.slip132 {
        println!("slip132 {}", xpub(true)?);
    }
    println!("account path {}", a.account_path);
    if a.import {
        // The words were the other wallet's; nothing to write down anew.
        return Ok(());
    }
    eprintln!("Write these 24 words on paper and keep them apart from the unseal shares.");
    if a.passphrase {
        eprintln!("The passphrase is needed with them: keep it too, apart from the words.");
    }
    eprintln!("They are shown once and stored nowhere in the clear:");
    println!("mnemonic {}", mnemonic.phrase().as_str());
    Ok(())
}

pub(crate) fn derive(c: Config, key: &str, child: &str) -> Result<(), Failure> {
    let id: KeyId = arg("--key", key)?;
    let steps: Vec<u32> = child
        .split('/')
        .map(|s| s.parse::<u32>().ok().filter(|&i| i < 1 << 31))
        .collect::<Option<_>>()
        .ok_or_else(|| usage("--child", "non-hardened steps such as 0/5"))?;
    runtime()?.block_on(async move {
        let (_svc, store) = build_service(&c).await?;
        let key = store.key(id).await;
        store.close().await;
        let key = key.map_err(|e| Failure::Runtime(anyhow::Error::new(e)))?;
        if key.hd_path.is_none() {
            return Err(usage("--key", "not an HD key"));
        }
        let pk = service::keys::hd::derive_from_xpub(&key.public_key, &steps)
            .map_err(|e| Failure::Runtime(anyhow::Error::new(e)))?;
        println!("{}", hex::encode(pk));
        Ok(())
    })
}

pub(crate) fn self_test(c: Config, key: &str) -> Result<(), Failure> {
    let id: KeyId = arg("--key", key)?;
    let t = with_unsealed(c, async |svc| {
        svc.key_self_test(&console_actor(), id)
            .await
            .map_err(service_failure)
    })?;
    println!("ok: signature verified by an independent library");
    println!("challenge {}", t.challenge);
    println!("public key {}", t.public_key);
    println!("signature {}", t.signature);
    Ok(())
}

pub(crate) fn rotate_kek(c: Config) -> Result<(), Failure> {
    let v = with_unsealed(c, async |svc| {
        svc.rotate_kek(&console_actor())
            .await
            .map_err(service_failure)
    })?;
    println!("key-encryption key rotated to version {v}; every key re-wrapped");
    Ok(())
}

pub(crate) fn reshare(
    c: Config,
    threshold: u8,
    shares: u8,
    share_dir: Option<&Path>,
) -> Result<(), Failure> {
    // The files first: new shares that could not be written would be lost
    // once the old ones are refused.
    let files = share_dir
        .map(|dir| create_share_files(dir, "txt", shares))
        .transpose()?;
    let split = with_unsealed(c, async |svc| {
        svc.reshare_unseal(&console_actor(), threshold, shares)
            .await
            .map_err(|e| match e {
                ServiceError::Share(s) => usage("--threshold", s.to_string()),
                other => service_failure(other),
            })
    })?;
    println!("new unseal shares ({threshold} of {shares}); the old ones are refused from now on:");
    match files {
        Some(files) => {
            let texts: Vec<Zeroizing<String>> = split
                .iter()
                .map(|s| Zeroizing::new(format!("{}\n", s.as_str())))
                .collect();
            write_shares(files, &texts, &split)
        }
        None => {
            for s in &split {
                println!("{}", s.as_str());
            }
            Ok(())
        }
    }
}

pub(crate) fn rotate(c: Config, key: &str, cryptoperiod_days: u32) -> Result<(), Failure> {
    let id: KeyId = arg("--key", key)?;
    let networks = c.clone();
    let r = with_unsealed(c, async |svc| {
        // The sweeps read balances and the successor's nonce from the chains.
        crate::serve::connect_ethereum(svc, &networks).await?;
        svc.rotate_with_sweep(&console_actor(), id, cryptoperiod_days)
            .await
            .map_err(service_failure)
    })?;
    if r.resumed {
        println!("the rotation of {id} was made before: taken up where it stopped");
    }
    println!("key {}", r.successor);
    println!(
        "version {} replaces {id} (which now signs only sweeps to it)",
        r.successor_version
    );
    println!("public key {}", r.successor_public_key);
    if let Some(m) = &r.successor_mnemonic {
        // The new HD account's paper backup: shown this once.
        eprintln!("Write these 24 words on paper and keep them apart from the unseal shares.");
        eprintln!("They are shown once and stored nowhere in the clear:");
        println!("mnemonic {}", m.phrase().as_str());
    }
    for a in &r.accounts {
        println!(
            "account of wallet {} on {} moved from {} to {}",
            a.wallet, a.network, a.from, a.to
        );
    }
    for t in &r.sweeps {
        println!("sweep transfer {t}");
    }
    for l in &r.left {
        println!("left: {l}");
    }
    Ok(())
}

pub(crate) fn refresh(c: Config, key: &str, remove: &[u16]) -> Result<(), Failure> {
    let id: KeyId = arg("--key", key)?;
    let r = with_unsealed(c, async |svc| {
        svc.refresh_threshold_key(&console_actor(), id, remove)
            .await
            .map_err(service_failure)
    })?;
    let list = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    if r.resumed {
        println!(
            "an interrupted refresh of key {id} is finished (session {}): signers {} hold its shares",
            r.session,
            list(&r.members)
        );
        println!("run the command again for a new refresh");
        return Ok(());
    }
    println!(
        "key {id} refreshed (session {}): signers {} hold new shares of the same key",
        r.session,
        list(&r.members)
    );
    if !r.removed.is_empty() {
        println!(
            "removed: signer {} (its share no longer combines with theirs)",
            list(&r.removed)
        );
    }
    Ok(())
}

pub(crate) fn enable_auto_unseal(c: Config) -> Result<(), Failure> {
    with_unsealed(c, async |svc| {
        svc.enable_auto_unseal(&console_actor())
            .await
            .map_err(service_failure)
    })?;
    println!("auto-unseal enabled: the server unseals itself while the HSM is reachable");
    Ok(())
}

/// `strongroom key accept-unbacked`: the key receives funds before any
/// verified backup holds it (the risk accepted, audited).
pub(crate) fn accept_unbacked(c: Config, key: &str) -> Result<(), Failure> {
    let id: KeyId = arg("--key", key)?;
    runtime()?.block_on(async {
        let (svc, store) = build_service(&c).await?;
        let r = svc.waive_key_backup(&console_actor(), id).await;
        store.close().await;
        r.context("accepting the risk")?;
        println!("key {id} receives funds before any backup holds it (recorded)");
        Ok(())
    })
}

pub(crate) fn set_state(c: Config, key: &str, state: &str) -> Result<(), Failure> {
    let id: KeyId = arg("--key", key)?;
    let to: KeyState = arg("--state", state)?;
    runtime()?.block_on(async move {
        let (svc, store) = build_service(&c).await?;
        let r = svc.set_key_state(&console_actor(), id, to).await;
        store.close().await;
        let key = r.map_err(service_failure)?;
        println!("key {} is {}", key.id, key.state);
        Ok(())
    })
}

pub(crate) fn list(c: Config) -> Result<(), Failure> {
    runtime()?.block_on(async move {
        let (_svc, store) = build_service(&c).await?;
        let keys = store.keys().await.context("reading the key inventory");
        store.close().await;
        for k in keys? {
            println!(
                "{} {} {} {} {} {} expires {}",
                k.id, k.purpose, k.algorithm, k.backend, k.state, k.public_key, k.expires_at
            );
        }
        Ok(())
    })
}

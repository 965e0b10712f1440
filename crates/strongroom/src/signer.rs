//! `strongroom signer`: a threshold signer node (ADR 0013). Its own data
//! directory, its own sealed share store opened by its own operator's
//! passphrase, its own nonce journal and audit log, its own port; it
//! answers only the servers whose certificates it pins.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use keys_mpc::node::{Node, NodeConfig};
use zeroize::Zeroizing;

use crate::Failure;

/// The operator's passphrase: from a file (first line), or one line on
/// standard input.
fn passphrase(file: Option<&Path>) -> Result<Zeroizing<String>, Failure> {
    let mut text = Zeroizing::new(String::new());
    match file {
        Some(f) => {
            *text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the passphrase from {}", f.display()))?;
        }
        None => {
            std::io::stdin()
                .read_line(&mut text)
                .context("reading the passphrase from standard input")?;
        }
    }
    let line = Zeroizing::new(text.lines().next().unwrap_or_default().to_owned());
    if line.chars().count() < 12 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the passphrase must have at least 12 characters"
        )));
    }
    Ok(line)
}

/// Creates a node's data directory and prints what servers and the other
/// signers must pin (JSON).
pub(crate) fn init(dir: &Path, index: u16, passphrase_file: Option<&Path>) -> Result<(), Failure> {
    let pass = passphrase(passphrase_file)?;
    let public = keys_mpc::node::init(dir, index, &pass).context("creating the signer node")?;
    println!(
        "{}",
        serde_json::to_string_pretty(&public).context("printing the node's identity")?
    );
    Ok(())
}

/// Prints a server's (coordinator's) TLS identity for signers to pin,
/// creating it in `dir` if missing.
pub(crate) fn server_identity(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir).context("creating the identity directory")?;
    let id = if dir.join("tls-cert.der").exists() {
        keys_mpc::net::TlsIdentity::load(dir).context("reading the identity")?
    } else {
        let id = keys_mpc::net::TlsIdentity::generate().context("making an identity")?;
        id.save(dir).context("writing the identity")?;
        id
    };
    println!("{}", id.fingerprint());
    Ok(())
}

/// The auxiliary-information ceremony among the configured signer nodes.
pub(crate) fn setup_ecdsa(c: &crate::config::Config) -> Result<(), Failure> {
    let t = c.threshold.as_ref().ok_or_else(|| {
        Failure::Runtime(anyhow::anyhow!(
            "the configuration has no [threshold] section"
        ))
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let started = std::time::Instant::now();
    // Through the service: the cluster announces this installation's epoch
    // (the nodes refuse a server from before a restore).
    rt.block_on(async {
        let (svc, store) = crate::serve::build_service(c).await?;
        let done = match svc.threshold() {
            Some(keys) => keys
                .cluster()
                .ecdsa_aux()
                .await
                .map_err(|e| Failure::Runtime(anyhow::anyhow!("the ceremony failed: {e}"))),
            None => Err(Failure::Runtime(anyhow::anyhow!("no signer nodes"))),
        };
        store.close().await;
        done
    })?;
    println!(
        "auxiliary information made by {} signers in {:.1} s: threshold ECDSA keys can be made",
        t.signers.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs a node until it is stopped.
pub(crate) fn run(config: &Path, passphrase_file: Option<&Path>) -> Result<(), Failure> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let de = toml::Deserializer::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    let cfg: NodeConfig = serde_path_to_error::deserialize(de)
        .map_err(|e| anyhow::anyhow!("{}: {} at {}", config.display(), e.inner(), e.path()))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let pass = passphrase(passphrase_file)?;
    let node = Node::open(&cfg, &pass).context("opening the signer node")?;
    drop(pass);
    // Crash points and faults for the tests (a build with the `test-hooks`
    // feature only; a release build reads nothing).
    let node = keys_mpc::node::hooks::arm_from_env(node, crate::serve::kill_self)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!(e)))?;
    let node = Arc::new(node);
    if cfg.ecdsa {
        ecdsa_primes(&node)?;
    } else {
        tracing::info!("threshold ECDSA is off on this node: no safe primes are searched for");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("listening on {}", cfg.listen))?;
        let public = node.public();
        tracing::info!(
            index = public.index,
            listen = %listener.local_addr().context("local address")?,
            fingerprint = %public.fingerprint,
            "signer node ready"
        );
        println!(
            "signer {} listening on {}",
            public.index,
            listener.local_addr()?
        );
        tokio::select! {
            r = node.serve(listener) => r.context("serving")?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

/// Makes sure the node has, or is finding, the safe primes its threshold
/// ECDSA auxiliary information needs: a search in the background (minutes
/// of CPU; each prime kept as found, so a restart resumes it), logged as it
/// goes. In a test build (feature `test-hooks`),
/// `STRONGROOM_SIGNER_TEST_PRIMES=<file>` takes published primes instead
/// (JSON, four per party) — never in a release build.
fn ecdsa_primes(node: &Arc<Node>) -> Result<(), Failure> {
    let (aux, found) = node
        .ecdsa_status()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("ECDSA state: {e}")))?;
    if aux || found >= 4 {
        return Ok(());
    }
    // Published primes, for tests (a `test-hooks` build only).
    if keys_mpc::node::hooks::test_primes_from_env(node)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!(e)))?
    {
        return Ok(());
    }
    tracing::info!(
        found,
        of = 4,
        "searching for safe primes for threshold ECDSA (background)"
    );
    let n = node.clone();
    std::thread::Builder::new()
        .name("safe-primes".into())
        .spawn(move || match n.find_primes() {
            Ok(()) => tracing::info!("safe primes found: threshold ECDSA can be set up"),
            Err(e) => tracing::error!(error = %e, "the search for safe primes failed"),
        })
        .context("starting the search for safe primes")?;
    Ok(())
}

/// Freezes a node (a `frozen` file in its data directory, checked before
/// every signature).
pub(crate) fn freeze(dir: &Path, reason: &str) -> Result<(), Failure> {
    if !dir.join("store-key.age").exists() {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{} is not a signer node's directory",
            dir.display()
        )));
    }
    write_synced(&dir.join("frozen"), format!("{reason}\n").as_bytes())
        .context("writing the freeze")?;
    println!(
        "frozen: {} signs nothing until `signer unfreeze`",
        dir.display()
    );
    Ok(())
}

pub(crate) fn unfreeze(dir: &Path) -> Result<(), Failure> {
    match std::fs::remove_file(dir.join("frozen")) {
        Ok(()) => println!("unfrozen"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("was not frozen"),
        Err(e) => {
            return Err(Failure::Runtime(
                anyhow::Error::from(e).context("unfreezing"),
            ));
        }
    }
    Ok(())
}

/// Writes a file and syncs it and its directory: a freeze survives a
/// power cut.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

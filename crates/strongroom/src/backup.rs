//! `strongroom backup create | verify | restore`: encrypted, signed backups.
//!
//! A backup is one age file (encrypted to `[backup] recipients_file`) whose
//! plaintext is `"SRBK" 0x0001 | manifest length (u32 BE) | manifest (JSON)
//! | signature (64) | entries`, each entry's bytes in the manifest's order.
//! The manifest names the format, the instance (keystore id), the database
//! kind and schema version, the audit head, the audit key's public half and
//! each entry's size and SHA-256; the audit checkpoint key signs SHA-256 of
//! the manifest (`SRBM` v1). Entries: the database (a SQLite `VACUUM INTO`
//! copy, or a `pg_dump` custom-format dump taken in one repeatable-read
//! snapshot), the audit checkpoint file and the configuration. Never the
//! unseal shares or plaintext keys: keys stay sealed under the keystore
//! root, and the audit key stays in its file or HSM.
//!
//! Verification and restore decrypt, check the signature against the audit
//! key this configuration trusts (a backup of another installation is
//! refused), every entry's digest and the schema version before anything
//! is written; a restore goes only into an empty database.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use audit::backup::{FORMAT, Manifest, ManifestEntry as Entry, VERSION, read_head};
use sha2::{Digest, Sha256};

mod scratch;

use crate::Failure;
use crate::config::{Config, ConfigError, Database};
use crate::serve::runtime;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum BackupCommand {
    /// A consistent backup of the running installation, encrypted to the
    /// configured recipients and signed by the audit key.
    Create {
        /// The installation's configuration (with a `[backup]` section).
        #[arg(long)]
        config: PathBuf,
        /// Where to write it (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Decrypts a backup and checks its signature, every entry's digest and
    /// the audit chain inside, without restoring anything.
    Verify {
        /// The configuration naming the audit key the backup must be signed by.
        #[arg(long)]
        config: PathBuf,
        /// An age identity file (`AGE-SECRET-KEY-1…`) of a recipient.
        #[arg(long)]
        identity: PathBuf,
        file: PathBuf,
    },
    /// Restores a backup into this configuration's empty database (then
    /// unseal with the original shares).
    Restore(RestoreArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct RestoreArgs {
    /// The configuration of the installation to restore into (its
    /// database must be empty; its audit key must be the backup's).
    #[arg(long)]
    config: PathBuf,
    /// An age identity file (`AGE-SECRET-KEY-1…`) of a backup recipient.
    #[arg(long)]
    identity: PathBuf,
    /// The backup file.
    #[arg(long)]
    from: PathBuf,
    /// Checkpoints the lost installation signed after the backup (a copy
    /// kept off the machine): those past the backup's head are named by
    /// the restore's epoch record and kept, so `audit verify` shows the
    /// gap, explained, instead of failing on it.
    #[arg(long, value_name = "FILE")]
    later_checkpoints: Option<PathBuf>,
}

fn usage(key: &str, message: impl Into<String>) -> Failure {
    Failure::Config(ConfigError {
        key: key.into(),
        message: message.into(),
    })
}

fn refused(message: impl std::fmt::Display) -> Failure {
    Failure::Runtime(anyhow::anyhow!("backup refused: {message}"))
}

pub(crate) fn run(cmd: BackupCommand) -> Result<(), Failure> {
    match cmd {
        BackupCommand::Create { config, out } => create(&Config::load(&config)?, &config, &out),
        BackupCommand::Verify {
            config,
            identity,
            file,
        } => verify(&Config::load(&config)?, &identity, &file),
        BackupCommand::Restore(a) => restore(a),
    }
}

/// `strongroom restore` and `strongroom backup restore`.
pub(crate) fn restore(a: RestoreArgs) -> Result<(), Failure> {
    let c = Config::load(&a.config)?;
    restore_into(&c, &a.identity, &a.from, a.later_checkpoints.as_deref())
}

/// At most this many later checkpoints are named by an epoch record (the
/// newest; its details stay small). The newest is the one that matters: it
/// covers the most of the lost log.
const LATER_CHECKPOINTS_KEPT: usize = 100;

/// The checkpoints in `file` past the backup's head, each signed by this
/// installation's audit key (refused otherwise), newest last.
fn later_checkpoints(
    c: &Config,
    file: &Path,
    head: u64,
) -> Result<Vec<audit::Checkpoint>, Failure> {
    let trusted = crate::serve::audit_public_key(c)?;
    let all = service::CheckpointFile::new(file)
        .read_all()
        .map_err(|e| refused(format!("the later checkpoints: {e}")))?
        .ok_or_else(|| refused(format!("{} does not exist", file.display())))?;
    let mut later = Vec::new();
    for (i, cp) in all.into_iter().enumerate() {
        cp.verify(&trusted).map_err(|e| {
            refused(format!(
                "later checkpoint {} is not this installation's: {e}",
                i + 1
            ))
        })?;
        if cp.seq > head && !later.contains(&cp) {
            later.push(cp);
        }
    }
    later.sort_by_key(|cp| cp.seq);
    let drop = later.len().saturating_sub(LATER_CHECKPOINTS_KEPT);
    Ok(later.split_off(drop))
}

fn file_digest(path: &Path) -> Result<(u64, String), Failure> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(h.finalize())))
}

/// The database, as a file in `dir`: a SQLite copy, or a `pg_dump` dump.
async fn dump_database(
    c: &Config,
    store: &storage::Store,
    dir: &Path,
) -> Result<(String, PathBuf), Failure> {
    match &c.database {
        Database::Sqlite { .. } => {
            let path = dir.join("database.sqlite");
            store
                .sqlite_snapshot(&path)
                .await
                .context("copying the SQLite database")?;
            Ok(("sqlite".into(), path))
        }
        Database::Postgres { url, .. } => {
            let path = dir.join("database.pgdump");
            let db = c.database.resolve()?;
            let mut cmd = std::process::Command::new(pg_tool("pg_dump"));
            cmd.args(["--format=custom", "--no-owner", "--no-privileges"])
                .arg(format!("--file={}", path.display()))
                .arg(format!("--dbname={url}"));
            if let storage::DatabaseConfig::Postgres {
                password: Some(p), ..
            } = &db
            {
                cmd.env("PGPASSWORD", p.as_str());
            }
            let out = cmd.output().context("running pg_dump")?;
            if !out.status.success() {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Ok(("postgres".into(), path))
        }
    }
}

/// A PostgreSQL client tool: on the PATH, or in Debian's versioned
/// directories (newest first).
fn pg_tool(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| PathBuf::from(name))
}

fn create(c: &Config, config_path: &Path, out: &Path) -> Result<(), Failure> {
    if out.exists() {
        return Err(usage("--out", "the file exists"));
    }
    runtime()?.block_on(async {
        let (svc, store) = crate::serve::build_service(c).await?;
        let taken = take(
            c,
            config_path,
            &svc,
            &store,
            out,
            &crate::keyctl::console_actor(),
        )
        .await;
        store.close().await;
        let m = taken?;
        println!(
            "backup {} written: audit head {} ({} entries, {} database)",
            out.display(),
            m.audit_seq,
            m.entries.len(),
            m.database
        );
        Ok(())
    })
}

/// Takes a backup of the installation `svc` serves into `out`, and records
/// it in the audit log (after the head it holds).
async fn take(
    c: &Config,
    config_path: &Path,
    svc: &service::Service,
    store: &storage::Store,
    out: &Path,
    by: &domain::Actor,
) -> Result<Manifest, Failure> {
    let recipients = c
        .backup
        .as_ref()
        .ok_or_else(|| usage("backup", "a [backup] section with recipients_file"))?
        .recipients
        .clone();
    let dir = tempfile::tempdir().context("a working directory")?;
    let head = store.audit_head().await.context("reading the audit head")?;
    let instance = store
        .keystore()
        .await
        .context("reading the keystore")?
        .map_or_else(|| "none".to_owned(), |k| hex::encode(k.keystore_id));
    let schema = store.check_schema().await.context("the schema")?;
    let keys = store.key_ids().await.context("listing the keys")?;
    // The checkpoints first: each then covers a head the snapshot holds.
    let checkpoints = dir.path().join("checkpoints");
    let have_checkpoints = match std::fs::copy(&c.checkpoint_file, &checkpoints) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            return Err(Failure::Runtime(anyhow::anyhow!(
                "reading {}: {e}",
                c.checkpoint_file.display()
            )));
        }
    };
    let (kind, db_file) = dump_database(c, store, dir.path()).await?;
    let mut files = vec![("database".to_owned(), db_file)];
    if have_checkpoints {
        files.push(("checkpoints".into(), checkpoints));
    }
    files.push(("config".into(), config_path.to_path_buf()));
    // Hashing and encrypting read and write whole files: off the async workers.
    let entries = tokio::task::block_in_place(|| {
        files
            .iter()
            .map(|(name, path)| {
                file_digest(path).map(|(size, sha256)| Entry {
                    name: name.clone(),
                    size,
                    sha256,
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let signer = svc.checkpointer().signer();
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        created_at_ms: service::Clock::now(&service::SystemClock).as_millis(),
        instance,
        database: kind,
        schema_version: schema,
        audit_seq: head.seq,
        audit_hash: head.hash.to_string(),
        audit_key: signer.public().to_string(),
        keys,
        entries,
    };
    let text = manifest.to_bytes().context("the manifest")?;
    let digest: [u8; 32] = Sha256::digest(&text).into();
    let sig = signer
        .sign_backup(&digest)
        .await
        .context("signing the manifest")?;
    tokio::task::block_in_place(|| write_backup(out, &recipients, &text, &sig, &files))?;
    svc.record_backup(
        by,
        serde_json::json!({
            "file": out.display().to_string(),
            "manifest_sha256": hex::encode(digest),
            "audit_seq": manifest.audit_seq,
            "database": manifest.database,
        }),
    )
    .await
    .context("recording the backup in the audit log")?;
    Ok(manifest)
}

/// Starts the scheduled backups of `[backup] dir`, if configured (for
/// `serve`).
pub(crate) fn spawn_scheduled(
    c: &Config,
    svc: &service::Service,
    store: &storage::Store,
) -> Option<tokio::task::JoinHandle<()>> {
    let s = c.backup.as_ref()?.schedule.clone()?;
    Some(tokio::spawn(scheduled(
        c.clone(),
        svc.clone(),
        store.clone(),
        s,
    )))
}

/// The server's scheduled backups: one every `every` into the schedule's
/// directory (the newest `keep` kept), each audited; a failure is audited
/// and announced (`backup.failed`), and the next interval tries again.
async fn scheduled(
    c: Config,
    svc: service::Service,
    store: storage::Store,
    s: crate::config::Schedule,
) {
    let mut interval = tokio::time::interval(s.every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let name = format!(
            "strongroom-{}.srbk",
            service::Clock::now(&service::SystemClock).as_millis()
        );
        let out = s.dir.join(name);
        let config_path = c.path.clone().unwrap_or_default();
        let taken = async {
            std::fs::create_dir_all(&s.dir)
                .with_context(|| format!("creating {}", s.dir.display()))?;
            take(&c, &config_path, &svc, &store, &out, &domain::Actor::System).await
        }
        .await;
        match taken {
            Ok(m) => {
                tracing::info!(file = %out.display(), audit_seq = m.audit_seq, "scheduled backup written");
                prune(&s.dir, s.keep);
            }
            Err(e) => {
                let why = match &e {
                    Failure::Runtime(e) => format!("{e:#}"),
                    other => format!("{other:?}"),
                };
                let details =
                    serde_json::json!({ "dir": s.dir.display().to_string(), "error": why });
                if let Err(e) = svc.record_backup_failed(details).await {
                    tracing::error!(error = %e, "recording a failed backup failed");
                }
                // Logged once recorded and announced.
                tracing::error!(error = %why, "scheduled backup failed");
            }
        }
    }
}

/// Keeps the newest `keep` scheduled backups in `dir`.
fn prune(dir: &Path, keep: usize) {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("strongroom-") && n.ends_with(".srbk"))
        })
        .collect();
    found.sort();
    let old = found.len().saturating_sub(keep);
    for p in &found[..old] {
        if let Err(e) = std::fs::remove_file(p) {
            tracing::warn!(file = %p.display(), error = %e, "removing an old backup failed");
        }
    }
}

fn write_backup(
    out: &Path,
    recipients: &[String],
    manifest: &[u8],
    sig: &[u8; 64],
    files: &[(String, PathBuf)],
) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let parsed: Vec<age::x25519::Recipient> = recipients
        .iter()
        .map(|r| {
            r.parse()
                .map_err(|e: &str| usage("backup.recipients_file", e))
        })
        .collect::<Result<_, _>>()?;
    let encryptor =
        age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| anyhow::anyhow!("encrypting: {e}"))?;
    let partial = out.with_extension("partial");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut w = encryptor
        .wrap_output(std::io::BufWriter::new(file))
        .context("encrypting")?;
    let head = audit::backup::head_bytes(manifest, sig).map_err(|e| anyhow::anyhow!("{e}"))?;
    w.write_all(&head).context("writing the backup")?;
    for (_, path) in files {
        let mut f =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        std::io::copy(&mut f, &mut w).with_context(|| format!("writing {}", path.display()))?;
    }
    let inner = w.finish().context("encrypting")?;
    let file = inner
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing the backup: {e}"))?;
    file.sync_all().context("writing the backup")?;
    std::fs::rename(&partial, out).with_context(|| format!("creating {}", out.display()))?;
    Ok(())
}

/// A backup opened: its manifest checked against this configuration's
/// audit key, its entries written to `dir` with their digests checked.
struct Opened {
    manifest: Manifest,
    /// SHA-256 (hex) of the manifest's bytes as read: what the audit key
    /// signed.
    digest: String,
    files: Vec<(String, PathBuf)>,
}

fn identities(path: &Path) -> Result<Vec<age::x25519::Identity>, Failure> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    let ids: Vec<age::x25519::Identity> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.parse().ok())
        .collect();
    if ids.is_empty() {
        return Err(usage(
            "--identity",
            "no age identity (AGE-SECRET-KEY-1…) in the file",
        ));
    }
    Ok(ids)
}

fn open(c: &Config, identity: &Path, file: &Path, dir: &Path) -> Result<Opened, Failure> {
    let ids = identities(identity)?;
    let input = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let decryptor = age::Decryptor::new(BufReader::new(input))
        .map_err(|e| refused(format!("not an age file ({e})")))?;
    let mut r = decryptor
        .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| refused(format!("it does not decrypt with this identity ({e})")))?;
    let (text, sig) = read_head(&mut r).map_err(|e| refused(e.to_string()))?;
    let manifest = Manifest::parse(&text).map_err(|e| refused(e.to_string()))?;
    // The signature, by the audit key this installation trusts, before
    // anything else is believed.
    let trusted = crate::serve::audit_public_key(c)?;
    let digest: [u8; 32] = Sha256::digest(&text).into();
    trusted.verify_backup(&digest, &sig).map_err(|_| {
        refused(format!(
            "it is not signed by this installation's audit key {trusted} (signed for {})",
            manifest.audit_key
        ))
    })?;
    manifest.check().map_err(|e| refused(e.to_string()))?;
    let broken = |e: std::io::Error| refused(format!("damaged or truncated ({e})"));
    let mut files = Vec::new();
    for e in &manifest.entries {
        let path = dir.join(&e.name);
        let mut out =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut h = Sha256::new();
        let mut left = e.size;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            r.read_exact(&mut buf[..n]).map_err(broken)?;
            h.update(&buf[..n]);
            out.write_all(&buf[..n]).context("writing an entry")?;
            left -= n as u64;
        }
        if hex::encode(h.finalize()) != e.sha256 {
            return Err(refused(format!(
                "entry {} does not match its digest",
                e.name
            )));
        }
        out.sync_all().context("writing an entry")?;
        files.push((e.name.clone(), path));
    }
    let mut rest = [0u8; 1];
    if r.read(&mut rest).map_err(broken)? != 0 {
        return Err(refused("bytes after its last entry"));
    }
    Ok(Opened {
        manifest,
        digest: hex::encode(digest),
        files,
    })
}

fn entry<'a>(o: &'a Opened, name: &str) -> Result<&'a Path, Failure> {
    o.files
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p.as_path())
        .ok_or_else(|| refused(format!("it has no {name} entry")))
}

fn verify(c: &Config, identity: &Path, file: &Path) -> Result<(), Failure> {
    let dir = tempfile::tempdir().context("a working directory")?;
    let o = open(c, identity, file, dir.path())?;
    // The audit chain inside, against the checkpoints inside: a SQLite copy
    // read where it is, a PostgreSQL dump restored into a scratch database
    // on the configured server.
    let db = entry(&o, "database")?;
    let checkpoints =
        entry(&o, "checkpoints").map_or_else(|_| dir.path().join("none"), Path::to_path_buf);
    let trusted = crate::serve::audit_public_key(c)?;
    let (copy, _scratch) = match o.manifest.database.as_str() {
        "sqlite" => (
            storage::DatabaseConfig::Sqlite {
                path: db.to_path_buf(),
            },
            None,
        ),
        _ => {
            let s = scratch::Scratch::restore(&c.database.resolve()?, db)?;
            (s.config(), Some(s))
        }
    };
    runtime()?.block_on(async {
        let store = storage::Store::connect(&copy)
            .await
            .context("opening the database copy")?;
        let cps = service::CheckpointFile::new(checkpoints);
        let report = service::verify_audit(&store, &cps, &trusted)
            .await
            .map_err(|e| refused(format!("its audit chain: {e}")));
        store.close().await;
        let report = report?;
        println!(
            "audit chain: {} records, {} checkpoints",
            report.records, report.checkpoints
        );
        Ok::<_, Failure>(())
    })?;
    mark_backed_up(c, &o.manifest, &o.digest);
    println!(
        "backup ok: instance {}, {} database schema {}, audit head {}, signed by {}",
        o.manifest.instance,
        o.manifest.database,
        o.manifest.schema_version,
        o.manifest.audit_seq,
        o.manifest.audit_key
    );
    Ok(())
}

/// A verified backup of this installation: the keys it holds may receive
/// funds now (no key without a backup). Best effort: verifying elsewhere,
/// without the database, marks nothing.
fn mark_backed_up(c: &Config, m: &Manifest, digest: &str) {
    let marked = runtime().map_err(|e| format!("{e:?}")).and_then(|rt| {
        rt.block_on(async {
            let (svc, store) = crate::serve::build_service(c)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let live = store
                .keystore()
                .await
                .map_err(|e| e.to_string())?
                .map(|k| hex::encode(k.keystore_id));
            let r = if live.as_deref() == Some(m.instance.as_str()) {
                svc.record_keys_backed_up(&m.keys, digest)
                    .await
                    .map_err(|e| e.to_string())
            } else {
                Err("the database is another instance's".into())
            };
            store.close().await;
            r
        })
    });
    match marked {
        Ok(k) => println!("keys now held by a verified backup: {}", k.len()),
        Err(why) => println!("keys not marked ({why})"),
    }
}

fn restore_into(
    c: &Config,
    identity: &Path,
    from: &Path,
    later: Option<&Path>,
) -> Result<(), Failure> {
    let dir = tempfile::tempdir().context("a working directory")?;
    let o = open(c, identity, from, dir.path())?;
    let later = match later {
        Some(f) => later_checkpoints(c, f, o.manifest.audit_seq)?,
        None => Vec::new(),
    };
    let db = c.database.resolve()?;
    runtime()?.block_on(async {
        let store = storage::Store::connect(&db)
            .await
            .context("opening the database")?;
        if o.manifest.schema_version > store.known_schema_version() {
            return Err(refused(format!(
                "its schema ({}) is newer than this program's ({})",
                o.manifest.schema_version,
                store.known_schema_version()
            )));
        }
        let kind = match store.backend() {
            storage::Backend::Sqlite => "sqlite",
            storage::Backend::Postgres => "postgres",
        };
        if o.manifest.database != kind {
            return Err(refused(format!(
                "a {} backup into a {kind} database",
                o.manifest.database
            )));
        }
        if !store
            .holds_nothing()
            .await
            .context("looking at the database")?
        {
            return Err(refused(
                "the database is not empty: a restore goes only into an empty one",
            ));
        }
        store.close().await;
        // Refused before anything is written.
        let checkpoints = entry(&o, "checkpoints").ok();
        if checkpoints.is_some() && c.checkpoint_file.exists() {
            return Err(refused(format!(
                "{} exists: move it aside first (the backup's checkpoints go there)",
                c.checkpoint_file.display()
            )));
        }
        let aside = service::CheckpointFile::new(&c.checkpoint_file).superseded();
        if !later.is_empty() && aside.path().exists() {
            return Err(refused(format!(
                "{} exists: move it aside first (the later checkpoints go there)",
                aside.path().display()
            )));
        }
        let dump = entry(&o, "database")?;
        // The epoch record and the freeze are written before the data can
        // serve: into a staged copy that then takes the database's place
        // (SQLite), or right after `pg_restore` (PostgreSQL, in place).
        let mut target = c.clone();
        let mut staged = None;
        match (&c.database, &db) {
            (Database::Sqlite { path }, _) => {
                let copy = path.with_extension("restoring");
                std::fs::copy(dump, &copy)
                    .with_context(|| format!("writing {}", copy.display()))?;
                target.database = Database::Sqlite { path: copy.clone() };
                staged = Some((copy, path.clone()));
            }
            (
                Database::Postgres { url, .. },
                storage::DatabaseConfig::Postgres { password, .. },
            ) => {
                let mut cmd = std::process::Command::new(pg_tool("pg_restore"));
                // The database holds nothing (checked above): an empty
                // schema a server made is replaced by the backup's.
                cmd.args([
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    "--clean",
                    "--if-exists",
                ])
                .arg(format!("--dbname={url}"))
                .arg(dump);
                if let Some(p) = password {
                    cmd.env("PGPASSWORD", p.as_str());
                }
                let out = cmd.output().context("running pg_restore")?;
                if !out.status.success() {
                    return Err(Failure::Runtime(anyhow::anyhow!(
                        "pg_restore failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
            }
            _ => {
                return Err(refused(
                    "the database configuration changed under the restore",
                ));
            }
        }
        if let Some(cps) = checkpoints {
            std::fs::copy(cps, &c.checkpoint_file)
                .with_context(|| format!("writing {}", c.checkpoint_file.display()))?;
        }
        // The lost copy's checkpoints go beside this log's, in a file of
        // their own: this log's checkpointer goes on from its own.
        let file = service::CheckpointFile::new(&c.checkpoint_file).superseded();
        let mut superseded = Vec::new();
        for cp in &later {
            file.append(cp)
                .with_context(|| format!("writing {}", file.path().display()))?;
            superseded.push(serde_json::json!({ "seq": cp.seq, "hash": cp.head }));
        }
        // A new epoch: its first record names the backup it came from, and
        // nothing is signed or sent until the server has asked the chains
        // (a transfer in flight at the snapshot may have been signed, sent
        // or even confirmed since: the chains know more than this copy).
        let (svc, store) = crate::serve::build_service(&target).await?;
        let manifest_sha256 = o.digest.clone();
        svc.open_epoch(
            &crate::keyctl::console_actor(),
            &manifest_sha256,
            o.manifest.audit_seq,
            serde_json::json!({
                "manifest_sha256": manifest_sha256,
                "from_audit_seq": o.manifest.audit_seq,
                "instance": o.manifest.instance,
                "created_at_ms": o.manifest.created_at_ms,
                "superseded_checkpoints": superseded,
            }),
        )
        .await
        .context("opening the restore's epoch in the audit log")?;
        store.close().await;
        if let Some((copy, path)) = staged {
            for suffix in ["-wal", "-shm"] {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(p));
            }
            std::fs::rename(&copy, &path).with_context(|| format!("writing {}", path.display()))?;
        }
        println!(
            "restored instance {} at audit head {} ({} database), frozen until the server has \
             reconciled it with the chains; unseal it with the original shares",
            o.manifest.instance, o.manifest.audit_seq, o.manifest.database
        );
        Ok(())
    })
}

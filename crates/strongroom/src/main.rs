//! `strongroom`: the server and its admin commands.
//!
//! Exit codes: 0 success; 1 a runtime failure (database unreachable, port in
//! use); 2 bad usage or configuration; 3 `audit verify` found the log broken.

mod config;
mod serve;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};

#[derive(Debug, Parser)]
#[command(
    name = "strongroom",
    version,
    about = "Self-hosted custody server for digital assets",
    long_about = "Strongroom keeps Bitcoin, Ether and tokens on your own machines and moves \
                  them only when your policies and your people say so.\n\n\
                  Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration, \
                  3 audit log verification failed."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server and its background workers.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        /// Listen on this address instead of the configured `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Development helpers.
    #[command(subcommand)]
    Dev(DevCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file: syntax, every key, and the files it names.
    Check {
        /// Configuration file (TOML).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the whole audit log against its signed checkpoints. Names the
    /// first broken record and exits 3 if the log was edited, reordered or truncated.
    Verify {
        /// Configuration file (TOML).
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        /// The audit public key (64 hex digits), for auditors who do not hold
        /// the signing key. Without it the key comes from `audit.signing_key_file`.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Create a new audit checkpoint signing key (mode 0600). Never overwrites.
    InitKey {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Create a development data directory: configuration and audit key.
    /// Leaves existing files alone.
    Init {
        /// The directory to create.
        #[arg(long)]
        dir: PathBuf,
        /// Address for the server to listen on.
        #[arg(long, default_value = "127.0.0.1:8200")]
        listen: SocketAddr,
    },
}

/// A failure with its exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    Config(ConfigError),
    Runtime(anyhow::Error),
    Broken(String),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, listen } => load(&config).and_then(|mut c| {
            if let Some(l) = listen {
                c.listen = l;
            }
            serve::run(c)
        }),
        Command::Config(ConfigCommand::Check { file }) => config_check(&file),
        Command::Audit(AuditCommand::Verify { config, public_key }) => {
            load(&config).and_then(|c| serve::verify(c, public_key.as_deref()))
        }
        Command::Audit(AuditCommand::InitKey { out }) => init_key(&out),
        Command::Dev(DevCommand::Init { dir, listen }) => dev_init(&dir, listen),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("error: configuration: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Broken(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(3)
        }
    }
}

fn load(path: &Path) -> Result<Config, Failure> {
    Ok(Config::load(path)?)
}

fn config_check(path: &Path) -> Result<(), Failure> {
    let c = Config::load(path)?;
    c.database.resolve()?;
    service::load_audit_key(&c.audit_key_file).map_err(|e| ConfigError {
        key: "audit.signing_key_file".into(),
        message: e.to_string(),
    })?;
    println!("ok: {}", path.display());
    Ok(())
}

fn init_key(out: &Path) -> Result<(), Failure> {
    let public = service::generate_audit_key(out).map_err(anyhow::Error::from)?;
    println!("audit key written to {}", out.display());
    println!("public key: {public}");
    Ok(())
}

fn dev_init(dir: &Path, listen: SocketAddr) -> Result<(), Failure> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("strongroom.toml");
    if !config.exists() {
        std::fs::write(&config, config::dev_config(listen))
            .with_context(|| format!("writing {}", config.display()))?;
    }
    let key = dir.join("audit.key");
    if !key.exists() {
        service::generate_audit_key(&key).map_err(anyhow::Error::from)?;
    }
    println!("{}", config.display());
    Ok(())
}

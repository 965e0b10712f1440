//! `strongroom`: the server and its admin commands.
//!
//! Exit codes: 0 success; 1 a runtime failure (database unreachable, port in
//! use); 2 bad usage or configuration; 3 `audit verify` found the log broken.
//!
//! ## What is where
//!
//! clap CLI, strict TOML config (`config.rs`), `serve.rs` (runtime, logging, signals, the
//! checkpoint ticker), `keyctl.rs` (init and key ceremonies that unseal in the CLI's own process
//! from shares on stdin and seal when done), `operator.rs` (a running server's seal over HTTP,
//! `api` signed requests), `apikey.rs`, `offline.rs` (`offline sign`: air-gapped PSBT signing from
//! a mnemonic), `ethctl.rs` (`eth register-sender`, `eth nonces`), `govern.rs` (`approver-key
//! new`, `approve`, `transfer dry-run`, `policy check`, console `freeze`, `price set`),
//! `signer.rs` (`signer init`: a node's data directory and the identity others pin; `signer run`:
//! the node, its passphrase from a file or stdin; `signer server-identity`: a server's fingerprint
//! for nodes to pin). `serve` connects every `[[ethereum]]` network and runs one watcher per
//! network (health, confirmations, resume), the queue's worker and the time-lock worker, and arms
//! a crash point when `STRONGROOM_CRASH_AT` names one (the crash tests in `tests/cli.rs`).
//! `testing.rs` (feature `testing`, tests and benches only): `Payer`, which pays the way
//! production does — a wallet, an initiator's signed request, a judged transfer, the queue.

mod apikey;
mod backup;
mod btcctl;
mod coldctl;
use strongroom::config;
mod ethctl;
mod govern;
mod https;
mod keycmd;
mod keyctl;
mod offline;
mod operator;
mod reconcile;
mod reload;
mod serve;
mod setup;
mod signer;

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
    /// Print the API's OpenAPI 3.1 document (what `GET /v1/openapi.json`
    /// serves), for clients and validators.
    Openapi,
    /// Create the sealed keystore and split its root key into unseal shares.
    Init {
        /// Configuration file (TOML).
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        /// How many shares to make.
        #[arg(long, default_value_t = 5)]
        shares: u8,
        /// How many shares unseal.
        #[arg(long, default_value_t = 3)]
        threshold: u8,
        /// Write each share to DIR/share-N.txt (mode 0600) instead of printing them.
        #[arg(long)]
        share_dir: Option<PathBuf>,
        /// A file of age recipients (`age1…`), one per line, one per share:
        /// share N is written to DIR/share-N.age encrypted to recipient N only.
        #[arg(long, requires = "share_dir")]
        share_recipients: Option<PathBuf>,
        /// Create the first admin with this name; the password is one line on standard input.
        #[arg(long)]
        admin: Option<String>,
        /// The first admin's governance signing key (hex, `approver-key new` prints it).
        #[arg(long, requires = "admin")]
        admin_signing_key: Option<String>,
    },
    /// The key inventory. Commands that use key material read unseal shares
    /// from standard input, one per line, and seal again when done.
    #[command(subcommand)]
    Key(keycmd::KeyCommand),
    /// Talk to a running server's seal: unseal, seal, status.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Encrypted, signed backups: create, verify, restore.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Restores a backup into an empty database (`backup restore`).
    Restore(backup::RestoreArgs),
    /// One reconciliation pass: every account against the chains (exit 3
    /// on findings; a wallet with an outflow Strongroom did not sign is
    /// frozen).
    Reconcile {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
    },
    /// Ethereum sending addresses and nonces.
    #[command(subcommand)]
    Eth(EthCommand),
    /// Bitcoin from the console.
    #[command(subcommand)]
    Btc(BtcCommand),
    /// API keys for integrators and operators.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Air-gapped operations: no configuration, no database, no network.
    #[command(subcommand)]
    Offline(OfflineCommand),
    /// The cold tier: a transfer's transaction out to an offline signer
    /// and back, through the API.
    #[command(subcommand)]
    Cold(ColdCommand),
    /// Approvers' own Ed25519 keys.
    #[command(subcommand)]
    ApproverKey(ApproverKeyCommand),
    /// A threshold signer node: holds one share of each threshold key and
    /// signs only for the servers it pins.
    #[command(subcommand)]
    Signer(SignerCommand),
    /// Approve (or reject) a transfer, or a governance proposal: shows it,
    /// signs the statement with your key, and sends it.
    Approve {
        #[arg(long, default_value = "http://127.0.0.1:8200", env = "STRONGROOM_ADDR")]
        addr: String,
        /// Your API key (who you are to the server).
        #[arg(long, env = "STRONGROOM_KEY_FILE")]
        key_file: PathBuf,
        /// Your approver key (what your approval is signed with; for a
        /// proposal, your API key when not given).
        #[arg(long, env = "STRONGROOM_APPROVER_KEY")]
        approver_key: Option<PathBuf>,
        #[arg(long, required_unless_present = "proposal")]
        transfer: Option<String>,
        /// A governance proposal instead (an admin's signed vote).
        #[arg(long, conflicts_with = "transfer")]
        proposal: Option<String>,
        /// Reject (veto) instead: any single rejection ends the transfer (proposal).
        #[arg(long)]
        reject: bool,
        /// Why you reject it (kept in the transfer's history; not signed).
        #[arg(long, requires = "reject")]
        reason: Option<String>,
        /// How long the approval stays valid.
        #[arg(long, default_value_t = 60)]
        ttl_minutes: u32,
        /// Sign without asking (scripts); otherwise the decoded transfer is
        /// shown and `yes` must be typed.
        #[arg(long)]
        yes: bool,
    },
    /// Transfers: would one be allowed, and why?
    #[command(subcommand)]
    Transfer(TransferCommand),
    /// Policy documents.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Freeze at once from the console (the server's own files), for when
    /// the API cannot be reached. Releasing is a proposal under quorum.
    Freeze {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        /// `global`, `wallet:<uuid>` or `key:<uuid>`.
        #[arg(long)]
        scope: String,
        #[arg(long)]
        reason: String,
    },
    /// Operator-kept prices for rules written in USD.
    #[command(subcommand)]
    Price(PriceCommand),
    /// Send one request signed with an API key and print the answer.
    Api {
        #[arg(long, default_value = "http://127.0.0.1:8200", env = "STRONGROOM_ADDR")]
        addr: String,
        #[arg(long, env = "STRONGROOM_KEY_FILE")]
        key_file: PathBuf,
        /// GET, POST, PUT, PATCH or DELETE.
        method: String,
        /// Path and query, e.g. `/v1/me` or `/v1/audit?limit=10`.
        path: String,
        /// A JSON body.
        #[arg(long)]
        body: Option<String>,
        /// Send an Idempotency-Key header (safe retries of POST /v1/transfers).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ColdCommand {
    /// Show a transfer's transaction awaiting its offline signature and
    /// write its PSBT (base64).
    Export {
        #[arg(long, default_value = "http://127.0.0.1:8200", env = "STRONGROOM_ADDR")]
        addr: String,
        #[arg(long, env = "STRONGROOM_KEY_FILE")]
        key_file: PathBuf,
        #[arg(long)]
        transfer: String,
        /// Write the PSBT here instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Bring back the PSBT signed offline (accepted only if it is exactly
    /// the approved transaction).
    Import {
        #[arg(long, default_value = "http://127.0.0.1:8200", env = "STRONGROOM_ADDR")]
        addr: String,
        #[arg(long, env = "STRONGROOM_KEY_FILE")]
        key_file: PathBuf,
        #[arg(long)]
        transfer: String,
        /// The signed PSBT: base64, hex or binary.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ApproverKeyCommand {
    /// Make a key pair: the private half to --out (0600), the public half printed.
    New {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TransferCommand {
    /// Judge a transfer against the policy in force, creating nothing.
    DryRun {
        #[arg(long, default_value = "http://127.0.0.1:8200", env = "STRONGROOM_ADDR")]
        addr: String,
        #[arg(long, env = "STRONGROOM_KEY_FILE")]
        key_file: PathBuf,
        #[arg(long)]
        wallet: String,
        /// e.g. eip155:1/native
        #[arg(long)]
        asset: String,
        /// A decimal amount in the asset's units.
        #[arg(long)]
        amount: String,
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check a policy file (TOML or JSON) as the server will read it.
    Check { file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum PriceCommand {
    /// Propose an asset's price in US dollars (a decimal string): a
    /// `set_price` proposal by a policy admin, applied by the admin quorum.
    Set {
        #[arg(long, default_value = "http://127.0.0.1:8200", env = "STRONGROOM_ADDR")]
        addr: String,
        /// A policy admin's API key file.
        #[arg(long, env = "STRONGROOM_KEY_FILE")]
        key_file: PathBuf,
        #[arg(long)]
        asset: String,
        #[arg(long)]
        usd: String,
    },
}

#[derive(Debug, Subcommand)]
enum OfflineCommand {
    /// Signs the inputs of a PSBT that a key from a BIP-39 mnemonic spends,
    /// after showing what the transaction pays.
    Sign {
        #[arg(long)]
        psbt: PathBuf,
        /// A file holding the mnemonic (keep it on the air-gapped machine).
        #[arg(long)]
        mnemonic_file: PathBuf,
        /// A file holding the seed's BIP-39 passphrase, if it has one.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// A key's BIP-32 path, e.g. m/84'/0'/0'/0/0; besides it, every key
        /// the PSBT's derivation records place under this seed signs.
        #[arg(long)]
        path: Option<String>,
        /// mainnet, testnet, signet or regtest (to show addresses).
        #[arg(long)]
        network: String,
        #[arg(long)]
        out: PathBuf,
        /// Sign segwit v0 inputs whose amounts the PSBT does not prove
        /// (no previous transaction): only for PSBTs from a trusted source.
        #[arg(long)]
        trust_input_amounts: bool,
        /// Sign although the fee is above 1 % of what is paid or 100 sat/vB.
        #[arg(long)]
        accept_fee: bool,
        /// Finalise the inputs and print the transaction (needs every
        /// signature; Bitcoin Core's interpreter verifies it).
        #[arg(long)]
        finalize: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ApikeyCommand {
    /// Makes a key pair here, registers its public half with one role from
    /// the console (any role during the bootstrap ceremony; viewer or
    /// auditor once governance has acted), and prints the private half once
    /// (and writes it to --out, mode 0600).
    Create {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        name: String,
        /// admin, security-officer, policy-admin, initiator, approver, auditor or viewer.
        #[arg(long)]
        role: String,
        /// `global` or `wallet:<uuid>`.
        #[arg(long, default_value = "global")]
        scope: String,
        #[arg(long, default_value_t = 90)]
        valid_days: u32,
        /// The user who will hold the key (a name or user:<uuid>): a quorum
        /// counts people, so their keys and session supply one approval.
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Makes a key pair here and registers its public half over the API
    /// with an admin's key; its role is a proposal under the admin quorum.
    Propose {
        #[arg(long, default_value = "http://127.0.0.1:8200", env = "STRONGROOM_ADDR")]
        addr: String,
        /// An admin's API key file.
        #[arg(long, env = "STRONGROOM_KEY_FILE")]
        key_file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        /// `global` or `wallet:<uuid>`.
        #[arg(long, default_value = "global")]
        scope: String,
        #[arg(long, default_value_t = 90)]
        valid_days: u32,
        /// The user who will hold the key (a name or user:<uuid>): a quorum
        /// counts people, so their keys and session supply one approval.
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum EthCommand {
    /// Registers the address of an ECDSA transfer-signing key as a sender on a network.
    RegisterSender {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        key: String,
        #[arg(long)]
        chain_id: u64,
        /// Put the sender in a new wallet of this name.
        #[arg(long)]
        wallet: Option<String>,
    },
    /// Compares an address's nonces on chain with those Strongroom handed out.
    Nonces {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        chain_id: u64,
        #[arg(long)]
        address: String,
    },
}

#[derive(Debug, Subcommand)]
enum BtcCommand {
    /// Records an output paying one of Strongroom's keys (where no node
    /// watches for them): it becomes the key's wallet's to spend.
    RecordDeposit {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        /// mainnet, testnet, signet or regtest.
        #[arg(long)]
        network: String,
        /// A single key's account…
        #[arg(long, required_unless_present = "address", conflicts_with = "address")]
        key: Option<String>,
        /// …or an address Strongroom issued (an HD account's).
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        txid: String,
        #[arg(long)]
        vout: u32,
        #[arg(long)]
        sat: u64,
    },
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Give one unseal share (read from standard input) to a running server.
    Unseal {
        /// The server's address.
        #[arg(long, default_value = "http://127.0.0.1:8200", env = "STRONGROOM_ADDR")]
        addr: String,
        /// Discard the shares given so far instead: with the reset token
        /// printed to the first share's holder, or a security officer's or
        /// admin's key file.
        #[arg(long)]
        reset: bool,
        /// The reset token the first share's answer printed (with --reset).
        #[arg(long, env = "STRONGROOM_UNSEAL_TOKEN")]
        token: Option<String>,
        /// A security officer's or admin's API key file (with --reset).
        #[arg(long, env = "STRONGROOM_KEY_FILE")]
        key_file: Option<PathBuf>,
    },
    /// Seal a running server: key material leaves its memory.
    Seal {
        #[arg(long, default_value = "http://127.0.0.1:8200", env = "STRONGROOM_ADDR")]
        addr: String,
        /// An API key file of a security officer or admin (`apikey create --out`).
        #[arg(long, env = "STRONGROOM_KEY_FILE")]
        key_file: PathBuf,
    },
    /// Show a running server's seal status.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:8200", env = "STRONGROOM_ADDR")]
        addr: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file: syntax, every key, and the files it names.
    Check {
        /// Configuration file (TOML).
        file: PathBuf,
    },
    /// Check a configuration file, then have the server serving it reload
    /// it (SIGHUP): the log level, the disk floor and the checkpoint limit
    /// change at once; everything else waits for a restart. Audited.
    Apply {
        /// Configuration file (TOML) the server was started with.
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
    /// Print the audit public key (64 hex digits) that checkpoints are
    /// signed with, for auditors and outside verifiers to pin.
    PublicKey {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
    },
    /// Create an Ed25519 audit key inside the configured HSM and print the
    /// `hsm_key` line for `[audit]`.
    InitHsmKey {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
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
        /// A local dev chain (anvil, chain id 31337) to configure.
        #[arg(long)]
        eth_endpoint: Option<String>,
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

#[derive(Debug, Subcommand)]
enum SignerCommand {
    /// Create a node's data directory (identity, sealed store) and print
    /// what servers and the other signers pin (JSON).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// This node's party index (1 to n).
        #[arg(long)]
        index: u16,
        /// The operator's passphrase, first line of this file (otherwise
        /// one line on standard input).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Run the node (`signer.toml`: index, listen, data_dir, servers, peers).
    Run {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Print (creating it if missing) a server's identity fingerprint, for
    /// signer nodes to pin.
    ServerIdentity {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Freeze a node from its own console: it signs nothing until unfrozen
    /// (it still answers, and records each refusal).
    Freeze {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        reason: String,
    },
    /// Lift a node's own freeze.
    Unfreeze {
        #[arg(long)]
        dir: PathBuf,
    },
    /// From a server's configuration (`[threshold]`): run the ceremony that
    /// gives the signer nodes their auxiliary information for threshold
    /// ECDSA (once per group of signers, after each has found its safe
    /// primes; tens of seconds).
    SetupEcdsa {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, listen } => load(&config).and_then(|mut c| {
            if let Some(l) = listen {
                c.listen = l;
            }
            serve::run(c, backup::spawn_scheduled)
        }),
        Command::Config(ConfigCommand::Check { file }) => setup::config_check(&file),
        Command::Config(ConfigCommand::Apply { file }) => reload::apply(&file),
        Command::Signer(SignerCommand::Init {
            dir,
            index,
            passphrase_file,
        }) => signer::init(&dir, index, passphrase_file.as_deref()),
        Command::Signer(SignerCommand::Run {
            config,
            passphrase_file,
        }) => signer::run(&config, passphrase_file.as_deref()),
        Command::Signer(SignerCommand::ServerIdentity { dir }) => signer::server_identity(&dir),
        Command::Signer(SignerCommand::Freeze { dir, reason }) => signer::freeze(&dir, &reason),
        Command::Signer(SignerCommand::Unfreeze { dir }) => signer::unfreeze(&dir),
        Command::Signer(SignerCommand::SetupEcdsa { config }) => {
            load(&config).and_then(|c| signer::setup_ecdsa(&c))
        }
        Command::Audit(AuditCommand::Verify { config, public_key }) => {
            load(&config).and_then(|c| serve::verify(c, public_key.as_deref()))
        }
        Command::Audit(AuditCommand::InitKey { out }) => setup::init_key(&out),
        Command::Audit(AuditCommand::PublicKey { config }) => load(&config)
            .and_then(|c| serve::audit_public_key(&c))
            .map(|k| println!("{k}")),
        Command::Audit(AuditCommand::InitHsmKey { config }) => {
            load(&config).and_then(serve::init_hsm_audit_key)
        }
        Command::Openapi => serde_json::to_string_pretty(&api_http::openapi())
            .map(|doc| println!("{doc}"))
            .map_err(|e| Failure::Runtime(e.into())),
        Command::Dev(DevCommand::Init {
            dir,
            listen,
            eth_endpoint,
        }) => setup::dev_init(&dir, listen, eth_endpoint.as_deref()),
        Command::Init {
            config,
            shares,
            threshold,
            share_dir,
            share_recipients,
            admin,
            admin_signing_key,
        } => load(&config).and_then(|c| {
            keyctl::init(
                c,
                threshold,
                shares,
                share_dir.as_deref(),
                share_recipients.as_deref(),
                admin.as_deref().map(|a| (a, admin_signing_key.as_deref())),
            )
        }),
        Command::Key(k) => keycmd::run(k),
        Command::Apikey(ApikeyCommand::Create {
            config,
            name,
            role,
            scope,
            valid_days,
            owner,
            out,
        }) => {
            let spec = apikey::KeySpec {
                name: &name,
                role: &role,
                scope: &scope,
                valid_days,
                owner: owner.as_deref(),
            };
            load(&config).and_then(|c| apikey::create(c, &spec, out.as_deref()))
        }
        Command::Apikey(ApikeyCommand::Propose {
            addr,
            key_file,
            name,
            role,
            scope,
            valid_days,
            owner,
            out,
        }) => {
            let spec = apikey::KeySpec {
                name: &name,
                role: &role,
                scope: &scope,
                valid_days,
                owner: owner.as_deref(),
            };
            govern::propose_api_key(&addr, &key_file, &spec, out.as_deref())
        }
        Command::Offline(OfflineCommand::Sign {
            psbt,
            mnemonic_file,
            passphrase_file,
            path,
            network,
            out,
            trust_input_amounts,
            accept_fee,
            finalize,
        }) => offline::sign(offline::SignArgs {
            psbt: &psbt,
            mnemonic_file: &mnemonic_file,
            passphrase_file: passphrase_file.as_deref(),
            path: path.as_deref(),
            network: &network,
            out: &out,
            trust_input_amounts,
            accept_fee,
            finalize,
        }),
        Command::ApproverKey(ApproverKeyCommand::New { out }) => govern::new_approver_key(&out),
        Command::Cold(ColdCommand::Export {
            addr,
            key_file,
            transfer,
            out,
        }) => coldctl::export(&addr, &key_file, &transfer, out.as_deref()),
        Command::Cold(ColdCommand::Import {
            addr,
            key_file,
            transfer,
            file,
        }) => coldctl::import(&addr, &key_file, &transfer, &file),
        Command::Approve {
            addr,
            key_file,
            approver_key,
            transfer,
            proposal,
            reject,
            reason,
            ttl_minutes,
            yes,
        } => match (proposal, transfer, approver_key) {
            (Some(p), _, k) => govern::vote_proposal(&addr, &key_file, k.as_deref(), &p, !reject),
            (None, Some(t), Some(k)) => {
                let rejection = reject.then(|| reason.as_deref().unwrap_or(""));
                govern::approve(&addr, &key_file, &k, &t, rejection, ttl_minutes, yes)
            }
            _ => Err(Failure::Config(ConfigError {
                key: "--approver-key".into(),
                message: "approving a transfer takes --transfer and --approver-key".into(),
            })),
        },
        Command::Transfer(TransferCommand::DryRun {
            addr,
            key_file,
            wallet,
            asset,
            amount,
            to,
        }) => govern::dry_run(&addr, &key_file, &wallet, &asset, &amount, &to),
        Command::Policy(PolicyCommand::Check { file }) => govern::check_policy(&file),
        Command::Freeze {
            config,
            scope,
            reason,
        } => load(&config).and_then(|c| govern::freeze(c, &scope, &reason)),
        Command::Price(PriceCommand::Set {
            addr,
            key_file,
            asset,
            usd,
        }) => govern::propose_price(&addr, &key_file, &asset, &usd),
        Command::Api {
            addr,
            key_file,
            method,
            path,
            body,
            idempotency_key,
        } => operator::api(
            &addr,
            &key_file,
            &method,
            &path,
            body.as_deref(),
            idempotency_key.as_deref(),
        ),
        Command::Eth(e) => match e {
            EthCommand::RegisterSender {
                config,
                key,
                chain_id,
                wallet,
            } => load(&config)
                .and_then(|c| ethctl::register_sender(c, &key, chain_id, wallet.as_deref())),
            EthCommand::Nonces {
                config,
                chain_id,
                address,
            } => load(&config).and_then(|c| ethctl::nonces(c, chain_id, &address)),
        },
        Command::Btc(BtcCommand::RecordDeposit {
            config,
            network,
            key,
            address,
            txid,
            vout,
            sat,
        }) => load(&config).and_then(|c| {
            let to = match (key, address) {
                (Some(k), _) => btcctl::PaidTo::Key(k),
                (None, Some(a)) => btcctl::PaidTo::Address(a),
                (None, None) => btcctl::PaidTo::Key(String::new()),
            };
            btcctl::record_deposit(c, &network, &to, &txid, vout, sat)
        }),
        Command::Backup(b) => backup::run(b),
        Command::Restore(a) => backup::restore(a),
        Command::Reconcile { config } => load(&config).and_then(reconcile::run),
        Command::Operator(o) => match o {
            OperatorCommand::Unseal {
                addr,
                reset,
                token,
                key_file,
            } => operator::unseal(&addr, reset, token.as_deref(), key_file.as_deref()),
            OperatorCommand::Seal { addr, key_file } => operator::seal(&addr, &key_file),
            OperatorCommand::Status { addr } => operator::status(&addr),
        },
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

pub(crate) fn load(path: &Path) -> Result<Config, Failure> {
    Ok(Config::load(path)?)
}

//! `strongroom key`: the key inventory from the console (commands that use
//! key material read unseal shares from standard input).

use std::path::PathBuf;

use clap::Subcommand;

use crate::{Failure, keyctl, load};

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Create a key in the keystore.
    Create {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        /// transfer-signing, approval, audit or backup-wrapping.
        #[arg(long)]
        purpose: String,
        /// ecdsa-secp256k1, schnorr-bip340 or ed25519.
        #[arg(long)]
        algorithm: String,
        /// keystore (sealed in the database) or pkcs11 (the configured HSM).
        #[arg(long, default_value = "keystore")]
        backend: String,
        /// How long the key may sign.
        #[arg(long, default_value_t = 365)]
        cryptoperiod_days: u32,
    },
    /// Create an HD key: prints its 24-word mnemonic once (the paper backup)
    /// and the account xpub; the seed is sealed in the keystore.
    CreateHd(HdKeyArgs),
    /// Import an HD key from a BIP-39 mnemonic made elsewhere (a migration
    /// from another wallet): the shares, then the words (then the
    /// passphrase, with --passphrase) on standard input, one per line. The
    /// checksum is checked; the words and passphrase are shown and stored
    /// nowhere, only the seed is sealed.
    ImportMnemonic(HdKeyArgs),
    /// Watch-only: the public key at CHILD (e.g. 0/5) below an HD key's xpub.
    Derive {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        key: String,
        /// Non-hardened steps below the account: receive 0/i, change 1/i.
        #[arg(long)]
        child: String,
    },
    /// List the inventory (no key material needed).
    List {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
    },
    /// Sign a challenge naming the key and verify it with an independent library.
    SelfTest {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        key: String,
    },
    /// Move a key through its lifecycle: active, suspended, deactivated, compromised, destroyed.
    SetState {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        key: String,
        #[arg(long)]
        state: String,
    },
    /// Let the server unseal itself at start with the root key wrapped under
    /// a new key in the configured HSM (shares still work).
    EnableAutoUnseal {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
    },
    /// Rotate a transfer-signing key: its successor (a new version with
    /// fresh material, or a new HSM key), the wallets' Ethereum accounts
    /// moved to it, and sweep transfers of every balance under the old key
    /// to the successor's addresses through the ordinary pipeline. The old
    /// key is deactivated (a compromised one stays compromised) and signs
    /// only those sweeps.
    Rotate {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        key: String,
        #[arg(long, default_value_t = 365)]
        cryptoperiod_days: u32,
    },
    /// Refresh the shares of a threshold (FROST Taproot) key among its
    /// signer nodes: the same key and addresses, new shares; the signers
    /// given with --remove are left out and hold nothing usable of it
    /// afterwards. Finishes an interrupted refresh first.
    Refresh {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        key: String,
        /// A signer (its index) to remove from the key; may be repeated.
        #[arg(long)]
        remove: Vec<u16>,
    },
    /// Split the root key again into new unseal shares (a threshold of the
    /// current ones on standard input): the server refuses the old shares
    /// from then on. For a share holder who is gone or a share that is lost.
    Reshare {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        /// How many shares to make.
        #[arg(long)]
        shares: u8,
        /// How many shares unseal.
        #[arg(long)]
        threshold: u8,
        /// Write each new share to DIR/share-N.txt (mode 0600; never
        /// overwriting) instead of printing them.
        #[arg(long)]
        share_dir: Option<PathBuf>,
    },
    /// Rotate the key-encryption key and re-wrap every key (resumable).
    RotateKek {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
    },
    /// Let a key receive funds before a verified backup holds it (audited).
    AcceptUnbacked {
        #[arg(long, short, env = "STRONGROOM_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        key: String,
    },
}

/// An HD key's account, for `key create-hd` and `key import-mnemonic`.
#[derive(Debug, clap::Args)]
pub(crate) struct HdKeyArgs {
    #[arg(long, short, env = "STRONGROOM_CONFIG")]
    config: PathBuf,
    /// transfer-signing, approval, audit or backup-wrapping.
    #[arg(long)]
    purpose: String,
    /// ecdsa-secp256k1 (BIP-44/84) or schnorr-bip340 (BIP-86).
    #[arg(long)]
    algorithm: String,
    /// The hardened account path, e.g. "m/84'/0'/0'" (for an import, the
    /// one the other wallet used).
    #[arg(long)]
    account_path: String,
    #[arg(long, default_value_t = 365)]
    cryptoperiod_days: u32,
    /// Read a BIP-39 passphrase from standard input (one more line after
    /// the shares and any words); it is needed with the words to recover
    /// the key.
    #[arg(long)]
    passphrase: bool,
    /// Print the account's xpub with its SLIP-132 prefix too (zpub/vpub
    /// for BIP-84, ypub/upub for BIP-49).
    #[arg(long)]
    slip132: bool,
}

fn hd(a: HdKeyArgs, import: bool) -> Result<(), Failure> {
    load(&a.config).and_then(|c| {
        keyctl::create_hd(
            c,
            &keyctl::HdArgs {
                purpose: &a.purpose,
                algorithm: &a.algorithm,
                account_path: &a.account_path,
                cryptoperiod_days: a.cryptoperiod_days,
                passphrase: a.passphrase,
                slip132: a.slip132,
                import,
            },
        )
    })
}

pub(crate) fn run(k: KeyCommand) -> Result<(), Failure> {
    match k {
        KeyCommand::Create {
            config,
            purpose,
            algorithm,
            backend,
            cryptoperiod_days,
        } => load(&config)
            .and_then(|c| keyctl::create(c, &purpose, &algorithm, &backend, cryptoperiod_days)),
        KeyCommand::CreateHd(a) => hd(a, false),
        KeyCommand::ImportMnemonic(a) => hd(a, true),
        KeyCommand::Derive { config, key, child } => {
            load(&config).and_then(|c| keyctl::derive(c, &key, &child))
        }
        KeyCommand::List { config } => load(&config).and_then(keyctl::list),
        KeyCommand::SelfTest { config, key } => {
            load(&config).and_then(|c| keyctl::self_test(c, &key))
        }
        KeyCommand::SetState { config, key, state } => {
            load(&config).and_then(|c| keyctl::set_state(c, &key, &state))
        }
        KeyCommand::RotateKek { config } => load(&config).and_then(keyctl::rotate_kek),
        KeyCommand::Reshare {
            config,
            shares,
            threshold,
            share_dir,
        } => {
            load(&config).and_then(|c| keyctl::reshare(c, threshold, shares, share_dir.as_deref()))
        }
        KeyCommand::AcceptUnbacked { config, key } => {
            load(&config).and_then(|c| keyctl::accept_unbacked(c, &key))
        }
        KeyCommand::Rotate {
            config,
            key,
            cryptoperiod_days,
        } => load(&config).and_then(|c| keyctl::rotate(c, &key, cryptoperiod_days)),
        KeyCommand::Refresh {
            config,
            key,
            remove,
        } => load(&config).and_then(|c| keyctl::refresh(c, &key, &remove)),
        KeyCommand::EnableAutoUnseal { config } => {
            load(&config).and_then(keyctl::enable_auto_unseal)
        }
    }
}

//! Wallets: made and given their senders and keys — an account opened on a
//! network with a key on the chosen backend (a keystore key, an HSM key, a
//! Bitcoin HD account, or a threshold key made by the signer nodes), and
//! the addresses deposits reach them at.

use domain::{Actor, KeyId, Network, WalletId};
use serde_json::json;
use storage::WalletRow;

use crate::btc::net_name;
use crate::btc_transfers::{account_added, address_entry};
use crate::moves::{check_name, corrupt, invalid};
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// A wallet's address on a network, and the key behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletAccount {
    pub network: Network,
    /// Where deposits to the wallet go (EIP-55 or bech32).
    pub address: String,
    pub key: KeyId,
    /// What a watch-only wallet elsewhere needs (Bitcoin accounts).
    pub watch: Option<WatchOnly>,
}

/// A Bitcoin account for watch-only import (Bitcoin Core, Sparrow,
/// Electrum): output descriptors with their checksums and, for an HD
/// account, its extended public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOnly {
    /// The hardened account path of an HD account.
    pub account_path: Option<String>,
    /// The account xpub with the network's prefix (`xpub`/`tpub`).
    pub xpub: Option<String>,
    /// The same key with its SLIP-132 prefix (`zpub`/`vpub` for P2WPKH).
    pub slip132: Option<String>,
    /// Receive addresses (`…/0/*` for an HD account; the one key otherwise).
    pub descriptor: String,
    /// Change addresses of an HD account (`…/1/*`).
    pub change_descriptor: Option<String>,
}

/// The watch-only view of a Bitcoin account key: an HD account (P2WPKH
/// below its xpub) or a single key (P2WPKH or BIP-86 Taproot); none for a
/// threshold key, whose output key is already tweaked.
fn watch_only(row: &storage::KeyRow, spend: Option<&chain_btc::Spend>) -> Option<WatchOnly> {
    let sum = |d: String| chain_btc::checksummed(&d).ok();
    if let Some(path) = &row.hd_path {
        let xpub = keys::hd::xpub_for(&row.public_key, path, false).ok()?;
        let slip132 = keys::hd::xpub_for(&row.public_key, path, true)
            .ok()
            .filter(|s| *s != xpub);
        let kind = match row.algorithm {
            domain::KeyAlgorithm::SchnorrBip340 => "tr",
            _ => "wpkh",
        };
        return Some(WatchOnly {
            account_path: Some(path.clone()),
            descriptor: sum(format!("{kind}({xpub}/0/*)"))?,
            change_descriptor: Some(sum(format!("{kind}({xpub}/1/*)"))?),
            xpub: Some(xpub),
            slip132,
        });
    }
    let descriptor = match spend? {
        chain_btc::Spend::P2wpkh { pubkey } => format!("wpkh({})", hex::encode(pubkey)),
        chain_btc::Spend::P2tr { internal_key } => format!("tr({})", hex::encode(internal_key)),
        chain_btc::Spend::P2wshMulti { threshold, pubkeys } => format!(
            "wsh(sortedmulti({threshold},{}))",
            pubkeys
                .iter()
                .map(hex::encode)
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => return None,
    };
    Some(WatchOnly {
        account_path: None,
        xpub: None,
        slip132: None,
        descriptor: sum(descriptor)?,
        change_descriptor: None,
    })
}

impl Service {
    /// A wallet's accounts: its Ethereum senders and Bitcoin keys, with the
    /// address deposits go to.
    pub async fn wallet_accounts(
        &self,
        wallet: WalletId,
    ) -> Result<Vec<WalletAccount>, ServiceError> {
        let mut out = Vec::new();
        for (network, address) in self.store().wallet_eth_senders(wallet).await? {
            let sender = self.store().eth_sender(&network, &address).await?;
            let a: chain_eth::EthAddress = address.parse().map_err(|e| corrupt("address", e))?;
            out.push(WalletAccount {
                network: network.parse().map_err(|e| corrupt("network", e))?,
                address: a.to_string(),
                key: sender.key_id,
                watch: None,
            });
        }
        for (network, key) in self.store().wallet_btc_accounts(wallet).await? {
            let n = match network.parse::<Network>() {
                Ok(Network::Bitcoin(n)) => n,
                _ => return Err(corrupt("Bitcoin account", "not a Bitcoin network")),
            };
            let row = self.store().key(key).await?;
            let spend = match row.hd_path {
                Some(_) => None,
                None => self.btc_spend_for(key).await.ok(),
            };
            let watch = watch_only(&row, spend.as_ref());
            let address = if row.hd_path.is_some() {
                // An HD account: its latest receive address.
                match self
                    .store()
                    .btc_addresses_of_key(&network, key, 0)
                    .await?
                    .first()
                {
                    Some(a) => a.address.clone(),
                    None => continue,
                }
            } else {
                self.btc_address(key, n).await?
            };
            out.push(WalletAccount {
                network: Network::Bitcoin(n),
                address,
                key,
                watch,
            });
        }
        Ok(out)
    }

    /// Opens an account for a wallet on a network: a new transfer-signing
    /// key on `backend` (ECDSA secp256k1: an Ethereum sender, or a P2WPKH
    /// Bitcoin key), given to the wallet. Each step is committed with its
    /// audit record; a crash between them leaves an unused key, never a
    /// half-registered one.
    pub(crate) async fn open_account(
        &self,
        actor: &Actor,
        wallet: WalletId,
        network: Network,
        kind: AccountKey,
    ) -> Result<WalletAccount, ServiceError> {
        self.store().wallet(wallet).await?;
        let taken = match network {
            Network::Evm { chain_id } => {
                self.eth_network(chain_id)?;
                let mut held = self.store().wallet_eth_senders(wallet).await?.into_iter();
                held.any(|(n, _)| n.parse::<Network>().ok() == Some(network))
            }
            Network::Bitcoin(n) => {
                self.btc_network(n)?;
                !self
                    .store()
                    .btc_current_account_keys(wallet, &net_name(n))
                    .await?
                    .is_empty()
            }
        };
        // One account per network: balances and spending see one place
        // per wallet and network (an HD account gives each deposit its own
        // address; a rotation moves the account to the new key).
        if taken {
            return Err(ServiceError::Conflict(format!(
                "the wallet already has an account on {network}; one account per network \
                 (an HD account, backend keystore-hd, gives each deposit a new address)"
            )));
        }
        let hd = match kind {
            AccountKey::Hd => Some(domain::KeyAlgorithm::EcdsaSecp256k1),
            AccountKey::HdTaproot => Some(domain::KeyAlgorithm::SchnorrBip340),
            AccountKey::Single(_) | AccountKey::External(_) => None,
            AccountKey::Multisig {
                threshold,
                cosigners,
            } => {
                let Network::Bitcoin(n) = network else {
                    return Err(invalid(
                        "multisig accounts are for Bitcoin networks (an Ethereum wallet's \
                         multisig is a contract, not a key)",
                    ));
                };
                return self
                    .open_multisig_account(actor, wallet, n, threshold, cosigners)
                    .await;
            }
        };
        if let (Some(algorithm), Network::Bitcoin(n)) = (hd, network) {
            let (key, mnemonic) = self.create_bitcoin_hd_key(actor, n, algorithm).await?;
            // The seed is sealed in the keystore (and its backups); the
            // words are not shown over the API.
            drop(mnemonic);
            // The account and its first address in one transaction: no
            // account without an address, and no request takes index 0
            // in between.
            let first = self.derive_btc_address(wallet, n, key.id, 0, 0).await?;
            let now = self.now();
            let mut tx = self.store().begin().await?;
            let added = account_added(&mut tx, actor, n, key.id, wallet, now).await?;
            tx.insert_btc_address(&first).await?;
            let e = address_entry(actor, &first)?;
            self.commit(tx, &[added, e], now).await?;
            return Ok(WalletAccount {
                network,
                address: first.address,
                watch: watch_only(&key, None),
                key: key.id,
            });
        }
        if let (AccountKey::Hd, Network::Evm { chain_id }) = (&kind, network) {
            return self.open_eth_hd_account(actor, wallet, chain_id).await;
        }
        let key = match kind {
            // Held outside (a cold wallet): its public key only.
            AccountKey::External(key) => self.import_external_key(actor, &key).await?,
            AccountKey::Single(backend) => {
                // Threshold Bitcoin keys are Taproot (FROST, BIP-86 output key).
                let algorithm = if backend == domain::KeyBackend::Threshold && network.is_bitcoin()
                {
                    domain::KeyAlgorithm::SchnorrBip340
                } else {
                    domain::KeyAlgorithm::EcdsaSecp256k1
                };
                let new = crate::NewKey {
                    purpose: domain::KeyPurpose::TransferSigning,
                    algorithm,
                    backend,
                    cryptoperiod_days: 365,
                };
                self.create_key_for(actor, new, Some(wallet)).await?
            }
            _ => {
                return Err(invalid(
                    "Taproot HD accounts are for Bitcoin networks (keystore-hd opens an HD \
                     account on Ethereum)",
                ));
            }
        };
        let address = match network {
            Network::Evm { chain_id } => {
                let sender = self
                    .register_eth_sender_unchecked(actor, key.id, chain_id, None)
                    .await?;
                let a: chain_eth::EthAddress =
                    sender.address.parse().map_err(|e| corrupt("address", e))?;
                assign_eth_sender(self, actor, chain_id, a, wallet).await?;
                a.to_string()
            }
            Network::Bitcoin(n) => self.register_btc_key(actor, n, key.id, wallet).await?,
        };
        let watch = match network {
            Network::Bitcoin(_) => watch_only(&key, self.btc_spend_for(key.id).await.ok().as_ref()),
            Network::Evm { .. } => None,
        };
        Ok(WalletAccount {
            network,
            address,
            key: key.id,
            watch,
        })
    }
}

impl Service {
    /// Opens an Ethereum HD account: a BIP-44 key (`m/44'/60'/0'`) whose
    /// child `0/0` is the wallet's sender; deposit addresses are its further
    /// children. Each step is committed with its audit record.
    async fn open_eth_hd_account(
        &self,
        actor: &Actor,
        wallet: WalletId,
        chain_id: u64,
    ) -> Result<WalletAccount, ServiceError> {
        let (key, mnemonic) = self
            .create_hd_key(
                actor,
                crate::NewHdKey {
                    purpose: domain::KeyPurpose::TransferSigning,
                    algorithm: domain::KeyAlgorithm::EcdsaSecp256k1,
                    account_path: crate::eth_hd::ETH_ACCOUNT_PATH.into(),
                    cryptoperiod_days: 365,
                },
            )
            .await?;
        // Sealed in the keystore (and its backups); not shown over the API.
        drop(mnemonic);
        let sender = self
            .register_eth_sender_unchecked(actor, key.id, chain_id, Some(0))
            .await?;
        let a: chain_eth::EthAddress = sender.address.parse().map_err(|e| corrupt("address", e))?;
        assign_eth_sender(self, actor, chain_id, a, wallet).await?;
        Ok(WalletAccount {
            network: Network::Evm { chain_id },
            address: a.to_string(),
            key: key.id,
            watch: None,
        })
    }

    /// Opens a Bitcoin multisig account: the cosigners' keys made (on the
    /// keystore or the HSM) or recorded (held outside), the account key
    /// over them, and the account given to the wallet — each step
    /// committed with its audit record (a crash between them leaves unused
    /// keys, never a half-registered account). Its cosigners are checked
    /// before any is made: 1 ≤ threshold ≤ cosigners ≤ 15, no key twice.
    async fn open_multisig_account(
        &self,
        actor: &Actor,
        wallet: WalletId,
        n: domain::BitcoinNetwork,
        threshold: usize,
        cosigners: Vec<crate::cosigners::Cosigner>,
    ) -> Result<WalletAccount, ServiceError> {
        use crate::cosigners::Cosigner;
        // Before any key is made.
        crate::cosigners::check_shape(threshold, cosigners.len())?;
        let mut external = std::collections::BTreeSet::new();
        for c in &cosigners {
            match c {
                Cosigner::New(domain::KeyBackend::Keystore | domain::KeyBackend::Pkcs11) => {}
                Cosigner::New(other) => {
                    return Err(invalid(format!(
                        "a multisig cosigner is a keystore or pkcs11 key, or one held outside \
                         (its public key), not {other}"
                    )));
                }
                Cosigner::External(crate::cosigners::ExternalKey { public_key, .. }) => {
                    if !external.insert(public_key.to_ascii_lowercase()) {
                        return Err(invalid(format!(
                            "the key {public_key} appears twice among the cosigners"
                        )));
                    }
                }
            }
        }
        let mut rows = Vec::with_capacity(cosigners.len());
        for c in cosigners {
            rows.push(match c {
                Cosigner::New(backend) => {
                    self.create_key(
                        actor,
                        crate::NewKey {
                            purpose: domain::KeyPurpose::TransferSigning,
                            algorithm: domain::KeyAlgorithm::EcdsaSecp256k1,
                            backend,
                            cryptoperiod_days: 365,
                        },
                    )
                    .await?
                }
                Cosigner::External(key) => self.import_external_key(actor, &key).await?,
            });
        }
        let key = self.record_multisig_key(actor, threshold, &rows).await?;
        let address = self.register_btc_key(actor, n, key.id, wallet).await?;
        let spend = self.btc_spend_for(key.id).await?;
        Ok(WalletAccount {
            network: Network::Bitcoin(n),
            address,
            watch: watch_only(&key, Some(&spend)),
            key: key.id,
        })
    }
}

/// What key a new account holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountKey {
    /// A single key on a backend (the keystore or the HSM).
    Single(domain::KeyBackend),
    /// An HD account in the keystore (Bitcoin): a new address per deposit,
    /// P2WPKH (BIP-84).
    Hd,
    /// The same with Taproot key-path addresses (BIP-86).
    HdTaproot,
    /// A key held outside the server (a cold wallet's): its compressed
    /// public key; what it must sign is handed out and brought back.
    External(crate::cosigners::ExternalKey),
    /// A Bitcoin multisig account, P2WSH `sortedmulti(threshold, …)`: its
    /// cosigners are new keystore or HSM keys and keys held outside.
    Multisig {
        threshold: usize,
        cosigners: Vec<crate::cosigners::Cosigner>,
    },
}

pub(crate) async fn create_wallet(
    svc: &Service,
    by: &Actor,
    name: &str,
) -> Result<WalletRow, ServiceError> {
    check_name(name, "a wallet name")?;
    let now = svc.now();
    let w = WalletRow {
        id: WalletId::from_uuid(uuid::Uuid::now_v7()),
        name: name.to_owned(),
        created_at: now,
        created_by: by.clone(),
    };
    let e = entry(
        by,
        "wallet.created",
        &format!("wallet:{}", w.id),
        json!({ "name": name }),
    )?;
    let mut tx = svc.store().begin().await?;
    tx.insert_wallet(&w).await?;
    svc.commit(tx, &[e], now).await?;
    Ok(w)
}

pub(crate) async fn assign_eth_sender(
    svc: &Service,
    by: &Actor,
    chain_id: u64,
    address: chain_eth::EthAddress,
    wallet: WalletId,
) -> Result<(), ServiceError> {
    svc.store().wallet(wallet).await?;
    let network = format!("eip155:{chain_id}");
    let now = svc.now();
    let e = entry(
        by,
        "eth.sender.assigned",
        &format!("eth:{network}:{address}"),
        json!({ "wallet": wallet.to_string() }),
    )?;
    let mut tx = svc.store().begin().await?;
    tx.set_eth_sender_wallet(&network, &address.to_lower_hex(), wallet)
        .await?;
    svc.commit(tx, &[e], now).await?;
    Ok(())
}

/// Puts a sender in a wallet that has no other on its network (one
/// account per network; assigning the same one again changes nothing).
pub(crate) async fn assign_only_eth_sender(
    svc: &Service,
    by: &Actor,
    chain_id: u64,
    address: chain_eth::EthAddress,
    wallet: WalletId,
) -> Result<(), ServiceError> {
    let network = format!("eip155:{chain_id}");
    // An HD account's addresses (its sender, its deposit addresses) stay in
    // the wallet they were made for: their sweeps pay its sender.
    let key = address.to_lower_hex();
    match svc.store().eth_sender(&network, &key).await {
        Ok(s) if s.hd_index.is_some() => {
            if svc.store().eth_sender_wallet(&network, &key).await? != Some(wallet) {
                return Err(invalid(
                    "an HD account's addresses stay in the wallet they were made for",
                ));
            }
        }
        Ok(_) | Err(storage::StorageError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let held = svc.store().wallet_eth_senders(wallet).await?;
    if held
        .iter()
        .any(|(n, a)| *n == network && *a != address.to_lower_hex())
    {
        return Err(ServiceError::Conflict(format!(
            "the wallet already has an account on {network}; one account per network"
        )));
    }
    assign_eth_sender(svc, by, chain_id, address, wallet).await
}

impl Service {
    /// Console (CLI) wallet creation.
    pub async fn console_create_wallet(
        &self,
        console: &Actor,
        name: &str,
    ) -> Result<WalletRow, ServiceError> {
        create_wallet(self, console, name).await
    }

    /// Console (CLI) assignment of a sender to a wallet.
    pub async fn console_assign_eth_sender(
        &self,
        console: &Actor,
        chain_id: u64,
        address: chain_eth::EthAddress,
        wallet: WalletId,
    ) -> Result<(), ServiceError> {
        assign_only_eth_sender(self, console, chain_id, address, wallet).await
    }
}

impl Service {
    /// The wallet an Ethereum send belongs to, to authorise reading it.
    pub async fn eth_send_wallet(&self, id: &str) -> Result<Option<WalletId>, ServiceError> {
        let send = self.store().eth_send(id).await?;
        Ok(self
            .store()
            .eth_sender_wallet(&send.network, &send.address)
            .await?)
    }

    /// The wallet a Bitcoin send belongs to, to authorise reading it.
    pub async fn btc_send_wallet(&self, id: &str) -> Result<Option<WalletId>, ServiceError> {
        Ok(self.store().btc_send(id).await?.wallet)
    }

    /// Whether the database answers (health checks).
    pub async fn database_reachable(&self) -> bool {
        self.store().ping().await.is_ok()
    }
}

impl crate::access::Can<'_, crate::access::perm::InitiateTransfer> {
    /// The wallet's deposit address on an Ethereum network — once a
    /// verified backup holds its key, or its risk was accepted (no key
    /// without a backup, as for Bitcoin): a single-key account's sender; an
    /// HD account's address for `label` (issued once per label), or
    /// unlabelled the newest one not yet paid, else a new one, with its
    /// derivation.
    pub async fn eth_deposit_address(
        &self,
        wallet: WalletId,
        chain_id: u64,
        label: Option<&str>,
    ) -> Result<(String, Option<Derivation>), ServiceError> {
        if !domain::permits(
            self.who.grants(),
            domain::Permission::InitiateTransfer,
            Some(wallet),
        ) {
            return Err(storage::StorageError::NotFound { what: "wallet" }.into());
        }
        let network = Network::Evm { chain_id }.to_string();
        let address = self
            .svc
            .store()
            .wallet_eth_sender(wallet, &network)
            .await?
            .ok_or_else(|| invalid(format!("the wallet has no account on {network}")))?;
        let sender = self.svc.store().eth_sender(&network, &address).await?;
        if sender.hd_index.is_none() && label.is_some() {
            return Err(invalid(
                "label: the wallet's account on this network is a single key with one \
                 address (an HD account, backend keystore-hd, issues one per label)",
            ));
        }
        self.svc.backed_up(sender.key_id).await?;
        if sender.hd_index.is_none() {
            let address: chain_eth::EthAddress =
                address.parse().map_err(|e| corrupt("sender", e))?;
            return Ok((address.to_string(), None));
        }
        let d = self
            .svc
            .issue_eth_deposit_address(&self.who.actor, wallet, &sender, label)
            .await?;
        let address: chain_eth::EthAddress =
            d.address.parse().map_err(|e| corrupt("address", e))?;
        Ok((
            address.to_string(),
            Some(Derivation {
                key: d.key,
                path: format!("{}/0/{}", crate::eth_hd::ETH_ACCOUNT_PATH, d.index),
                chain: 0,
                index: d.index,
            }),
        ))
    }
}

impl Service {
    /// An HD transfer-signing key for network `n` and its words: BIP-84
    /// (`m/84'/coin'/0'`, P2WPKH) for ECDSA, BIP-86 (`m/86'/coin'/0'`,
    /// Taproot) for BIP-340; coin 0 on mainnet, 1 elsewhere.
    pub(crate) async fn create_bitcoin_hd_key(
        &self,
        actor: &Actor,
        n: domain::BitcoinNetwork,
        algorithm: domain::KeyAlgorithm,
    ) -> Result<(storage::KeyRow, keys::hd::Mnemonic), ServiceError> {
        let coin = u32::from(n != domain::BitcoinNetwork::Mainnet);
        let purpose = match algorithm {
            domain::KeyAlgorithm::SchnorrBip340 => 86,
            _ => 84,
        };
        self.create_hd_key(
            actor,
            crate::NewHdKey {
                purpose: domain::KeyPurpose::TransferSigning,
                algorithm,
                account_path: format!("m/{purpose}'/{coin}'/0'"),
                cryptoperiod_days: 365,
            },
        )
        .await
    }
}

impl crate::access::Can<'_, crate::access::perm::ReadWallet> {
    /// The wallets in scope, in creation order, after `after`, at most
    /// `limit` (1 to 500).
    pub async fn wallets(
        &self,
        after: Option<WalletId>,
        limit: u32,
    ) -> Result<Vec<WalletRow>, ServiceError> {
        let limit = limit.clamp(1, 500);
        let grants = &self.who.grants;
        if domain::permits(grants, domain::Permission::ReadWallet, None) {
            return Ok(self.svc.store().wallets_page(after, limit).await?);
        }
        let mut ids: Vec<WalletId> = grants
            .iter()
            .filter_map(|g| match g.scope() {
                domain::Scope::Wallet(w)
                    if domain::permits(grants, domain::Permission::ReadWallet, Some(w)) =>
                {
                    Some(w)
                }
                _ => None,
            })
            .filter(|w| after.is_none_or(|a| *w > a))
            .collect();
        ids.sort();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids.into_iter().take(limit as usize) {
            match self.svc.store().wallet(id).await {
                Ok(w) => out.push(w),
                Err(storage::StorageError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// An Ethereum send with its transaction as it stands: the attempt
    /// included (or the latest), and the fee paid once final (from the
    /// ledger). Outside the capability's scope it is not found.
    pub async fn eth_send_detail(
        &self,
        id: &str,
    ) -> Result<
        (
            storage::EthSendRow,
            Option<storage::EthAttemptRow>,
            Option<u128>,
        ),
        ServiceError,
    > {
        let send = self.eth_send(id).await?;
        let attempts = self.svc.store().eth_attempts(&send.id).await?;
        let shown = match send.included_attempt {
            Some(n) => attempts.into_iter().find(|a| a.attempt == n),
            None => attempts.into_iter().last(),
        };
        let fee = match shown.as_ref().and_then(|a| a.tx_hash.as_ref()) {
            Some(h) => self
                .svc
                .store()
                .ledger_delta(&format!("fee:{}:{h}", send.network))
                .await?
                .map(|d| d.unsigned_abs()),
            None => None,
        };
        Ok((send, shown, fee))
    }
}

/// Where an issued Bitcoin address comes from: its HD account key and
/// the full derivation path (`m/84'/1'/0'/0/7`), for watch-only import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    pub key: KeyId,
    pub path: String,
    pub chain: u32,
    pub index: u32,
}

impl crate::access::Can<'_, crate::access::perm::InitiateTransfer> {
    /// [`Self::deposit_address`], with its derivation when it comes from
    /// an HD account.
    pub async fn deposit_address_derived(
        &self,
        wallet: WalletId,
        n: domain::BitcoinNetwork,
    ) -> Result<(String, Option<Derivation>), ServiceError> {
        let address = self.deposit_address(wallet, n).await?;
        let derivation = match self
            .svc
            .store()
            .btc_address_row(&net_name(n), &address)
            .await?
        {
            Some(row) => {
                let account = self.svc.store().key(row.key).await?.hd_path;
                account.map(|p| Derivation {
                    key: row.key,
                    path: format!("{p}/{}/{}", row.chain, row.index),
                    chain: row.chain,
                    index: row.index,
                })
            }
            None => None,
        };
        Ok((address, derivation))
    }
}

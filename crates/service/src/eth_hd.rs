//! Ethereum accounts' senders and HD deposit addresses.
//!
//! A sender is a key's address on a network: a single ECDSA key's, or a
//! child of an HD key (BIP-44 `m/44'/60'/0'/0/i`). An HD account's sender
//! is child 0; each deposit address a further child, issued per label (one
//! per user of the integrator) or, unlabelled, fresh once the last one was
//! paid. A deposit address is a sender row of its wallet with its own
//! account id, so the deposit scanner, the reconciliation and the nonce
//! rules cover it as they cover senders; it sends nothing but sweeps of
//! its funds to the account's sender (their intents name it as their
//! account, [`Service::eth_source`]) — the gas of a token sweep comes from
//! the sender as a `gas_top_up` transfer first (`eth_sweeps`).

use chain_eth::EthAddress;
use chain_eth_client::NonceTag;
use domain::{
    AccountId, Actor, KeyAlgorithm, KeyId, KeyPurpose, Timestamp, TransferKind, WalletId,
};
use serde_json::json;
use storage::{EthDepositAddressRow, EthSenderRow, StorageError};

use crate::eth::{EthError, addr_key};
use crate::gate::{child_at, sender_public_key};
use crate::moves::{corrupt, invalid};
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// The account path of an Ethereum HD key (BIP-44, coin type 60 on every
/// EVM chain, as wallets derive it).
pub const ETH_ACCOUNT_PATH: &str = "m/44'/60'/0'";

/// How many children past the last one this copy knows an HD account
/// keeps back after a restore (BIP-44's gap limit): the lost server may
/// have issued them after the snapshot, so they are never handed out again
/// (deposits to them are still scanned and swept).
pub const RESTORE_GAP: u32 = 20;

/// The longest label a deposit address may be issued for.
const MAX_LABEL: usize = 100;

/// Within a restore's opening transaction: each current HD account records
/// its next [`RESTORE_GAP`] children as retired deposit addresses, derived
/// from its xpub (no node: the restore runs offline), with first nonce 0
/// (a send the lost server made from one is found by the reconciliation).
/// Returns their audit entries.
pub(crate) async fn reserve_deposit_gap(
    tx: &mut storage::WriteTx,
    accounts: &[(EthSenderRow, WalletId, storage::KeyRow)],
    by: &Actor,
    now: Timestamp,
) -> Result<Vec<audit::Entry>, ServiceError> {
    let mut entries = Vec::new();
    for (account, wallet, key) in accounts {
        let network = &account.network;
        let first = tx.next_eth_hd_index(network, key.id).await?;
        for index in first..first.saturating_add(RESTORE_GAP) {
            let pk = sender_public_key(key, &[0, index])?;
            let address = EthAddress::from_public_key(&pk).map_err(EthError::Address)?;
            let sender = EthSenderRow {
                network: network.clone(),
                address: addr_key(address),
                key_id: key.id,
                first_nonce: 0,
                created_at: now,
                created_by: by.clone(),
                hd_index: Some(index),
            };
            let d = EthDepositAddressRow {
                id: AccountId::from_uuid(uuid::Uuid::now_v7()),
                network: network.clone(),
                address: sender.address.clone(),
                wallet: *wallet,
                key: key.id,
                index,
                label: None,
                created_at: now,
            };
            tx.insert_eth_deposit_address(&sender, &d).await?;
            tx.retire_eth_deposit_address(network, &d.address, now)
                .await?;
            entries.push(entry(
                by,
                "eth.deposit_address.reserved",
                &format!("eth:{network}:{address}"),
                json!({
                    "wallet": wallet.to_string(),
                    "key": key.id.to_string(),
                    "derivation_path": format!("{ETH_ACCOUNT_PATH}/0/{index}"),
                    "reason": "restore: the lost server may have issued it",
                }),
            )?);
        }
    }
    Ok(entries)
}

fn check_label(label: &str) -> Result<(), ServiceError> {
    let ok = !label.is_empty()
        && label.len() <= MAX_LABEL
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@-/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "label: 1 to {MAX_LABEL} characters of A-Z, a-z, 0-9 and . _ : @ - /"
        )))
    }
}

impl Service {
    /// [`Service::register_eth_sender`] for the account a key is made for;
    /// for an HD key, its child `0/index` (`Some`), else the key itself.
    pub(crate) async fn new_eth_sender(
        &self,
        actor: &Actor,
        key_id: KeyId,
        chain_id: u64,
        index: Option<u32>,
    ) -> Result<EthSenderRow, ServiceError> {
        let net = self.eth_network(chain_id)?;
        let key = self.store().key(key_id).await?;
        if key.algorithm != KeyAlgorithm::EcdsaSecp256k1
            || key.purpose != KeyPurpose::TransferSigning
            || key.hd_path.is_some() != index.is_some()
        {
            return Err(ServiceError::KeyNotUsable(format!(
                "key {key_id} is not an ECDSA transfer-signing key of this kind (single or HD)"
            )));
        }
        let pk = sender_public_key(&key, &child_at(index))?;
        let address = EthAddress::from_public_key(&pk).map_err(EthError::Address)?;
        let first_nonce = net
            .client
            .nonce(address, NonceTag::Pending)
            .await
            .map_err(EthError::Node)?;
        Ok(EthSenderRow {
            network: net.network().to_string(),
            address: addr_key(address),
            key_id,
            first_nonce,
            created_at: self.now(),
            created_by: actor.clone(),
            hd_index: index,
        })
    }

    /// Registers a sender made by [`Self::new_eth_sender`], audited.
    pub(crate) async fn register_eth_sender_unchecked(
        &self,
        actor: &Actor,
        key_id: KeyId,
        chain_id: u64,
        index: Option<u32>,
    ) -> Result<EthSenderRow, ServiceError> {
        let row = self.new_eth_sender(actor, key_id, chain_id, index).await?;
        let address: EthAddress = row.address.parse().map_err(|e| corrupt("sender", e))?;
        let mut detail = json!({ "key": key_id.to_string(), "first_nonce": row.first_nonce });
        if let Some(i) = index {
            detail["derivation_path"] = json!(format!("{ETH_ACCOUNT_PATH}/0/{i}"));
        }
        let e = entry(
            actor,
            "eth.sender.registered",
            &format!("eth:{}:{}", row.network, address),
            detail,
        )?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.insert_eth_sender(&row).await?;
        self.commit(tx, &[e], now).await?;
        Ok(row)
    }

    /// A deposit address of the wallet's HD account on `chain_id`: the one
    /// issued for `label`, else a new one; unlabelled, the newest unlabelled
    /// one nothing has paid yet, else a new one. Each new one is the key's
    /// next child, recorded with its audit record.
    pub(crate) async fn issue_eth_deposit_address(
        &self,
        actor: &Actor,
        wallet: WalletId,
        account: &EthSenderRow,
        label: Option<&str>,
    ) -> Result<EthDepositAddressRow, ServiceError> {
        let network = account.network.clone();
        if account.hd_index.is_none() {
            return Err(invalid(
                "the wallet's account on this network is a single key: it has one address \
                 (an HD account, backend keystore-hd, issues one per label)",
            ));
        }
        if let Some(l) = label {
            check_label(l)?;
        }
        let reused = match label {
            Some(l) => {
                self.store()
                    .eth_deposit_address_labelled(wallet, &network, l)
                    .await?
            }
            None => {
                self.store()
                    .eth_deposit_address_unpaid(wallet, &network)
                    .await?
            }
        };
        if let Some(d) = reused {
            return Ok(d);
        }
        // None new while a restore is reconciled (the lost server may have
        // issued the next ones) or the key is being rotated.
        if self.store().open_recovery().await?.is_some() {
            return Err(ServiceError::Conflict(
                "a restore is being reconciled with the chains: no new deposit address until \
                 it is done"
                    .into(),
            ));
        }
        if self.store().key_successor(account.key_id).await?.is_some() {
            return Err(ServiceError::Conflict(
                "the account's key is being rotated: ask again once it is done".into(),
            ));
        }
        let chain_id = match network.parse() {
            Ok(domain::Network::Evm { chain_id }) => chain_id,
            _ => return Err(corrupt("network", &network)),
        };
        // The index is read again under the write lock; a concurrent issue
        // that took it makes the insert fail (unique), never a shared one.
        let index = self
            .store()
            .next_eth_hd_index(&network, account.key_id)
            .await?;
        let sender = self
            .new_eth_sender(actor, account.key_id, chain_id, Some(index))
            .await?;
        let d = EthDepositAddressRow {
            id: AccountId::from_uuid(uuid::Uuid::now_v7()),
            network: network.clone(),
            address: sender.address.clone(),
            wallet,
            key: account.key_id,
            index,
            label: label.map(str::to_owned),
            created_at: sender.created_at,
        };
        let shown: EthAddress = d.address.parse().map_err(|e| corrupt("address", e))?;
        let e = entry(
            actor,
            "eth.deposit_address.issued",
            &format!("eth:{network}:{shown}"),
            json!({
                "wallet": wallet.to_string(),
                "account": d.id.to_string(),
                "key": d.key.to_string(),
                "derivation_path": format!("{ETH_ACCOUNT_PATH}/0/{index}"),
                "label": d.label,
            }),
        )?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let inserted = if tx.next_eth_hd_index(&network, account.key_id).await? == index {
            tx.insert_eth_deposit_address(&sender, &d).await
        } else {
            Err(StorageError::Conflict {
                what: "deposit address",
            })
        };
        match inserted {
            // Issued meanwhile by a concurrent request: the same label's
            // address is the answer; anything else is asked again.
            Err(StorageError::Conflict { .. }) => {
                drop(tx);
                if let Some(l) = label
                    && let Some(found) = self
                        .store()
                        .eth_deposit_address_labelled(wallet, &network, l)
                        .await?
                {
                    return Ok(found);
                }
                return Err(ServiceError::Conflict(
                    "another deposit address was issued meanwhile; ask again".into(),
                ));
            }
            r => r?,
        }
        self.commit(tx, &[e], now).await?;
        Ok(d)
    }

    /// Where an Ethereum transfer of `wallet` leaves from (lower-case hex):
    /// a sweep naming a deposit address as its account, from that address
    /// (of this wallet and network); any other sweep, from the retired
    /// account whose successor is its destination; everything else from
    /// the wallet's account sender.
    pub(crate) async fn eth_source(
        &self,
        wallet: WalletId,
        network: &str,
        kind: TransferKind,
        account: Option<AccountId>,
        destination_key: &str,
    ) -> Result<Option<String>, ServiceError> {
        let deposit = account.filter(|a| a.as_uuid() != wallet.as_uuid());
        match (kind, deposit) {
            (TransferKind::Sweep, Some(id)) => {
                let d = self.store().eth_deposit_address(id).await?;
                Ok(d.filter(|d| d.wallet == wallet && d.network == network)
                    .map(|d| d.address))
            }
            (_, Some(_)) => Err(invalid(
                "only a sweep leaves from an account other than the wallet's",
            )),
            (TransferKind::Sweep, None) => Ok(self
                .store()
                .sweep_source(wallet, network, destination_key)
                .await?),
            _ => Ok(self.store().wallet_eth_sender(wallet, network).await?),
        }
    }

    /// Whether `sender` may send for `intent`: a deposit address only its
    /// own sweeps (the intent names it as its account) to an account sender
    /// of its wallet; any other sender nothing that names a deposit
    /// address, and a gas top-up only to a deposit address of its wallet.
    /// Checked before signing.
    pub(crate) async fn sends_for(
        &self,
        sender: &EthSenderRow,
        intent: &domain::TransferIntent,
    ) -> Result<Result<(), String>, ServiceError> {
        let network = &sender.network;
        let store = self.store();
        let deposit = store
            .eth_deposit_address_at(network, &sender.address)
            .await?;
        let wallet = intent.wallet();
        let named = intent.account();
        let own = named.as_uuid() == wallet.as_uuid();
        // The common send (the account's own, not a top-up) reads nothing
        // more; a sweep or a top-up is checked for where it pays.
        if deposit.is_none() && own && intent.kind() != TransferKind::GasTopUp {
            return Ok(Ok(()));
        }
        let Ok(to) = intent.destination().as_str().parse::<EthAddress>() else {
            return Ok(Err("the intent's destination is not an address".into()));
        };
        let to = to.to_lower_hex();
        let to_deposit = store.eth_deposit_address_at(network, &to).await?;
        let to_wallet = match store.eth_sender_wallet(network, &to).await {
            Ok(w) => w,
            Err(StorageError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(match (deposit, intent.kind()) {
            (Some(d), TransferKind::Sweep) if named == d.id => {
                if to_wallet == Some(wallet) && to_deposit.is_none() {
                    Ok(())
                } else {
                    Err("a deposit address is swept only to an account of its wallet".into())
                }
            }
            (Some(_), _) => Err("a deposit address sends only its own sweeps".into()),
            (None, _) if !own => Err("the intent names another account as its source".into()),
            (None, TransferKind::GasTopUp) if to_deposit.is_none_or(|d| d.wallet != wallet) => {
                Err("a gas top-up pays only a deposit address of its wallet".into())
            }
            (None, _) => Ok(()),
        })
    }
}

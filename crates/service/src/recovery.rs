//! After a restore: the installation opens a new epoch, frozen, and
//! reconciles with the chains before it signs anything.
//!
//! A backup is older than the chains. Between the snapshot and the loss,
//! the lost server may have signed and sent transfers this copy still sees
//! as queued, or used nonces this copy would hand out again. So a restore
//! places a global freeze with its epoch record ([`Service::open_epoch`]),
//! and [`Service::reconcile_restore`] (run by the server until it succeeds)
//! asks the chains, then ends that freeze itself:
//!
//! - **Ethereum**, per sending address: the node's nonce (counting its
//!   pool) against the nonces this copy handed out. A send whose transaction
//!   the chain holds, or whose nonce the chain has not used, resumes (its
//!   stored bytes are sent again, unchanged). A send whose nonce the chain
//!   used for a transaction this copy does not know goes to a person. If the
//!   chain used nonces this copy never handed out, the lost server sent
//!   transfers after the snapshot: every transfer of that wallet not yet
//!   handed to the chain may have been paid, and goes to a person; the
//!   sender's next nonce is raised past the chain's.
//! - **Bitcoin**: a send in flight resumes when the node knows its
//!   transaction. Otherwise it goes to a person — unspent inputs do not
//!   prove its transfers unpaid (the lost server may have released the send
//!   and paid them from other outputs); an input spent by a transaction this
//!   copy does not know (Core's `gettxout`) is named. Without any node
//!   configured the send is not broadcast here and resumes. A transfer not yet planned may have been paid by the
//!   lost server from other outputs: it goes to a person.
//!
//! "Goes to a person" is a freeze of the sender's key (Ethereum) or of the
//! wallet (Bitcoin, or a network this server has no node for), whose
//! reason and the `restore.reconciled` audit record name each transfer and
//! why; a quorum ends it once people have looked at the chain.

use std::collections::BTreeSet;

use chain_eth::EthAddress;
use chain_eth_client::TxStatus;
use domain::{Actor, AssetId, KeyId, Network, WalletId};
use serde::Serialize;
use serde_json::json;
use storage::{RecoveryRow, TransferRow};

use crate::eth::{EthError, state as send_state};
use crate::freezes::{FreezeScope, new_freeze, place_in};
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// Transfer states before anything is handed to a chain: the lost server
/// may have carried such a transfer out after the snapshot.
const NOT_YET_PLANNED: [&str; 3] = ["pending_approval", "time_locked", "queued"];

/// Findings named in the `restore.reconciled` audit record (all of them are
/// in the restore's stored report).
const AUDITED_FINDINGS: usize = 20;

/// What the chains settled and what went to a person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reconciled {
    /// The restore reconciled.
    pub recovery: String,
    /// Sends that resume, and why the chain allows it.
    pub resumed: Vec<Finding>,
    /// Transfers and sends a person must look at, and why.
    pub review: Vec<Finding>,
    /// The freezes placed for them (`key:<id>`, `wallet:<id>`).
    pub frozen: Vec<String>,
    /// Ethereum senders whose next nonce was raised to the chain's.
    pub nonce_floors: Vec<NonceFloor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `transfer:<id>` or `eth-send:<id>` / `btc-send:<id>`.
    pub subject: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NonceFloor {
    pub network: String,
    pub address: String,
    pub next_nonce: u64,
}

impl Reconciled {
    fn resume(&mut self, subject: String, why: impl Into<String>) {
        self.resumed.push(Finding {
            subject,
            why: why.into(),
        });
    }
    fn review(&mut self, subject: String, why: impl Into<String>) {
        self.review.push(Finding {
            subject,
            why: why.into(),
        });
    }
}

/// The network a transfer's asset is on (`None`: unreadable, treated as
/// unknown, so it goes to a person).
fn network_of(t: &TransferRow) -> Option<Network> {
    t.asset.parse::<AssetId>().ok().map(|a| a.network())
}

impl Service {
    /// Opens the epoch a restore starts: its first audit record names the
    /// backup (`details`), and a global freeze holds every signature and
    /// broadcast until [`Service::reconcile_restore`] has asked the chains.
    pub async fn open_epoch(
        &self,
        by: &Actor,
        manifest_sha256: &str,
        from_audit_seq: u64,
        details: serde_json::Value,
    ) -> Result<RecoveryRow, ServiceError> {
        let now = self.now();
        let freeze = new_freeze(
            by,
            FreezeScope::Global,
            &format!("restored at record {from_audit_seq}: reconciling with the chains"),
            now,
        );
        let row = RecoveryRow {
            id: uuid::Uuid::now_v7().to_string(),
            restored_at: now,
            from_audit_seq,
            manifest_sha256: manifest_sha256.to_owned(),
            freeze_id: freeze.id.clone(),
            reconciled_at: None,
            report: None,
        };
        // Ethereum HD accounts keep back the children the lost server may
        // have issued: never handed out again, scanned and swept.
        let mut accounts = Vec::new();
        for (sender, wallet) in self.store().eth_hd_accounts().await? {
            let key = self.store().key(sender.key_id).await?;
            accounts.push((sender, wallet, key));
        }
        let mut tx = self.store().begin().await?;
        // The epoch record first: `audit verify` reads it before any later
        // record of this log.
        let epoch = entry(by, audit::EPOCH_ACTION, "backup", details)?;
        let placed = place_in(&mut tx, by, &freeze, now).await?;
        tx.insert_recovery(&row).await?;
        let mut entries = vec![epoch, placed];
        entries.extend(crate::eth_hd::reserve_deposit_gap(&mut tx, &accounts, by, now).await?);
        self.commit(tx, &entries, now).await?;
        Ok(row)
    }

    /// The restore still waiting for its reconciliation, if any.
    pub async fn open_recovery(&self) -> Result<Option<RecoveryRow>, ServiceError> {
        Ok(self.store().open_recovery().await?)
    }

    /// Reconciles the open restore with the chains (see the module's
    /// documentation); `None` if there is none. A node that cannot be
    /// reached is an error: nothing changes, and the restore's freeze
    /// stays until a later try succeeds.
    pub async fn reconcile_restore(&self) -> Result<Option<Reconciled>, ServiceError> {
        let Some(recovery) = self.store().open_recovery().await? else {
            return Ok(None);
        };
        // The signer nodes learn the new epoch first: from now on they
        // refuse a server left over from before the restore.
        if let Some(t) = self.threshold() {
            t.announce_epoch(epoch_of(&recovery)).await?;
        }
        let mut found = Reconciled {
            recovery: recovery.id.clone(),
            ..Reconciled::default()
        };
        let mut freeze_keys = BTreeSet::<KeyId>::new();
        let mut freeze_wallets = BTreeSet::<WalletId>::new();
        let mut pending = Vec::new();
        for st in NOT_YET_PLANNED {
            pending.extend(self.store().transfers_in(st, u32::MAX >> 1).await?);
        }
        let mut eth_networks = BTreeSet::new();
        for chain_id in self.eth_chain_ids() {
            let net = self.eth_network(chain_id)?;
            let network = net.network().to_string();
            eth_networks.insert(network.clone());
            for (sender, wallet) in self.store().eth_senders_on(&network).await? {
                let address: EthAddress = sender
                    .address
                    .parse()
                    .map_err(|_| ServiceError::Invalid(format!("address {}", sender.address)))?;
                let report = self.eth_nonce_report(chain_id, address).await?;
                let used = report.chain_pending.max(report.chain_latest);
                let mut flagged = false;
                for send in self.store().eth_sends_of(&network, &sender.address).await? {
                    if !send_state::OPEN.contains(&send.state.as_str()) {
                        continue;
                    }
                    let subject = format!("eth-send:{}", send.id);
                    let mut on_chain = false;
                    for a in self.store().eth_attempts(&send.id).await? {
                        if let Some(raw) = &a.raw {
                            let hash = chain_eth::decode(raw).map_err(EthError::Tx)?.hash;
                            let status =
                                net.client.tx_status(hash).await.map_err(EthError::Node)?;
                            if status != TxStatus::Unknown {
                                on_chain = true;
                                break;
                            }
                        }
                    }
                    if on_chain {
                        found.resume(subject, "its transaction is on chain");
                    } else if send.nonce >= used {
                        found.resume(
                            subject,
                            format!("nonce {} is unused on chain (next {used})", send.nonce),
                        );
                    } else {
                        flagged = true;
                        found.review(
                            subject,
                            format!(
                                "nonce {} of {} was used on chain by a transaction this copy does \
                                 not know: it may have paid this transfer",
                                send.nonce, sender.address
                            ),
                        );
                    }
                }
                if used > report.next_allocated {
                    // The lost server sent after the snapshot.
                    found.nonce_floors.push(NonceFloor {
                        network: network.clone(),
                        address: sender.address.clone(),
                        next_nonce: used,
                    });
                    for t in pending.iter().filter(|t| {
                        Some(t.wallet) == wallet
                            && network_of(t).map(|n| n.to_string()).as_deref() == Some(&network)
                    }) {
                        flagged = true;
                        found.review(
                            format!("transfer:{}", t.id),
                            format!(
                                "the chain used nonces {}..{used} of {}, which this copy never \
                                 handed out: the lost server may have paid this transfer",
                                report.next_allocated, sender.address
                            ),
                        );
                    }
                }
                if flagged {
                    freeze_keys.insert(sender.key_id);
                }
            }
        }
        for t in &pending {
            let why = match network_of(t) {
                Some(Network::Bitcoin(_)) => {
                    "not yet planned at the snapshot: the lost server may have paid it from \
                     outputs this copy still counts"
                }
                Some(n @ Network::Evm { .. }) if !eth_networks.contains(&n.to_string()) => {
                    "its network has no node configured here to ask"
                }
                Some(Network::Evm { .. }) => continue,
                None => "its asset is unreadable",
            };
            freeze_wallets.insert(t.wallet);
            found.review(format!("transfer:{}", t.id), why);
        }
        // A batch pays several transfers: each send once.
        let mut btc_sends = BTreeSet::new();
        for st in ["signing", "signed", "broadcasting"] {
            for t in self.store().transfers_in(st, u32::MAX >> 1).await? {
                if let (Some(Network::Bitcoin(_)), Some(send)) = (network_of(&t), t.btc_send_id) {
                    btc_sends.insert(send);
                }
            }
        }
        for send in btc_sends {
            let send = self.store().btc_send(&send).await?;
            if let Some(why) = self.btc_send_unsettled(&send).await? {
                if let Some(w) = send.wallet {
                    freeze_wallets.insert(w);
                }
                found.review(format!("btc-send:{}", send.id), why);
            } else {
                found.resume(
                    format!("btc-send:{}", send.id),
                    "its transaction is known to the node (or no node is configured here)",
                );
            }
        }
        self.finish_reconciliation(&recovery, found, freeze_keys, freeze_wallets)
            .await
            .map(Some)
    }

    /// Why a Bitcoin send in flight at the snapshot cannot resume, if it
    /// cannot. Resumes (`None`) only when the node knows its transaction,
    /// or when no node is configured at all (the send is not broadcast
    /// from here).
    async fn btc_send_unsettled(
        &self,
        send: &storage::BtcSendRow,
    ) -> Result<Option<String>, ServiceError> {
        let Ok(Network::Bitcoin(n)) = send.network.parse::<Network>() else {
            return Ok(Some(format!("its network {} is not Bitcoin", send.network)));
        };
        let Some(client) = self.btc_network(n).ok().and_then(|net| net.client.clone()) else {
            return Ok(None);
        };
        let node = |e: chain_btc_client::ClientError| {
            ServiceError::Btc(crate::error::BtcServiceError::Node(e))
        };
        if let Some(txid) = &send.txid
            && client.tx_state(txid).await.map_err(node)? != chain_btc_client::TxState::Unknown
        {
            return Ok(None);
        }
        // Its transaction is not on the chain. Unspent inputs do not prove
        // its transfers unpaid: the lost server may have released this send
        // (an approval withdrawn) and paid them from other outputs.
        if client.has_core() {
            for u in self.store().btc_utxos_of_send(&send.id).await? {
                if !client.output_unspent(&u.txid, u.vout).await.map_err(node)? {
                    return Ok(Some(format!(
                        "its input {}:{} was spent by a transaction this copy does not know: \
                         the lost server may have paid its transfers another way",
                        u.txid, u.vout
                    )));
                }
            }
        }
        Ok(Some(
            "its transaction is not on the chain: the lost server may have released it and paid \
             its transfers from other outputs"
                .into(),
        ))
    }

    /// Commits what the reconciliation found, in one transaction: the
    /// review freezes placed before the restore's freeze ends.
    async fn finish_reconciliation(
        &self,
        recovery: &RecoveryRow,
        mut found: Reconciled,
        keys: BTreeSet<KeyId>,
        wallets: BTreeSet<WalletId>,
    ) -> Result<Reconciled, ServiceError> {
        let scopes: Vec<FreezeScope> = keys
            .into_iter()
            .map(FreezeScope::Key)
            .chain(wallets.into_iter().map(FreezeScope::Wallet))
            .collect();
        // Under the vault lock, as every freeze is placed.
        let vault = self.vault().lock().await;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut entries = Vec::new();
        for f in &found.nonce_floors {
            tx.raise_eth_nonce_floor(&f.network, &f.address, f.next_nonce)
                .await?;
        }
        let n = found.review.len();
        for scope in scopes {
            let row = new_freeze(
                &Actor::System,
                scope,
                &format!("after a restore: {n} transfers for a person to review"),
                now,
            );
            entries.push(place_in(&mut tx, &Actor::System, &row, now).await?);
            found.frozen.push(scope.to_string());
        }
        let report = serde_json::to_value(&found)
            .map_err(|e| ServiceError::Invalid(format!("the reconciliation report: {e}")))?;
        tx.finish_recovery(&recovery.id, now, &report.to_string())
            .await?;
        tx.release_freeze(
            &recovery.freeze_id,
            now,
            &format!("reconciliation:{}", recovery.id),
        )
        .await?;
        crate::outbox::enqueue(
            &mut tx,
            "restore.reconciled",
            json!({ "recovery": recovery.id, "review": found.review.len(),
                    "frozen": found.frozen }),
            now,
        )
        .await?;
        // The whole report is in the restore's row; the audit record holds
        // its counts and the first findings (a record's details stay small).
        entries.insert(
            0,
            entry(
                &Actor::System,
                "restore.reconciled",
                &format!("recovery:{}", recovery.id),
                json!({
                    "resumed": found.resumed.len(),
                    "review": found.review.len(),
                    "first_to_review": found.review.iter().take(AUDITED_FINDINGS).collect::<Vec<_>>(),
                    "frozen": found.frozen,
                    "nonce_floors": found.nonce_floors.iter().take(AUDITED_FINDINGS).collect::<Vec<_>>(),
                }),
            )?,
        );
        entries.push(entry(
            &Actor::System,
            "freeze.released",
            &format!("freeze:{}", recovery.freeze_id),
            json!({ "by": "the restore's reconciliation with the chains" }),
        )?);
        self.commit(tx, &entries, now).await?;
        drop(vault);
        tracing::warn!(
            resumed = found.resumed.len(),
            review = found.review.len(),
            frozen = ?found.frozen,
            "restore reconciled with the chains"
        );
        Ok(found)
    }
}

/// A restore's epoch, as the signer nodes are told it: the time of the
/// restore, in milliseconds.
pub fn epoch_of(r: &storage::RecoveryRow) -> u64 {
    u64::try_from(r.restored_at.as_millis()).unwrap_or(0)
}

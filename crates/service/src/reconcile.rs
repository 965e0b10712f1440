//! Reconciliation of what Strongroom signed with what the chains show: a
//! pass (the server's job, or `strongroom reconcile`) compares every
//! account and keeps a run with what it found.
//!
//! Ethereum, per sending address: every transaction from an address takes
//! its next nonce, so a chain nonce (its pool counted) past the nonces this
//! installation handed out is an outflow Strongroom did not sign — the
//! first sign of a stolen key. It is found within one pass: the wallet is
//! frozen at once (until a quorum releases it), an alert is logged, the
//! finding is audited and announced (`reconciliation.finding`), and the
//! sender's next nonce is raised past the chain's (so the finding is made
//! once, and no nonce the thief used is handed out again).
//!
//! Bitcoin, per output Strongroom holds (with a Bitcoin Core endpoint,
//! which answers whether an output is spent): a free output spent, or a
//! reserved one spent while the node does not know the send that reserved
//! it, was taken by a transaction Strongroom did not sign. The wallet is
//! frozen the same way and the output is no longer counted. Esplora cannot
//! say whether an output is spent: a network with Esplora endpoints only is
//! not compared (its wallets are not counted in the run's accounts).
//!
//! Signer nodes (threshold keys): each node's paid journal (read only) is
//! compared with the transfers this database holds. A transfer a node gave
//! a share for that the database does not hold means the database lost or
//! hid one (restored from an older backup, or tampered with): it is named
//! once, and everything is frozen until a quorum has looked.
//!
//! Runs with a finding or a failure are kept (and audited) every time; a
//! clean run when the last kept one was not clean, or at least hourly.
//!
//! A pass that cannot ask a node fails loudly: it is kept, incomplete,
//! with why, and the caller gets the error — it never passes silently.

use chain_eth::EthAddress;
use domain::{Actor, KeyId, WalletId};
use serde::Serialize;
use serde_json::json;

use crate::freezes::{FreezeScope, new_freeze, place_in};
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// What a pass found on one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `unsigned_outflow`: the chain shows a transaction from the account
    /// that Strongroom never signed.
    pub kind: String,
    /// `<network>:<address>`.
    pub account: String,
    pub wallet: Option<WalletId>,
    pub key: Option<KeyId>,
    pub detail: String,
    /// The freeze this pass placed for it.
    pub freeze: Option<String>,
}

/// One pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub id: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// Every account was compared.
    pub complete: bool,
    pub error: Option<String>,
    pub accounts: u64,
    pub findings: Vec<Finding>,
}

impl Run {
    /// A stored run, as the API shows it.
    pub fn of(row: &storage::ReconciliationRunRow) -> Result<Run, ServiceError> {
        let findings: Vec<serde_json::Value> = serde_json::from_str(&row.findings)
            .map_err(|e| storage::StorageError::Corrupt(format!("findings: {e}")))?;
        Ok(Run {
            id: row.id.clone(),
            started_at_ms: row.started_at.as_millis(),
            finished_at_ms: row.finished_at.as_millis(),
            complete: row.complete,
            error: row.error.clone(),
            accounts: row.accounts,
            findings: findings
                .into_iter()
                .map(|f| Finding {
                    kind: text(&f, "kind"),
                    account: text(&f, "account"),
                    wallet: f["wallet"].as_str().and_then(|w| w.parse().ok()),
                    key: f["key"].as_str().and_then(|k| k.parse().ok()),
                    detail: text(&f, "detail"),
                    freeze: f["freeze"].as_str().map(str::to_owned),
                })
                .collect(),
        })
    }
}

fn text(v: &serde_json::Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_owned()
}

/// An output Strongroom held, spent by a transaction it did not sign.
#[derive(Debug, Clone)]
pub(crate) struct Taken {
    pub network: String,
    pub output: storage::BtcUtxoRow,
    pub by_txid: String,
    pub height: u64,
}

/// An outflow found, and what keeps it from being found again.
struct Outflow {
    /// `unsigned_outflow`, `balance_drift` or `deposit_missed`.
    kind: &'static str,
    /// Its wallet and key are frozen at once (funds left without us).
    freeze: bool,
    /// Settled without a finding: a drift on a wallet already frozen (or
    /// found with an unsigned outflow in the same pass), whose difference
    /// the person looking sees in the ledger (`ledger.adjusted`).
    silent: bool,
    /// `<network>:<address or outpoint>`.
    account: String,
    /// The audit record's subject.
    subject: String,
    wallet: Option<WalletId>,
    key: Option<KeyId>,
    detail: String,
    settle: Settle,
    /// Not one wallet's: everything is frozen.
    global: bool,
}

enum Settle {
    /// The sender's next nonce raised past the chain's.
    NonceFloor {
        network: String,
        address: String,
        to: u64,
    },
    /// The output no longer counted.
    Taken {
        network: String,
        txid: String,
        vout: u32,
    },
    /// The ledger set to the chain (a `drift` movement): the difference is
    /// named once.
    Adjust(crate::drift::Drift),
    /// Nothing to settle: kept findings are not made again.
    Named,
}

impl Service {
    /// One reconciliation pass over every account; the run is kept (with
    /// its findings, or incomplete with why) before this returns.
    pub async fn reconcile_chains(&self) -> Result<Run, ServiceError> {
        // After a restore the chains are ahead of this copy by design: the
        // restore's own reconciliation settles that first.
        if self.store().open_recovery().await?.is_some() {
            return Err(ServiceError::Conflict(
                "a restore is not reconciled with the chains yet: the pass waits for it".into(),
            ));
        }
        let started = self.now();
        let mut outflows = Vec::new();
        let mut accounts = 0u64;
        let compared: Result<(), ServiceError> = async {
            for chain_id in self.eth_chain_ids() {
                let network = self.eth_network(chain_id)?.network().to_string();
                for (sender, wallet) in self.store().eth_senders_on(&network).await? {
                    accounts += 1;
                    let address: EthAddress = sender.address.parse().map_err(|_| {
                        storage::StorageError::Corrupt(format!("address {}", sender.address))
                    })?;
                    let report = self.eth_nonce_report(chain_id, address).await?;
                    if report.chain_pending > report.next_allocated {
                        outflows.push(Outflow {
                            kind: "unsigned_outflow",
                            freeze: true,
                            silent: false,
                            account: format!("{network}:{}", sender.address),
                            subject: format!("eth:{network}:{}", sender.address),
                            wallet,
                            key: Some(sender.key_id),
                            detail: format!(
                                "the chain used nonces {}..{} of {}, which Strongroom never \
                                 signed: its key may be compromised",
                                report.next_allocated, report.chain_pending, sender.address
                            ),
                            settle: Settle::NonceFloor {
                                network: network.clone(),
                                address: sender.address.clone(),
                                to: report.chain_pending,
                            },
                            global: false,
                        });
                    }
                }
            }
            let (drifts, compared) = self.eth_drifts().await?;
            accounts += compared;
            for d in drifts {
                let found = outflows.iter().any(|o| o.wallet == Some(d.wallet));
                let frozen = self.ensure_not_frozen(Some(d.wallet), None).await.is_err();
                let mut o = drift_finding(d);
                o.silent = found || frozen;
                outflows.push(o);
            }
            accounts += self.btc_outflows(&mut outflows).await?;
            self.signer_records(&mut outflows).await?;
            Ok(())
        }
        .await;
        let error = compared.as_ref().err().map(ToString::to_string);
        if (accounts == 0 || self.clean_run_kept_lately().await?)
            && error.is_none()
            && outflows.is_empty()
        {
            // Nothing to compare (no chain configured, or no account yet),
            // or clean like the last run kept, within the hour: not kept
            // again (a clean run is kept at least hourly, and every run
            // with a finding or a failure).
            return Ok(Run {
                id: String::new(),
                started_at_ms: started.as_millis(),
                finished_at_ms: self.now().as_millis(),
                complete: true,
                error: None,
                accounts,
                findings: Vec::new(),
            });
        }
        let run = self.keep_run(started, accounts, error, outflows).await?;
        compared.map(|()| run)
    }

    /// Whether the newest run kept was complete and clean, within the hour.
    async fn clean_run_kept_lately(&self) -> Result<bool, ServiceError> {
        let hour_ago = self.now().as_millis().saturating_sub(3_600_000);
        Ok(self
            .store()
            .reconciliation_runs(1, None)
            .await?
            .first()
            .is_some_and(|r| {
                r.complete && r.findings == "[]" && r.started_at.as_millis() > hour_ago
            }))
    }

    /// Commits a pass in one transaction (under the vault lock, as every
    /// freeze): a freeze per wallet with an outflow (unless one already
    /// holds it), the senders' nonce floors, the run, the audit records and
    /// the webhook events.
    async fn keep_run(
        &self,
        started: domain::Timestamp,
        accounts: u64,
        error: Option<String>,
        outflows: Vec<Outflow>,
    ) -> Result<Run, ServiceError> {
        let mut findings = Vec::new();
        let _vault = self.vault().lock().await;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut entries = Vec::new();
        // Scopes already frozen for good (not on their way out): a global
        // freeze, or one being released, does not stand in for these.
        let mut held: std::collections::BTreeSet<String> = tx
            .active_freezes_in_tx(now)
            .await?
            .into_iter()
            .filter(|f| f.released_at.is_none())
            .map(|f| f.scope)
            .collect();
        let run_id = uuid::Uuid::now_v7().to_string();
        for o in outflows {
            if o.silent {
                if let Settle::Adjust(d) = &o.settle {
                    adjust(&mut tx, d, &run_id, now).await?;
                }
                entries.push(entry(
                    &Actor::System,
                    "ledger.adjusted",
                    &o.subject,
                    json!({ "kind": o.kind, "detail": o.detail }),
                )?);
                continue;
            }
            tracing::error!(alert = true, kind = o.kind, account = %o.account, detail = %o.detail,
                "reconciliation finding");
            // The wallet and the key, each frozen unless a freeze of its
            // own already holds it.
            let mut freeze = None;
            let scopes = o
                .wallet
                .filter(|_| o.freeze)
                .map(FreezeScope::Wallet)
                .into_iter()
                .chain(o.key.filter(|_| o.freeze).map(FreezeScope::Key))
                .chain(o.global.then_some(FreezeScope::Global));
            for scope in scopes {
                if !held.insert(scope.to_string()) {
                    continue;
                }
                let row = new_freeze(
                    &Actor::System,
                    scope,
                    &format!("reconciliation: {} ({})", o.kind, o.account),
                    now,
                );
                entries.push(place_in(&mut tx, &Actor::System, &row, now).await?);
                freeze.get_or_insert(row.id);
            }
            match &o.settle {
                Settle::NonceFloor {
                    network,
                    address,
                    to,
                } => {
                    tx.raise_eth_nonce_floor(network, address, *to).await?;
                }
                Settle::Taken {
                    network,
                    txid,
                    vout,
                } => {
                    tx.mark_btc_output_taken(network, txid, *vout).await?;
                }
                Settle::Adjust(d) => adjust(&mut tx, d, &run_id, now).await?,
                Settle::Named => {}
            }
            let f = Finding {
                kind: o.kind.into(),
                account: o.account,
                wallet: o.wallet,
                key: o.key,
                detail: o.detail,
                freeze,
            };
            entries.push(entry(
                &Actor::System,
                "reconciliation.finding",
                &o.subject,
                json!({ "kind": f.kind, "detail": f.detail, "key": f.key.map(|k| k.to_string()),
                        "wallet": f.wallet.map(|w| w.to_string()), "freeze": f.freeze }),
            )?);
            crate::outbox::enqueue(
                &mut tx,
                "reconciliation.finding",
                serde_json::to_value(&f)
                    .map_err(|e| ServiceError::Invalid(format!("finding: {e}")))?,
                now,
            )
            .await?;
            findings.push(f);
        }
        let run = Run {
            id: run_id,
            started_at_ms: started.as_millis(),
            finished_at_ms: now.as_millis(),
            complete: error.is_none(),
            error,
            accounts,
            findings,
        };
        let findings_json = serde_json::to_string(&run.findings)
            .map_err(|e| ServiceError::Invalid(format!("findings: {e}")))?;
        tx.insert_reconciliation_run(&storage::ReconciliationRunRow {
            id: run.id.clone(),
            started_at: started,
            finished_at: now,
            complete: run.complete,
            error: run.error.clone(),
            accounts,
            findings: findings_json,
        })
        .await?;
        entries.push(entry(
            &Actor::System,
            "reconciliation.run",
            &format!("reconciliation:{}", run.id),
            json!({ "complete": run.complete, "error": run.error, "accounts": accounts,
                    "findings": run.findings.len() }),
        )?);
        self.commit(tx, &entries, now).await?;
        Ok(run)
    }

    /// Transfers a signer node gave a share for that this database does
    /// not hold (it lost or hid one: restored from an older backup, or
    /// tampered with) — each named once, with everything frozen.
    async fn signer_records(&self, outflows: &mut Vec<Outflow>) -> Result<(), ServiceError> {
        let Some(t) = self.threshold() else {
            return Ok(());
        };
        let known: std::collections::HashSet<String> =
            self.store().transfer_digests().await?.into_iter().collect();
        let mut named = std::collections::HashSet::new();
        for run in self.store().reconciliation_runs(1000, None).await? {
            for f in Run::of(&run)?.findings {
                named.insert(f.account);
            }
        }
        for (node, paid) in t.cluster().paid_intents().await {
            let paid = paid.map_err(crate::threshold::unavailable)?;
            for digest in paid.iter().filter(|d| !known.contains(*d)) {
                let account = format!("signer:{node}:{digest}");
                if named.contains(&account) {
                    continue;
                }
                outflows.push(Outflow {
                    kind: "unsigned_outflow",
                    freeze: true,
                    silent: false,
                    subject: format!("signer:{node}"),
                    wallet: None,
                    key: None,
                    detail: format!(
                        "signer node {node} gave a share for transfer {digest}, which this \
                         database does not hold: it lost or hid a transfer (restored from an \
                         older backup, or tampered with)"
                    ),
                    settle: Settle::Named,
                    global: true,
                    account,
                });
            }
        }
        Ok(())
    }

    /// Outputs Strongroom holds that the chain shows taken by a transaction
    /// it did not sign, on every Bitcoin network with a Core endpoint; how
    /// many wallet accounts (wallet and network) were compared.
    async fn btc_outflows(&self, outflows: &mut Vec<Outflow>) -> Result<u64, ServiceError> {
        let nets: Vec<_> = self
            .btc_networks()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let node = |e: chain_btc_client::ClientError| {
            ServiceError::Btc(crate::error::BtcServiceError::Node(e))
        };
        let mut accounts = std::collections::BTreeSet::new();
        for net in nets {
            let Some(client) = net.client.clone().filter(|c| c.has_core()) else {
                continue;
            };
            let network = crate::btc::net_name(net.network);
            let mut ours = std::collections::HashMap::new();
            let replaced = self.store().btc_replaced_on(&network).await?;
            for u in self.store().btc_held_outputs(&network).await? {
                accounts.insert((network.clone(), u.wallet));
                if client.output_unspent(&u.txid, u.vout).await.map_err(node)? {
                    continue;
                }
                // A node that does not know the transaction that made the
                // output (lagging, or after a reorg) cannot say it was taken.
                if client.tx_state(&u.txid).await.map_err(node)?
                    == chain_btc_client::TxState::Unknown
                {
                    continue;
                }
                // Read again: a send of ours may have reserved it meanwhile.
                let Some(u) = self
                    .store()
                    .btc_output(&network, &u.txid, u.vout)
                    .await?
                    .filter(|now| now.state != "spent")
                else {
                    continue;
                };
                // Reserved by a send whose transaction the node knows: ours.
                if let Some(send) = &u.reserved_by {
                    if !ours.contains_key(send) {
                        // Its transaction, or one it replaced (either may
                        // be the one mined).
                        let row = self.store().btc_send(send).await?;
                        let mut txids: Vec<String> = row.txid.into_iter().collect();
                        txids.extend(
                            replaced
                                .iter()
                                .filter(|(s, _)| s == send)
                                .map(|(_, t)| t.clone()),
                        );
                        let mut known = false;
                        for t in &txids {
                            if client.tx_state(t).await.map_err(node)?
                                != chain_btc_client::TxState::Unknown
                            {
                                known = true;
                                break;
                            }
                        }
                        ours.insert(send.clone(), known);
                    }
                    if ours.get(send) == Some(&true) {
                        continue;
                    }
                }
                let key = crate::btc::spend_of(&u.spend).ok().map(|(_, k, _)| k);
                outflows.push(Outflow {
                    kind: "unsigned_outflow",
                    freeze: true,
                    silent: false,
                    account: format!("{network}:{}:{}", u.txid, u.vout),
                    subject: format!("btc-output:{network}:{}:{}", u.txid, u.vout),
                    wallet: u.wallet,
                    key,
                    detail: format!(
                        "output {}:{} ({} sat) was spent by a transaction Strongroom never \
                         signed: its key may be compromised",
                        u.txid, u.vout, u.value_sat
                    ),
                    settle: Settle::Taken {
                        network: network.clone(),
                        txid: u.txid.clone(),
                        vout: u.vout,
                    },
                    global: false,
                });
            }
        }
        Ok(u64::try_from(accounts.len()).unwrap_or(u64::MAX))
    }

    /// Outputs the Bitcoin loop found spent in a block by a transaction
    /// Strongroom never signed: kept as a run with a finding each, their
    /// wallets and keys frozen at once, the outputs no longer counted.
    pub(crate) async fn btc_outputs_taken(&self, taken: Vec<Taken>) -> Result<Run, ServiceError> {
        let started = self.now();
        let accounts = u64::try_from(taken.len()).unwrap_or(u64::MAX);
        let outflows = taken
            .into_iter()
            .map(|t| {
                let u = &t.output;
                Outflow {
                    kind: "unsigned_outflow",
                    freeze: true,
                    silent: false,
                    account: format!("{}:{}:{}", t.network, u.txid, u.vout),
                    subject: format!("btc-output:{}:{}:{}", t.network, u.txid, u.vout),
                    wallet: u.wallet,
                    key: crate::btc::spend_of(&u.spend).ok().map(|(_, k, _)| k),
                    detail: format!(
                        "output {}:{} ({} sat) was spent in block {} by transaction {}, which \
                         Strongroom never signed: its key may be compromised",
                        u.txid, u.vout, u.value_sat, t.height, t.by_txid
                    ),
                    settle: Settle::Taken {
                        network: t.network.clone(),
                        txid: u.txid.clone(),
                        vout: u.vout,
                    },
                    global: false,
                }
            })
            .collect();
        self.keep_run(started, accounts, None, outflows).await
    }

    /// The newest runs first.
    pub async fn reconciliation_runs(
        &self,
        limit: u32,
        before: Option<domain::Timestamp>,
    ) -> Result<Vec<Run>, ServiceError> {
        self.store()
            .reconciliation_runs(limit, before)
            .await?
            .iter()
            .map(Run::of)
            .collect()
    }
}

impl crate::access::Can<'_, crate::access::perm::ReadAudit> {
    /// The newest reconciliation runs first (auditor, security officer,
    /// admin), at most 100.
    pub async fn reconciliation_runs(
        &self,
        limit: u32,
        before: Option<domain::Timestamp>,
    ) -> Result<Vec<Run>, ServiceError> {
        self.svc.reconciliation_runs(limit.min(100), before).await
    }
}

/// The ledger set to the chain: a `drift` movement.
async fn adjust(
    tx: &mut storage::WriteTx,
    d: &crate::drift::Drift,
    run_id: &str,
    now: domain::Timestamp,
) -> Result<(), ServiceError> {
    crate::ledger::other_moved(
        tx,
        crate::ledger::Other {
            wallet: d.wallet,
            asset: &d.asset,
            kind: "drift",
            available: d.difference(),
            transfer: None,
            txid: None,
            block: Some(d.block),
            reference: format!("drift:{run_id}:{}:{}", d.wallet, d.asset),
        },
        now,
    )
    .await
}

/// A drift as a finding: less on chain than the ledger holds freezes the
/// wallet (funds left without a transaction Strongroom signed); more is a
/// deposit the scanner missed. Either way the ledger is set to the chain.
fn drift_finding(d: crate::drift::Drift) -> Outflow {
    let diff = d.difference();
    let missing = diff < 0;
    Outflow {
        kind: if missing {
            "balance_drift"
        } else {
            "deposit_missed"
        },
        freeze: missing,
        silent: false,
        account: format!("{}:{}:{}", d.network, d.addresses.join(","), d.asset),
        subject: format!("wallet:{}", d.wallet),
        wallet: Some(d.wallet),
        key: None,
        detail: format!(
            "at block {} the chain holds {} of {} for the wallet, its ledger {} ({}{}): {}",
            d.block,
            d.chain,
            d.asset,
            d.ledger,
            if missing { "" } else { "+" },
            diff,
            if missing {
                "funds left without a transaction Strongroom signed"
            } else {
                "a deposit the scanner did not see"
            }
        ),
        global: false,
        settle: Settle::Adjust(d),
    }
}

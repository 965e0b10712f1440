//! Deposits to our Ethereum addresses: each pass of a network's watcher
//! scans the blocks since the last pass for ether paid to our senders and
//! ERC-20 `Transfer` events to them, records each deposit as `seen` (with
//! its block's hash), and credits those that reached the confirmation depth
//! — checking first that their block is still the chain's: one that is not
//! was reorganised away (`reorged`, and its blocks are scanned again). Every
//! step is audited and sent as a `deposit` webhook event. Funds are
//! counted from the chain as of the same depth (`credited_block`), so what
//! this ledger says and what may be spent agree.

use std::collections::HashMap;

use chain_eth::EthAddress;
use domain::{Actor, Asset, Timestamp, WalletId};
use serde_json::json;
use storage::DepositRow;

use crate::eth::{EthError, hex32};
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// At most this many blocks per pass (a long outage catches up over
/// several passes).
const BLOCKS_PER_PASS: u64 = 100;

/// At most this many recipients in one `eth_getLogs` filter.
const RECIPIENTS_PER_QUERY: usize = 200;

/// What one pass found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepositPass {
    pub seen: usize,
    pub credited: usize,
    pub reorged: usize,
}

impl Service {
    /// One pass of the deposit scanner over a network.
    pub async fn eth_scan_deposits(&self, chain_id: u64) -> Result<DepositPass, ServiceError> {
        let net = self.eth_network(chain_id)?;
        let network = net.network().to_string();
        let mut pass = DepositPass::default();
        let ours: HashMap<EthAddress, Option<WalletId>> = self
            .store()
            .deposit_addresses(&network)
            .await?
            .into_iter()
            .filter_map(|(a, w)| a.parse().ok().map(|a| (a, w)))
            .collect();
        let head = net.client.block_number().await.map_err(EthError::Node)?;
        // A first pass starts at the head: history before Strongroom knew
        // an address is the chain's, already in its balance. Each pass also
        // looks again at the blocks not yet at the confirmation depth: a
        // reorganisation may have put a deposit into one already scanned.
        let stored = self.store().scan_cursor(&network).await?;
        let remembered = self
            .scan_cursors()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&network)
            .copied();
        let cursor = remembered.max(stored).unwrap_or(head);
        let window = head.saturating_sub(net.config.confirmations.saturating_sub(1));
        let from = cursor.min(window);
        let remember = |next: u64| {
            self.scan_cursors()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(network.clone(), next);
        };
        if ours.is_empty() {
            // Nothing to look for; the cursor still moves, so that the blocks
            // scanned once an address is registered are the ones after it.
            remember(head.saturating_add(1).max(cursor));
        } else if from <= head {
            let to = head.min(from.saturating_add(BLOCKS_PER_PASS - 1));
            let mut found = Vec::new();
            let ether = Asset::ether(chain_id).id().to_string();
            for n in from..=to {
                let (hash, payments) =
                    net.client.block_payments(n).await.map_err(EthError::Node)?;
                for p in payments.into_iter().filter(|p| ours.contains_key(&p.to)) {
                    found.push(DepositRow {
                        network: network.clone(),
                        tx_hash: hex32(&p.tx_hash),
                        log_index: -1,
                        address: p.to.to_lower_hex(),
                        wallet: ours.get(&p.to).copied().flatten(),
                        from: from_of(&ours, p.from, p.to),
                        asset: ether.clone(),
                        amount: p.value,
                        block_number: n,
                        block_hash: hex32(&hash),
                        state: "seen".into(),
                        seen_at: self.now(),
                        credited_at: None,
                    });
                }
            }
            let tokens: Vec<EthAddress> = net.config.tokens.iter().map(|t| t.contract).collect();
            let recipients: Vec<EthAddress> = ours.keys().copied().collect();
            // In chunks: nodes bound a filter's topics (an HD account's
            // deposit addresses may be many).
            let mut transfers = Vec::new();
            for chunk in recipients.chunks(RECIPIENTS_PER_QUERY) {
                transfers.extend(
                    net.client
                        .token_transfers(from, to, &tokens, chunk)
                        .await
                        .map_err(EthError::Node)?,
                );
            }
            for t in transfers {
                let Some(token) = net.config.tokens.iter().find(|k| k.contract == t.token) else {
                    continue;
                };
                found.push(DepositRow {
                    network: network.clone(),
                    tx_hash: hex32(&t.tx_hash),
                    log_index: i64::try_from(t.log_index).unwrap_or(i64::MAX),
                    address: t.to.to_lower_hex(),
                    wallet: ours.get(&t.to).copied().flatten(),
                    from: from_of(&ours, t.from, t.to),
                    asset: token.asset.id().to_string(),
                    amount: t.amount,
                    block_number: t.block_number,
                    block_hash: hex32(&t.block_hash),
                    state: "seen".into(),
                    seen_at: self.now(),
                    credited_at: None,
                });
            }
            let next = to.saturating_add(1).max(cursor);
            remember(next);
            // Kept in the database with what was found, and at least every
            // BLOCKS_PER_PASS blocks (a restart rescans from there).
            let behind = stored.is_none_or(|s| next.saturating_sub(s) >= BLOCKS_PER_PASS);
            if found.is_empty() && !behind {
                return self.credit_deposits(&net, &network, head, pass).await;
            }
            let now = self.now();
            let mut tx = self.store().begin().await?;
            let mut entries = Vec::new();
            for d in &found {
                if let Some(was) = tx.upsert_deposit(d).await? {
                    // Seen in another block while seen: pending already.
                    if was.as_deref() != Some("seen") {
                        crate::ledger::deposit_moved(&mut tx, d, "seen", "", now).await?;
                    }
                    pass.seen += 1;
                    entries.push(deposit_entry(d, "deposit.seen")?);
                    deposit_event(&mut tx, d, "seen", now).await?;
                }
            }
            tx.set_scan_cursor(&network, next).await?;
            entries.push(entry(
                &Actor::System,
                "deposit.scanned",
                &format!("eth:{network}"),
                json!({ "from": from, "to": to, "found": pass.seen }),
            )?);
            if pass.seen == 0 && !behind {
                // Only blocks looked at again: nothing to keep.
                drop(tx);
            } else {
                self.commit(tx, &entries, now).await?;
            }
        }
        self.credit_deposits(&net, &network, head, pass).await
    }

    /// Credits what is deep enough, if its block is still the chain's;
    /// marks reorganised what is not (and rescans from its block).
    async fn credit_deposits(
        &self,
        net: &crate::eth::EthNetwork,
        network: &str,
        head: u64,
        mut pass: DepositPass,
    ) -> Result<DepositPass, ServiceError> {
        let network = network.to_owned();
        let deepest = head.saturating_sub(net.config.confirmations.saturating_sub(1));
        for d in self.store().deposits_due(&network, deepest, 500).await? {
            let hash: [u8; 32] = hex::decode(d.block_hash.trim_start_matches("0x"))
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    ServiceError::Storage(storage::StorageError::Corrupt("block hash".into()))
                })?;
            let canonical = net
                .client
                .is_canonical(d.block_number, hash)
                .await
                .map_err(EthError::Node)?;
            let to = if canonical { "credited" } else { "reorged" };
            // Read before the write transaction (SQLite's one writer).
            let cursor = self.store().scan_cursor(&network).await?.unwrap_or(head);
            let now = self.now();
            let mut tx = self.store().begin().await?;
            tx.settle_deposit(&network, &d.tx_hash, d.log_index, to, now)
                .await?;
            crate::ledger::deposit_moved(&mut tx, &d, to, "seen", now).await?;
            if !canonical {
                // Scanned again from its block: re-included, it is seen anew.
                tx.set_scan_cursor(&network, cursor.min(d.block_number))
                    .await?;
                {
                    let mut mem = self
                        .scan_cursors()
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let c = mem.entry(network.clone()).or_insert(d.block_number);
                    *c = (*c).min(d.block_number);
                }
                pass.reorged += 1;
            } else {
                pass.credited += 1;
            }
            deposit_event(&mut tx, &d, to, now).await?;
            let e = deposit_entry(&d, &format!("deposit.{to}"))?;
            self.commit(tx, &[e], now).await?;
        }
        Ok(pass)
    }
}

/// Who paid a deposit: its sender's address, prefixed `internal:` when
/// that is an address of the same wallet (a deposit address's sweep into
/// its sender, a gas top-up): the ledger keeps it (the transfer's debit
/// has its credit), the balances' `incoming` and the webhook's consumers
/// can tell it from a customer's payment.
fn from_of(
    ours: &HashMap<EthAddress, Option<WalletId>>,
    from: EthAddress,
    to: EthAddress,
) -> String {
    match (ours.get(&from), ours.get(&to)) {
        (Some(Some(a)), Some(Some(b))) if a == b => format!("internal:{}", from.to_lower_hex()),
        _ => from.to_lower_hex(),
    }
}

pub(crate) fn deposit_entry(d: &DepositRow, action: &str) -> Result<audit::Entry, ServiceError> {
    entry(
        &Actor::System,
        action,
        &format!("deposit:{}:{}:{}", d.network, d.tx_hash, d.log_index),
        json!({
            "wallet": d.wallet.map(|w| w.to_string()),
            "to": d.address,
            "from": d.from,
            "asset": d.asset,
            "amount": d.amount.to_string(),
            "block": d.block_number,
            "block_hash": d.block_hash,
        }),
    )
}

pub(crate) async fn deposit_event(
    tx: &mut storage::WriteTx,
    d: &DepositRow,
    state: &str,
    now: Timestamp,
) -> Result<(), ServiceError> {
    crate::outbox::enqueue(
        tx,
        "deposit",
        json!({
            "state": state,
            "network": d.network,
            "tx_hash": d.tx_hash,
            "log_index": d.log_index,
            "wallet": d.wallet.map(|w| w.to_string()),
            "address": d.address,
            "asset": d.asset,
            "amount": d.amount.to_string(),
            "block": d.block_number,
            // The wallet's own money moving between its addresses (change,
            // a sweep, a gas top-up), not a payment to it.
            "internal": d.from.starts_with("change:") || d.from.starts_with("internal:"),
        }),
        now,
    )
    .await
}

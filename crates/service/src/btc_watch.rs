//! The Bitcoin operating loop, one pass per network with an endpoint
//! (`serve` runs it after the resumer, every `poll_seconds`):
//!
//! 1. **Reorganisations.** The blocks scanned are remembered by height
//!    (`btc_blocks`). When the node's block at the highest one differs, the
//!    pass walks down to the fork and takes back, in one transaction, what
//!    the blocks above it brought: deposits (seen or credited) are
//!    `reorged` and their outputs forgotten, sends go back to `broadcast`
//!    (their transfers to `broadcasting`, their inputs reserved again) and
//!    their bytes are sent again.
//! 2. **New blocks**, from the one after the highest scanned (the first pass
//!    starts at the tip: earlier history is the chain's). Each block is
//!    checked before it is believed — its hash, proof of work, merkle root,
//!    witness commitment and link to the block below — and a block that
//!    fails is a node lying: the pass fails loudly. In each transaction:
//!    an output paying an address Strongroom issued or a single key's script
//!    is a deposit `seen` (change of our own sends is marked as such); a
//!    send of ours is `confirming` at that block (its inputs spent); an
//!    input spending an output Strongroom holds, in a transaction it never
//!    signed, is an outflow: a reconciliation finding that freezes the
//!    wallet and its key at once.
//! 3. **Depth.** Deposits at the confirmation depth are credited (their
//!    outputs become spendable), sends at depth are `completed` with their
//!    transfers, and their fee is written to the ledger.
//!
//! Every change commits with its audit records, ledger movements and
//! webhook events in one transaction.

use std::collections::{HashMap, HashSet};

use bitcoin::hashes::Hash as _;
use domain::{Actor, BitcoinNetwork, KeyId, WalletId};
use lifecycle::Event;
use serde_json::json;
use storage::{BtcBlockRow, BtcSendRow, DepositRow};

use crate::btc::{net_name, spend_json};
use crate::error::BtcServiceError;
use crate::moves::{Move, corrupt, transition};
use crate::reconcile::Taken;
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// At most this many blocks per pass (an outage catches up over several).
const BLOCKS_PER_PASS: u64 = 50;
/// Scanned blocks remembered below the tip: a reorganisation deeper than
/// this fails the pass for a person (Bitcoin has had none since 2013).
const REMEMBERED: u64 = 1000;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BtcPass {
    pub scanned: u64,
    pub seen: usize,
    pub credited: usize,
    pub reorged: usize,
    pub included: usize,
    pub completed: usize,
    /// Outputs taken by transactions Strongroom never signed.
    pub taken: usize,
    /// Sends replaced by a faster transaction (BIP-125).
    pub replaced: usize,
}

/// Whose a script is.
#[derive(Debug, Clone)]
struct Owner {
    wallet: WalletId,
    key: KeyId,
    child: Vec<u32>,
    address: String,
}

fn lie(what: impl std::fmt::Display) -> ServiceError {
    BtcServiceError::Node(chain_btc_client::ClientError::Malformed(what.to_string())).into()
}

fn node(e: chain_btc_client::ClientError) -> ServiceError {
    BtcServiceError::Node(e).into()
}

impl Service {
    /// One pass of the Bitcoin loop over network `n` (nothing without an
    /// endpoint).
    pub async fn btc_watch(&self, n: BitcoinNetwork) -> Result<BtcPass, ServiceError> {
        let net = self.btc_network(n)?;
        let Some(client) = net.client.clone() else {
            return Ok(BtcPass::default());
        };
        let network = net_name(n);
        let mut pass = BtcPass::default();
        let tip = client.tip_height().await.map_err(node)?;
        let mut below = match self.store().btc_top_block(&network).await? {
            None => {
                // The first pass starts at the tip.
                let (row, _) = fetch(&client, tip).await?;
                let now = self.now();
                let mut tx = self.store().begin().await?;
                tx.insert_btc_block(&network, &row, now).await?;
                let e = entry(
                    &Actor::System,
                    "btc.watch.started",
                    &format!("btc:{network}"),
                    json!({ "height": row.height, "hash": row.hash }),
                )?;
                self.commit(tx, &[e], now).await?;
                return Ok(pass);
            }
            Some(top) => match self.btc_fork(&client, &network, &top).await? {
                None => top,
                Some(fork) => {
                    self.btc_rewind(n, &network, &top, &fork, &mut pass).await?;
                    fork
                }
            },
        };
        let owners = self.btc_owners(n, &network).await?;
        let last = tip.min(below.height.saturating_add(BLOCKS_PER_PASS));
        let mut blocks = Vec::new();
        for h in below.height.saturating_add(1)..=last {
            let (row, block) = fetch(&client, h).await?;
            if row.prev_hash != below.hash {
                break; // the chain moved under this pass: the next one sees it
            }
            below = row.clone();
            blocks.push((row, block));
        }
        if !blocks.is_empty() {
            self.btc_scan(n, &network, &owners, blocks, &mut pass)
                .await?;
        }
        self.btc_settle(n, &network, tip, &owners, &mut pass)
            .await?;
        pass.replaced += self.btc_stuck(n, below.height).await?;
        Ok(pass)
    }

    /// The highest remembered block the node still has, if the top one is
    /// no longer its; an error when none is (deeper than remembered).
    async fn btc_fork(
        &self,
        client: &chain_btc_client::BtcClient,
        network: &str,
        top: &BtcBlockRow,
    ) -> Result<Option<BtcBlockRow>, ServiceError> {
        if client
            .block_hash(top.height)
            .await
            .map_err(node)?
            .as_deref()
            == Some(&top.hash)
        {
            return Ok(None);
        }
        let from = top.height.saturating_sub(REMEMBERED);
        for b in self.store().btc_blocks_from(network, from).await? {
            if b.height < top.height
                && client.block_hash(b.height).await.map_err(node)?.as_deref() == Some(&b.hash)
            {
                return Ok(Some(b));
            }
        }
        Err(ServiceError::Conflict(format!(
            "{network}: the node's chain shares none of the {REMEMBERED} blocks remembered; a \
             person must look before anything is credited"
        )))
    }

    /// Takes back what the blocks above `fork` brought, in one
    /// transaction; then sends the reorganised sends' bytes again.
    async fn btc_rewind(
        &self,
        n: BitcoinNetwork,
        network: &str,
        top: &BtcBlockRow,
        fork: &BtcBlockRow,
        pass: &mut BtcPass,
    ) -> Result<(), ServiceError> {
        let deposits = self.store().deposits_above(network, fork.height).await?;
        let sends = self.store().btc_sends_above(network, fork.height).await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut entries = Vec::new();
        for d in &deposits {
            tx.reorg_deposit(network, &d.tx_hash, d.log_index).await?;
            if d.state == "credited" {
                let vout = u32::try_from(d.log_index).map_err(|e| corrupt("vout", e))?;
                if !tx.drop_btc_utxo(network, &d.tx_hash, vout).await? {
                    tracing::error!(alert = true, output = %format!("{}:{vout}", d.tx_hash),
                        "a credited deposit left the chain after it was spent");
                }
            }
            crate::ledger::deposit_moved(&mut tx, d, "reorged", &d.state, now).await?;
            crate::deposits::deposit_event(&mut tx, d, "reorged", now).await?;
            entries.push(crate::deposits::deposit_entry(d, "deposit.reorged")?);
            pass.reorged += 1;
        }
        for id in &sends {
            let was = tx.set_btc_send_reorged(id).await?;
            tx.unspend_btc_utxos(id).await?;
            for t in tx.transfers_of_btc_send(id).await? {
                if t.state == "confirming" {
                    let m = Move::new(
                        Event::Reorged,
                        &Actor::System,
                        "its block left the best chain",
                    );
                    entries.push(transition(&mut tx, &t, m, now).await?.0);
                }
            }
            entries.push(entry(
                &Actor::System,
                "btc.tx.reorged",
                &format!("btc-send:{id}"),
                json!({ "was": was }),
            )?);
        }
        tx.drop_btc_blocks_above(network, fork.height).await?;
        entries.push(entry(
            &Actor::System,
            "btc.chain.reorged",
            &format!("btc:{network}"),
            json!({ "fork": fork.height, "fork_hash": fork.hash, "top": top.height,
                    "top_hash": top.hash, "deposits": deposits.len(), "sends": sends.len() }),
        )?);
        crate::outbox::enqueue(
            &mut tx,
            "btc.reorg",
            json!({ "network": network, "fork": fork.height, "top": top.height }),
            now,
        )
        .await?;
        self.commit(tx, &entries, now).await?;
        // The same bytes again: valid on the new chain unless an input was
        // taken there (the pass that scans it will say).
        let client = self.btc_network(n)?.client.clone();
        for id in &sends {
            let send = self.store().btc_send(id).await?;
            if let (Some(c), Some(raw), Some(txid)) = (&client, &send.raw, &send.txid)
                && let Err(e) = c.broadcast(raw, txid).await
            {
                tracing::warn!(send = %id, error = %e, "a reorganised send was not accepted again");
            }
        }
        Ok(())
    }

    /// Every script Strongroom receives on: single keys' accounts and the
    /// addresses issued from HD accounts.
    async fn btc_owners(
        &self,
        n: BitcoinNetwork,
        network: &str,
    ) -> Result<HashMap<bitcoin::ScriptBuf, Owner>, ServiceError> {
        let mut owners = HashMap::new();
        for (key, wallet) in self.store().btc_accounts_on(network).await? {
            if self.store().key(key).await?.hd_path.is_some() {
                continue; // its addresses are issued one by one
            }
            let spend = self.btc_spend_for(key).await?;
            let spk = spend.script_pubkey().map_err(BtcServiceError::Tx)?;
            owners.insert(
                spk,
                Owner {
                    wallet,
                    key,
                    child: Vec::new(),
                    address: self.btc_address(key, n).await?,
                },
            );
        }
        for a in self.store().btc_addresses_on(network).await? {
            let spk =
                bitcoin::ScriptBuf::from_hex(&a.script_pubkey).map_err(|e| corrupt("script", e))?;
            owners.insert(
                spk,
                Owner {
                    wallet: a.wallet,
                    key: a.key,
                    child: vec![a.chain, a.index],
                    address: a.address,
                },
            );
        }
        Ok(owners)
    }

    /// Reads the checked blocks into one transaction: the blocks
    /// remembered, deposits seen, our sends included, outputs taken.
    async fn btc_scan(
        &self,
        n: BitcoinNetwork,
        network: &str,
        owners: &HashMap<bitcoin::ScriptBuf, Owner>,
        blocks: Vec<(BtcBlockRow, bitcoin::Block)>,
        pass: &mut BtcPass,
    ) -> Result<(), ServiceError> {
        // Our sends that may appear, by txid (every transaction a send was
        // replaced by, or replaced), with the outputs that pay their
        // transfers (the rest to our scripts is change).
        let mut ours: HashMap<String, (BtcSendRow, Vec<(bitcoin::ScriptBuf, u64)>)> =
            HashMap::new();
        let replaced: HashMap<String, String> = self
            .store()
            .btc_replaced_on(network)
            .await?
            .into_iter()
            .map(|(send, txid)| (txid, send))
            .collect();
        for s in self
            .store()
            .btc_sends_in(network, &["signed", "broadcast"])
            .await?
        {
            let Some(txid) = s.txid.clone() else { continue };
            let mut paid = Vec::new();
            for t in self.store().transfers_of_btc_send(&s.id).await? {
                if let Ok(a) = chain_btc::BtcAddress::parse(&t.destination, n) {
                    let amount = u64::try_from(t.amount).map_err(|e| corrupt("amount", e))?;
                    paid.push((a.script_pubkey(), amount));
                }
            }
            for (old, _) in replaced.iter().filter(|(_, id)| **id == s.id) {
                ours.insert(old.clone(), (s.clone(), paid.clone()));
            }
            ours.insert(txid, (s, paid));
        }
        let held: HashMap<(String, u32), storage::BtcUtxoRow> = self
            .store()
            .btc_held_outputs(network)
            .await?
            .into_iter()
            .map(|u| ((u.txid.clone(), u.vout), u))
            .collect();
        let asset = domain::Asset::bitcoin(n).id().to_string();
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut entries = Vec::new();
        let mut taken = Vec::new();
        let mut included = HashSet::new();
        let (first, mut last) = (blocks[0].0.height, 0);
        for (row, block) in &blocks {
            tx.insert_btc_block(network, row, now).await?;
            last = row.height;
            for t in &block.txdata {
                let txid = t.compute_txid().to_string();
                let send = ours.get(&txid);
                for input in &t.input {
                    let prev = (
                        input.previous_output.txid.to_string(),
                        input.previous_output.vout,
                    );
                    let Some(out) = held.get(&prev) else { continue };
                    let signed_by_us = out
                        .reserved_by
                        .as_ref()
                        .is_some_and(|by| send.is_some_and(|(s, _)| &s.id == by));
                    if !signed_by_us {
                        taken.push(Taken {
                            network: network.to_owned(),
                            output: out.clone(),
                            by_txid: txid.clone(),
                            height: row.height,
                        });
                    }
                }
                let mut paid = send.map(|(_, p)| p.clone()).unwrap_or_default();
                for (vout, out) in t.output.iter().enumerate() {
                    let Some(owner) = owners.get(&out.script_pubkey) else {
                        continue;
                    };
                    let value = out.value.to_sat();
                    let from = match send {
                        None => String::new(),
                        Some((s, _)) => {
                            // A transfer's own output (a sweep, a payment
                            // to ourselves) is a deposit; the rest change.
                            match paid
                                .iter()
                                .position(|(spk, v)| *spk == out.script_pubkey && *v == value)
                            {
                                Some(i) => {
                                    paid.swap_remove(i);
                                    format!("send:{}", s.id)
                                }
                                None => format!("change:{}", s.id),
                            }
                        }
                    };
                    let d = DepositRow {
                        network: network.to_owned(),
                        tx_hash: txid.clone(),
                        log_index: i64::try_from(vout).map_err(|e| corrupt("vout", e))?,
                        address: owner.address.clone(),
                        wallet: Some(owner.wallet),
                        from,
                        asset: asset.clone(),
                        amount: u128::from(value),
                        block_number: row.height,
                        block_hash: row.hash.clone(),
                        state: "seen".into(),
                        seen_at: now,
                        credited_at: None,
                    };
                    if let Some(was) = tx.upsert_deposit(&d).await? {
                        if was.as_deref() != Some("seen") {
                            crate::ledger::deposit_moved(&mut tx, &d, "seen", "", now).await?;
                        }
                        crate::deposits::deposit_event(&mut tx, &d, "seen", now).await?;
                        entries.push(crate::deposits::deposit_entry(&d, "deposit.seen")?);
                        pass.seen += 1;
                    }
                }
                if let Some((s, _)) = send
                    && included.insert(s.id.clone())
                {
                    if replaced.contains_key(&txid) {
                        // The transaction it was replaced by lost the race.
                        tx.adopt_btc_replaced(&s.id, &txid, now).await?;
                    }
                    tx.set_btc_send_included(&s.id, row.height, &row.hash)
                        .await?;
                    tx.spend_btc_utxos(&s.id).await?;
                    let why = format!("in block {}", row.height);
                    for t in tx.transfers_of_btc_send(&s.id).await? {
                        if matches!(t.state.as_str(), "signed" | "broadcasting") {
                            let m = Move::new(Event::Included, &Actor::System, &why);
                            entries.push(transition(&mut tx, &t, m, now).await?.0);
                        }
                    }
                    entries.push(entry(
                        &Actor::System,
                        "btc.tx.included",
                        &format!("btc-send:{}", s.id),
                        json!({ "txid": txid, "block": row.height, "block_hash": row.hash }),
                    )?);
                    pass.included += 1;
                }
            }
        }
        tx.prune_btc_blocks_below(network, last.saturating_sub(REMEMBERED))
            .await?;
        entries.push(entry(
            &Actor::System,
            "btc.blocks.scanned",
            &format!("btc:{network}"),
            json!({ "from": first, "to": last, "hash": blocks[blocks.len() - 1].0.hash,
                    "deposits": pass.seen, "included": pass.included, "taken": taken.len() }),
        )?);
        self.commit(tx, &entries, now).await?;
        pass.scanned += last + 1 - first;
        if !taken.is_empty() {
            pass.taken += taken.len();
            self.btc_outputs_taken(taken).await?;
        }
        Ok(())
    }

    /// Credits deposits at depth (their outputs spendable) and completes
    /// sends at depth, each in its own transaction.
    async fn btc_settle(
        &self,
        n: BitcoinNetwork,
        network: &str,
        tip: u64,
        owners: &HashMap<bitcoin::ScriptBuf, Owner>,
        pass: &mut BtcPass,
    ) -> Result<(), ServiceError> {
        let confirmations = self.btc_network(n)?.confirmations.max(1);
        let Some(deepest) = (tip + 1).checked_sub(confirmations) else {
            return Ok(());
        };
        // What this pass checked against the node: the remembered chain.
        let known: HashMap<u64, String> = self
            .store()
            .btc_blocks_from(network, 0)
            .await?
            .into_iter()
            .map(|b| (b.height, b.hash))
            .collect();
        let by_address: HashMap<&str, &Owner> =
            owners.values().map(|o| (o.address.as_str(), o)).collect();
        for d in self.store().deposits_due(network, deepest, 500).await? {
            if known.get(&d.block_number) != Some(&d.block_hash) {
                continue; // its block is being rewound; the next pass says
            }
            let owner = by_address
                .get(d.address.as_str())
                .ok_or_else(|| corrupt("deposit", "paid to no address of ours"))?;
            let spend = self.btc_spend_at(owner.key, &owner.child).await?;
            let vout = u32::try_from(d.log_index).map_err(|e| corrupt("vout", e))?;
            let value_sat = u64::try_from(d.amount).map_err(|e| corrupt("amount", e))?;
            let now = self.now();
            let mut tx = self.store().begin().await?;
            tx.settle_deposit(network, &d.tx_hash, d.log_index, "credited", now)
                .await?;
            tx.insert_btc_utxo(&storage::BtcUtxoRow {
                network: network.to_owned(),
                txid: d.tx_hash.clone(),
                vout,
                value_sat,
                script_pubkey: spend
                    .script_pubkey()
                    .map_err(BtcServiceError::Tx)?
                    .to_hex_string(),
                spend: spend_json(&spend, owner.key, &owner.child).to_string(),
                state: "available".into(),
                reserved_by: None,
                wallet: Some(owner.wallet),
                created_at: now,
            })
            .await?;
            crate::ledger::deposit_moved(&mut tx, &d, "credited", "seen", now).await?;
            crate::deposits::deposit_event(&mut tx, &d, "credited", now).await?;
            let e = crate::deposits::deposit_entry(&d, "deposit.credited")?;
            self.commit(tx, &[e], now).await?;
            pass.credited += 1;
        }
        for id in self.store().btc_sends_deep(network, deepest).await? {
            let send = self.store().btc_send(&id).await?;
            let now = self.now();
            let mut tx = self.store().begin().await?;
            tx.set_btc_send_state(&id, "confirming", "completed")
                .await?;
            let mut entries = Vec::new();
            let transfers = tx.transfers_of_btc_send(&id).await?;
            for t in &transfers {
                if t.state == "confirming" {
                    let m = Move::new(
                        Event::Confirmed,
                        &Actor::System,
                        "at the confirmation depth",
                    );
                    entries.push(transition(&mut tx, t, m, now).await?.0);
                }
            }
            if let (Some(wallet), Some(txid)) = (send.wallet, &send.txid) {
                crate::ledger::other_moved(
                    &mut tx,
                    crate::ledger::Other {
                        wallet,
                        asset: &domain::Asset::bitcoin(n).id().to_string(),
                        kind: "fee",
                        available: -i128::from(send.fee_sat),
                        transfer: None,
                        txid: Some(txid),
                        block: send.block.as_ref().map(|b| b.0),
                        reference: format!("fee:{network}:{txid}"),
                    },
                    now,
                )
                .await?;
            }
            entries.push(entry(
                &Actor::System,
                "btc.send.completed",
                &format!("btc-send:{id}"),
                json!({ "txid": send.txid, "block": send.block.as_ref().map(|b| b.0),
                        "transfers": transfers.len() }),
            )?);
            self.commit(tx, &entries, now).await?;
            pass.completed += 1;
        }
        Ok(())
    }
}

/// The node's block at `height`, checked: its hash is the one the node
/// named, its proof of work meets its own target, its merkle root and
/// witness commitment match its transactions.
async fn fetch(
    client: &chain_btc_client::BtcClient,
    height: u64,
) -> Result<(BtcBlockRow, bitcoin::Block), ServiceError> {
    let hash = client
        .block_hash(height)
        .await
        .map_err(node)?
        .ok_or_else(|| lie(format!("no block at height {height}, below its tip")))?;
    let bytes = client
        .block(&hash)
        .await
        .map_err(node)?
        .ok_or_else(|| lie(format!("block {hash} named but not served")))?;
    let block: bitcoin::Block =
        bitcoin::consensus::deserialize(&bytes).map_err(|e| lie(format!("block {hash}: {e}")))?;
    let computed = block.block_hash();
    if computed.to_string() != hash {
        return Err(lie(format!("block {hash} hashes to {computed}")));
    }
    if block.header.validate_pow(block.header.target()).is_err() {
        return Err(lie(format!("block {hash}: proof of work below its target")));
    }
    if !block.check_merkle_root() || !block.check_witness_commitment() {
        return Err(lie(format!(
            "block {hash}: its transactions do not match its header"
        )));
    }
    let prev = block.header.prev_blockhash;
    let prev_hash = if prev == bitcoin::BlockHash::all_zeros() {
        String::new()
    } else {
        prev.to_string()
    };
    Ok((
        BtcBlockRow {
            height,
            hash,
            prev_hash,
        },
        block,
    ))
}

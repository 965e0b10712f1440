//! The Ethereum watcher's work: confirmations (inclusion recorded with its
//! block, finality at the configured depth, a reorganised inclusion sent
//! again), the resumer (planned attempts signed, stored bytes sent again,
//! unchanged, after a restart), and nonce reports (unsigned nonces, gaps,
//! foreign use).

use chain_eth::EthAddress;
use chain_eth_client::{NonceTag, TxStatus};
use domain::Actor;
use serde_json::json;

use crate::error::ClientError;
use crate::eth::{EthError, addr_key, follow, hex32, send_event, state};
use crate::record::entry;
use crate::service::{Service, ServiceError};
use storage::StorageError;

/// Where an address's nonces stand, on chain and in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceReport {
    /// Nonce of the next transaction the chain will mine.
    pub chain_latest: u64,
    /// The same, counting the node's pool.
    pub chain_pending: u64,
    /// The nonce Strongroom would hand out next.
    pub next_allocated: u64,
    /// Nonces handed out but never signed: later sends wait on them.
    pub unsigned: Vec<u64>,
    /// Nonces at or above the chain's that the node does not know although
    /// a higher one of ours exists: a gap that holds the later ones back.
    pub gaps: Vec<u64>,
    /// The chain has used nonces Strongroom never handed out: the key signs
    /// somewhere else.
    pub foreign_use: bool,
}

/// What one pass of the watcher did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EthPoll {
    pub included: usize,
    pub finalized: usize,
    pub reorged: usize,
    pub still_pending: usize,
}

impl Service {
    /// After a restart (and periodically): signs attempts that were planned
    /// but not signed, and sends again, unchanged, the stored bytes of every
    /// open send the node does not hold. Returns how many attempts a node
    /// accepted.
    pub async fn eth_resume(&self) -> Result<usize, ServiceError> {
        let mut sent = 0;
        for chain_id in self.eth_chain_ids() {
            sent += self.eth_resume_chain(chain_id).await?;
        }
        Ok(sent)
    }

    /// [`Service::eth_resume`] for one network (its watcher's pass).
    pub async fn eth_resume_chain(&self, chain_id: u64) -> Result<usize, ServiceError> {
        let mut sent = 0;
        {
            let net = self.eth_network(chain_id)?;
            let network = net.network().to_string();
            let open = self
                .store()
                .eth_sends_in(&network, &[state::SIGNING, state::SIGNED, state::BROADCAST])
                .await?;
            for send in open {
                let attempts = self.store().eth_attempts(&send.id).await?;
                // Only the latest attempt: older ones were outbid on purpose.
                let Some(a) = attempts.last() else { continue };
                // Broadcast already: sent again only if the node lost it (a
                // node restarted, a pool that evicted it). One it holds or
                // mined is left alone: sending it again would change
                // nothing but cost a write and an audit record per send
                // and pass, which slowed every pass as sends piled up.
                if send.state == state::BROADCAST
                    && let Some(raw) = &a.raw
                {
                    let hash = chain_eth::decode(raw).map_err(EthError::Tx)?.hash;
                    match net.client.tx_known(hash).await {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(send = %send.id, error = %e, "resume: the node did not say whether it holds the send");
                            continue;
                        }
                    }
                }
                let sender = self.store().eth_sender(&network, &send.address).await?;
                let result = self
                    .eth_sign_and_send(&net, &sender, &send.id, a.attempt)
                    .await;
                match result {
                    Ok(true) => sent += 1,
                    Ok(false) => {}
                    Err(ServiceError::Eth(EthError::Node(ClientError::Underpriced))) => {}
                    Err(e) => {
                        tracing::warn!(send = %send.id, attempt = a.attempt, error = %e, "resume failed");
                    }
                }
            }
        }
        Ok(sent)
    }

    /// One pass of the confirmation watcher over a network's open sends:
    /// records inclusion (block number and hash), finalises at the
    /// configured depth, and puts a send whose block was reorganised away
    /// back to `broadcast` (its bytes are sent again).
    pub async fn eth_poll(&self, chain_id: u64) -> Result<EthPoll, ServiceError> {
        let net = self.eth_network(chain_id)?;
        let network = net.network().to_string();
        let mut poll = EthPoll::default();
        let open = self
            .store()
            .eth_sends_in(
                &network,
                &[state::SIGNED, state::BROADCAST, state::INCLUDED],
            )
            .await?;
        // Whose each sender is (a send with no transfer is the wallet's
        // payout too, in its ledger).
        let wallets: std::collections::HashMap<String, domain::WalletId> = self
            .store()
            .deposit_addresses(&network)
            .await?
            .into_iter()
            .filter_map(|(a, w)| Some((a, w?)))
            .collect();
        for send in open {
            match self.eth_poll_send(&net, &wallets, &send, &mut poll).await {
                Ok(()) => {}
                // Moved on while this pass looked (its broadcast recorded
                // meanwhile, or another server recorded its block): looked
                // at again next pass, and the pass goes on with the others.
                Err(ServiceError::Storage(StorageError::Conflict { what })) => {
                    tracing::debug!(send = %send.id, what, "an Ethereum send moved on during the pass");
                    poll.still_pending += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(poll)
    }

    /// One open send of [`Service::eth_poll`]: its inclusion, finality or
    /// reorganisation recorded, each in a transaction of its own.
    async fn eth_poll_send(
        &self,
        net: &crate::settings::EthNetwork,
        wallets: &std::collections::HashMap<String, domain::WalletId>,
        send: &storage::EthSendRow,
        poll: &mut EthPoll,
    ) -> Result<(), ServiceError> {
        let chain_id = net.config.chain_id;
        let network = net.network().to_string();
        let attempts = self.store().eth_attempts(&send.id).await?;
        let mut found = None;
        for a in attempts.iter().rev() {
            let Some(raw) = &a.raw else { continue };
            let hash = chain_eth::decode(raw).map_err(EthError::Tx)?.hash;
            if let TxStatus::Included {
                receipt,
                confirmations,
            } = net.client.tx_status(hash).await.map_err(EthError::Node)?
            {
                found = Some((a, receipt, confirmations));
                break;
            }
        }
        let now = self.now();
        let subject = format!("eth-send:{}", send.id);
        match found {
            Some((a, receipt, confirmations)) => {
                let block_hash = hex32(&receipt.block_hash);
                let mut entries = Vec::new();
                let mut tx = self.store().begin().await?;
                let mut current = send.state.clone();
                if send.state != state::INCLUDED || send.block_hash.as_deref() != Some(&block_hash)
                {
                    tx.set_eth_send_state(
                        &send.id,
                        &send.state,
                        state::INCLUDED,
                        Some((a.attempt, receipt.block_number, &block_hash)),
                        now,
                    )
                    .await?;
                    send_event(&mut tx, send, state::INCLUDED, now).await?;
                    if send.state != state::INCLUDED {
                        entries.extend(
                            follow(
                                &mut tx,
                                &send.id,
                                lifecycle::Event::Included,
                                &format!("in block {}", receipt.block_number),
                                now,
                            )
                            .await?,
                        );
                    }
                    current = state::INCLUDED.into();
                    entries.push(entry(
                        &Actor::System,
                        "eth.tx.included",
                        &subject,
                        json!({
                            "attempt": a.attempt,
                            "block": receipt.block_number,
                            "block_hash": block_hash,
                            "success": receipt.success,
                            "gas_used": receipt.gas_used,
                        }),
                    )?);
                    poll.included += 1;
                }
                if confirmations >= net.config.confirmations {
                    let fin = if !receipt.success {
                        state::REVERTED
                    } else if a.kind == "cancel" {
                        state::CANCELLED
                    } else {
                        state::CONFIRMED
                    };
                    tx.set_eth_send_state(
                        &send.id,
                        &current,
                        fin,
                        Some((a.attempt, receipt.block_number, &block_hash)),
                        now,
                    )
                    .await?;
                    send_event(&mut tx, send, fin, now).await?;
                    entries.push(entry(
                        &Actor::System,
                        &format!("eth.send.{fin}"),
                        &subject,
                        json!({ "attempt": a.attempt, "confirmations": confirmations }),
                    )?);
                    // The fee, paid whatever the outcome, from the
                    // wallet of the transfer it carried out (or of its
                    // sender: a send made without a transfer pays from
                    // `available` at once).
                    let transfer = tx.transfer_of_send(&send.id).await?;
                    let owner = transfer
                        .as_ref()
                        .map(|t| t.wallet)
                        .or_else(|| wallets.get(&send.address).copied());
                    if let Some(wallet) = owner {
                        let fee = u128::from(receipt.gas_used)
                            .checked_mul(receipt.effective_gas_price)
                            .ok_or_else(|| crate::moves::corrupt("fee", "overflow"))?;
                        let hash = a.tx_hash.clone().ok_or_else(|| {
                            crate::moves::corrupt("attempt", "included without its hash")
                        })?;
                        let mut paid =
                            vec![(domain::Asset::ether(chain_id).id().to_string(), "fee", fee)];
                        if transfer.is_none() && fin == state::CONFIRMED && a.kind != "cancel" {
                            paid.push((send.asset.clone(), "payout", send.amount));
                        }
                        for (asset, kind, amount) in paid {
                            crate::ledger::other_moved(
                                &mut tx,
                                crate::ledger::Other {
                                    wallet,
                                    asset: &asset,
                                    kind,
                                    available: crate::ledger::negative(amount)?,
                                    transfer: transfer.as_ref().map(|t| t.id),
                                    txid: Some(&hash),
                                    block: Some(receipt.block_number),
                                    reference: format!("{kind}:{network}:{hash}"),
                                },
                                now,
                            )
                            .await?;
                        }
                    }
                    // The transfer it carried out ends with it.
                    let event = match fin {
                        state::CONFIRMED => lifecycle::Event::Confirmed,
                        state::CANCELLED => lifecycle::Event::CancelledOnChain,
                        _ => lifecycle::Event::Reverted,
                    };
                    entries.extend(
                        follow(
                            &mut tx,
                            &send.id,
                            event,
                            &format!("its transaction was {fin}"),
                            now,
                        )
                        .await?,
                    );
                    poll.finalized += 1;
                }
                if entries.is_empty() {
                    poll.still_pending += 1;
                    return Ok(()); // nothing changed; the transaction rolls back
                }
                self.commit(tx, &entries, now).await?;
                if poll.finalized == 0 {
                    crate::crash::point("after_inclusion");
                }
            }
            None if send.state == state::INCLUDED => {
                // Its block left the canonical chain.
                let mut tx = self.store().begin().await?;
                tx.set_eth_send_state(&send.id, state::INCLUDED, state::BROADCAST, None, now)
                    .await?;
                send_event(&mut tx, send, "reorged", now).await?;
                let mut entries: Vec<_> = follow(
                    &mut tx,
                    &send.id,
                    lifecycle::Event::Reorged,
                    "its block left the best chain",
                    now,
                )
                .await?
                .into_iter()
                .collect();
                entries.push(entry(
                    &Actor::System,
                    "eth.tx.reorged",
                    &subject,
                    json!({
                        "block": send.block_number,
                        "block_hash": send.block_hash,
                    }),
                )?);
                self.commit(tx, &entries, now).await?;
                poll.reorged += 1;
                let sender = self.store().eth_sender(&network, &send.address).await?;
                // The attempt that was included goes out again.
                let again = send.included_attempt.or(attempts.last().map(|a| a.attempt));
                if let Some(n) = again {
                    let _ = self.eth_sign_and_send(net, &sender, &send.id, n).await;
                }
            }
            None => poll.still_pending += 1,
        }
        Ok(())
    }

    /// Compares an address's nonces on chain with those handed out.
    pub async fn eth_nonce_report(
        &self,
        chain_id: u64,
        address: EthAddress,
    ) -> Result<NonceReport, ServiceError> {
        let net = self.eth_network(chain_id)?;
        let network = net.network().to_string();
        let sender = self
            .store()
            .eth_sender(&network, &addr_key(address))
            .await?;
        let client = &net.client;
        // The chain first, then this database: a send of ours allocated and
        // broadcast in between is then counted as ours, never as foreign.
        let chain_latest = client
            .nonce(address, NonceTag::Latest)
            .await
            .map_err(EthError::Node)?;
        let chain_pending = client
            .nonce(address, NonceTag::Pending)
            .await
            .map_err(EthError::Node)?;
        let sends = self.store().eth_sends_of(&network, &sender.address).await?;
        let next_allocated = sends.last().map_or(sender.first_nonce, |s| {
            (s.nonce + 1).max(sender.first_nonce)
        });
        let unsigned = sends
            .iter()
            .filter(|s| s.state == state::SIGNING)
            .map(|s| s.nonce)
            .collect();
        let mut gaps = Vec::new();
        for s in sends.iter().filter(|s| s.nonce >= chain_latest) {
            if s.nonce + 1 >= next_allocated {
                break; // nothing of ours above it waits
            }
            let mut known = false;
            for a in self.store().eth_attempts(&s.id).await? {
                if let Some(raw) = &a.raw {
                    let hash = chain_eth::decode(raw).map_err(EthError::Tx)?.hash;
                    if client.tx_status(hash).await.map_err(EthError::Node)? != TxStatus::Unknown {
                        known = true;
                        break;
                    }
                }
            }
            if !known {
                gaps.push(s.nonce);
            }
        }
        Ok(NonceReport {
            chain_latest,
            chain_pending,
            next_allocated,
            unsigned,
            gaps,
            foreign_use: chain_pending > next_allocated,
        })
    }
}

//! An Ethereum send the chain does not mine, sped up. A send is next in
//! line when its nonce is the one the chain will mine next for its
//! sender; if it stays there, broadcast and not included, for
//! `bump_after_blocks` blocks, it is replaced by the same transaction with
//! higher fees (a speed-up through [`Service::eth_replace`]: the gate checks
//! it against the transfer's intent and the original, the fee caps bound
//! it, the audit log records it as the system's).
//!
//! Two reasons a send waits so: its fee fell below what blocks now ask (the
//! base fee rose), or the node holds it without ever offering it to a block
//! (a pool that admitted it while its predecessor was being mined and
//! waits for that predecessor still). Sending the same bytes again cures
//! neither: the node answers "already known". A new transaction at the
//! same nonce is admitted afresh and cures both. Later sends of the sender
//! wait behind it and are not touched; at the fee cap, or frozen, the send
//! is left as it is and a person is told (a warning in the log, once per
//! `bump_after_blocks`).

use std::collections::BTreeMap;

use chain_eth::Urgency;
use chain_eth_client::NonceTag;
use domain::Actor;

use crate::eth::{EthError, Replacement, state};
use crate::eth_rows::parse_addr;
use crate::service::{Service, ServiceError};

impl Service {
    /// One pass over a network's broadcast sends: each sender's send next
    /// in line that has waited `bump_after_blocks` blocks is sped up.
    /// Returns how many were.
    pub async fn eth_speed_up_stalled(&self, chain_id: u64) -> Result<usize, ServiceError> {
        let net = self.eth_network(chain_id)?;
        let network = net.network().to_string();
        let open = self
            .store()
            .eth_sends_in(&network, &[state::BROADCAST])
            .await?;
        // Each sender's lowest broadcast nonce: the later ones wait on it.
        let mut first: BTreeMap<String, storage::EthSendRow> = BTreeMap::new();
        for send in open {
            match first.get(&send.address) {
                Some(f) if f.nonce <= send.nonce => {}
                _ => {
                    first.insert(send.address.clone(), send);
                }
            }
        }
        if first.is_empty() {
            lock(self.eth_waiting()).clear();
            return Ok(0);
        }
        let tip = net.client.block_number().await.map_err(EthError::Node)?;
        let mut next_in_line = Vec::new();
        for (address, send) in first {
            let latest = net
                .client
                .nonce(parse_addr(&address)?, NonceTag::Latest)
                .await
                .map_err(EthError::Node)?;
            // Below the chain's nonce it was mined (the confirmation pass
            // records it); above, an earlier nonce is missing (the nonce
            // report names the gap): neither is this pass's to cure.
            if latest == send.nonce {
                next_in_line.push(send);
            }
        }
        let wait = net.config.bump_after_blocks;
        let due: Vec<storage::EthSendRow> = {
            let mut waiting = lock(self.eth_waiting());
            waiting.retain(|id, _| next_in_line.iter().any(|s| &s.id == id));
            next_in_line
                .into_iter()
                .filter(|s| {
                    let since = *waiting.entry(s.id.clone()).or_insert(tip);
                    tip >= since.saturating_add(wait)
                })
                .collect()
        };
        let mut sped = 0;
        for send in due {
            let result = self
                .eth_replace(
                    &Actor::System,
                    &send.id,
                    Replacement::SpeedUp(Urgency::Fast),
                )
                .await;
            // Whatever came of it, the next try is `wait` blocks away.
            lock(self.eth_waiting()).insert(send.id.clone(), tip);
            match result {
                Ok(_) => {
                    tracing::info!(
                        send = %send.id, nonce = send.nonce, blocks = wait,
                        "an Ethereum send waited unmined and was sped up"
                    );
                    sped += 1;
                }
                Err(ServiceError::Frozen(_)) => {}
                Err(e) => {
                    tracing::warn!(
                        send = %send.id, nonce = send.nonce, blocks = wait, error = %e,
                        "an Ethereum send waits unmined and could not be sped up: a person must look"
                    );
                }
            }
        }
        Ok(sped)
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

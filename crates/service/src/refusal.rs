//! The one refuse path, for every chain and every check before a
//! signature: what was built (or what is stored) is not what was approved.
//! Used by the signing gate (a plan that differs) and by the approvals
//! check (a recorded approval that does not verify for its transfer).

use domain::{Actor, TransferId, WalletId};
use serde_json::json;

use crate::freezes::{FreezeScope, new_freeze, place_in};
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// A send whose plan is not what was approved.
#[derive(Debug)]
pub(crate) struct Refused<'a> {
    /// The send's audit subject (`eth-send:<id>`, `btc-send:<id>`).
    pub send: String,
    pub wallet: WalletId,
    pub transfers: &'a [TransferId],
    pub why: String,
}

impl Service {
    /// The one refuse path, for every chain: a built plan is not what was
    /// approved. Each transfer gets a history line; one audit record and a
    /// webhook event name the send, its transfers and why; the wallet is
    /// frozen — all in one transaction, under the vault lock (as every
    /// freeze). Returns the error to give the caller.
    pub(crate) async fn refuse_to_sign(&self, r: Refused<'_>) -> ServiceError {
        tracing::error!(send = %r.send, why = %r.why, "what was built is not what was approved: signing refused, wallet frozen");
        let refused = async {
            let _vault = self.vault().lock().await;
            let now = self.now();
            let mut tx = self.store().begin().await?;
            for id in r.transfers {
                // Locked: the history line's number is taken under it.
                let t = tx.lock_transfer(*id).await?;
                tx.add_history(
                    t.id,
                    &t.state,
                    "system",
                    &format!("signing refused: {}", r.why),
                    now,
                )
                .await?;
            }
            let transfers: Vec<String> = r.transfers.iter().map(ToString::to_string).collect();
            let details = json!({ "send": r.send, "transfers": transfers, "why": r.why });
            crate::outbox::enqueue(&mut tx, "transfer.sign_refused", details.clone(), now).await?;
            let refusal = entry(&Actor::System, "transfer.sign_refused", &r.send, details)?;
            let freeze = new_freeze(
                &Actor::System,
                FreezeScope::Wallet(r.wallet),
                "signing refused: a plan differs from what was approved",
                now,
            );
            let placed = place_in(&mut tx, &Actor::System, &freeze, now).await?;
            self.commit(tx, &[refusal, placed], now).await
        }
        .await;
        match refused {
            Ok(()) => ServiceError::NotApproved(r.why),
            Err(e) => e,
        }
    }
}

//! The ledger's movements, written in the transaction of the change that
//! causes each (`storage::WriteTx::record_movement`):
//!
//! | change | available | pending | reserved |
//! |---|---|---|---|
//! | a deposit seen | | + | |
//! | a deposit credited (at depth) | + | − | |
//! | a deposit reorganised away | − (if credited) | − (if seen) | |
//! | an output recorded by an operator | + | | |
//! | a transfer queued (its amount spoken for) | − | | + |
//! | a transfer released (cancelled, failed, sent back for approvals) | + | | − |
//! | a transfer paid (completed) | | | − |
//! | a fee paid (its transaction at depth) | − | | |
//!
//! So `available + reserved` is what the wallet holds as of its credited
//! deposits and confirmed payouts, and every row carries the balances after
//! it: the balance history is the ledger read in order.

use domain::{Timestamp, TransferId, WalletId};
use storage::{Balances, DepositRow, Movement, TransferRow, WriteTx};

use crate::service::ServiceError;

/// States in which a transfer's amount is spoken for.
fn holds(state: &str) -> bool {
    matches!(
        state,
        "queued" | "signing" | "awaiting_signature" | "signed" | "broadcasting" | "confirming"
    )
}

fn signed(v: u128) -> Result<i128, ServiceError> {
    i128::try_from(v).map_err(|_| ServiceError::Invalid("amount out of the ledger's range".into()))
}

/// The movement of a transfer from `from` to `to`, if it moves funds.
pub(crate) async fn transfer_moved(
    tx: &mut WriteTx,
    t: &TransferRow,
    from: &str,
    to: &str,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let a = signed(t.amount)?;
    let (kind, delta) = match (holds(from), holds(to)) {
        (false, true) => (
            "reserved",
            Balances {
                available: -a,
                pending: 0,
                reserved: a,
            },
        ),
        (true, false) if to == "completed" => (
            "payout",
            Balances {
                available: 0,
                pending: 0,
                reserved: -a,
            },
        ),
        (true, false) => (
            "released",
            Balances {
                available: a,
                pending: 0,
                reserved: -a,
            },
        ),
        _ => return Ok(()),
    };
    tx.record_movement(
        &Movement {
            wallet: t.wallet,
            asset: t.asset.clone(),
            kind: kind.into(),
            delta,
            transfer: Some(t.id),
            txid: None,
            block: None,
            reference: format!("transfer:{}:{from}:{to}:{}", t.id, now.as_millis()),
        },
        now,
    )
    .await?;
    Ok(())
}

/// A deposit's step (`seen`, `credited`, `reorged` from `was`), for a
/// deposit to a wallet; change of our own sends is not a movement.
pub(crate) async fn deposit_moved(
    tx: &mut WriteTx,
    d: &DepositRow,
    to: &str,
    was: &str,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let Some(wallet) = d.wallet else {
        return Ok(());
    };
    if d.from.starts_with("change:") {
        return Ok(());
    }
    let a = signed(d.amount)?;
    let delta = match (was, to) {
        (_, "seen") => Balances {
            available: 0,
            pending: a,
            reserved: 0,
        },
        ("seen", "credited") => Balances {
            available: a,
            pending: -a,
            reserved: 0,
        },
        ("seen", "reorged") => Balances {
            available: 0,
            pending: -a,
            reserved: 0,
        },
        ("credited", "reorged") => Balances {
            available: -a,
            pending: 0,
            reserved: 0,
        },
        _ => return Ok(()),
    };
    tx.record_movement(
        &Movement {
            wallet,
            asset: d.asset.clone(),
            kind: format!("deposit_{to}"),
            delta,
            transfer: None,
            txid: Some(d.tx_hash.clone()),
            block: Some(d.block_number),
            reference: format!(
                "deposit:{}:{}:{}:{to}:{}",
                d.network, d.tx_hash, d.log_index, d.block_hash
            ),
        },
        now,
    )
    .await?;
    Ok(())
}

/// Something that moves funds outside a transfer: a fee paid, an output
/// recorded by hand.
pub(crate) struct Other<'a> {
    pub wallet: WalletId,
    pub asset: &'a str,
    pub kind: &'a str,
    /// Added to `available`.
    pub available: i128,
    pub transfer: Option<TransferId>,
    pub txid: Option<&'a str>,
    pub block: Option<u64>,
    pub reference: String,
}

pub(crate) async fn other_moved(
    tx: &mut WriteTx,
    o: Other<'_>,
    now: Timestamp,
) -> Result<(), ServiceError> {
    tx.record_movement(
        &Movement {
            wallet: o.wallet,
            asset: o.asset.to_owned(),
            kind: o.kind.to_owned(),
            delta: Balances {
                available: o.available,
                pending: 0,
                reserved: 0,
            },
            transfer: o.transfer,
            txid: o.txid.map(str::to_owned),
            block: o.block,
            reference: o.reference,
        },
        now,
    )
    .await?;
    Ok(())
}

pub(crate) fn negative(v: u128) -> Result<i128, ServiceError> {
    signed(v).map(|v| -v)
}

//! What the ledger tells a wallet's readers: its movements, its balance
//! history, and statements for an accountant (CSV or JSON) — every
//! movement with its transfer, transaction and block, between an opening
//! and a closing balance per asset.

use domain::{Permission, Timestamp, WalletId, permits};
use serde::Serialize;
use storage::{Balances, LedgerRow, StorageError};

use crate::access::{Can, perm};
use crate::service::ServiceError;

/// Balances as text (base units, signed: a ledger that disagrees with the
/// chain shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BalancesText {
    pub available: String,
    pub pending: String,
    pub reserved: String,
}

impl From<Balances> for BalancesText {
    fn from(b: Balances) -> Self {
        BalancesText {
            available: b.available.to_string(),
            pending: b.pending.to_string(),
            reserved: b.reserved.to_string(),
        }
    }
}

/// One movement, as statements show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovementLine {
    pub seq: i64,
    pub at_ms: i64,
    pub asset: String,
    pub kind: String,
    pub delta: BalancesText,
    pub after: BalancesText,
    pub transfer: Option<String>,
    pub txid: Option<String>,
    pub block: Option<u64>,
}

impl From<LedgerRow> for MovementLine {
    fn from(r: LedgerRow) -> Self {
        MovementLine {
            seq: r.seq,
            at_ms: r.at.as_millis(),
            asset: r.asset,
            kind: r.kind,
            delta: r.delta.into(),
            after: r.after.into(),
            transfer: r.transfer.map(|t| t.to_string()),
            txid: r.txid,
            block: r.block,
        }
    }
}

/// Balances of one asset at the start and the end of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetTotals {
    pub asset: String,
    pub opening: BalancesText,
    pub closing: BalancesText,
}

/// A wallet's statement over `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub wallet: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub assets: Vec<AssetTotals>,
    pub movements: Vec<MovementLine>,
}

/// At most this many movements in one statement: a longer range is asked
/// for in parts.
pub const STATEMENT_MAX: u32 = 100_000;

/// `[from, to)`, `to` now (inclusive) when not given.
fn range(
    now: Timestamp,
    from: Timestamp,
    to: Option<Timestamp>,
) -> Result<Timestamp, ServiceError> {
    let to = to.unwrap_or_else(|| Timestamp::from_millis(now.as_millis().saturating_add(1)));
    if to.as_millis() <= from.as_millis() {
        return Err(ServiceError::Invalid("`to` must be after `from`".into()));
    }
    Ok(to)
}

impl Can<'_, perm::ReadWallet> {
    fn check(&self, wallet: WalletId) -> Result<(), ServiceError> {
        if permits(self.who.grants(), Permission::ReadWallet, Some(wallet)) {
            Ok(())
        } else {
            Err(StorageError::NotFound { what: "wallet" }.into())
        }
    }

    /// Movements (of one asset, or all) in `[from, to)`, oldest first,
    /// paged by the previous page's last `seq`.
    pub async fn ledger(
        &self,
        wallet: WalletId,
        asset: Option<&str>,
        from: Timestamp,
        to: Option<Timestamp>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MovementLine>, ServiceError> {
        self.check(wallet)?;
        let to = range(self.svc.now(), from, to)?;
        self.svc.store().wallet(wallet).await?;
        Ok(self
            .svc
            .store()
            .ledger_rows(wallet, asset, from, to, after, limit.clamp(1, 1000))
            .await?
            .into_iter()
            .map(MovementLine::from)
            .collect())
    }

    /// A statement: opening and closing balances per asset and every
    /// movement between (at most [`STATEMENT_MAX`]; more is refused).
    pub async fn statement(
        &self,
        wallet: WalletId,
        from: Timestamp,
        to: Option<Timestamp>,
    ) -> Result<Statement, ServiceError> {
        self.check(wallet)?;
        let to = range(self.svc.now(), from, to)?;
        let store = self.svc.store();
        store.wallet(wallet).await?;
        let rows = store
            .ledger_rows(wallet, None, from, to, None, STATEMENT_MAX + 1)
            .await?;
        if rows.len() > STATEMENT_MAX as usize {
            return Err(ServiceError::Invalid(format!(
                "more than {STATEMENT_MAX} movements in this range: ask for a shorter one"
            )));
        }
        let mut totals: std::collections::BTreeMap<String, (Balances, Balances)> = store
            .ledger_balances_before(wallet, from)
            .await?
            .into_iter()
            .map(|(a, b)| (a, (b, b)))
            .collect();
        for r in &rows {
            let slot = totals
                .entry(r.asset.clone())
                .or_insert((Balances::default(), Balances::default()));
            slot.1 = r.after;
        }
        Ok(Statement {
            wallet: wallet.to_string(),
            from_ms: from.as_millis(),
            to_ms: to.as_millis(),
            assets: totals
                .into_iter()
                .map(|(asset, (opening, closing))| AssetTotals {
                    asset,
                    opening: opening.into(),
                    closing: closing.into(),
                })
                .collect(),
            movements: rows.into_iter().map(MovementLine::from).collect(),
        })
    }
}

impl Statement {
    /// The statement as CSV (RFC 4180): one line per movement, then one
    /// `opening` and one `closing` line per asset.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "kind,at_ms,asset,d_available,d_pending,d_reserved,available,pending,reserved,\
             transfer,txid,block,seq\r\n",
        );
        let line = |out: &mut String, fields: &[&str]| {
            let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&quoted.join(","));
            out.push_str("\r\n");
        };
        for a in &self.assets {
            let o = &a.opening;
            line(
                &mut out,
                &[
                    "opening",
                    &self.from_ms.to_string(),
                    &a.asset,
                    "",
                    "",
                    "",
                    &o.available,
                    &o.pending,
                    &o.reserved,
                    "",
                    "",
                    "",
                    "",
                ],
            );
        }
        for m in &self.movements {
            line(
                &mut out,
                &[
                    &m.kind,
                    &m.at_ms.to_string(),
                    &m.asset,
                    &m.delta.available,
                    &m.delta.pending,
                    &m.delta.reserved,
                    &m.after.available,
                    &m.after.pending,
                    &m.after.reserved,
                    m.transfer.as_deref().unwrap_or(""),
                    m.txid.as_deref().unwrap_or(""),
                    &m.block.map(|b| b.to_string()).unwrap_or_default(),
                    &m.seq.to_string(),
                ],
            );
        }
        for a in &self.assets {
            let c = &a.closing;
            line(
                &mut out,
                &[
                    "closing",
                    &self.to_ms.to_string(),
                    &a.asset,
                    "",
                    "",
                    "",
                    &c.available,
                    &c.pending,
                    &c.reserved,
                    "",
                    "",
                    "",
                    "",
                ],
            );
        }
        out
    }
}

/// A CSV field, quoted when it must be; a leading `=`, `+`, `-` or `@`
/// that is not a number is prefixed with `'` (no formula reaches a
/// spreadsheet).
fn csv_field(f: &str) -> String {
    let numeric = f.parse::<i128>().is_ok();
    let f = if !numeric && f.starts_with(['=', '+', '-', '@']) {
        format!("'{f}")
    } else {
        f.to_owned()
    };
    if f.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("-5"), "-5");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}

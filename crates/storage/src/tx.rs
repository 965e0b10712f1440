//! Write transactions that commit only with their audit records.

use audit::{Entry, Hash, Head, Record};
use domain::Timestamp;
use sqlx::{Any, Transaction};

use crate::error::StorageError;
use crate::store::{Backend, Store, WriteTurn};

/// A database transaction for a state change.
///
/// Repositories write through it; [`WriteTx::commit`] then appends the audit
/// records that describe the change and commits both at once. If the audit
/// append fails, nothing of the change is kept. Dropping a `WriteTx` without
/// committing rolls it back.
#[derive(Debug)]
pub struct WriteTx {
    pub(crate) tx: Transaction<'static, Any>,
    backend: Backend,
    /// Released after `tx` (fields drop in order): after the commit, or
    /// once the rollback is queued on the connection (sqlx runs it on the
    /// connection's worker; a writer that begins before it ran meets
    /// SQLite's busy handler for that moment — slower, never wrong).
    _turn: WriteTurn,
}

impl Store {
    /// Starts a write transaction.
    ///
    /// On SQLite it takes the database's single write lock at once
    /// (`BEGIN IMMEDIATE`), so that a transaction never fails half-way on a
    /// lock upgrade. On PostgreSQL writers run concurrently until they append
    /// to the audit log, which serialises them on the chain head.
    pub async fn begin(&self) -> Result<WriteTx, StorageError> {
        let turn = self.write_turn().await?;
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        Ok(WriteTx {
            tx,
            backend: self.backend,
            _turn: turn,
        })
    }

    /// Records events that change no other state (start-up, shutdown, reads
    /// that must be audited).
    pub async fn append_audit(
        &self,
        entries: &[Entry],
        now: Timestamp,
    ) -> Result<Vec<Record>, StorageError> {
        self.begin().await?.commit(entries, now).await
    }
}

impl WriteTx {
    /// ` FOR UPDATE` where the database locks rows read (PostgreSQL).
    pub(crate) fn for_update(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// A named lock until this transaction ends, shared or exclusive: a
    /// PostgreSQL advisory transaction lock; nothing on SQLite, whose
    /// writers are serial anyway.
    pub(crate) async fn advisory_lock(
        &mut self,
        name: &str,
        shared: bool,
    ) -> Result<(), StorageError> {
        if self.backend() == Backend::Postgres {
            let q = if shared {
                "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))"
            } else {
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
            };
            sqlx::query(q).bind(name).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Appends `entries` to the audit log and commits everything.
    ///
    /// Refuses an empty `entries`: every change is audited.
    pub async fn commit(
        mut self,
        entries: &[Entry],
        now: Timestamp,
    ) -> Result<Vec<Record>, StorageError> {
        if entries.is_empty() {
            return Err(StorageError::Unaudited);
        }
        let entries = crate::context::tagged(entries);
        let mut head = self.lock_head().await?;
        let mut records = Vec::with_capacity(entries.len());
        for e in &entries {
            let r = Record::next(&head, e, now)?;
            head = r.head();
            records.push(r);
        }
        for chunk in records.chunks(RECORDS_PER_INSERT) {
            insert_records(&mut self.tx, chunk).await?;
        }
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq_to_db(head.seq)?)
            .bind(head.hash.to_string())
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(records)
    }

    async fn lock_head(&mut self) -> Result<Head, StorageError> {
        let sql = match self.backend {
            Backend::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
            Backend::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        };
        let (seq, hash): (i64, String) =
            sqlx::query_as(sql)
                .fetch_optional(&mut *self.tx)
                .await?
                .ok_or_else(|| StorageError::Corrupt("audit head row is missing".into()))?;
        Ok(Head {
            seq: seq_from_db(seq)?,
            hash: parse_hash(&hash)?,
        })
    }
}

/// Records written by one statement (9 parameters each: far below either
/// database's limit on parameters).
const RECORDS_PER_INSERT: usize = 64;

/// Writes `records` (consecutive, in order) in one multi-row insert.
async fn insert_records(
    tx: &mut Transaction<'static, Any>,
    records: &[Record],
) -> Result<(), StorageError> {
    let rows: Vec<String> = (0..records.len())
        .map(|i| {
            let p: Vec<String> = (1..=9).map(|k| format!("${}", i * 9 + k)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO audit_log \
         (seq, version, time_ms, actor, action, subject, details, prev_hash, hash) VALUES {}",
        rows.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in records {
        query = query
            .bind(seq_to_db(r.seq)?)
            .bind(i32::from(r.version))
            .bind(r.time.as_millis())
            .bind(&r.actor)
            .bind(&r.action)
            .bind(&r.subject)
            .bind(&r.details)
            .bind(r.prev_hash.to_string())
            .bind(r.hash.to_string());
    }
    query
        .execute(&mut **tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "audit record"))?;
    Ok(())
}

pub(crate) fn seq_to_db(seq: u64) -> Result<i64, StorageError> {
    i64::try_from(seq).map_err(|_| StorageError::Corrupt(format!("sequence {seq} out of range")))
}

pub(crate) fn seq_from_db(seq: i64) -> Result<u64, StorageError> {
    u64::try_from(seq).map_err(|_| StorageError::Corrupt(format!("negative sequence {seq}")))
}

pub(crate) fn parse_hash(s: &str) -> Result<Hash, StorageError> {
    s.parse()
        .map_err(|_| StorageError::Corrupt(format!("stored hash {s:?} is not 64 hex digits")))
}

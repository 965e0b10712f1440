//! The audit log against an intruder with direct database access, on SQLite
//! and PostgreSQL: every kind of tampering is named at its first broken record.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;
use std::time::Duration;

use audit::{AuditSigningKey, Break};
use service::{
    CheckpointFile, CheckpointPolicy, Checkpointer, Service, SystemClock, VerifyError, verify_audit,
};
use storage::Backend;
use storage::testing::TestDb;
use zeroize::Zeroizing;

storage::on_both!(
    fixture;
    intact_log_verifies,
    edited_record_is_named,
    deleted_record_is_named,
    reordered_records_are_named,
    truncated_log_is_detected_by_checkpoint,
    truncated_log_with_stale_head_is_detected,
    deleted_checkpoint_file_is_detected,
    emptied_checkpoint_file_is_detected,
    damaged_checkpoint_line_is_reported,
    forged_checkpoint_is_refused,
    checkpointer_refuses_to_bless_a_rewritten_tail,
    checkpointer_stops_at_a_gap_before_the_head,
    unreadable_hash_is_named,
);

async fn fixture(db: TestDb) -> Fixture {
    Fixture::new(db).await
}

struct Fixture {
    db: TestDb,
    file: CheckpointFile,
    key: audit::AuditPublicKey,
    _dir: tempfile::TempDir,
}

fn signing_key() -> AuditSigningKey {
    AuditSigningKey::from_seed(&Zeroizing::new([42; 32]))
}

impl Fixture {
    /// Twelve audited changes, checkpointed every five records and at the end.
    async fn new(db: TestDb) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let file = CheckpointFile::new(dir.path().join("audit.checkpoints"));
        let policy = CheckpointPolicy {
            every_records: 5,
            every: Duration::from_secs(60),
        };
        let cp = Checkpointer::open(signing_key(), file.clone(), policy).unwrap();
        let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
        let actor = "operator:alice".parse().unwrap();
        for i in 0..12 {
            svc.create_account(&actor, &format!("Account {i}"))
                .await
                .unwrap();
        }
        svc.checkpoint_tick().await.unwrap();
        let seqs: Vec<u64> = file
            .read_all()
            .unwrap()
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect();
        assert_eq!(seqs, [5, 10, 12]);
        Fixture {
            db,
            file,
            key: signing_key().public(),
            _dir: dir,
        }
    }

    /// What an intruder does first: remove the append-only triggers.
    async fn tamper(&self, sql: &[&str]) {
        let drop = match self.db.store.backend() {
            Backend::Sqlite => {
                "DROP TRIGGER audit_log_append_only_update; DROP TRIGGER audit_log_append_only_delete"
            }
            Backend::Postgres => "DROP TRIGGER audit_log_append_only ON audit_log",
        };
        self.db.store.execute_unchecked(drop).await.unwrap();
        for s in sql {
            self.db.store.execute_unchecked(s).await.unwrap();
        }
    }

    /// A second service on the same database and checkpoint file, as after a restart.
    fn service(&self) -> Service {
        let policy = CheckpointPolicy {
            every_records: 5,
            every: Duration::from_secs(60),
        };
        let cp = Checkpointer::open(signing_key(), self.file.clone(), policy).unwrap();
        Service::new(self.db.store.clone(), Arc::new(SystemClock), cp)
    }

    async fn verify(&self) -> Result<audit::Report, VerifyError> {
        verify_audit(&self.db.store, &self.file, &self.key).await
    }

    async fn first_broken(&self) -> (Option<u64>, String) {
        match self.verify().await {
            Err(VerifyError::Broken(b)) => (b.first_broken_record(), b.to_string()),
            other => panic!("expected a broken log, got {other:?}"),
        }
    }
}

async fn intact_log_verifies(f: Fixture) {
    let r = f.verify().await.unwrap();
    assert_eq!(r.records, 12);
    assert_eq!(r.last_checkpoint, Some(12));
}

async fn edited_record_is_named(f: Fixture) {
    f.tamper(&["UPDATE audit_log SET details = '{\"name\":\"Mallory\"}' WHERE seq = 4"])
        .await;
    let (seq, msg) = f.first_broken().await;
    assert_eq!(seq, Some(4), "{msg}");
    assert!(msg.contains("edited"), "{msg}");
}

async fn deleted_record_is_named(f: Fixture) {
    f.tamper(&["DELETE FROM audit_log WHERE seq = 6"]).await;
    let (seq, msg) = f.first_broken().await;
    assert_eq!(seq, Some(6), "{msg}");
    assert!(msg.contains("missing"), "{msg}");
}

async fn reordered_records_are_named(f: Fixture) {
    f.tamper(&[
        "UPDATE audit_log SET seq = 1000 WHERE seq = 7",
        "UPDATE audit_log SET seq = 7 WHERE seq = 8",
        "UPDATE audit_log SET seq = 8 WHERE seq = 1000",
    ])
    .await;
    let (seq, msg) = f.first_broken().await;
    assert_eq!(seq, Some(7), "{msg}");
}

async fn truncated_log_is_detected_by_checkpoint(f: Fixture) {
    // The intruder deletes the newest records and moves the head back to
    // match, so the remaining chain is internally perfect.
    let head = f.db.store.audit_page(8, 1).await.unwrap().remove(0);
    f.tamper(&[
        "DELETE FROM audit_log WHERE seq > 9",
        &format!(
            "UPDATE audit_head SET seq = 9, hash = '{}' WHERE id = 1",
            head.hash
        ),
    ])
    .await;
    let (seq, msg) = f.first_broken().await;
    assert_eq!(seq, Some(10), "{msg}");
    assert!(msg.contains("signed checkpoint covers record 12"), "{msg}");
}

async fn truncated_log_with_stale_head_is_detected(f: Fixture) {
    // The intruder also removes the newest checkpoint line, but forgets the head.
    f.tamper(&["DELETE FROM audit_log WHERE seq > 11"]).await;
    let text = std::fs::read_to_string(f.file.path()).unwrap();
    let kept: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(f.file.path(), format!("{}\n", kept.join("\n"))).unwrap();
    match f.verify().await {
        Err(VerifyError::Broken(b @ Break::HeadMismatch { last: 11, head: 12 })) => {
            assert_eq!(b.first_broken_record(), Some(12));
        }
        other => panic!("expected a head mismatch, got {other:?}"),
    }
}

async fn deleted_checkpoint_file_is_detected(f: Fixture) {
    std::fs::remove_file(f.file.path()).unwrap();
    assert!(matches!(
        f.verify().await,
        Err(VerifyError::NoCheckpoints(_))
    ));
}

async fn emptied_checkpoint_file_is_detected(f: Fixture) {
    std::fs::write(f.file.path(), "").unwrap();
    assert!(matches!(
        f.verify().await,
        Err(VerifyError::NoCheckpoints(_))
    ));
}

async fn damaged_checkpoint_line_is_reported(f: Fixture) {
    let text = std::fs::read_to_string(f.file.path()).unwrap();
    std::fs::write(f.file.path(), text.replacen("{", "garbage{", 1)).unwrap();
    match f.verify().await {
        Err(VerifyError::CheckpointFile(msg)) => assert!(msg.contains("line 1"), "{msg}"),
        other => panic!("expected a damaged checkpoint file, got {other:?}"),
    }
}

async fn checkpointer_refuses_to_bless_a_rewritten_tail(f: Fixture) {
    // Between checkpoints, record 13 arrives and the intruder edits it; the
    // next checkpoint must not sign the edited chain.
    let svc = f.service();
    svc.create_account(&"operator:bob".parse().unwrap(), "Late")
        .await
        .unwrap();
    f.tamper(&["UPDATE audit_log SET subject = 'account:forged' WHERE seq = 13"])
        .await;
    let err = svc.checkpoint_tick().await.unwrap_err();
    assert!(err.to_string().contains("record 13"), "{err}");
    let seqs: Vec<u64> = f
        .file
        .read_all()
        .unwrap()
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, [5, 10, 12]);
}

async fn checkpointer_stops_at_a_gap_before_the_head(f: Fixture) {
    // Record 13 deleted, the head moved back onto it, record 14 left behind:
    // the segment cannot be checked, so nothing is signed (and nothing hangs).
    let svc = f.service();
    let actor = "operator:bob".parse().unwrap();
    svc.create_account(&actor, "Late 1").await.unwrap();
    svc.create_account(&actor, "Late 2").await.unwrap();
    let r13 = f.db.store.audit_page(12, 1).await.unwrap().remove(0);
    f.tamper(&[
        "DELETE FROM audit_log WHERE seq = 13",
        &format!(
            "UPDATE audit_head SET seq = 13, hash = '{}' WHERE id = 1",
            r13.hash
        ),
    ])
    .await;
    let err = svc.checkpoint_tick().await.unwrap_err();
    assert!(err.to_string().contains("record 13"), "{err}");
}

async fn unreadable_hash_is_named(f: Fixture) {
    f.tamper(&["UPDATE audit_log SET prev_hash = 'garbage' WHERE seq = 1"])
        .await;
    let (seq, msg) = f.first_broken().await;
    assert_eq!(seq, Some(1), "{msg}");
}

async fn forged_checkpoint_is_refused(f: Fixture) {
    let other = AuditSigningKey::from_seed(&Zeroizing::new([7; 32]));
    let head = f.db.store.audit_head().await.unwrap();
    let mut forged = other.sign_checkpoint(head, domain::Timestamp::UNIX_EPOCH);
    forged.key = f.key.to_string();
    f.file.append(&forged).unwrap();
    match f.verify().await {
        Err(VerifyError::Broken(Break::BadCheckpoint { line: 4, .. })) => {}
        other => panic!("expected a bad checkpoint on line 4, got {other:?}"),
    }
}

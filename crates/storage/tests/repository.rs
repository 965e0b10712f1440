//! The repository suite. Every test runs on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use audit::{Details, Entry, Head, Verifier};
use domain::{Account, AccountName, Actor, Timestamp};
use serde_json::json;
use storage::testing::TestDb;
use storage::{Backend, StorageError, Store};

storage::on_both!(
    db;
    account_and_audit_commit_together,
    duplicate_name_changes_nothing,
    unaudited_change_is_refused,
    failing_audit_write_fails_the_change,
    audit_log_is_append_only,
    concurrent_appends_form_one_chain,
    audit_pages_in_order,
    a_large_batch_is_written_whole_and_in_order,
    request_nonces_are_spent_once_and_forgotten_in_time,
    an_event_is_delivered_to_exactly_its_subscribers,
    schema_is_checked,
    keystore_is_created_once,
    key_inventory_round_trips_with_guarded_updates,
);

async fn db(db: TestDb) -> TestDb {
    db
}

fn account(name: &str, ms: i64) -> Account {
    Account {
        id: domain::AccountId::from_uuid(uuid_v7(ms)),
        name: AccountName::new(name).unwrap(),
        created_at: Timestamp::from_millis(ms),
        created_by: "operator:alice".parse().unwrap(),
    }
}

fn uuid_v7(ms: i64) -> uuid::Uuid {
    let ts = uuid::Timestamp::from_unix_time(ms as u64 / 1000, 0, 0, 0);
    let mut u = *uuid::Uuid::new_v7(ts).as_bytes();
    u[15] ^= (ms & 0xff) as u8;
    uuid::Uuid::from_bytes(u)
}

fn created(a: &Account) -> Entry {
    Entry::new(
        a.created_by.clone(),
        "account.created",
        format!("account:{}", a.id),
        Details::new(&json!({"name": a.name.as_str()})).unwrap(),
    )
    .unwrap()
}

async fn create(store: &Store, a: &Account) -> Result<Vec<audit::Record>, StorageError> {
    let mut tx = store.begin().await?;
    tx.insert_account(a).await?;
    tx.commit(&[created(a)], a.created_at).await
}

async fn audit_count(store: &Store) -> String {
    store
        .query_text("SELECT CAST(COUNT(*) AS TEXT) FROM audit_log")
        .await
        .unwrap()
}

async fn account_and_audit_commit_together(db: TestDb) {
    let s = &db.store;
    let a = account("Treasury", 1_000);
    let records = create(s, &a).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].seq, 1);
    assert_eq!(records[0].subject, format!("account:{}", a.id));
    assert_eq!(records[0].details, r#"{"name":"Treasury"}"#);
    assert_eq!(s.account(a.id).await.unwrap(), a);
    assert_eq!(s.accounts().await.unwrap(), vec![a.clone()]);
    assert_eq!(s.audit_head().await.unwrap(), records[0].head());
    assert_eq!(s.audit_page(0, 10).await.unwrap(), records);
}

async fn duplicate_name_changes_nothing(db: TestDb) {
    let s = &db.store;
    create(s, &account("Desk", 1_000)).await.unwrap();
    let err = create(s, &account("Desk", 2_000)).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Conflict { what: "account" }),
        "{err:?}"
    );
    assert_eq!(s.accounts().await.unwrap().len(), 1);
    assert_eq!(audit_count(s).await, "1");
    assert_eq!(s.audit_head().await.unwrap().seq, 1);
}

async fn unaudited_change_is_refused(db: TestDb) {
    let s = &db.store;
    let a = account("Quiet", 1_000);
    let mut tx = s.begin().await.unwrap();
    tx.insert_account(&a).await.unwrap();
    let err = tx.commit(&[], a.created_at).await.unwrap_err();
    assert!(matches!(err, StorageError::Unaudited), "{err:?}");
    assert!(matches!(
        s.account(a.id).await,
        Err(StorageError::NotFound { .. })
    ));
}

async fn failing_audit_write_fails_the_change(db: TestDb) {
    let s = &db.store;
    // Make every audit insert fail, as a full disk or a broken table would.
    let sql = match s.backend() {
        Backend::Sqlite => {
            "CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END"
        }
        Backend::Postgres => {
            "CREATE FUNCTION audit_fail() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END; $$; \
             CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_fail()"
        }
    };
    s.execute_unchecked(sql).await.unwrap();
    let a = account("Doomed", 1_000);
    let err = create(s, &a).await.unwrap_err();
    assert!(err.to_string().contains("audit unavailable"), "{err}");
    assert!(matches!(
        s.account(a.id).await,
        Err(StorageError::NotFound { .. })
    ));
    assert_eq!(s.audit_head().await.unwrap(), Head::GENESIS);
}

async fn audit_log_is_append_only(db: TestDb) {
    let s = &db.store;
    create(s, &account("One", 1_000)).await.unwrap();
    for sql in [
        "UPDATE audit_log SET subject = 'x' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 1",
    ] {
        let e = s.execute_unchecked(sql).await.unwrap_err().to_string();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(audit_count(s).await, "1");
}

async fn concurrent_appends_form_one_chain(db: TestDb) {
    let s = db.store.clone();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let e = Entry::new(
                        Actor::System,
                        "test.append",
                        format!("{t}:{i}"),
                        Details::none(),
                    )
                    .unwrap();
                    s.append_audit(&[e], Timestamp::from_millis(i))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let key = audit::AuditSigningKey::from_seed(&zeroize::Zeroizing::new([1; 32]));
    let mut v = Verifier::new(&[], &key.public()).unwrap();
    let mut after = 0;
    loop {
        let page = s.audit_page(after, 64).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            v.push(r).unwrap();
        }
    }
    let report = v.finish(Some(s.audit_head().await.unwrap())).unwrap();
    assert_eq!(report.records, 200);
}

async fn audit_pages_in_order(db: TestDb) {
    let s = &db.store;
    let entries: Vec<Entry> = (0..5)
        .map(|i| Entry::new(Actor::System, "test.batch", format!("{i}"), Details::none()).unwrap())
        .collect();
    let written = s
        .append_audit(&entries, Timestamp::from_millis(7))
        .await
        .unwrap();
    assert_eq!(
        written.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let first = s.audit_page(0, 2).await.unwrap();
    let rest = s.audit_page(2, 10).await.unwrap();
    assert_eq!([first, rest].concat(), written);
    assert!(s.audit_page(5, 10).await.unwrap().is_empty());
}

/// A commit's records are written several to a statement (64 at most):
/// a batch over two statements' worth reads back as written, one chain.
async fn a_large_batch_is_written_whole_and_in_order(db: TestDb) {
    let s = &db.store;
    let one = |i: usize| Entry::new(Actor::System, "test.one", format!("{i}"), Details::none());
    s.append_audit(&[one(0).unwrap()], Timestamp::from_millis(1))
        .await
        .unwrap();
    let entries: Vec<Entry> = (0..150)
        .map(|i| {
            Entry::new(
                Actor::System,
                "test.batch",
                format!("{i}"),
                Details::new(&json!({ "i": i })).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let written = s
        .append_audit(&entries, Timestamp::from_millis(2))
        .await
        .unwrap();
    assert_eq!(
        written.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (2..=151).collect::<Vec<u64>>()
    );
    s.append_audit(&[one(1).unwrap()], Timestamp::from_millis(3))
        .await
        .unwrap();
    let read = s.audit_page(1, 200).await.unwrap();
    assert_eq!(read[..150], written[..]);
    let key = audit::AuditSigningKey::from_seed(&zeroize::Zeroizing::new([1; 32]));
    let mut v = Verifier::new(&[], &key.public()).unwrap();
    for r in s.audit_page(0, 200).await.unwrap() {
        v.push(&r).unwrap();
    }
    let report = v.finish(Some(s.audit_head().await.unwrap())).unwrap();
    assert_eq!(report.records, 152);
    assert_eq!(audit_count(s).await, "152");

    // A batch whose second statement fails keeps nothing, the first
    // statement's 64 records included.
    let sql = match s.backend() {
        Backend::Sqlite => {
            "CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log WHEN NEW.subject = 'fail' \
             BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END"
        }
        Backend::Postgres => {
            "CREATE FUNCTION audit_fail() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN IF NEW.subject = 'fail' THEN RAISE EXCEPTION 'audit unavailable'; END IF; \
             RETURN NEW; END; $$; \
             CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_fail()"
        }
    };
    s.execute_unchecked(sql).await.unwrap();
    let head = s.audit_head().await.unwrap();
    let doomed: Vec<Entry> = (0..100)
        .map(|i| {
            let subject = if i == 70 {
                "fail".into()
            } else {
                format!("{i}")
            };
            Entry::new(Actor::System, "test.batch", subject, Details::none()).unwrap()
        })
        .collect();
    let err = s
        .append_audit(&doomed, Timestamp::from_millis(4))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("audit unavailable"), "{err}");
    assert_eq!(audit_count(s).await, "152");
    assert_eq!(s.audit_head().await.unwrap(), head);
}

/// A request nonce is spent once. Nonces signed before the horizon are
/// forgotten, at most once a second (each pruning is a commit): one
/// signed just before a horizon that moved less than a second is kept a
/// little longer, which only refuses more.
async fn request_nonces_are_spent_once_and_forgotten_in_time(db: TestDb) {
    let s = &db.store;
    let key: domain::ApiKeyId = "00000000-0000-7000-8000-000000000001".parse().unwrap();
    let at = Timestamp::from_millis;
    let count = || async {
        s.query_text("SELECT CAST(COUNT(*) AS TEXT) FROM request_nonces")
            .await
            .unwrap()
    };
    assert!(
        s.use_request_nonce(key, "a", at(10_000), at(9_500))
            .await
            .unwrap()
    );
    assert!(
        !s.use_request_nonce(key, "a", at(10_000), at(9_500))
            .await
            .unwrap()
    );
    // The horizon passed "a", less than a second after the last pruning:
    // "a" is kept, and still refused.
    assert!(
        s.use_request_nonce(key, "b", at(10_500), at(10_200))
            .await
            .unwrap()
    );
    assert_eq!(count().await, "2");
    assert!(
        !s.use_request_nonce(key, "a", at(10_000), at(10_300))
            .await
            .unwrap()
    );
    // A second on: every nonce signed before the horizon is forgotten.
    assert!(
        s.use_request_nonce(key, "c", at(12_000), at(11_000))
            .await
            .unwrap()
    );
    assert_eq!(count().await, "1");
}

/// An event gets one delivery for each active subscription to its type or
/// to `*`, and none for a type that only shares a prefix or a suffix.
async fn an_event_is_delivered_to_exactly_its_subscribers(db: TestDb) {
    let s = &db.store;
    let hooks: [(&str, &[&str], bool); 6] = [
        ("all", &["*"], true),
        ("state", &["transfer.state_changed"], true),
        ("two", &["transfer.pending_approval", "x.y"], true),
        ("off", &["*"], false),
        ("prefix", &["transfer.state"], true),
        (
            "suffix",
            &["transfer.state_changed_x", "state_changed"],
            true,
        ),
    ];
    let mut tx = s.begin().await.unwrap();
    for (id, events, active) in hooks {
        tx.insert_webhook(&storage::WebhookRow {
            id: id.into(),
            url: format!("https://example.com/{id}"),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            secret_sealed: vec![1],
            active: true,
            created_at: Timestamp::from_millis(1),
            created_by: Actor::System,
        })
        .await
        .unwrap();
        if !active {
            tx.deactivate_webhook(id).await.unwrap();
        }
    }
    tx.enqueue_event(
        "e1",
        "transfer.state_changed",
        "{}",
        Timestamp::from_millis(2),
    )
    .await
    .unwrap();
    tx.enqueue_event("e2", "x.y", "{}", Timestamp::from_millis(2))
        .await
        .unwrap();
    tx.enqueue_event("e3", "a,b", "{}", Timestamp::from_millis(2))
        .await
        .unwrap();
    tx.commit(&[audited("webhooks")], Timestamp::from_millis(2))
        .await
        .unwrap();
    let mut got = Vec::new();
    for (id, _, _) in hooks {
        for d in s.deliveries(id).await.unwrap() {
            got.push(d.id);
        }
    }
    got.sort();
    assert_eq!(
        got,
        ["all:e1", "all:e2", "all:e3", "state:e1", "two:e2"],
        "deliveries"
    );
}

async fn schema_is_checked(db: TestDb) {
    let s = &db.store;
    assert_eq!(s.check_schema().await.unwrap(), 33);
    s.migrate().await.unwrap();
    s.execute_unchecked("DELETE FROM _sqlx_migrations")
        .await
        .unwrap();
    assert!(matches!(
        s.check_schema().await,
        Err(StorageError::Schema(_))
    ));
}

#[tokio::test]
async fn sqlite_is_durable_by_configuration() {
    let db = TestDb::sqlite().await;
    let s = &db.store;
    assert_eq!(
        s.query_text("SELECT journal_mode FROM pragma_journal_mode")
            .await
            .unwrap(),
        "wal"
    );
    assert_eq!(
        s.query_text("SELECT CAST(synchronous AS TEXT) FROM pragma_synchronous")
            .await
            .unwrap(),
        "2"
    );
    assert_eq!(
        s.query_text("SELECT CAST(foreign_keys AS TEXT) FROM pragma_foreign_keys")
            .await
            .unwrap(),
        "1"
    );
}

#[tokio::test]
async fn unreachable_postgres_is_a_clear_error() {
    let err = Store::connect(&storage::DatabaseConfig::Postgres {
        url: "postgres://nobody@127.0.0.1:1/none".into(),
        password: Some(zeroize::Zeroizing::new("hunter2".into())),
        max_connections: 1,
    })
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StorageError::Unavailable(_)), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

fn keystore_row() -> storage::KeystoreRow {
    storage::KeystoreRow {
        keystore_id: [3; 16],
        threshold: 3,
        shares: 5,
        current_kek: 1,
        created_at: Timestamp::from_millis(5),
        created_by: "operator:root".into(),
    }
}

fn kek(version: u32) -> storage::KekRow {
    storage::KekRow {
        version,
        sealed: vec![1, 0, 255, version as u8],
        created_at: Timestamp::from_millis(5),
    }
}

fn audited(what: &str) -> Entry {
    Entry::new(Actor::System, what, "keystore", Details::none()).unwrap()
}

async fn keystore_is_created_once(db: TestDb) {
    let s = &db.store;
    assert_eq!(s.keystore().await.unwrap(), None);
    let mut tx = s.begin().await.unwrap();
    tx.insert_keystore(&keystore_row(), &kek(1)).await.unwrap();
    tx.commit(
        &[audited("keystore.initialized")],
        Timestamp::from_millis(5),
    )
    .await
    .unwrap();
    assert_eq!(s.keystore().await.unwrap(), Some(keystore_row()));
    assert_eq!(s.keks().await.unwrap(), vec![kek(1)]);
    let mut tx = s.begin().await.unwrap();
    let err = tx
        .insert_keystore(&keystore_row(), &kek(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Conflict { what: "keystore" }),
        "{err:?}"
    );
    drop(tx);

    let mut tx = s.begin().await.unwrap();
    tx.insert_kek(&kek(2)).await.unwrap();
    tx.set_current_kek(1, 2).await.unwrap();
    tx.commit(
        &[audited("keystore.kek_rotated")],
        Timestamp::from_millis(6),
    )
    .await
    .unwrap();
    let mut tx = s.begin().await.unwrap();
    assert!(matches!(
        tx.set_current_kek(1, 3).await,
        Err(StorageError::Conflict { .. })
    ));
    drop(tx);
    assert_eq!(s.keystore().await.unwrap().unwrap().current_kek, 2);
    assert_eq!(s.keks().await.unwrap(), vec![kek(1), kek(2)]);
}

async fn key_inventory_round_trips_with_guarded_updates(db: TestDb) {
    use domain::{KeyAlgorithm, KeyBackend, KeyPurpose, KeyState};
    let s = &db.store;
    let key = storage::KeyRow {
        id: domain::KeyId::from_uuid(uuid_v7(1_000)),
        version: 1,
        purpose: KeyPurpose::TransferSigning,
        algorithm: KeyAlgorithm::EcdsaSecp256k1,
        backend: KeyBackend::Keystore,
        backend_ref: None,
        state: KeyState::Active,
        public_key: "02".repeat(33),
        provenance: r#"{"by":"operator:root"}"#.into(),
        kek_version: Some(1),
        dek_sealed: Some(vec![1, 2, 3]),
        material_sealed: Some(vec![4, 5, 6]),
        created_at: Timestamp::from_millis(1_000),
        expires_at: Timestamp::from_millis(2_000),
        hd_path: Some("m/84'/0'/0'".into()),
    };
    let mut tx = s.begin().await.unwrap();
    tx.insert_key(&key).await.unwrap();
    tx.commit(&[audited("key.created")], key.created_at)
        .await
        .unwrap();
    assert_eq!(s.key(key.id).await.unwrap(), key);
    assert_eq!(s.keys().await.unwrap(), vec![key.clone()]);

    let mut tx = s.begin().await.unwrap();
    tx.set_key_state(key.id, KeyState::Active, KeyState::Suspended)
        .await
        .unwrap();
    tx.rewrap_key(key.id, 1, 2, &[7, 7]).await.unwrap();
    tx.commit(&[audited("key.suspended")], key.created_at)
        .await
        .unwrap();
    let mut tx = s.begin().await.unwrap();
    assert!(matches!(
        tx.set_key_state(key.id, KeyState::Active, KeyState::Deactivated)
            .await,
        Err(StorageError::Conflict { what: "key state" })
    ));
    assert!(matches!(
        tx.rewrap_key(key.id, 1, 3, &[0]).await,
        Err(StorageError::Conflict {
            what: "key wrapping"
        })
    ));
    drop(tx);
    let stored = s.key(key.id).await.unwrap();
    assert_eq!(stored.state, KeyState::Suspended);
    assert_eq!(
        (stored.kek_version, stored.dek_sealed),
        (Some(2), Some(vec![7, 7]))
    );
}

//! Fresh databases for tests: an SQLite file in a temp dir, or a new database
//! on the PostgreSQL server that `scripts/test` starts.
//!
//! The PostgreSQL helpers fail, never skip, when the server is not configured
//! or not reachable: a storage suite that silently ran on one database only
//! would prove nothing about the other.

use std::path::PathBuf;

use sqlx::Executor;

use crate::{DatabaseConfig, Store};

/// Generates `<name>::sqlite` and `<name>::postgres` tests from async fns
/// that each take what `$fixture` (an async fn in the calling module, from
/// a fresh [`TestDb`]) makes: one suite, both databases.
#[macro_export]
macro_rules! on_both {
    ($fixture:ident; $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::$fixture($crate::testing::TestDb::sqlite().await).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::$fixture($crate::testing::TestDb::postgres().await).await).await
            }
        }
    )*};
}

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_ENV: &str = "STRONGROOM_TEST_POSTGRES_URL";

/// A migrated, empty database that lives as long as this value.
#[derive(Debug)]
pub struct TestDb {
    pub store: Store,
    /// How to reach the same database again (for a second process or store).
    pub url: String,
    pub sqlite_path: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("strongroom.db");
        let store = Store::connect(&DatabaseConfig::Sqlite { path: path.clone() })
            .await
            .expect("open SQLite");
        store.migrate().await.expect("migrate SQLite");
        TestDb {
            store,
            url: format!("sqlite://{}", path.display()),
            sqlite_path: Some(path),
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> TestDb {
        let db = TestDb::postgres_empty().await;
        db.store.migrate().await.expect("migrate PostgreSQL");
        db
    }

    /// A new PostgreSQL database with no schema (for a dump to be loaded).
    pub async fn postgres_empty() -> TestDb {
        let admin = postgres_admin_url();
        let name = format!("sr_test_{}", uuid::Uuid::new_v4().simple());
        let admin_store = Store::connect(&DatabaseConfig::Postgres {
            url: admin.clone(),
            password: None,
            max_connections: 1,
        })
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={admin} is not reachable: {e}"));
        admin_store
            .pool
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create test database");
        admin_store.close().await;
        let url = with_database(&admin, &name);
        let store = Store::connect(&DatabaseConfig::Postgres {
            url: url.clone(),
            password: None,
            max_connections: 4,
        })
        .await
        .expect("connect to test database");
        TestDb {
            store,
            url,
            sqlite_path: None,
            _dir: None,
        }
    }

    /// The configuration that opens this database again.
    pub fn config(&self) -> DatabaseConfig {
        match &self.sqlite_path {
            Some(path) => DatabaseConfig::Sqlite { path: path.clone() },
            None => DatabaseConfig::Postgres {
                url: self.url.clone(),
                password: None,
                max_connections: 4,
            },
        }
    }
}

/// A PostgreSQL test database is dropped with its value (connections
/// still open — a server process the test started, a clone of the store —
/// are ended by `WITH (FORCE)`), so repeated runs do not fill the disk.
impl Drop for TestDb {
    fn drop(&mut self) {
        if self.sqlite_path.is_some() {
            return;
        }
        let Some(name) = url::Url::parse(&self.url)
            .ok()
            .map(|u| u.path().trim_start_matches('/').to_owned())
            .filter(|n| n.starts_with("sr_test_"))
        else {
            return;
        };
        let admin = postgres_admin_url();
        // Its own thread and runtime: this may run inside a test's runtime,
        // which must not be blocked on from within.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = Store::connect(&DatabaseConfig::Postgres {
                    url: admin,
                    password: None,
                    max_connections: 1,
                })
                .await
                .ok()?;
                let r = admin
                    .pool
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await;
                admin.close().await;
                r.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("note: a PostgreSQL test database was left behind");
        }
    }
}

/// The PostgreSQL server for tests. Panics with instructions if unset.
pub fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_ENV} is not set. The storage suite runs on SQLite and PostgreSQL; \
             run scripts/test, which starts a PostgreSQL server and sets it"
        )
    })
}

fn with_database(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("valid PostgreSQL URL");
    u.set_path(db);
    u.into()
}

impl Store {
    /// Runs SQL as given, bypassing repositories: for tests that tamper with
    /// the database the way an intruder with database access would.
    pub async fn execute_unchecked(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let r = self
            .pool
            .execute(sqlx::AssertSqlSafe(sql.to_owned()))
            .await?;
        Ok(r.rows_affected())
    }

    /// A single value from a query, as text, for assertions on raw state.
    pub async fn query_text(&self, sql: &str) -> Result<String, sqlx::Error> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
    }
}

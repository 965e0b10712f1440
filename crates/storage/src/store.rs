//! Connecting, configuring and migrating the database.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Connection, Executor};

use crate::error::StorageError;

pub(crate) static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/sqlite");
pub(crate) static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/postgres");

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where the database is. Built by the binary from its configuration.
pub enum DatabaseConfig {
    /// An SQLite file, created if missing.
    Sqlite { path: PathBuf },
    /// A PostgreSQL server. The password, if any, comes from a file or the
    /// environment, never from the URL in the configuration.
    Postgres {
        url: String,
        password: Option<zeroize::Zeroizing<String>>,
        max_connections: u32,
    },
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseConfig::Sqlite { path } => {
                f.debug_struct("Sqlite").field("path", path).finish()
            }
            DatabaseConfig::Postgres {
                url,
                password,
                max_connections,
            } => f
                .debug_struct("Postgres")
                .field("url", url)
                .field("password", &password.as_ref().map(|_| "<redacted>"))
                .field("max_connections", max_connections)
                .finish(),
        }
    }
}

/// The database: a connection pool and the backend it runs on.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    /// SQLite has one writer at a time. Writers of this process queue here,
    /// in order, rather than on SQLite's busy handler, which polls with
    /// sleeps of up to 100 ms while holding a pooled connection. (Other
    /// processes on the same file still meet the busy handler.)
    writer: Arc<tokio::sync::Semaphore>,
    /// The `forget_before` of the last pruning of request nonces: pruned
    /// at most once a second rather than at every request (a commit each).
    pub(crate) nonces_pruned: Arc<std::sync::atomic::AtomicI64>,
}

/// The right to write to SQLite, held until the write commits or rolls
/// back. Empty on PostgreSQL, whose writers run concurrently.
#[derive(Debug)]
pub(crate) struct WriteTurn(#[allow(dead_code)] Option<tokio::sync::OwnedSemaphorePermit>);

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Connects and checks that the database answers. Does not migrate.
    pub async fn connect(config: &DatabaseConfig) -> Result<Store, StorageError> {
        install_default_drivers();
        let (url, backend, max) = match config {
            DatabaseConfig::Sqlite { path } => (sqlite_url(path), Backend::Sqlite, 8),
            DatabaseConfig::Postgres {
                url,
                password,
                max_connections,
            } => (
                postgres_url(url, password.as_deref().map(String::as_str))?,
                Backend::Postgres,
                *max_connections,
            ),
        };
        // One direct attempt first: a refused connection fails at once
        // instead of being retried until the pool's acquire timeout.
        let unavailable =
            |e: &dyn std::fmt::Display| StorageError::Unavailable(redact(&e.to_string(), config));
        match tokio::time::timeout(ACQUIRE_TIMEOUT, sqlx::AnyConnection::connect(&url)).await {
            Ok(Ok(conn)) => conn.close().await.map_err(|e| unavailable(&e))?,
            Ok(Err(e)) => return Err(unavailable(&e)),
            Err(_) => return Err(unavailable(&"connection timed out")),
        }
        let opts = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Durability first: WAL with a full fsync at every commit.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            });
        let pool = opts.connect(&url).await.map_err(|e| unavailable(&e))?;
        let store = Store {
            pool,
            backend,
            writer: Arc::new(tokio::sync::Semaphore::new(1)),
            nonces_pruned: Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
        };
        store.ping().await?;
        Ok(store)
    }

    /// Applies pending migrations for this backend. A database a later
    /// build migrated is refused: an older build never runs on (or
    /// "repairs") a schema it does not know.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        let m = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let latest = m.iter().map(|m| m.version).max().unwrap_or(0);
        // No migrations table yet: a new database.
        if let Ok(Some(applied)) =
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations")
                .fetch_one(&self.pool)
                .await
            && applied > latest
        {
            return Err(StorageError::Schema(format!(
                "the database is at schema version {applied}, newer than this build's {latest}: \
                 a downgrade is refused (run the build that migrated it, or a later one)"
            )));
        }
        m.run(&self.pool)
            .await
            .map_err(|e| StorageError::Schema(e.to_string()))
    }

    /// Checks that the schema is exactly what this program expects, without changing it.
    pub async fn check_schema(&self) -> Result<i64, StorageError> {
        let m = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let latest = m.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| StorageError::Schema(format!("no migrations table ({e})")))?;
        match applied {
            Some(v) if v == latest => Ok(v),
            Some(v) => Err(StorageError::Schema(format!(
                "schema version {v}, this program expects {latest}"
            ))),
            None => Err(StorageError::Schema("no migrations applied".into())),
        }
    }

    /// Waits for this process's turn to write (SQLite); at once on
    /// PostgreSQL. A turn not given within the pool's acquire timeout is
    /// `Unavailable`, as a connection not given would be.
    pub(crate) async fn write_turn(&self) -> Result<WriteTurn, StorageError> {
        if self.backend == Backend::Postgres {
            return Ok(WriteTurn(None));
        }
        match tokio::time::timeout(ACQUIRE_TIMEOUT, self.writer.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(WriteTurn(Some(permit))),
            Ok(Err(_)) => Err(StorageError::Unavailable(
                "the writer gate is closed".into(),
            )),
            Err(_) => Err(StorageError::Unavailable(
                "timed out waiting for the database's write lock".into(),
            )),
        }
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| StorageError::Unavailable(e.to_string()))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `sqlite://` URL for a path, percent-encoding everything but the safe characters.
fn sqlite_url(path: &Path) -> String {
    let mut out = String::from("sqlite://");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' => {
                out.push(char::from(*b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out.push_str("?mode=rwc");
    out
}

fn postgres_url(url: &str, password: Option<&str>) -> Result<String, StorageError> {
    let mut u = url::Url::parse(url)
        .map_err(|e| StorageError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
    if !matches!(u.scheme(), "postgres" | "postgresql") {
        return Err(StorageError::Unavailable(
            "PostgreSQL URL must start with postgres://".into(),
        ));
    }
    if let Some(p) = password {
        u.set_password(Some(p)).map_err(|_| {
            StorageError::Unavailable("PostgreSQL URL cannot carry a password".into())
        })?;
    }
    Ok(u.into())
}

/// Removes the password, raw or as it is escaped in the URL, from an error
/// message, in case a driver echoes the URL.
fn redact(msg: &str, config: &DatabaseConfig) -> String {
    match config {
        DatabaseConfig::Postgres {
            password: Some(p), ..
        } if !p.is_empty() => {
            let mut u = url::Url::parse("postgres://u@h").expect("constant URL parses");
            let encoded = u
                .set_password(Some(p))
                .ok()
                .and_then(|()| u.password().map(str::to_owned))
                .unwrap_or_default();
            let mut out = msg.replace(p.as_str(), "<redacted>");
            if !encoded.is_empty() {
                out = out.replace(&encoded, "<redacted>");
            }
            out
        }
        _ => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_are_encoded() {
        assert_eq!(
            sqlite_url(Path::new("/tmp/a b/x?.db")),
            "sqlite:///tmp/a%20b/x%3F.db?mode=rwc"
        );
    }

    #[test]
    fn passwords_are_redacted_raw_and_escaped() {
        let config = DatabaseConfig::Postgres {
            url: "postgres://sr@db/sr".into(),
            password: Some(zeroize::Zeroizing::new("p@ss/w".into())),
            max_connections: 1,
        };
        let msg = "failed: postgres://sr:p%40ss%2Fw@db/sr (password p@ss/w)";
        assert_eq!(
            redact(msg, &config),
            "failed: postgres://sr:<redacted>@db/sr (password <redacted>)"
        );
    }

    #[test]
    fn postgres_password_is_inserted() {
        assert_eq!(
            postgres_url("postgres://sr@127.0.0.1:5432/db", Some("p@ss/w")).unwrap(),
            "postgres://sr:p%40ss%2Fw@127.0.0.1:5432/db"
        );
        assert!(postgres_url("mysql://x", None).is_err());
    }
}

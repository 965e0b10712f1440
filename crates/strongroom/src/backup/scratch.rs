//! A PostgreSQL backup's dump restored into a scratch database on the
//! configured server (made here, dropped when done), so that `backup
//! verify` walks its audit chain as it does a SQLite copy's — without
//! touching the live database.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use zeroize::Zeroizing;

use super::pg_tool;
use crate::Failure;

/// A scratch database holding a restored dump; dropped with this.
pub(super) struct Scratch {
    name: String,
    /// The configured database's URL: where `dropdb` connects.
    admin_url: String,
    password: Option<Zeroizing<String>>,
    /// The scratch database's URL.
    url: String,
}

impl Scratch {
    /// Makes a scratch database beside `db` and restores `dump` into it.
    pub(super) fn restore(db: &storage::DatabaseConfig, dump: &Path) -> Result<Scratch, Failure> {
        let storage::DatabaseConfig::Postgres { url, password, .. } = db else {
            return Err(Failure::Runtime(anyhow::anyhow!(
                "a PostgreSQL backup's audit chain is walked on a PostgreSQL server: this \
                 configuration names none"
            )));
        };
        // A `dbname` in the query would win over the path libpq is given:
        // the restore must never reach the live database.
        if url
            .split_once('?')
            .is_some_and(|(_, q)| q.contains("dbname"))
        {
            return Err(Failure::Runtime(anyhow::anyhow!(
                "the database URL names its database in the query: name it in the path to \
                 verify a PostgreSQL backup's audit chain"
            )));
        }
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("random: {e}"))?;
        let name = format!("strongroom_verify_{}", hex::encode(random));
        let scratch_url = with_database(url, &name);
        run(
            Command::new(pg_tool("createdb"))
                .arg(format!("--maintenance-db={url}"))
                .arg(&name),
            password.as_ref(),
            "createdb",
        )?;
        let made = Scratch {
            name,
            admin_url: url.clone(),
            password: password.clone(),
            url: scratch_url.clone(),
        };
        run(
            Command::new(pg_tool("pg_restore"))
                .args(["--no-owner", "--no-privileges", "--exit-on-error"])
                .arg(format!("--dbname={scratch_url}"))
                .arg(dump),
            password.as_ref(),
            "pg_restore",
        )?;
        Ok(made)
    }

    /// How to reach the scratch database.
    pub(super) fn config(&self) -> storage::DatabaseConfig {
        storage::DatabaseConfig::Postgres {
            url: self.url.clone(),
            password: self.password.clone(),
            max_connections: 2,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let dropped = run(
            Command::new(pg_tool("dropdb"))
                .args(["--if-exists", "--force"])
                .arg(format!("--maintenance-db={}", self.admin_url))
                .arg(&self.name),
            self.password.as_ref(),
            "dropdb",
        );
        if let Err(e) = dropped {
            eprintln!(
                "warning: the scratch database {} was not dropped: {e:?}",
                self.name
            );
        }
    }
}

fn run(cmd: &mut Command, password: Option<&Zeroizing<String>>, what: &str) -> Result<(), Failure> {
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p.as_str());
    }
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow::anyhow!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `url` naming the database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_scratch_database_replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/live?sslmode=require", "s"),
            "postgres://u@h:5432/s?sslmode=require"
        );
        assert_eq!(with_database("postgresql://h", "s"), "postgresql://h/s");
        assert_eq!(
            with_database("postgres://h:1/live", "s"),
            "postgres://h:1/s"
        );
    }
}

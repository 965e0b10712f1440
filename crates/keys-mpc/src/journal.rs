//! Append-only journals, each record synced before what depends on it
//! happens: used nonces (one id per line, before a signature share leaves
//! the signer) and `Lines`, the JSON-lines file under a node's paid
//! intents, its audit log and the coordinator's blame ledger.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("this nonce was used before")]
    Used,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: not a nonce id")]
    Corrupt { path: PathBuf, line: usize },
}

/// Used nonce ids, in a file of its own (one 64-hex-digit id per line).
///
/// [`NonceJournal::consume`] appends and syncs before it returns, so a
/// share is only ever computed for a nonce whose use is on disk: a crash,
/// a restart or a restore of the signer's share from a backup cannot make
/// it sign with the same nonce again. A last line cut short by a crash was
/// never synced, so no share went out for it; it is ignored.
#[derive(Debug)]
pub struct NonceJournal {
    path: PathBuf,
    file: File,
    /// The file's length after the last complete append.
    len: u64,
    used: HashSet<[u8; 32]>,
}

impl NonceJournal {
    pub fn open(path: &Path) -> Result<NonceJournal, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let mut used = HashSet::new();
        if path.exists() {
            let lines: Vec<String> = BufReader::new(File::open(path).map_err(io)?)
                .lines()
                .collect::<Result<_, _>>()
                .map_err(io)?;
            let complete = std::fs::read(path).map_err(io)?.ends_with(b"\n");
            for (i, line) in lines.iter().enumerate() {
                let last = i + 1 == lines.len();
                match hex::decode(line).ok().and_then(|b| b.try_into().ok()) {
                    Some(id) => {
                        used.insert(id);
                    }
                    None if last && !complete => {}
                    None => {
                        return Err(JournalError::Corrupt {
                            path: path.to_owned(),
                            line: i + 1,
                        });
                    }
                }
            }
            if !complete && !lines.is_empty() {
                // Cut the torn line off, so the next append starts clean.
                let keep: usize = lines[..lines.len() - 1].iter().map(|l| l.len() + 1).sum();
                let f = OpenOptions::new().write(true).open(path).map_err(io)?;
                f.set_len(keep as u64).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
        }
        let created = !path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        file.sync_all().map_err(io)?;
        if created {
            sync_dir(path).map_err(io)?;
        }
        let len = file.metadata().map_err(io)?.len();
        Ok(NonceJournal {
            path: path.to_owned(),
            file,
            len,
            used,
        })
    }

    /// Records `id` as used, durably; refuses an id used before.
    pub fn consume(&mut self, id: &[u8; 32]) -> Result<(), JournalError> {
        if self.used.contains(id) {
            return Err(JournalError::Used);
        }
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = hex::encode(id);
        line.push('\n');
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Cut a part-written line off, so the next append starts clean
            // (the id was not recorded: no share may be made for it).
            let _ = self.file.set_len(self.len);
            return Err(io(e));
        }
        self.len += line.len() as u64;
        self.used.insert(*id);
        Ok(())
    }

    pub fn is_used(&self, id: &[u8; 32]) -> bool {
        self.used.contains(id)
    }
}

/// An append-only file of JSON records, one per line, each synced when
/// appended. A last line without its newline was cut short by a crash
/// before its sync (so nothing that depended on it happened): opening cuts
/// it off. A failed append is cut off at once.
#[derive(Debug)]
pub(crate) struct Lines {
    file: File,
    len: u64,
    /// A failed append could not be undone: nothing more is appended
    /// (the next open cuts the torn line off).
    broken: bool,
}

impl Lines {
    /// Opens (creating) `path` and reads its complete records.
    pub(crate) fn open<T: serde::de::DeserializeOwned>(
        path: &Path,
    ) -> std::io::Result<(Lines, Vec<T>)> {
        let mut records = Vec::new();
        if path.exists() {
            let bytes = std::fs::read(path)?;
            let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            for (i, line) in bytes[..keep].split(|b| *b == b'\n').enumerate() {
                if line.is_empty() {
                    continue;
                }
                records.push(serde_json::from_slice(line).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} line {}: {e}", path.display(), i + 1),
                    )
                })?);
            }
            if keep < bytes.len() {
                let f = OpenOptions::new().write(true).open(path)?;
                f.set_len(keep as u64)?;
                f.sync_all()?;
            }
        }
        let created = !path.exists();
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        if created {
            sync_dir(path)?;
        }
        let len = file.metadata()?.len();
        Ok((
            Lines {
                file,
                len,
                broken: false,
            },
            records,
        ))
    }

    pub(crate) fn append<T: serde::Serialize>(&mut self, record: &T) -> std::io::Result<()> {
        if self.broken {
            return Err(std::io::Error::other(
                "an earlier append could not be undone; reopen the journal",
            ));
        }
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if let Err(e) = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
        {
            if self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data())
                .is_err()
            {
                self.broken = true;
            }
            return Err(e);
        }
        self.len += line.len() as u64;
        Ok(())
    }
}

/// Syncs the directory holding `path`, so a newly created file survives a
/// power cut.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// Replaces the file at `path` with `bytes` all at once (mode 0600): a new
/// file written and synced beside it, renamed over it, the directory synced.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

//! The disk floor: below it, no new transfer is accepted (a full disk
//! fails commits and checkpoints half-way; better to refuse work first and
//! say why). What is already approved keeps moving while its audit records
//! can still be written: a commit that cannot write fails, and checkpoint
//! writes that keep failing stop signing (`checkpoints`).

use std::path::PathBuf;

use crate::service::{Service, ServiceError};

pub use crate::service::DiskGuard;

/// Free space where the server writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpace {
    pub path: PathBuf,
    /// Bytes available to the server; `None` when it cannot be read.
    pub free_bytes: Option<u64>,
    pub floor_bytes: u64,
}

impl DiskSpace {
    /// Above the floor (a size that cannot be read is not).
    pub fn ok(&self) -> bool {
        self.free_bytes.is_some_and(|f| f >= self.floor_bytes)
    }
}

fn free_bytes(path: &std::path::Path) -> Option<u64> {
    // The directory holding the file (the file may not exist yet).
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().filter(|p| !p.as_os_str().is_empty())?
    };
    let s = rustix::fs::statvfs(dir).ok()?;
    s.f_bavail.checked_mul(s.f_frsize)
}

impl Service {
    /// Guards new transfers with a disk floor at `guard.paths`.
    pub fn set_disk_guard(&self, guard: DiskGuard) {
        *self
            .disk_guard()
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(guard);
    }

    /// Free space at each guarded path (none without a guard).
    pub fn disk_space(&self) -> Vec<DiskSpace> {
        let guard = self
            .disk_guard()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(g) = guard else { return Vec::new() };
        g.paths
            .iter()
            .map(|p| DiskSpace {
                path: p.clone(),
                free_bytes: free_bytes(p),
                floor_bytes: g.floor_bytes,
            })
            .collect()
    }

    /// Refuses new work below the floor, saying where and how much is left.
    pub(crate) fn above_disk_floor(&self) -> Result<(), ServiceError> {
        for d in self.disk_space() {
            if !d.ok() {
                return Err(ServiceError::DiskLow(format!(
                    "{} has {} MiB free, under the floor of {} MiB: no new transfer is \
                     accepted until space is freed",
                    d.path.display(),
                    d.free_bytes
                        .map_or_else(|| "unknown".to_owned(), |f| (f >> 20).to_string()),
                    d.floor_bytes >> 20
                )));
            }
        }
        Ok(())
    }
}

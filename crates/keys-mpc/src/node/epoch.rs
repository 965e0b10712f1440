//! The server's epoch, as this node last learned it. A restored server
//! starts a new epoch (the time of its restore) and announces it on every
//! connection; the node keeps the highest it was told (on disk, audited)
//! and refuses every request on a connection that has not announced it —
//! so a server left over from before the restore (its disk found again, a
//! virtual machine's snapshot started) can no longer drive the nodes with
//! its stale view of what was signed.

use std::path::Path;

use crate::envelope::Abort;
use crate::net::{self, Fingerprint};
use crate::wire::Response;

use super::{Node, NodeError, lock};

/// The epoch recorded in `dir` (0 when none was ever announced).
pub(super) fn load(dir: &Path) -> Result<u64, NodeError> {
    match std::fs::read_to_string(dir.join("epoch")) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|_| NodeError::Config("the epoch file is unreadable".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

impl Node {
    /// The highest epoch a server announced to this node.
    pub fn epoch(&self) -> u64 {
        *lock(&self.epoch)
    }

    /// A server announces `epoch`: a higher one is recorded (durably,
    /// audited) before the answer; a lower one is refused.
    pub(super) fn announce(&self, from: Fingerprint, epoch: u64) -> Result<Response, Abort> {
        let mut current = lock(&self.epoch);
        if epoch < *current {
            return Err(Abort::Policy(format!(
                "this server announces epoch {epoch}, but a server restored since announced \
                 {}: it is left over from before the restore",
                *current
            )));
        }
        if epoch > *current {
            let tmp = self.dir.join("epoch.tmp");
            let _ = std::fs::remove_file(&tmp);
            net::write_private(&tmp, epoch.to_string().as_bytes())
                .and_then(|()| Ok(std::fs::rename(&tmp, self.dir.join("epoch"))?))
                .and_then(|()| Ok(std::fs::File::open(&self.dir)?.sync_all()?))
                .map_err(|e| Abort::Internal(format!("recording the epoch: {e}")))?;
            // On disk: in force now, whatever the audit record's fate.
            let was = std::mem::replace(&mut *current, epoch);
            self.audit(
                "mpc.epoch.raised",
                &format!("server:{from}"),
                serde_json::json!({ "from": was, "to": epoch }),
            )?;
        }
        Ok(Response::Epoch { epoch })
    }

    /// Whether a connection that announced `announced` may be served.
    pub(super) fn current(&self, announced: u64) -> Result<(), Abort> {
        let epoch = self.epoch();
        if announced < epoch {
            return Err(Abort::Policy(format!(
                "this connection's server has not announced epoch {epoch} (a server restored \
                 since did): it is left over from before the restore"
            )));
        }
        Ok(())
    }
}

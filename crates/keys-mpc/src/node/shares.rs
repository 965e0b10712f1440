//! A node's key shares on disk: one file per key, the wallet it was made
//! for in the clear on its first line, then the share sealed under the
//! store key with that wallet bound into its envelope.

use std::fs::File;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{Node, binding, bound};
use crate::dkg_impl::KeyShare;
use crate::envelope::Abort;
use crate::wire::Response;
use crate::{Suite, net};
use keys::envelope as sealed;

impl Node {
    pub(super) fn share_path(&self, key_id: &str) -> PathBuf {
        self.dir.join("shares").join(format!("{key_id}.share"))
    }

    /// Seals and stores a new share (never over another), audits it, and
    /// answers with the key's public parts.
    pub(super) fn keep<C: Suite>(
        &self,
        key_id: &str,
        wallet: &str,
        share: &KeyShare<C>,
    ) -> Result<Response, Abort> {
        let plain = share.to_secret_bytes()?;
        let group_key = hex::encode(share.group_key()?);
        let public = hex::encode(share.public().to_bytes()?);
        self.keep_bytes(
            key_id,
            wallet,
            &plain,
            serde_json::json!({ "suite": C::NAME, "group_key": group_key, "wallet": wallet,
                "threshold": share.threshold(), "parties": share.parties().len() }),
        )?;
        Ok(Response::Key {
            key_id: key_id.to_owned(),
            group_key,
            public,
        })
    }

    /// Seals and stores a new share (never over another) and audits it
    /// with `details`; not audited, not kept.
    pub(super) fn keep_bytes(
        &self,
        key_id: &str,
        wallet: &str,
        plain: &[u8],
        details: serde_json::Value,
    ) -> Result<(), Abort> {
        // One file, written at once: the wallet in the clear on its first
        // line, then the sealed share, the wallet bound into its envelope
        // (a wallet line edited afterwards no longer opens the share).
        let sealed_share = self.seal_share(key_id, wallet, plain)?;
        let mut bytes = format!("{wallet}\n").into_bytes();
        bytes.extend_from_slice(&sealed_share);
        let path = self.share_path(key_id);
        net::write_private(&path, &bytes).map_err(|e| Abort::Internal(e.to_string()))?;
        File::open(self.dir.join("shares"))
            .and_then(|d| d.sync_all())
            .map_err(|e| Abort::Internal(e.to_string()))?;
        if let Err(e) = self.audit("mpc.key.created", &format!("mpc-key:{key_id}"), details) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(())
    }

    /// A share and the wallet it was made for.
    pub(super) fn load<C: Suite>(&self, key_id: &str) -> Result<(KeyShare<C>, String), Abort> {
        let (plain, wallet) = self.load_bytes(key_id)?;
        Ok((KeyShare::<C>::from_secret_bytes(&plain)?, wallet))
    }

    /// A share's plain bytes and the wallet it was made for.
    pub(super) fn load_bytes(&self, key_id: &str) -> Result<(Zeroizing<Vec<u8>>, String), Abort> {
        self.open_file(key_id, &self.share_path(key_id))
    }

    /// Opens a share file of `key_id` (its current share, or one staged).
    pub(super) fn open_file(
        &self,
        key_id: &str,
        path: &Path,
    ) -> Result<(Zeroizing<Vec<u8>>, String), Abort> {
        let bytes =
            std::fs::read(path).map_err(|_| Abort::Parameters(format!("no key {key_id} here")))?;
        let broken = || Abort::Internal(format!("key {key_id} does not open"));
        let at = bytes.iter().position(|b| *b == b'\n').ok_or_else(broken)?;
        let wallet = std::str::from_utf8(&bytes[..at])
            .map_err(|_| broken())?
            .to_owned();
        let plain = sealed::open(
            &self.store_key,
            binding(&bound(key_id, &wallet)),
            &bytes[at + 1..],
        )
        .map_err(|_| broken())?;
        Ok((plain, wallet))
    }
}

//! Passkey approvers as a signer node enrolls them (`[[policy.passkey_approvers]]`
//! in `signer.toml`): each with the relying party its assertions must name, so
//! the node verifies a browser approval against its own configuration, never
//! the server's.

use policy::{ApproverKey, RelyingParty};
use serde::Deserialize;

/// A passkey approver as a node enrolls it: the credential's P-256 key and
/// id (as the server's governance registered them), and the relying party
/// its assertions must name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyApprover {
    /// SEC1 compressed P-256 point, hex.
    pub public_key: String,
    /// The credential id, hex.
    pub credential_id: String,
    pub rp_id: String,
    pub origins: Vec<String>,
}

impl PasskeyApprover {
    /// The key as approvals name it (`webauthn:<id>:<key>`), and its
    /// relying party.
    pub(crate) fn key(&self) -> Result<(ApproverKey, RelyingParty), String> {
        let id = hex::decode(&self.credential_id).map_err(|_| {
            format!(
                "passkey approver {}: credential_id is not hex",
                self.public_key
            )
        })?;
        let sec1 = hex::decode(&self.public_key).map_err(|_| {
            format!(
                "passkey approver {}: public_key is not hex",
                self.public_key
            )
        })?;
        let key = ApproverKey::passkey(&id, &sec1)
            .map_err(|e| format!("passkey approver {}: {e}", self.public_key))?;
        let rp = RelyingParty::new(&self.rp_id, &self.origins)
            .map_err(|e| format!("passkey approver {}: {e}", self.public_key))?;
        Ok((key, rp))
    }
}

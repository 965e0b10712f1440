//! Service secrets (TOTP seeds, webhook signing secrets) sealed under a
//! key derived from the keystore's root key, bound to what each is.

use keys::envelope::{self, Binding};

use crate::service::{Service, ServiceError};
use crate::vault::Vault;

impl Service {
    /// Seals a service secret (a TOTP seed, a webhook signing secret) under
    /// a key derived from the root key (HKDF-SHA256), bound to what it is
    /// and whose. Needs the keystore unsealed, like every use of it.
    pub(crate) async fn seal_service_secret(
        &self,
        kind: &str,
        id: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        let vault = self.vault().lock().await;
        let Vault::Unsealed(opened) = &*vault else {
            return Err(ServiceError::Sealed);
        };
        let key = opened.service_secrets_key()?;
        Ok(envelope::seal(
            &key,
            Binding {
                kind,
                id,
                version: 1,
            },
            plain,
        )?)
    }

    /// Opens what [`Service::seal_service_secret`] sealed.
    pub(crate) async fn open_service_secret(
        &self,
        kind: &str,
        id: &str,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, ServiceError> {
        let vault = self.vault().lock().await;
        let Vault::Unsealed(opened) = &*vault else {
            return Err(ServiceError::Sealed);
        };
        let key = opened.service_secrets_key()?;
        Ok(envelope::open(
            &key,
            Binding {
                kind,
                id,
                version: 1,
            },
            sealed,
        )?)
    }
}

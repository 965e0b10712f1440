//! Access: a verified [`Principal`] and the capability [`Can`] that
//! [`Service::authorize`] hands out for one permission at one scope.
//!
//! A `Principal` is made only by verifying a credential (`identity`). A
//! `Can<'_, P>` is made only here, from a principal that holds the
//! permission at the right scope (and has passed MFA if it needs to).
//! Privileged operations are methods on `Can<'_, P>` in the layer that
//! owns them: there is no other way to call them from the API.

use std::marker::PhantomData;

use domain::{Actor, Grant, WalletId, permits};

use crate::error::AuthError;
use crate::service::Service;

/// Someone whose credential was verified, with their grants at that moment.
#[derive(Debug, Clone)]
pub struct Principal {
    pub(crate) actor: Actor,
    pub(crate) grants: Vec<Grant>,
    /// Passed a second factor (always true for API keys).
    pub(crate) mfa: bool,
    /// The session this came from, if any.
    pub(crate) session: Option<String>,
}

impl Principal {
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    pub fn mfa(&self) -> bool {
        self.mfa
    }

    pub(crate) fn mfa_ok(&self) -> bool {
        self.mfa || !self.grants.iter().any(|g| g.role().is_privileged())
    }
}

/// Marker types for [`Can`]: one per permission.
pub mod perm {
    use domain::Permission;

    pub trait Perm {
        const PERMISSION: Permission;
    }

    macro_rules! perms {
        ($($name:ident),*) => {$(
            #[derive(Debug)]
            pub struct $name;
            impl Perm for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )*};
    }

    perms!(
        ReadStatus,
        ManageUsers,
        ManageApiKeys,
        ManageKeys,
        ManageWebhooks,
        ManageNetworks,
        ManagePolicy,
        SealKeystore,
        Freeze,
        ReadAudit,
        ReadWallet,
        InitiateTransfer,
        ApproveTransfer,
        OperateQueue
    );
}

/// The right to do `P`, held by a verified principal.
#[derive(Debug)]
pub struct Can<'a, P: perm::Perm> {
    pub(crate) svc: &'a Service,
    pub(crate) who: &'a Principal,
    pub(crate) target: Option<WalletId>,
    pub(crate) _p: PhantomData<P>,
}

impl<P: perm::Perm> Can<'_, P> {
    pub fn actor(&self) -> &Actor {
        &self.who.actor
    }
}

impl Service {
    /// Checks that `who` may do `P` on `target` and hands out the capability.
    pub fn authorize<'a, P: perm::Perm>(
        &'a self,
        who: &'a Principal,
        target: Option<WalletId>,
    ) -> Result<Can<'a, P>, AuthError> {
        if !who.mfa_ok() && permits(&who.grants, P::PERMISSION, target) {
            return Err(AuthError::MfaRequired);
        }
        if !permits(&who.grants, P::PERMISSION, target) {
            return Err(AuthError::Forbidden);
        }
        Ok(Can {
            svc: self,
            who,
            target,
            _p: PhantomData,
        })
    }
}

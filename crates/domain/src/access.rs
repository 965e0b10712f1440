//! Who may do what: roles, their scopes, and the permissions each role
//! carries. Deny by default: a permission is held only through a grant of a
//! role that includes it, at a scope that covers the target.

use std::fmt;
use std::str::FromStr;

use crate::id::WalletId;

/// What a principal is trusted with. Least privilege: no role includes
/// another's duties (an initiator cannot approve, an approver cannot
/// initiate, an auditor can only read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Runs the installation: users, API keys, keys, webhooks, networks.
    Admin,
    /// Guards it: seals the keystore, freezes, reads the audit log.
    SecurityOfficer,
    /// Writes policies (which governance then approves).
    PolicyAdmin,
    /// Requests transfers from the wallets in scope.
    Initiator,
    /// Approves or rejects transfers from the wallets in scope.
    Approver,
    /// Reads everything, the audit log included; changes nothing.
    Auditor,
    /// Reads the wallets in scope.
    Viewer,
}

const ROLE_NAMES: &[(Role, &str)] = &[
    (Role::Admin, "admin"),
    (Role::SecurityOfficer, "security-officer"),
    (Role::PolicyAdmin, "policy-admin"),
    (Role::Initiator, "initiator"),
    (Role::Approver, "approver"),
    (Role::Auditor, "auditor"),
    (Role::Viewer, "viewer"),
];

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::SecurityOfficer,
        Role::PolicyAdmin,
        Role::Initiator,
        Role::Approver,
        Role::Auditor,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        ROLE_NAMES
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("?", |(_, n)| n)
    }

    /// Whether holding this role demands a second factor at sign-in.
    /// Every role does except a wallet-scoped viewer's (read-only).
    pub fn is_privileged(self) -> bool {
        !matches!(self, Role::Viewer)
    }

    /// Whether the role only reads (status, wallets, the audit log): it
    /// neither governs, moves funds nor guards, so the console may still
    /// grant it once governance is in force.
    pub fn is_read_only(self) -> bool {
        self.permissions().iter().all(|p| {
            matches!(
                p,
                Permission::ReadStatus | Permission::ReadWallet | Permission::ReadAudit
            )
        })
    }

    /// Whether the role may be limited to one wallet.
    pub fn wallet_scopable(self) -> bool {
        matches!(self, Role::Initiator | Role::Approver | Role::Viewer)
    }

    /// The permissions this role carries.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Admin => &[
                ReadStatus,
                ManageUsers,
                ManageApiKeys,
                ManageKeys,
                ManageWebhooks,
                ManageNetworks,
                SealKeystore,
                Freeze,
                ReadAudit,
                ReadWallet,
                OperateQueue,
            ],
            Role::SecurityOfficer => &[ReadStatus, SealKeystore, Freeze, ReadAudit, ReadWallet],
            Role::PolicyAdmin => &[ReadStatus, ManagePolicy, ReadWallet],
            Role::Initiator => &[ReadStatus, InitiateTransfer, ReadWallet],
            Role::Approver => &[ReadStatus, ApproveTransfer, ReadWallet],
            Role::Auditor => &[ReadStatus, ReadAudit, ReadWallet],
            Role::Viewer => &[ReadStatus, ReadWallet],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    #[error("invalid scope {0:?}: expected `global` or `wallet:<uuid>`")]
    BadScope(String),
    #[error("the role {0} cannot be limited to a wallet")]
    NotScopable(Role),
}

impl FromStr for Role {
    type Err = AccessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ROLE_NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(r, _)| *r)
            .ok_or_else(|| AccessError::UnknownRole(s.to_owned()))
    }
}

/// Where a grant applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Global,
    Wallet(WalletId),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Wallet(w) => write!(f, "wallet:{w}"),
        }
    }
}

impl FromStr for Scope {
    type Err = AccessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "global" {
            return Ok(Scope::Global);
        }
        s.strip_prefix("wallet:")
            .and_then(|w| w.parse().ok())
            .map(Scope::Wallet)
            .ok_or_else(|| AccessError::BadScope(s.to_owned()))
    }
}

/// A role held at a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grant {
    role: Role,
    scope: Scope,
}

impl Grant {
    pub fn new(role: Role, scope: Scope) -> Result<Grant, AccessError> {
        if matches!(scope, Scope::Wallet(_)) && !role.wallet_scopable() {
            return Err(AccessError::NotScopable(role));
        }
        Ok(Grant { role, scope })
    }

    pub fn global(role: Role) -> Grant {
        Grant {
            role,
            scope: Scope::Global,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }
}

/// An operation that needs authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
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
    /// Retry or cancel queued transfers; see what is stuck.
    OperateQueue,
}

impl Permission {
    /// Whether the permission can be held for one wallet only.
    pub fn per_wallet(self) -> bool {
        matches!(
            self,
            Permission::ReadWallet | Permission::InitiateTransfer | Permission::ApproveTransfer
        )
    }
}

/// Whether `grants` allow `permission` on `target` (a wallet, or `None`
/// for the installation as a whole). Deny by default: a wallet-scoped grant
/// covers only its wallet, never the installation.
pub fn permits(grants: &[Grant], permission: Permission, target: Option<WalletId>) -> bool {
    grants.iter().any(|g| {
        g.role.permissions().contains(&permission)
            && match (g.scope, target) {
                (Scope::Global, _) => true,
                (Scope::Wallet(w), Some(t)) => permission.per_wallet() && w == t,
                (Scope::Wallet(_), None) => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_matrix() {
        let mut out = String::new();
        for r in Role::ALL {
            let perms: Vec<String> = r.permissions().iter().map(|p| format!("{p:?}")).collect();
            out.push_str(&format!("{:16} {}\n", r.as_str(), perms.join(" ")));
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        expect_test::expect![[r#"
            admin            ReadStatus ManageUsers ManageApiKeys ManageKeys ManageWebhooks ManageNetworks SealKeystore Freeze ReadAudit ReadWallet OperateQueue
            security-officer ReadStatus SealKeystore Freeze ReadAudit ReadWallet
            policy-admin     ReadStatus ManagePolicy ReadWallet
            initiator        ReadStatus InitiateTransfer ReadWallet
            approver         ReadStatus ApproveTransfer ReadWallet
            auditor          ReadStatus ReadAudit ReadWallet
            viewer           ReadStatus ReadWallet
        "#]]
        .assert_eq(&out);
    }

    #[test]
    fn duties_are_separated() {
        for r in Role::ALL {
            let p = r.permissions();
            assert!(
                !(p.contains(&Permission::InitiateTransfer)
                    && p.contains(&Permission::ApproveTransfer)),
                "{r} both initiates and approves"
            );
        }
        assert!(
            !Role::Admin
                .permissions()
                .contains(&Permission::InitiateTransfer)
        );
        assert!(
            !Role::Admin
                .permissions()
                .contains(&Permission::ApproveTransfer)
        );
        assert!(
            !Role::Admin
                .permissions()
                .contains(&Permission::ManagePolicy)
        );
    }

    #[test]
    fn scopes_bound_grants() {
        let a = WalletId::from_uuid(uuid::Uuid::from_u128(1));
        let b = WalletId::from_uuid(uuid::Uuid::from_u128(2));
        let viewer_a = Grant::new(Role::Viewer, Scope::Wallet(a)).unwrap();
        assert!(permits(&[viewer_a], Permission::ReadWallet, Some(a)));
        assert!(!permits(&[viewer_a], Permission::ReadWallet, Some(b)));
        assert!(
            !permits(&[viewer_a], Permission::ReadStatus, None),
            "wallet grants do not reach the installation"
        );
        assert!(!permits(&[viewer_a], Permission::InitiateTransfer, Some(a)));
        assert!(
            !permits(&[], Permission::ReadStatus, None),
            "deny by default"
        );
        let admin = Grant::global(Role::Admin);
        assert!(permits(&[admin], Permission::ReadWallet, Some(b)));
        assert!(Grant::new(Role::Admin, Scope::Wallet(a)).is_err());
        assert_eq!(
            Scope::Wallet(a).to_string().parse::<Scope>().unwrap(),
            Scope::Wallet(a)
        );
        assert!("wallet:nope".parse::<Scope>().is_err());
        assert!("root".parse::<Role>().is_err());
    }
}

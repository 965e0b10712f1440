//! API keys: registered from the console or by an admin under the quorum,
//! each with the user who holds it (a quorum counts people: one person's
//! keys and session supply one approval), listed and revoked.

use domain::{Actor, ApiKeyId, Grant, Permission, Timestamp, UserId, permits};
use ed25519_dalek::VerifyingKey;
use serde_json::json;
use storage::{ApiKeyRow, StorageError};

use crate::access::{Can, perm};
use crate::error::AuthError;
use crate::gov_state::{Authority, Content};
use crate::governance::{Change, ProposalView};
use crate::record::entry;
use crate::service::{Service, ServiceError};

impl Service {
    /// An API key registered from the console (the CLI, whose authority is
    /// the server's own files), for bootstrap and automation.
    pub async fn console_register_api_key(
        &self,
        console: &Actor,
        name: &str,
        public_key: &[u8; 32],
        grants: &[Grant],
        valid_days: u32,
        owner: Option<UserId>,
    ) -> Result<ApiKeyRow, ServiceError> {
        // The console's authority is the server's own files: its grants
        // apply at once during the bootstrap ceremony; after it, read-only
        // roles only (see `Service::console_door`).
        let new = NewKey {
            name,
            public_key,
            grants,
            valid_days,
            owner,
        };
        register_api_key(self, console, &new, true).await
    }
}

/// An API key to register: its name, Ed25519 public key, roles, lifetime
/// and the user who holds it (one person, however many keys they hold).
struct NewKey<'a> {
    name: &'a str,
    public_key: &'a [u8; 32],
    grants: &'a [Grant],
    valid_days: u32,
    owner: Option<UserId>,
}

async fn register_api_key(
    svc: &Service,
    by: &Actor,
    new: &NewKey<'_>,
    direct: bool,
) -> Result<ApiKeyRow, ServiceError> {
    let &NewKey {
        name,
        public_key,
        grants,
        valid_days,
        owner,
    } = new;
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(
            "an API key name is 1 to 64 printable characters".into(),
        ));
    }
    if !(1..=366).contains(&valid_days) {
        return Err(ServiceError::Invalid(
            "API keys are valid for 1 to 366 days".into(),
        ));
    }
    VerifyingKey::from_bytes(public_key)
        .ok()
        .filter(|k| !k.is_weak())
        .ok_or_else(|| ServiceError::Invalid("not a usable Ed25519 public key".into()))?;
    if grants.is_empty() {
        return Err(ServiceError::Invalid(
            "an API key needs at least one role".into(),
        ));
    }
    // The owner is a user who may act: a disabled or unknown one holds
    // nothing.
    let owner = match owner {
        None => None,
        Some(u) => match svc.store().user(u).await {
            Ok(row) if row.state == "active" => Some(Actor::User(u)),
            Ok(_) => {
                return Err(ServiceError::Invalid(format!(
                    "the owner user:{u} is not active"
                )));
            }
            Err(StorageError::NotFound { .. }) => {
                return Err(ServiceError::Invalid(format!("no user user:{u}")));
            }
            Err(e) => return Err(e.into()),
        },
    };
    let now = svc.now();
    let row = ApiKeyRow {
        id: ApiKeyId::from_uuid(uuid::Uuid::now_v7()),
        name: name.to_owned(),
        public_key: hex::encode(public_key),
        expires_at: Timestamp::from_millis(now.as_millis() + i64::from(valid_days) * 86_400_000),
        revoked_at: None,
        created_at: now,
        created_by: by.clone(),
        owner,
    };
    let actor = Actor::ApiKey(row.id);
    let grant_names: Vec<String> = grants
        .iter()
        .map(|g| format!("{}@{}", g.role(), g.scope()))
        .collect();
    let mut tx = svc.store().begin().await?;
    tx.insert_api_key(&row).await?;
    let key = Content::ApiKey {
        id: row.id.to_string(),
        public_key: row.public_key.clone(),
        expires_at_ms: row.expires_at.as_millis(),
        owner: row.owner.as_ref().map(ToString::to_string),
    };
    let mut anchors = Vec::new();
    let bootstrap = if direct {
        // The console: the key and its roles, through the console's door
        // (an admin made at bootstrap signs governance with this key).
        svc.console_door(&mut tx, grants).await?;
        let authority = if grants.iter().all(|g| g.role().is_read_only()) {
            Authority::Console
        } else {
            Authority::Bootstrap
        };
        anchors.extend(
            svc.log_governance(&mut tx, authority, by, &key, &[], now)
                .await?,
        );
        let (bootstrap, granted) = svc
            .console_grants(
                &mut tx,
                &actor,
                grants,
                Some(row.expires_at),
                Some(&row.public_key),
                now,
            )
            .await?;
        anchors.extend(granted);
        bootstrap
    } else {
        anchors.extend(
            svc.log_governance(&mut tx, Authority::KeyHolder, by, &key, &[], now)
                .await?,
        );
        false
    };
    let e = entry(
        by,
        "api_key.created",
        &actor.to_string(),
        json!({ "name": name, "public_key": row.public_key, "grants": grant_names, "expires_at_ms": row.expires_at.as_millis(), "owner": row.owner.as_ref().map(ToString::to_string), "bootstrap": bootstrap }),
    )?;
    anchors.insert(0, e);
    svc.commit(tx, &anchors, now).await?;
    Ok(row)
}

impl Can<'_, perm::ManageApiKeys> {
    pub async fn register_api_key(
        &self,
        name: &str,
        public_key: &[u8; 32],
        grants: &[Grant],
        valid_days: u32,
        owner: Option<UserId>,
    ) -> Result<(ApiKeyRow, Vec<ProposalView>), ServiceError> {
        // The roles asked for are proposals: refused before the key exists
        // if this principal could not propose them.
        self.svc.governance()?;
        if !permits(&self.who.grants, Permission::ManageUsers, None) {
            return Err(AuthError::Forbidden.into());
        }
        let new = NewKey {
            name,
            public_key,
            grants,
            valid_days,
            owner,
        };
        let row = register_api_key(self.svc, &self.who.actor, &new, false).await?;
        // Its roles are proposals, lapsing with the key.
        let mut proposals = Vec::new();
        for g in grants {
            proposals.push(
                self.svc
                    .propose(
                        self.who,
                        Change::Grant {
                            principal: Actor::ApiKey(row.id).to_string(),
                            role: g.role().as_str().into(),
                            scope: g.scope().to_string(),
                            until_ms: Some(row.expires_at.as_millis()),
                        },
                    )
                    .await?,
            );
        }
        Ok((row, proposals))
    }

    /// Every key, its owner as the verified governance log has it (a row
    /// rewritten in the database shows nothing it does not say, and the
    /// sweep raises it).
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>, ServiceError> {
        let mut rows = self.svc.store().api_keys().await?;
        let gov = self.svc.gov().await?;
        for r in &mut rows {
            r.owner = gov.api_key(&r.id.to_string()).and_then(|k| k.owner.clone());
        }
        Ok(rows)
    }

    pub async fn revoke_api_key(&self, id: ApiKeyId) -> Result<(), ServiceError> {
        // Not the last signing keys governance needs to act (an admin's API
        // key made at bootstrap is their signing key).
        self.svc.keeps_quorum(&Actor::ApiKey(id)).await?;
        let now = self.svc.now();
        let e = entry(
            &self.who.actor,
            "api_key.revoked",
            &Actor::ApiKey(id).to_string(),
            json!({}),
        )?;
        let mut tx = self.svc.store().begin().await?;
        if self
            .svc
            .gov_in(&mut tx)
            .await?
            .api_key(&id.to_string())
            .is_none()
        {
            return Err(StorageError::NotFound { what: "API key" }.into());
        }
        tx.revoke_api_key(id, now).await?;
        let content = Content::ApiKeyRevoked { id: id.to_string() };
        let mut entries = vec![e];
        entries.extend(
            self.svc
                .log_governance(
                    &mut tx,
                    Authority::KeyHolder,
                    &self.who.actor,
                    &content,
                    &[],
                    now,
                )
                .await?,
        );
        self.svc.commit(tx, &entries, now).await?;
        Ok(())
    }
}

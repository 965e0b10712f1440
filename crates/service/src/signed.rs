//! Requests signed with an API key: the message a key signs
//! (`strongroom-request-v2`, covering the `Idempotency-Key`; the legacy v1
//! without it), and the check that makes a [`Principal`] of one — key
//! active, time within [`MAX_SKEW_MS`], signature valid (Ed25519, strict),
//! nonce never seen by any server sharing the database (remembered by its
//! signed time).

pub use domain::request::{request_message, request_message_v1};
use domain::{Actor, ApiKeyId, Timestamp};
use ed25519_dalek::{Signature, VerifyingKey};
use storage::StorageError;

use crate::access::Principal;
use crate::error::AuthError;
use crate::service::{Service, ServiceError};

/// How far a signed request's timestamp may be from the server's clock.
pub const MAX_SKEW_MS: i64 = 30_000;
/// How far apart the clocks of servers sharing one database may be (keep
/// them on NTP): a request nonce is remembered for its signed time plus
/// `MAX_SKEW_MS + MAX_SERVER_DRIFT_MS`.
pub const MAX_SERVER_DRIFT_MS: i64 = 60_000;
/// A request signed with an API key, as received.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    pub key_id: &'a str,
    pub timestamp_ms: &'a str,
    pub nonce: &'a str,
    pub signature: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
    /// The `Idempotency-Key` header, if the request has one (signed in v2).
    pub idempotency_key: Option<&'a str>,
}

impl Service {
    /// The principal behind an API-key-signed request: key active, time
    /// within 30 s, signature valid (Ed25519, strict), nonce never seen by
    /// any server sharing this database.
    pub async fn authenticate_request(
        &self,
        r: &SignedRequest<'_>,
    ) -> Result<Principal, ServiceError> {
        let now = self.now();
        let key_id: ApiKeyId = r
            .key_id
            .parse()
            .map_err(|_| AuthError::Malformed("key id".into()))?;
        let ts: i64 = r
            .timestamp_ms
            .parse()
            .map_err(|_| AuthError::Malformed("timestamp".into()))?;
        if !(16..=64).contains(&r.nonce.len())
            || !r
                .nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(AuthError::Malformed("nonce: 16 to 64 of A-Z a-z 0-9 - _".into()).into());
        }
        // abs_diff: a timestamp of i64::MIN must not overflow.
        if now.as_millis().abs_diff(ts) > MAX_SKEW_MS.unsigned_abs() {
            return Err(AuthError::Stale.into());
        }
        // The key as the verified governance log has it (a row alone
        // registers nothing).
        let public_hex = match self.api_key_in_force(key_id, now).await? {
            None => return Err(AuthError::BadSignature.into()),
            Some(k) => k?,
        };
        let public: [u8; 32] = hex::decode(&public_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StorageError::Corrupt("API key public key".into()))?;
        let vk = VerifyingKey::from_bytes(&public)
            .map_err(|_| StorageError::Corrupt("API key public key".into()))?;
        let sig_bytes: [u8; 64] = data_encoding::BASE64
            .decode(r.signature.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(AuthError::BadSignature)?;
        let sig = Signature::from_bytes(&sig_bytes);
        let v2 = request_message(
            r.method,
            r.path,
            r.query,
            r.body,
            r.timestamp_ms,
            r.nonce,
            r.idempotency_key.unwrap_or(""),
        );
        if vk.verify_strict(&v2, &sig).is_err() {
            // v1 does not cover the Idempotency-Key: accepted only without one.
            let v1 = request_message_v1(r.method, r.path, r.query, r.body, r.timestamp_ms, r.nonce);
            match (vk.verify_strict(&v1, &sig).is_ok(), r.idempotency_key) {
                (true, None) => {}
                (true, Some(_)) => return Err(AuthError::SignatureVersion.into()),
                (false, _) => return Err(AuthError::BadSignature.into()),
            }
        }
        // Only a correctly signed request spends its nonce. Kept by its
        // signed time, the same for every server sharing the database:
        // forgotten only once no server whose clock is within
        // MAX_SERVER_DRIFT_MS of this one could still accept the request.
        let signed_at = Timestamp::from_millis(ts);
        let forget = Timestamp::from_millis(now.as_millis() - MAX_SKEW_MS - MAX_SERVER_DRIFT_MS);
        if !self
            .store()
            .use_request_nonce(key_id, r.nonce, signed_at, forget)
            .await?
        {
            return Err(AuthError::Replay.into());
        }
        let actor = Actor::ApiKey(key_id);
        Ok(Principal {
            grants: self.grants_in_force(&actor, now).await?,
            actor,
            mfa: true,
            session: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_message_names_everything() {
        let m = request_message(
            "POST",
            "/v1/x",
            "a=1",
            b"{}",
            "1700000000000",
            "n0nce-n0nce-n0nce",
            "order-17",
        );
        let text = String::from_utf8(m).unwrap_or_default();
        expect_test::expect![[r#"
            strongroom-request-v2
            POST
            /v1/x
            a=1
            44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
            1700000000000
            n0nce-n0nce-n0nce
            order-17"#]]
        .assert_eq(&text);
    }
}

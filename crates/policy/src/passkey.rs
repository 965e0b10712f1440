//! Approver keys of either kind, and approvals made with a passkey.
//!
//! An approver holds an Ed25519 key (signed on the command line with
//! `strongroom approve`) or a passkey (a WebAuthn credential, signed in the
//! browser). A passkey approval is a WebAuthn assertion whose challenge is
//! the SHA-256 digest of the approval statement's bytes (`SRAP`): the
//! authenticator signs `authenticatorData ‖ SHA-256(clientDataJSON)` with
//! ES256, and `clientDataJSON` carries that challenge, so the signature
//! covers exactly the statement. The server and every signer node verify it
//! here, against the relying party (RP ID and origins) each was configured
//! with.
//!
//! Nothing here parses CBOR or COSE: an assertion's authenticator data is a
//! fixed 37-byte layout (extensions, which would be CBOR, are refused: none
//! are asked for), the client data is JSON, and the key is the P-256 point
//! taken from the credential at registration by the relying-party library.
//! ECDSA is `p256`'s.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use p256::ecdsa::signature::Verifier as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::approval::{ApprovalStatement, StatementError, verify_strict};

/// The prefix of a passkey approver key and of a passkey approval.
pub const WEBAUTHN: &str = "webauthn:";

/// WebAuthn credential ids are 16 to 1023 bytes.
const CREDENTIAL_ID: std::ops::RangeInclusive<usize> = 16..=1023;
/// Bounds on what an assertion may carry (an assertion without extensions
/// has 37 bytes of authenticator data; browsers' client data is ~200 bytes;
/// a DER P-256 signature is at most 72 bytes).
const MAX_AUTHENTICATOR_DATA: usize = 1024;
const MAX_CLIENT_DATA: usize = 4096;
const MAX_SIGNATURE: usize = 80;

/// Authenticator data flags (WebAuthn §6.1).
const USER_PRESENT: u8 = 0x01;
const USER_VERIFIED: u8 = 0x04;
const ATTESTED_CREDENTIAL: u8 = 0x40;
const EXTENSIONS: u8 = 0x80;

/// An approver's key as enrolled through governance. Its text form is
/// canonical (lowercase hex throughout): 64 hex digits for Ed25519, or
/// `webauthn:<credential id hex>:<P-256 point, SEC1 compressed, hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproverKey {
    Ed25519([u8; 32]),
    Passkey {
        credential_id: Vec<u8>,
        /// SEC1 compressed.
        public_key: [u8; 33],
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error(
        "public_key: 64 hex digits of an Ed25519 key, or webauthn:<credential id hex>:<P-256 key hex>"
    )]
    Form,
    #[error("public_key is not a valid Ed25519 key")]
    Ed25519,
    #[error("public_key is a weak (small-order) Ed25519 key")]
    Weak,
    #[error("the passkey's credential id must be 16 to 1023 bytes")]
    CredentialId,
    #[error("the passkey's key is not a compressed P-256 point (33 bytes, hex)")]
    P256,
}

impl ApproverKey {
    /// A passkey from its credential id and P-256 public key (SEC1, either
    /// form), as a registration ceremony gives them.
    pub fn passkey(credential_id: &[u8], sec1: &[u8]) -> Result<ApproverKey, KeyError> {
        if !CREDENTIAL_ID.contains(&credential_id.len()) {
            return Err(KeyError::CredentialId);
        }
        let point = p256::PublicKey::from_sec1_bytes(sec1).map_err(|_| KeyError::P256)?;
        let compressed = p256::EncodedPoint::from(point).compress();
        let public_key: [u8; 33] = compressed
            .as_bytes()
            .try_into()
            .map_err(|_| KeyError::P256)?;
        Ok(ApproverKey::Passkey {
            credential_id: credential_id.to_vec(),
            public_key,
        })
    }

    /// The public key itself (Ed25519: 32 bytes; a passkey: its P-256
    /// point), whatever credential id names it: one key is one approver,
    /// under any name.
    pub fn point(&self) -> &[u8] {
        match self {
            ApproverKey::Ed25519(k) => k,
            ApproverKey::Passkey { public_key, .. } => public_key,
        }
    }

    pub fn is_passkey(&self) -> bool {
        matches!(self, ApproverKey::Passkey { .. })
    }

    /// The Ed25519 key, for statements only such a key signs (governance
    /// votes).
    pub fn ed25519(&self) -> Option<&[u8; 32]> {
        match self {
            ApproverKey::Ed25519(k) => Some(k),
            ApproverKey::Passkey { .. } => None,
        }
    }
}

impl FromStr for ApproverKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        if let Some(rest) = s.strip_prefix(WEBAUTHN) {
            let (id, key) = rest.split_once(':').ok_or(KeyError::Form)?;
            let id = hex::decode(id).map_err(|_| KeyError::Form)?;
            let key: [u8; 33] = hex::decode(key)
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or(KeyError::P256)?;
            return ApproverKey::passkey(&id, &key);
        }
        let bytes: [u8; 32] = hex::decode(s)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(KeyError::Form)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Ed25519)?;
        if key.is_weak() {
            return Err(KeyError::Weak);
        }
        Ok(ApproverKey::Ed25519(bytes))
    }
}

impl fmt::Display for ApproverKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApproverKey::Ed25519(k) => f.write_str(&hex::encode(k)),
            ApproverKey::Passkey {
                credential_id,
                public_key,
            } => write!(
                f,
                "{WEBAUTHN}{}:{}",
                hex::encode(credential_id),
                hex::encode(public_key)
            ),
        }
    }
}

/// Where passkey approvals are made: the RP ID the credentials are scoped
/// to and the origins of the pages that may ask for them. Made with
/// [`RelyingParty::new`], which the server's `[console]` and each signer
/// node's passkey approvers both go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    pub rp_id: String,
    pub origins: Vec<String>,
}

impl RelyingParty {
    /// Checks and normalises: the RP ID a domain name (lowercase, never an
    /// IP address); each origin `https://host[:port]` on it or one of its
    /// subdomains (`http` for `localhost` only), as browsers serialise
    /// origins (lowercase, no default port, no path), so that a configured
    /// origin can match the one in the client data.
    pub fn new(rp_id: &str, origins: &[String]) -> Result<RelyingParty, String> {
        let rp_id = rp_id.trim_end_matches('.').to_ascii_lowercase();
        let domain_ok = !rp_id.is_empty()
            && rp_id.len() <= 253
            && rp_id.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            && !rp_id
                .rsplit('.')
                .next()
                .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
        if !domain_ok {
            return Err(format!(
                "rp_id {rp_id:?}: a domain name (passkeys are not scoped to IP addresses)"
            ));
        }
        if origins.is_empty() {
            return Err("origins: at least one (https://host[:port])".into());
        }
        for o in origins {
            let (scheme, rest) = o.split_once("://").unwrap_or(("", ""));
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            let default_port =
                (scheme, port) == ("https", Some("443")) || (scheme, port) == ("http", Some("80"));
            let port_ok = !default_port
                && port
                    .is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n != 0) && !p.starts_with('0'));
            let on_rp = host == rp_id || host.ends_with(&format!(".{rp_id}"));
            let scheme_ok = scheme == "https" || (scheme == "http" && host == "localhost");
            if !on_rp
                || !scheme_ok
                || !port_ok
                || host.contains('/')
                || *o != o.to_ascii_lowercase()
            {
                return Err(format!(
                    "origin {o:?}: https://host[:port] on {rp_id}, lowercase, without a default \
                     port or a path (http only for localhost)"
                ));
            }
        }
        Ok(RelyingParty {
            rp_id,
            origins: origins.to_vec(),
        })
    }
}

/// A WebAuthn assertion as the browser returned it.
#[derive(Clone, PartialEq, Eq)]
pub struct Assertion {
    pub authenticator_data: Vec<u8>,
    pub client_data_json: Vec<u8>,
    /// ASN.1 DER ECDSA signature.
    pub signature: Vec<u8>,
}

impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assertion")
            .field("authenticator_data", &hex::encode(&self.authenticator_data))
            .field(
                "client_data_json",
                &String::from_utf8_lossy(&self.client_data_json),
            )
            .finish_non_exhaustive()
    }
}

/// An approval's signature: Ed25519 (128 hex digits) or a passkey's
/// assertion, `webauthn:<authenticatorData>.<clientDataJSON>.<signature>`
/// (each base64url without padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalSignature {
    Ed25519([u8; 64]),
    WebAuthn(Assertion),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "signature: 128 hex digits (Ed25519), or webauthn:<authenticatorData>.<clientDataJSON>.<signature> in base64url"
)]
pub struct SignatureFormError;

impl FromStr for ApprovalSignature {
    type Err = SignatureFormError;

    fn from_str(s: &str) -> Result<Self, SignatureFormError> {
        let Some(rest) = s.strip_prefix(WEBAUTHN) else {
            return hex::decode(s)
                .ok()
                .and_then(|b| b.try_into().ok())
                .map(ApprovalSignature::Ed25519)
                .ok_or(SignatureFormError);
        };
        let mut parts = rest.split('.');
        let (Some(a), Some(c), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SignatureFormError);
        };
        let field = |s: &str, max: usize| {
            B64URL
                .decode(s)
                .ok()
                .filter(|b| !b.is_empty() && b.len() <= max)
                .ok_or(SignatureFormError)
        };
        Ok(ApprovalSignature::WebAuthn(Assertion {
            authenticator_data: field(a, MAX_AUTHENTICATOR_DATA)?,
            client_data_json: field(c, MAX_CLIENT_DATA)?,
            signature: field(sig, MAX_SIGNATURE)?,
        }))
    }
}

impl fmt::Display for ApprovalSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApprovalSignature::Ed25519(s) => f.write_str(&hex::encode(s)),
            ApprovalSignature::WebAuthn(a) => write!(
                f,
                "{WEBAUTHN}{}.{}.{}",
                B64URL.encode(&a.authenticator_data),
                B64URL.encode(&a.client_data_json),
                B64URL.encode(&a.signature)
            ),
        }
    }
}

/// The client data fields WebAuthn §7.2 asks a relying party to check
/// (others are ignored, as the specification says).
#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: Option<bool>,
    #[serde(rename = "topOrigin", default)]
    top_origin: Option<String>,
}

fn refused(why: impl Into<String>) -> StatementError {
    StatementError::Passkey(why.into())
}

impl ApprovalStatement {
    /// The WebAuthn challenge of this statement: SHA-256 of its bytes.
    pub fn challenge(&self) -> [u8; 32] {
        Sha256::digest(self.message()).into()
    }

    /// Verifies an approval by `key` (either kind); a passkey's assertion
    /// against `rp` (without one, passkey approvals are refused).
    pub fn verify_by(
        &self,
        key: &ApproverKey,
        signature: &ApprovalSignature,
        rp: Option<&RelyingParty>,
    ) -> Result<(), StatementError> {
        match (key, signature) {
            (ApproverKey::Ed25519(k), ApprovalSignature::Ed25519(s)) => {
                verify_strict(k, &self.message(), s)
            }
            (ApproverKey::Passkey { public_key, .. }, ApprovalSignature::WebAuthn(a)) => {
                let rp =
                    rp.ok_or_else(|| refused("no relying party is configured for passkeys"))?;
                verify_assertion(public_key, a, &self.challenge(), rp)
            }
            _ => Err(StatementError::KindMismatch),
        }
    }

    /// Verifies an approval recorded earlier (accepted then by
    /// [`ApprovalStatement::verify_by`]) before it is counted again: the
    /// signature by `key` is over this statement. A passkey's assertion is
    /// checked for its type, challenge, user presence and verification and
    /// signature; where it was made (its origin and RP ID) was checked when
    /// it was cast, and a later change of the relying party must not unmake
    /// it.
    pub fn verify_recorded(
        &self,
        key: &ApproverKey,
        signature: &ApprovalSignature,
    ) -> Result<(), StatementError> {
        match (key, signature) {
            (ApproverKey::Ed25519(k), ApprovalSignature::Ed25519(s)) => {
                verify_strict(k, &self.message(), s)
            }
            (ApproverKey::Passkey { public_key, .. }, ApprovalSignature::WebAuthn(a)) => {
                let client: ClientData = serde_json::from_slice(&a.client_data_json)
                    .map_err(|_| refused("the client data is not the JSON WebAuthn defines"))?;
                if client.kind != "webauthn.get" {
                    return Err(refused("client data not of type webauthn.get"));
                }
                if a.challenge() != Some(self.challenge()) {
                    return Err(refused(
                        "the challenge signed is not this approval statement's digest",
                    ));
                }
                let flags = a.authenticator_data.get(32).copied().unwrap_or(0);
                if flags & USER_PRESENT == 0 || flags & USER_VERIFIED == 0 {
                    return Err(refused("the authenticator did not verify a present user"));
                }
                assertion_signature(public_key, a)
            }
            _ => Err(StatementError::KindMismatch),
        }
    }
}

impl Assertion {
    /// The challenge its client data names (32 bytes, as the server's are),
    /// to find the ceremony it answers; verified by [`verify_sign_in`].
    pub fn challenge(&self) -> Option<[u8; 32]> {
        let client: ClientData = serde_json::from_slice(&self.client_data_json).ok()?;
        B64URL.decode(client.challenge).ok()?.try_into().ok()
    }
}

/// A sign-in with a passkey (a second factor after the password): the
/// assertion over `challenge`, which the server issued for this sign-in,
/// by `public_key` (SEC1 compressed). Returns the authenticator's
/// signature counter, which must move forward between uses.
pub fn verify_sign_in(
    public_key: &[u8; 33],
    a: &Assertion,
    challenge: &[u8; 32],
    rp: &RelyingParty,
) -> Result<u32, StatementError> {
    verify_assertion(public_key, a, challenge, rp)?;
    let counter: [u8; 4] = a
        .authenticator_data
        .get(33..37)
        .and_then(|c| c.try_into().ok())
        .ok_or_else(|| refused("authenticator data without its counter"))?;
    Ok(u32::from_be_bytes(counter))
}

/// WebAuthn §7.2 steps 11–21 for one assertion, with `challenge` expected.
fn verify_assertion(
    public_key: &[u8; 33],
    a: &Assertion,
    challenge: &[u8; 32],
    rp: &RelyingParty,
) -> Result<(), StatementError> {
    let client: ClientData = serde_json::from_slice(&a.client_data_json)
        .map_err(|_| refused("the client data is not the JSON WebAuthn defines"))?;
    if client.kind != "webauthn.get" {
        return Err(refused(format!(
            "client data of type {:?}, not webauthn.get",
            client.kind
        )));
    }
    if client.challenge != B64URL.encode(challenge) {
        return Err(refused(
            "the challenge signed is not this approval statement's digest",
        ));
    }
    if !rp.origins.contains(&client.origin) {
        return Err(refused(format!(
            "origin {:?} is not one of the relying party's",
            client.origin
        )));
    }
    if client.cross_origin == Some(true) || client.top_origin.is_some() {
        return Err(refused(
            "the assertion was made inside another site's frame",
        ));
    }
    let data = &a.authenticator_data;
    if data.len() < 37 {
        return Err(refused("authenticator data shorter than 37 bytes"));
    }
    let rp_id_hash: [u8; 32] = Sha256::digest(rp.rp_id.as_bytes()).into();
    if data[..32] != rp_id_hash {
        return Err(refused(format!(
            "the credential is scoped to another RP ID than {:?}",
            rp.rp_id
        )));
    }
    let flags = data[32];
    if flags & USER_PRESENT == 0 {
        return Err(refused("the authenticator saw no user present"));
    }
    if flags & USER_VERIFIED == 0 {
        return Err(refused(
            "the authenticator did not verify the user (PIN or biometric)",
        ));
    }
    if flags & (ATTESTED_CREDENTIAL | EXTENSIONS) != 0 || data.len() != 37 {
        return Err(refused(
            "authenticator data with attested credential data or extensions (none were asked for)",
        ));
    }
    assertion_signature(public_key, a)
}

/// The authenticator's signature over its data and the client data.
fn assertion_signature(public_key: &[u8; 33], a: &Assertion) -> Result<(), StatementError> {
    let data = &a.authenticator_data;
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
        .map_err(|_| StatementError::BadKey)?;
    let sig = p256::ecdsa::Signature::from_der(&a.signature)
        .map_err(|_| refused("the signature is not DER-encoded ECDSA"))?;
    let mut signed = Vec::with_capacity(data.len() + 32);
    signed.extend_from_slice(data);
    signed.extend_from_slice(&Sha256::digest(&a.client_data_json));
    key.verify(&signed, &sig)
        .map_err(|_| StatementError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Vote;
    use domain::{IntentDigest, Timestamp};
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;

    fn statement() -> ApprovalStatement {
        ApprovalStatement {
            intent: IntentDigest([7; 32]),
            policy_version: 3,
            decision_id: [9; 16],
            expires_at: Timestamp::from_millis(1_900_000_000_000),
            vote: Vote::Approve,
        }
    }

    fn rp() -> RelyingParty {
        RelyingParty {
            rp_id: "localhost".into(),
            origins: vec!["http://localhost:8080".into()],
        }
    }

    fn signer() -> (SigningKey, ApproverKey) {
        let sk = SigningKey::from_bytes(&[0x42; 32].into()).expect("a valid scalar");
        let point = sk.verifying_key().to_encoded_point(false);
        let key = ApproverKey::passkey(&[0xab; 16], point.as_bytes()).expect("a passkey");
        (sk, key)
    }

    /// What an authenticator returns for `challenge`, as edited by `edit`
    /// (authenticator data, client data JSON) before it signs.
    fn assertion(
        sk: &SigningKey,
        challenge: &[u8; 32],
        edit: impl FnOnce(&mut Vec<u8>, &mut serde_json::Value),
    ) -> ApprovalSignature {
        let mut data = Sha256::digest(b"localhost").to_vec();
        data.push(USER_PRESENT | USER_VERIFIED);
        data.extend_from_slice(&[0, 0, 0, 5]);
        let mut client = serde_json::json!({
            "type": "webauthn.get",
            "challenge": B64URL.encode(challenge),
            "origin": "http://localhost:8080",
            "crossOrigin": false,
        });
        edit(&mut data, &mut client);
        let client_data_json = serde_json::to_vec(&client).expect("json");
        let mut signed = data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data_json));
        let sig: p256::ecdsa::Signature = sk.sign(&signed);
        ApprovalSignature::WebAuthn(Assertion {
            authenticator_data: data,
            client_data_json,
            signature: sig.to_der().as_bytes().to_vec(),
        })
    }

    #[test]
    fn a_passkey_approval_verifies_and_round_trips_as_text() {
        let (sk, key) = signer();
        let s = statement();
        let sig = assertion(&sk, &s.challenge(), |_, _| {});
        assert_eq!(s.verify_by(&key, &sig, Some(&rp())), Ok(()));
        let text = sig.to_string();
        assert!(text.starts_with(WEBAUTHN));
        assert_eq!(text.parse::<ApprovalSignature>(), Ok(sig));
        let key_text = key.to_string();
        assert_eq!(key_text, key_text.to_lowercase());
        assert_eq!(key_text.parse::<ApproverKey>(), Ok(key));
    }

    #[test]
    fn a_recorded_approval_is_bound_to_its_statement_whatever_the_relying_party() {
        let (sk, key) = signer();
        let s = statement();
        let sig = assertion(&sk, &s.challenge(), |_, _| {});
        // Cast under one relying party, counted again after it changed.
        assert_eq!(s.verify_recorded(&key, &sig), Ok(()));
        let other = ApprovalStatement {
            intent: IntentDigest([8; 32]),
            ..s
        };
        assert!(other.verify_recorded(&key, &sig).is_err(), "another intent");
        let forged = assertion(&sk, &s.challenge(), |_, _| {});
        let ApprovalSignature::WebAuthn(mut a) = forged else {
            unreachable!("a passkey assertion")
        };
        a.client_data_json.push(b' ');
        let forged = ApprovalSignature::WebAuthn(a);
        assert_eq!(
            s.verify_recorded(&key, &forged),
            Err(StatementError::BadSignature)
        );
        // An Ed25519 approval the same way.
        let ed = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let ed_key = ApproverKey::Ed25519(ed.verifying_key().to_bytes());
        let ed_sig =
            ApprovalSignature::Ed25519(ed25519_dalek::Signer::sign(&ed, &s.message()).to_bytes());
        assert_eq!(s.verify_recorded(&ed_key, &ed_sig), Ok(()));
        assert!(other.verify_recorded(&ed_key, &ed_sig).is_err());
        assert_eq!(
            s.verify_recorded(&key, &ed_sig),
            Err(StatementError::KindMismatch)
        );
    }

    #[test]
    fn every_tampering_is_refused() {
        let (sk, key) = signer();
        let s = statement();
        let other = ApprovalStatement {
            policy_version: 4,
            ..s
        };
        let cases: Vec<(&str, ApprovalSignature)> = vec![
            (
                "another statement",
                assertion(&sk, &other.challenge(), |_, _| {}),
            ),
            (
                "another origin",
                assertion(&sk, &s.challenge(), |_, c| {
                    c["origin"] = "http://evil.example".into()
                }),
            ),
            (
                "a registration",
                assertion(&sk, &s.challenge(), |_, c| {
                    c["type"] = "webauthn.create".into()
                }),
            ),
            (
                "cross-origin",
                assertion(&sk, &s.challenge(), |_, c| c["crossOrigin"] = true.into()),
            ),
            (
                "another RP ID",
                assertion(&sk, &s.challenge(), |d, _| d[0] ^= 1),
            ),
            (
                "no user verification",
                assertion(&sk, &s.challenge(), |d, _| d[32] = USER_PRESENT),
            ),
            (
                "no user presence",
                assertion(&sk, &s.challenge(), |d, _| d[32] = USER_VERIFIED),
            ),
            (
                "extensions",
                assertion(&sk, &s.challenge(), |d, _| {
                    d[32] |= EXTENSIONS;
                    d.push(0xa0)
                }),
            ),
            ("an Ed25519 signature", ApprovalSignature::Ed25519([1; 64])),
        ];
        for (what, sig) in cases {
            assert!(
                s.verify_by(&key, &sig, Some(&rp())).is_err(),
                "{what} was accepted"
            );
        }
        // A signature by another key, and one with a flipped bit.
        let other_sk = SigningKey::from_bytes(&[0x43; 32].into()).expect("a valid scalar");
        let forged = assertion(&other_sk, &s.challenge(), |_, _| {});
        assert_eq!(
            s.verify_by(&key, &forged, Some(&rp())),
            Err(StatementError::BadSignature)
        );
        let ApprovalSignature::WebAuthn(mut a) = assertion(&sk, &s.challenge(), |_, _| {}) else {
            unreachable!("a passkey assertion")
        };
        a.client_data_json.push(b' ');
        assert_eq!(
            s.verify_by(&key, &ApprovalSignature::WebAuthn(a), Some(&rp())),
            Err(StatementError::BadSignature)
        );
        // No relying party configured: refused.
        let good = assertion(&sk, &s.challenge(), |_, _| {});
        assert!(s.verify_by(&key, &good, None).is_err());
    }

    #[test]
    fn relying_parties_are_checked_and_keys_are_canonical() {
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(RelyingParty::new("localhost", &o(&["http://localhost:8080"])).is_ok());
        assert!(RelyingParty::new("Custody.Example", &o(&["https://custody.example"])).is_ok());
        assert!(
            RelyingParty::new("custody.example", &o(&["https://app.custody.example:8443"])).is_ok()
        );
        for (rp, origins) in [
            ("127.0.0.1", o(&["http://127.0.0.1:8080"])),
            ("custody.example", o(&[])),
            ("custody.example", o(&["http://custody.example"])),
            ("custody.example", o(&["https://evil.example"])),
            ("custody.example", o(&["https://custody.example:443"])),
            ("custody.example", o(&["https://Custody.example"])),
            ("custody.example", o(&["https://custody.example/ui"])),
            ("custody.example", o(&["https://xcustody.example"])),
        ] {
            assert!(RelyingParty::new(rp, &origins).is_err(), "{rp} {origins:?}");
        }
        // Any accepted spelling is the canonical form once lowercased: the
        // stored, logged and compared strings agree.
        let (_, key) = signer();
        let upper = key
            .to_string()
            .to_uppercase()
            .replace("WEBAUTHN:", "webauthn:");
        let parsed: ApproverKey = upper.parse().expect("a passkey");
        assert_eq!(parsed.to_string(), upper.to_lowercase());
        assert_eq!(parsed.point(), key.point());
    }

    #[test]
    fn a_passkey_answer_with_any_other_shape_is_refused() {
        let (sk, key) = signer();
        let s = statement();
        for (what, sig) in [
            (
                "a topOrigin",
                assertion(&sk, &s.challenge(), |_, c| {
                    c["topOrigin"] = "https://x".into()
                }),
            ),
            (
                "attested credential data",
                assertion(&sk, &s.challenge(), |d, _| d[32] |= ATTESTED_CREDENTIAL),
            ),
            (
                "38 bytes without the extension flag",
                assertion(&sk, &s.challenge(), |d, _| d.push(0)),
            ),
        ] {
            assert!(
                s.verify_by(&key, &sig, Some(&rp())).is_err(),
                "{what} was accepted"
            );
        }
        let ed = ApproverKey::Ed25519(
            *ed25519_dalek::SigningKey::from_bytes(&[5; 32])
                .verifying_key()
                .as_bytes(),
        );
        let passkey_sig = assertion(&sk, &s.challenge(), |_, _| {});
        assert_eq!(
            s.verify_by(&ed, &passkey_sig, Some(&rp())),
            Err(StatementError::KindMismatch)
        );
    }

    #[test]
    fn malformed_keys_and_signatures_are_refused() {
        for bad in [
            "",
            "webauthn:",
            "webauthn:00:02",
            "webauthn:zz:02",
            // x at or above the field's prime: no point.
            &format!("webauthn:{}:02{}", "ab".repeat(16), "ff".repeat(32)),
            &format!("webauthn:{}:{}", "ab".repeat(8), "03".repeat(33)),
            &"00".repeat(32),
        ] {
            assert!(bad.parse::<ApproverKey>().is_err(), "{bad:?} was accepted");
        }
        for bad in [
            "",
            "webauthn:",
            "webauthn:a.b",
            "webauthn:AA.AA.AA.AA",
            "webauthn:..",
            "webauthn:!!.AA.AA",
            &"00".repeat(63),
        ] {
            assert!(
                bad.parse::<ApprovalSignature>().is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}

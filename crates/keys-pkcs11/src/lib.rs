//! HSM key backend over PKCS#11 (`cryptoki`).
//!
//! Keys are generated inside the token, marked sensitive and
//! non-extractable, and found again by their `CKA_ID`. ECDSA signatures come
//! back from `CKM_ECDSA` as raw `r‖s` with S high about half the time: they are
//! normalised to low S and the recovery id is found by trial against the
//! public key. BIP-340 Schnorr has no PKCS#11 mechanism, so this backend
//! refuses it. An HSM failure is an error, never a fallback to software keys.
//!
//! ## What is where
//!
//! `Pkcs11Signer`: keys generated in the token (secp256k1 ECDSA, Ed25519), sensitive and
//! non-extractable, found again by `CKA_ID`; a session pool; low-S normalisation and recovery id
//! by trial with libsecp256k1. Refuses BIP-340 (no PKCS#11 mechanism) rather than falling back to
//! software. `testing::SoftHsm` makes a SoftHSM2 token in a temp dir.

#[cfg(feature = "test-support")]
pub mod testing;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Condvar, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use keys::{
    Algorithm, BoxFuture, EcdsaSignature, KeyError, KeyRef, PublicKey, SignRequest, Signature,
    Signer,
};
use zeroize::Zeroizing;

/// DER of OID 1.3.132.0.10, secp256k1.
const SECP256K1_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
/// DER of OID 1.3.101.112, Ed25519.
const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const PREFIX: &str = "pkcs11:";
const WRAP_PREFIX: &str = "pkcs11-wrap:";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    #[error("cannot load the PKCS#11 module {path}: {reason}")]
    Module { path: String, reason: String },
    #[error("no token labelled {0:?} in any slot")]
    NoToken(String),
    #[error("the token refused the PIN")]
    WrongPin,
    #[error("the token's PIN is locked")]
    PinLocked,
    #[error("PKCS#11 {operation} failed: {reason}")]
    Call {
        operation: &'static str,
        reason: String,
    },
}

fn call(operation: &'static str) -> impl Fn(CkError) -> HsmError {
    move |e| HsmError::Call {
        operation,
        reason: e.to_string(),
    }
}

impl From<HsmError> for KeyError {
    fn from(e: HsmError) -> Self {
        KeyError::Backend(e.to_string())
    }
}

/// What the backend remembers about a key it has seen: the private-key
/// handle and the public key (needed to find ECDSA recovery ids).
#[derive(Debug, Clone, Copy)]
struct Known {
    algorithm: Algorithm,
    private: ObjectHandle,
    public: PublicKey,
}

/// A logged-in PKCS#11 token with a pool of sessions.
pub struct Pkcs11Signer {
    _ctx: Pkcs11,
    token: String,
    pool: Mutex<Vec<Session>>,
    /// How many sessions were opened (the pool holds the idle ones).
    opened: usize,
    available: Condvar,
    known: Mutex<HashMap<String, Known>>,
    secp: secp256k1::Secp256k1<secp256k1::All>,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// Loads `module`, finds the token by its label (slot ids are not
    /// stable), logs in with `pin` and opens `sessions` read-write sessions.
    pub fn open(
        module: &Path,
        token_label: &str,
        pin: &Zeroizing<String>,
        sessions: usize,
    ) -> Result<Self, HsmError> {
        let ctx = Pkcs11::new(module).map_err(|e| HsmError::Module {
            path: module.display().to_string(),
            reason: e.to_string(),
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(call("C_Initialize")(e)),
        }
        let slot = find_slot(&ctx, token_label)?;
        let mut pool = Vec::with_capacity(sessions.max(1));
        for i in 0..sessions.max(1) {
            let s = ctx.open_rw_session(slot).map_err(call("C_OpenSession"))?;
            if i == 0 {
                let pin = AuthPin::from(pin.as_str());
                match s.login(UserType::User, Some(&pin)) {
                    Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                    Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                        return Err(HsmError::WrongPin);
                    }
                    Err(CkError::Pkcs11(RvError::PinLocked, _)) => return Err(HsmError::PinLocked),
                    Err(e) => return Err(call("C_Login")(e)),
                }
            }
            pool.push(s);
        }
        Ok(Pkcs11Signer {
            _ctx: ctx,
            token: token_label.to_owned(),
            opened: pool.len(),
            pool: Mutex::new(pool),
            available: Condvar::new(),
            known: Mutex::new(HashMap::new()),
            secp: secp256k1::Secp256k1::new(),
        })
    }

    /// Runs `f` on a pooled session, waiting for one if all are busy.
    fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        let poisoned = || KeyError::Backend("session pool lock poisoned".into());
        let session = {
            let mut pool = self.pool.lock().map_err(|_| poisoned())?;
            loop {
                if let Some(s) = pool.pop() {
                    break s;
                }
                pool = self.available.wait(pool).map_err(|_| poisoned())?;
            }
        };
        let out = f(&session);
        self.pool.lock().map_err(|_| poisoned())?.push(session);
        self.available.notify_one();
        out
    }

    fn generate_now(&self, algorithm: Algorithm) -> Result<KeyRef, KeyError> {
        let (mechanism, params) = match algorithm {
            Algorithm::EcdsaSecp256k1 => (Mechanism::EccKeyPairGen, SECP256K1_PARAMS),
            Algorithm::Ed25519 => (Mechanism::EccEdwardsKeyPairGen, ED25519_PARAMS),
            Algorithm::SchnorrBip340 => return Err(KeyError::Unsupported(algorithm)),
        };
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| KeyError::Random)?;
        let label = format!("strongroom-{}", hex::encode(id)).into_bytes();
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(params.to_vec()),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label),
        ];
        let (public, private) = self.with_session(|s| {
            s.generate_key_pair(&mechanism, &public_template, &private_template)
                .map_err(|e| call("C_GenerateKeyPair")(e).into())
        })?;
        let public = self.with_session(|s| read_public(s, public, algorithm))?;
        let name = format!("{PREFIX}{}", hex::encode(id));
        self.remember(
            &name,
            Known {
                algorithm,
                private,
                public,
            },
        )?;
        Ok(KeyRef(name))
    }

    fn remember(&self, name: &str, k: Known) -> Result<(), KeyError> {
        self.known
            .lock()
            .map_err(|_| KeyError::Backend("key cache lock poisoned".into()))?
            .insert(name.to_owned(), k);
        Ok(())
    }

    /// The key's handles and public key, looked up in the token the first time.
    fn lookup(&self, key: &KeyRef) -> Result<Known, KeyError> {
        let cached = self
            .known
            .lock()
            .map_err(|_| KeyError::Backend("key cache lock poisoned".into()))?
            .get(&key.0)
            .copied();
        if let Some(k) = cached {
            return Ok(k);
        }
        let unknown = || KeyError::UnknownKey(key.clone());
        let id = key
            .0
            .strip_prefix(PREFIX)
            .and_then(|h| hex::decode(h).ok())
            .filter(|id| !id.is_empty())
            .ok_or_else(unknown)?;
        let k = self.with_session(|s| {
            let find = |class| {
                s.find_objects(&[Attribute::Class(class), Attribute::Id(id.clone())])
                    .map_err(|e| KeyError::from(call("C_FindObjects")(e)))
            };
            let private = *find(ObjectClass::PRIVATE_KEY)?
                .first()
                .ok_or_else(unknown)?;
            let public = *find(ObjectClass::PUBLIC_KEY)?.first().ok_or_else(unknown)?;
            let attrs = s
                .get_attributes(private, &[AttributeType::KeyType, AttributeType::EcParams])
                .map_err(|e| KeyError::from(call("C_GetAttributeValue")(e)))?;
            // The key type says which family; for EC keys the curve must be
            // secp256k1. (Tokens may spell Edwards curve parameters by name
            // rather than by OID, so those are not compared.)
            let key_type = attrs.iter().find_map(|a| match a {
                Attribute::KeyType(t) => Some(*t),
                _ => None,
            });
            let ec_params = attrs.iter().find_map(|a| match a {
                Attribute::EcParams(p) => Some(p.as_slice()),
                _ => None,
            });
            let algorithm = match (key_type, ec_params) {
                (Some(t), Some(p)) if t == KeyType::EC && p == SECP256K1_PARAMS => {
                    Algorithm::EcdsaSecp256k1
                }
                (Some(t), _) if t == KeyType::EC_EDWARDS => Algorithm::Ed25519,
                _ => {
                    return Err(KeyError::Backend(format!(
                        "key {key} is on an unsupported curve"
                    )));
                }
            };
            let public = read_public(s, public, algorithm)?;
            Ok(Known {
                algorithm,
                private,
                public,
            })
        })?;
        self.remember(&key.0, k)?;
        Ok(k)
    }

    fn sign_now(&self, key: &KeyRef, request: &SignRequest<'_>) -> Result<Signature, KeyError> {
        let k = self.lookup(key)?;
        let requested = request.algorithm();
        if k.algorithm != requested {
            return Err(KeyError::WrongAlgorithm {
                key: key.clone(),
                actual: k.algorithm,
                requested,
            });
        }
        match request {
            SignRequest::EcdsaDigest(digest) => {
                let raw = self.with_session(|s| {
                    s.sign(&Mechanism::Ecdsa, k.private, digest)
                        .map_err(|e| call("C_Sign")(e).into())
                })?;
                let PublicKey::Secp256k1(pk) = k.public else {
                    return Err(KeyError::Backend(
                        "ECDSA key without a secp256k1 public key".into(),
                    ));
                };
                normalise_ecdsa(&self.secp, &raw, digest, &pk).map(Signature::Ecdsa)
            }
            SignRequest::Ed25519Message(msg) => {
                let raw = self.with_session(|s| {
                    s.sign(
                        &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                        k.private,
                        msg,
                    )
                    .map_err(|e| call("C_Sign")(e).into())
                })?;
                let sig: [u8; 64] = raw
                    .try_into()
                    .map_err(|_| KeyError::Backend("EdDSA signature is not 64 bytes".into()))?;
                Ok(Signature::Ed25519(sig))
            }
            SignRequest::SchnorrDigest { .. } => Err(KeyError::Unsupported(requested)),
        }
    }

    /// A raw `C_Sign` with `CKM_ECDSA`, bypassing the seam: for benchmarks.
    pub fn raw_ecdsa(&self, key: &KeyRef, digest: &[u8; 32]) -> Result<Vec<u8>, KeyError> {
        let k = self.lookup(key)?;
        self.with_session(|s| {
            s.sign(&Mechanism::Ecdsa, k.private, digest)
                .map_err(|e| call("C_Sign")(e).into())
        })
    }

    /// Whether the token reports the key's private half as sensitive and
    /// never extractable (for audits and tests).
    pub fn is_protected(&self, key: &KeyRef) -> Result<bool, KeyError> {
        let k = self.lookup(key)?;
        self.with_session(|s| {
            let attrs = s
                .get_attributes(
                    k.private,
                    &[
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::NeverExtractable,
                        AttributeType::KeyType,
                    ],
                )
                .map_err(|e| KeyError::from(call("C_GetAttributeValue")(e)))?;
            let flag = |t: AttributeType| {
                attrs.iter().any(|a| match (a, t) {
                    (Attribute::Sensitive(v), AttributeType::Sensitive)
                    | (Attribute::Extractable(v), AttributeType::Extractable)
                    | (Attribute::NeverExtractable(v), AttributeType::NeverExtractable) => *v,
                    _ => false,
                })
            };
            let ec = attrs.iter().any(|a| {
                matches!(a, Attribute::KeyType(t) if *t == KeyType::EC || *t == KeyType::EC_EDWARDS)
            });
            Ok(ec
                && flag(AttributeType::Sensitive)
                && !flag(AttributeType::Extractable)
                && flag(AttributeType::NeverExtractable))
        })
    }
}

impl Signer for Pkcs11Signer {
    fn backend(&self) -> &'static str {
        "pkcs11"
    }

    fn sessions(&self) -> Option<(usize, usize)> {
        let idle = self.pool.lock().map_or(0, |p| p.len());
        Some((self.opened, idle))
    }

    fn generate(&self, algorithm: Algorithm) -> BoxFuture<'_, Result<KeyRef, KeyError>> {
        Box::pin(async move { blocking(|| self.generate_now(algorithm)) })
    }

    fn public_key<'a>(&'a self, key: &'a KeyRef) -> BoxFuture<'a, Result<PublicKey, KeyError>> {
        Box::pin(async move { blocking(|| self.lookup(key).map(|k| k.public)) })
    }

    fn sign<'a>(
        &'a self,
        key: &'a KeyRef,
        request: SignRequest<'a>,
    ) -> BoxFuture<'a, Result<Signature, KeyError>> {
        Box::pin(async move { blocking(|| self.sign_now(key, &request)) })
    }
}

impl keys::Wrapper for Pkcs11Signer {
    fn create_wrapping_key(&self) -> Result<KeyRef, KeyError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| KeyError::Random)?;
        let template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::ValueLen(32.into()),
            Attribute::Id(id.to_vec()),
            Attribute::Label(format!("strongroom-wrap-{}", hex::encode(id)).into_bytes()),
        ];
        blocking(|| {
            self.with_session(|s| {
                s.generate_key(&Mechanism::AesKeyGen, &template)
                    .map(drop)
                    .map_err(|e| call("C_GenerateKey")(e).into())
            })
        })?;
        Ok(KeyRef(format!("{WRAP_PREFIX}{}", hex::encode(id))))
    }

    fn wrap(&self, key: &KeyRef, aad: &[u8], secret: &[u8]) -> Result<Vec<u8>, KeyError> {
        let handle = blocking(|| self.wrapping_key(key))?;
        let mut iv = [0u8; 12];
        getrandom::fill(&mut iv).map_err(|_| KeyError::Random)?;
        let mut iv_param = iv;
        let ct = blocking(|| {
            self.with_session(|s| {
                let params = GcmParams::new(&mut iv_param, aad, 128.into())
                    .map_err(|e| KeyError::Backend(e.to_string()))?;
                s.encrypt(&Mechanism::AesGcm(params), handle, secret)
                    .map_err(|e| call("C_Encrypt")(e).into())
            })
        })?;
        let mut out = iv.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unwrap(
        &self,
        key: &KeyRef,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < 12 + 16 {
            return Err(KeyError::Backend("wrapped secret is too short".into()));
        }
        let handle = blocking(|| self.wrapping_key(key))?;
        let (iv, ct) = sealed.split_at(12);
        let mut iv: [u8; 12] = iv
            .try_into()
            .map_err(|_| KeyError::Backend("wrapped secret is malformed".into()))?;
        blocking(|| {
            self.with_session(|s| {
                let params = GcmParams::new(&mut iv, aad, 128.into())
                    .map_err(|e| KeyError::Backend(e.to_string()))?;
                s.decrypt(&Mechanism::AesGcm(params), handle, ct)
                    .map(Zeroizing::new)
                    .map_err(|e| call("C_Decrypt")(e).into())
            })
        })
    }
}

impl Pkcs11Signer {
    fn wrapping_key(&self, key: &KeyRef) -> Result<ObjectHandle, KeyError> {
        let unknown = || KeyError::UnknownKey(key.clone());
        let id = key
            .0
            .strip_prefix(WRAP_PREFIX)
            .and_then(|h| hex::decode(h).ok())
            .filter(|id| !id.is_empty())
            .ok_or_else(unknown)?;
        self.with_session(|s| {
            s.find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Id(id)])
                .map_err(|e| KeyError::from(call("C_FindObjects")(e)))?
                .first()
                .copied()
                .ok_or_else(unknown)
        })
    }
}

/// PKCS#11 calls block (and may wait for a free session). On a
/// multi-threaded runtime the worker hands its other tasks away first, so an
/// HSM round trip does not stall the server; elsewhere the call just runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    for slot in ctx.get_slots_with_token().map_err(call("C_GetSlotList"))? {
        let info = ctx.get_token_info(slot).map_err(call("C_GetTokenInfo"))?;
        if info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(HsmError::NoToken(label.to_owned()))
}

/// Reads `CKA_EC_POINT` (a DER OCTET STRING) and returns the public key in
/// the form the chains use.
fn read_public(
    s: &Session,
    public: ObjectHandle,
    algorithm: Algorithm,
) -> Result<PublicKey, KeyError> {
    let attrs = s
        .get_attributes(public, &[AttributeType::EcPoint])
        .map_err(|e| KeyError::from(call("C_GetAttributeValue")(e)))?;
    let point = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .ok_or_else(|| KeyError::Backend("public key without CKA_EC_POINT".into()))?;
    let raw = der_octet_string(&point).unwrap_or(&point);
    let bad = || KeyError::Backend("malformed public key from the token".into());
    match algorithm {
        Algorithm::EcdsaSecp256k1 => {
            let pk = k256::PublicKey::from_sec1_bytes(raw).map_err(|_| bad())?;
            let compressed =
                k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&pk, true);
            let mut out = [0u8; 33];
            out.copy_from_slice(compressed.as_bytes());
            Ok(PublicKey::Secp256k1(out))
        }
        Algorithm::Ed25519 => Ok(PublicKey::Ed25519(raw.try_into().map_err(|_| bad())?)),
        Algorithm::SchnorrBip340 => Err(KeyError::Unsupported(algorithm)),
    }
}

/// The contents of a short-form or one-byte long-form DER OCTET STRING.
fn der_octet_string(der: &[u8]) -> Option<&[u8]> {
    match der {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => Some(rest),
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => Some(rest),
        _ => None,
    }
}

/// Low-S normalisation and the recovery id: the id whose recovery yields
/// the token's public key. Ids 2 and 3 (r ≥ n − p) essentially never occur
/// but are tried rather than assumed away.
fn normalise_ecdsa(
    secp: &secp256k1::Secp256k1<secp256k1::All>,
    raw: &[u8],
    digest: &[u8; 32],
    pk: &[u8; 33],
) -> Result<EcdsaSignature, KeyError> {
    use secp256k1::ecdsa::{RecoverableSignature, RecoveryId, Signature as Sig};
    let bad = |what: &str| KeyError::Backend(format!("the token returned {what}"));
    let mut sig = Sig::from_compact(raw).map_err(|_| bad("a malformed ECDSA signature"))?;
    sig.normalize_s();
    let compact = sig.serialize_compact();
    let expected =
        secp256k1::PublicKey::from_slice(pk).map_err(|_| bad("a malformed public key"))?;
    let msg = secp256k1::Message::from_digest(*digest);
    for id in 0..4 {
        let recid = RecoveryId::from_i32(id).map_err(|_| bad("an impossible recovery id"))?;
        let rs = RecoverableSignature::from_compact(&compact, recid)
            .map_err(|_| bad("a malformed ECDSA signature"))?;
        if secp.recover_ecdsa(&msg, &rs).is_ok_and(|q| q == expected) {
            let mut r = [0u8; 32];
            let mut s = [0u8; 32];
            r.copy_from_slice(&compact[..32]);
            s.copy_from_slice(&compact[32..]);
            return Ok(EcdsaSignature {
                r,
                s,
                recovery_id: id as u8,
            });
        }
    }
    Err(bad("a signature that does not verify under its key"))
}

//! Envelope encryption: root key → key-encryption key → per-key data keys →
//! key material, each layer sealed with XChaCha20-Poly1305 and bound by its
//! associated data to what it protects (kind, id, version), so that a
//! ciphertext moved to another row or version does not open.
//!
//! Sealed form: `0x01 | nonce (24) | ciphertext+tag`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::secret::Secret32;

const FORMAT: u8 = 1;
const NONCE: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error("the random number generator failed")]
    Random,
    #[error("sealed data is malformed")]
    Malformed,
    #[error("sealed data does not open: wrong key, wrong binding, or altered")]
    Open,
    #[error("encryption failed")]
    Seal,
}

/// What a sealed value is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// `kek`, `dek`, `key`.
    pub kind: &'a str,
    pub id: &'a str,
    pub version: u32,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        format!("strongroom/{}/{}/v{}", self.kind, self.id, self.version).into_bytes()
    }
}

/// Encrypts `plaintext` under `key`, bound to `binding`.
pub fn seal(
    key: &Secret32,
    binding: Binding<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    let mut nonce = [0u8; NONCE];
    getrandom::fill(&mut nonce).map_err(|_| EnvelopeError::Random)?;
    let aad = binding.aad();
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| EnvelopeError::Seal)?;
    let mut out = Vec::with_capacity(1 + NONCE + ct.len());
    out.push(FORMAT);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts what [`seal`] made with the same key and binding.
pub fn open(
    key: &Secret32,
    binding: Binding<'_>,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let [FORMAT, rest @ ..] = sealed else {
        return Err(EnvelopeError::Malformed);
    };
    if rest.len() < NONCE + 16 {
        return Err(EnvelopeError::Malformed);
    }
    let (nonce, ct) = rest.split_at(NONCE);
    let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| EnvelopeError::Malformed)?;
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    let aad = binding.aad();
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| EnvelopeError::Open)
}

/// Seals a 32-byte key under another (wrapping).
pub fn wrap(
    kek: &Secret32,
    binding: Binding<'_>,
    key: &Secret32,
) -> Result<Vec<u8>, EnvelopeError> {
    seal(kek, binding, key.expose())
}

/// Opens a wrapped 32-byte key.
pub fn unwrap(
    kek: &Secret32,
    binding: Binding<'_>,
    sealed: &[u8],
) -> Result<Secret32, EnvelopeError> {
    let plain = open(kek, binding, sealed)?;
    let mut k: [u8; 32] = plain[..].try_into().map_err(|_| EnvelopeError::Malformed)?;
    Ok(Secret32::from_bytes(&mut k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Secret32 {
        Secret32::from_bytes(&mut [b; 32])
    }

    const B: Binding<'static> = Binding {
        kind: "dek",
        id: "key-1",
        version: 1,
    };

    #[test]
    fn three_layers_round_trip() {
        let root = key(1);
        let kek = key(2);
        let dek = key(3);
        let kek_sealed = wrap(
            &root,
            Binding {
                kind: "kek",
                id: "ks",
                version: 1,
            },
            &kek,
        )
        .unwrap();
        let dek_sealed = wrap(&kek, B, &dek).unwrap();
        let material = seal(
            &dek,
            Binding {
                kind: "key",
                id: "key-1",
                version: 1,
            },
            b"secret",
        )
        .unwrap();

        let kek2 = unwrap(
            &root,
            Binding {
                kind: "kek",
                id: "ks",
                version: 1,
            },
            &kek_sealed,
        )
        .unwrap();
        let dek2 = unwrap(&kek2, B, &dek_sealed).unwrap();
        let m = open(
            &dek2,
            Binding {
                kind: "key",
                id: "key-1",
                version: 1,
            },
            &material,
        )
        .unwrap();
        assert_eq!(&m[..], b"secret");
    }

    #[test]
    fn tampering_and_misbinding_do_not_open() {
        let k = key(9);
        let sealed = seal(&k, B, b"material").unwrap();
        for i in [0usize, 1, 24, 25, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(open(&k, B, &bad).is_err(), "bit flip at {i} opened");
        }
        assert_eq!(open(&key(8), B, &sealed).unwrap_err(), EnvelopeError::Open);
        for other in [
            Binding { kind: "key", ..B },
            Binding { id: "key-2", ..B },
            Binding { version: 2, ..B },
        ] {
            assert_eq!(open(&k, other, &sealed).unwrap_err(), EnvelopeError::Open);
        }
        assert_eq!(
            open(&k, B, &sealed[..10]).unwrap_err(),
            EnvelopeError::Malformed
        );
        assert_ne!(seal(&k, B, b"material").unwrap(), sealed, "nonces repeat");
    }
}

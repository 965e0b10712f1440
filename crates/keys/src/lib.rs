//! Keys: the one narrow seam every signature in Strongroom goes through.
//!
//! [`Signer`] is implemented by each key backend (the software keystore here;
//! PKCS#11 HSMs and threshold signer nodes in their own crates). Every backend
//! runs the same conformance suite ([`conformance`], behind the `test-impl`
//! feature), which checks each signature with a second, independent library.
//!
//! Secret material lives only in types that zeroize on drop, print
//! `<redacted>`, and implement neither `Display`, `Serialize` nor `Clone`.
//!
//! ## What is where
//!
//! — the signer seam: the `Signer` trait (ECDSA secp256k1 with low S and recovery id, BIP-340
//! Schnorr with the BIP-341 tweak, Ed25519), `Secret32`, the in-memory `SoftwareSigner`, `verify`
//! (independent verification), and the conformance suite every backend runs (`test-impl` feature).
//! `shamir` (unseal shares over `blahaj`, with checksum and keystore binding), `envelope`
//! (XChaCha20-Poly1305 bound to kind/id/version), `hd` (BIP-39 via `bip39`, BIP-32 via `bip32`,
//! SLIP-10). Official vectors live in `tests/vectors/`.

#[cfg(feature = "test-impl")]
pub mod conformance;
pub mod envelope;
pub mod hd;
mod secret;
pub mod shamir;
mod signer;
mod software;
pub mod verify;

pub use secret::Secret32;
pub use signer::{
    Algorithm, BoxFuture, EcdsaSignature, KeyError, KeyRef, PublicKey, SignRequest, Signature,
    Signer, TapTweak, Wrapper,
};
pub use software::SoftwareSigner;
pub use verify::{VerifyError, verify};

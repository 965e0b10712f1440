//! Keys: the one narrow seam every signature in Strongroom goes through.
//!
//! [`Signer`] is implemented by each key backend (the software keystore here;
//! PKCS#11 HSMs and threshold signer nodes in their own crates). Every backend
//! runs the same conformance suite ([`conformance`], behind the `test-impl`
//! feature), which checks each signature with a second, independent library.
//!
//! Secret material lives only in types that zeroize on drop, print
//! `<redacted>`, and implement neither `Display`, `Serialize` nor `Clone`.

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

//! Secret values: zeroized on drop, never printed, never serialised.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// 32 secret bytes: a private key or a seed.
///
/// No `Clone`, `Display` or `Serialize`; `Debug` prints `<redacted>`; the
/// bytes are overwritten when the value is dropped.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secret32([u8; 32]);

impl Secret32 {
    /// Takes ownership of the bytes and wipes the caller's copy.
    pub fn from_bytes(bytes: &mut [u8; 32]) -> Self {
        let s = Secret32(*bytes);
        bytes.zeroize();
        s
    }

    /// 32 bytes from the operating system's CSPRNG.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b)?;
        Ok(Self::from_bytes(&mut b))
    }

    /// The bytes, for handing to a cryptographic library. Do not copy them
    /// anywhere that outlives the call.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_and_takes_the_callers_copy() {
        let mut b = [7u8; 32];
        let s = Secret32::from_bytes(&mut b);
        assert_eq!(b, [0u8; 32]);
        assert_eq!(s.expose(), &[7u8; 32]);
        assert_eq!(format!("{s:?}"), "Secret32(<redacted>)");
    }
}

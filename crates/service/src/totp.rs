//! RFC 6238 time-based one-time passwords (HMAC-SHA1, 30 s steps, 6
//! digits): HMAC from RustCrypto, the RFC's dynamic truncation here.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Seconds per step.
pub const STEP: u64 = 30;

/// The code for `step` (= unix seconds / 30), with `digits` digits.
pub fn code(secret: &[u8], step: u64, digits: u32) -> Option<u32> {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret).ok()?;
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    Some(bin % 10u32.checked_pow(digits)?)
}

/// The step at which `given` is valid, trying the step of `unix_seconds`
/// and one on either side (clock drift). Constant work per candidate.
pub fn verify(secret: &[u8], given: &str, unix_seconds: u64) -> Option<u64> {
    if given.len() != 6 || !given.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let given: u32 = given.parse().ok()?;
    let now = unix_seconds / STEP;
    let mut found = None;
    for step in [now.saturating_sub(1), now, now + 1] {
        if code(secret, step, 6) == Some(given) {
            found = Some(step);
        }
    }
    found
}

/// The `otpauth://` URI authenticator apps read (usually from a QR code).
pub fn otpauth_uri(secret: &[u8], account: &str) -> String {
    let b32 = data_encoding::BASE32_NOPAD.encode(secret);
    let account: String = account
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!(
        "otpauth://totp/Strongroom:{account}?secret={b32}&issuer=Strongroom&algorithm=SHA1&digits=6&period=30"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (8 digits), from `tests/vectors/rfc6238.txt`.
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        let mut n = 0;
        for line in include_str!("../tests/vectors/rfc6238.txt").lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (t, expected) = line.split_once(' ').unwrap_or_default();
            let t: u64 = t.parse().unwrap_or(0);
            let expected: u32 = expected.trim().parse().unwrap_or(u32::MAX);
            assert_eq!(code(secret, t / STEP, 8), Some(expected), "T = {t}");
            // Six digits are the last six of eight.
            let six = format!("{:06}", expected % 1_000_000);
            assert_eq!(verify(secret, &six, t), Some(t / STEP));
            n += 1;
        }
        assert_eq!(n, 6);
        assert_eq!(verify(secret, "12345", 59), None);
        assert_eq!(verify(secret, "+12345", 59), None);
        assert_eq!(
            verify(secret, "287082", 59 + 90),
            None,
            "three steps later: expired"
        );
    }
}

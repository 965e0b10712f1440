//! The message an API key signs for a request (`strongroom-request-v2`,
//! covering the `Idempotency-Key`; the legacy v1 without it): one line per
//! part, the body by its SHA-256. Shared by the server, which checks it,
//! and every client, which makes it.

use sha2::{Digest, Sha256};

/// The bytes an API key signs (`strongroom-request-v2`): method, path,
/// query, body hash, time, nonce and the `Idempotency-Key` header's value
/// (empty if none).
pub fn request_message(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    timestamp_ms: &str,
    nonce: &str,
    idempotency_key: &str,
) -> Vec<u8> {
    let mut m = lines("v2", method, path, query, body, timestamp_ms, nonce);
    m.push('\n');
    m.push_str(idempotency_key);
    m.into_bytes()
}

/// The legacy `strongroom-request-v1` message (without the
/// `Idempotency-Key`): still accepted for a request without that header,
/// refused with it. New clients sign [`request_message`].
pub fn request_message_v1(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    timestamp_ms: &str,
    nonce: &str,
) -> Vec<u8> {
    lines("v1", method, path, query, body, timestamp_ms, nonce).into_bytes()
}

/// The seven lines both versions start with.
fn lines(
    version: &str,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    timestamp_ms: &str,
    nonce: &str,
) -> String {
    format!(
        "strongroom-request-{version}\n{method}\n{path}\n{query}\n{}\n{timestamp_ms}\n{nonce}",
        hex::encode(Sha256::digest(body))
    )
}

//! What a call to the network's endpoints can end in.

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint URL `{0}` is not usable: {1}")]
    BadEndpoint(String, String),
    #[error("no endpoint configured")]
    NoEndpoints,
    #[error("endpoint {endpoint} serves chain {got}, not the configured chain {expected}")]
    WrongChain {
        endpoint: String,
        expected: u64,
        got: u64,
    },
    #[error("no endpoint answered (last error: {0})")]
    Unavailable(String),
    #[error("the node refused {method}: {message} (code {code})")]
    Rpc {
        method: String,
        code: i64,
        message: String,
    },
    #[error("the node's answer to {method} is malformed: {detail}")]
    Malformed { method: String, detail: String },
    #[error("the nonce of transaction 0x{0} is already used by another transaction")]
    NonceTaken(String),
    #[error("the node refused the replacement as underpriced")]
    Underpriced,
}

//! The service's errors: one enum the operations return, and the enums of
//! each kind of failure callers tell apart (authentication, approvals,
//! Ethereum, Bitcoin). At the bottom of the layers: every module may name
//! them, and they name nothing of the service.

use storage::StorageError;

pub use chain_eth_client::ClientError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("audit checkpoint file {path}: {reason}")]
    Checkpoint { path: String, reason: String },
    #[error("audit checkpoint file {path}, line {line}: {reason}")]
    CheckpointLine {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("the audit log is broken, refusing to checkpoint it: {0}")]
    AuditBroken(audit::Break),
    #[error("the keystore is sealed")]
    Sealed,
    #[error("signing is stopped: {0}")]
    SigningStopped(String),
    #[error("disk space is low: {0}")]
    DiskLow(String),
    #[error("no keystore has been initialised")]
    NotInitialized,
    #[error("the keystore is already initialised")]
    AlreadyInitialized,
    #[error("unseal share refused: {0}")]
    Share(#[from] keys::shamir::ShareError),
    #[error("the shares do not unseal this keystore; progress was reset")]
    WrongShares,
    #[error("key cannot be used: {0}")]
    KeyNotUsable(String),
    #[error("signing refused: what was built is not what was approved: {0}")]
    NotApproved(String),
    #[error("the signer nodes refused: {0}")]
    SignersRefused(String),
    #[error("the signer nodes could not sign: {0}")]
    SignersUnavailable(String),
    #[error("key backend: {0}")]
    Key(#[from] keys::KeyError),
    #[error("sealed key material does not open: {0}")]
    Envelope(#[from] keys::envelope::EnvelopeError),
    #[error(transparent)]
    Json(#[from] audit::CanonicalJsonError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Eth(#[from] EthError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Btc(#[from] BtcServiceError),
    #[error("frozen ({0}): nothing is signed or sent until a quorum releases it")]
    Frozen(String),
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    #[error("governance is not configured: no proposal applies and no transfer is judged")]
    GovernanceNotConfigured,
    /// The console's bootstrap is over: this change is a proposal now.
    #[error("governance is in force: {0}")]
    GovernanceInForce(String),
    /// No verified backup holds the key yet: it receives no funds.
    #[error(
        "key {0} is in no verified backup yet: take one (`strongroom backup create`, then `backup verify`) or accept the risk for this key (`strongroom key accept-unbacked`)"
    )]
    NotBackedUp(String),
    #[error("{0}")]
    Conflict(String),
    /// A PSBT brought back from an offline signer is not the approved
    /// transaction, or not signed by the wallet's keys: nothing changed.
    #[error("the signed transaction is refused: {0}")]
    SignatureRefused(String),
    #[error("this idempotency key was used with another request")]
    IdempotencyMismatch,
    #[error("insufficient funds: {0}")]
    InsufficientFunds(String),
    /// The destination failed screening (`denied_destination`,
    /// `lookalike_destination`): nothing was recorded.
    #[error("{message}")]
    Screened { code: &'static str, message: String },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EthError {
    #[error("network eip155:{0} is not configured")]
    NetworkNotConfigured(u64),
    #[error("{0} is not a configured asset of this network")]
    AssetNotConfigured(String),
    #[error("destination refused: {0}")]
    Address(#[from] chain_eth::AddressError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("fee refused: {0}")]
    Fee(#[from] chain_eth::FeeError),
    #[error("transaction: {0}")]
    Tx(#[from] chain_eth::TxError),
    #[error("node: {0}")]
    Node(#[from] ClientError),
    #[error("the send is {0}: it cannot be replaced")]
    NotReplaceable(String),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BtcServiceError {
    #[error("{0} is not configured")]
    NetworkNotConfigured(String),
    #[error("{0}")]
    Plan(#[from] chain_btc::FeeError),
    #[error("transaction: {0}")]
    Tx(#[from] chain_btc::BtcError),
    #[error("node: {0}")]
    Node(#[from] chain_btc_client::ClientError),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// Every sign-in failure: wrong name, password or one-time code, a
    /// missing code, or an account locked after repeated failures.
    #[error(
        "sign-in failed: wrong name, password or one-time code, or the account is locked for a while after repeated failures"
    )]
    InvalidCredentials,
    #[error("a one-time code is required")]
    TotpRequired,
    #[error("too many attempts: try again in {retry_after_s} s")]
    Throttled { retry_after_s: u64 },
    #[error("the request signature is not valid")]
    BadSignature,
    #[error(
        "a request with an Idempotency-Key must be signed as strongroom-request-v2 (the key is part of the signed message)"
    )]
    SignatureVersion,
    #[error("the request timestamp is more than 30 s from the server's clock")]
    Stale,
    #[error("the request nonce was used before")]
    Replay,
    #[error("the request is malformed: {0}")]
    Malformed(String),
    #[error("the API key is expired or revoked")]
    KeyInactive,
    #[error("the session is missing, expired or signed out")]
    NoSession,
    #[error("the CSRF token is missing or wrong")]
    Csrf,
    #[error("a second factor is required: enrol TOTP and sign in with it")]
    MfaRequired,
    #[error("not permitted")]
    Forbidden,
}

/// Why a vote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    #[error("the approval has expired")]
    Expired,
    #[error("no approver key is registered for this principal")]
    NoApproverKey,
    #[error("the transfer is not waiting for this vote (it is {0})")]
    NotAwaiting(String),
    #[error("not in any approver group of the rule that judged this transfer")]
    NotAnApprover,
    #[error("the initiator may not approve their own transfer under this rule")]
    OwnTransfer,
    #[error("the approval signature does not verify for this transfer, decision and expiry")]
    BadSignature,
    #[error("this approver has already voted on this transfer")]
    AlreadyVoted,
    /// Another principal of the same person (a key they hold, or their
    /// own session) voted already: a quorum counts people.
    #[error(
        "{0} already voted on this transfer: one person supplies one vote, whichever of their keys signs"
    )]
    SamePerson(String),
    #[error("approving a proposal takes the admin's signature (SRGV) over it")]
    SignatureRequired,
    #[error("the signature does not verify for this proposal, its change and its base")]
    BadProposalSignature,
}

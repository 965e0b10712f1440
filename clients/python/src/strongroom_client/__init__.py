"""A client for the Strongroom custody server.

`Client` signs every request with an API key (`strongroom-request-v2`),
retries on 429/503 as `Retry-After` says, and raises typed errors carrying
the server's stable code. `strongroom_client.audit` verifies an audit log
and its signed checkpoints independently; `verify_webhook` checks a
received webhook delivery. Formats: docs/FORMATS.md in the Strongroom
repository.
"""

from .client import ApprovalRequest, Client, Response, RetryPolicy
from .errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    FormatError,
    IntentMismatch,
    KeyFileError,
    NotFound,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    StrongroomError,
    TransportError,
    Unauthenticated,
    Unprocessable,
    WebhookVerificationError,
)
from .intent import TransferIntent, Vote, approval_statement, decode_intent
from .models import (
    Account,
    Approval,
    Balance,
    Decision,
    DepositAddress,
    HistoryEntry,
    Page,
    Transfer,
    Wallet,
    WalletDetail,
    Webhook,
    WebhookDelivery,
)
from .signing import ApiKey, ApproverKey, request_message, signed_headers
from .webhooks import verify_webhook, webhook_signature

__all__ = [
    "Account",
    "ApiError",
    "ApiKey",
    "Approval",
    "ApprovalRequest",
    "ApproverKey",
    "BadRequest",
    "Balance",
    "Client",
    "Conflict",
    "Decision",
    "DepositAddress",
    "Forbidden",
    "FormatError",
    "HistoryEntry",
    "IntentMismatch",
    "KeyFileError",
    "NotFound",
    "Page",
    "RateLimited",
    "Response",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "StrongroomError",
    "Transfer",
    "TransferIntent",
    "TransportError",
    "Unauthenticated",
    "Unprocessable",
    "Vote",
    "Wallet",
    "WalletDetail",
    "Webhook",
    "WebhookDelivery",
    "WebhookVerificationError",
    "approval_statement",
    "decode_intent",
    "request_message",
    "signed_headers",
    "verify_webhook",
    "webhook_signature",
]

"""Errors: the server's refusals carry its stable machine-readable `code`;
checks the client makes itself (an intent that is not what the server
says, a webhook whose signature does not verify) have their own types."""

from __future__ import annotations

from typing import Mapping


class StrongroomError(Exception):
    """Everything this package raises."""


class KeyFileError(StrongroomError, ValueError):
    """A key file that is not in the expected format (docs/FORMATS.md)."""


class FormatError(StrongroomError, ValueError):
    """Bytes that do not decode as the format they claim (SRTI, a checkpoint line)."""


class TransportError(StrongroomError):
    """The server could not be reached, or the connection broke."""


class ApiError(StrongroomError):
    """An error answer from the server: HTTP status, stable `code`, message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    """400: `invalid_request`, `invalid_body`, `invalid_query`, `approval_expired`, …"""


class Unauthenticated(ApiError):
    """401: `unauthenticated`, `bad_signature`, `stale_request`, `replayed_request`, …"""


class Forbidden(ApiError):
    """403: `forbidden`, `not_an_approver`, `own_transfer`, …"""


class NotFound(ApiError):
    """404: `not_found`."""


class Conflict(ApiError):
    """409: `conflict`, `frozen`, `insufficient_funds`, `not_awaiting_vote`, …"""


class Unprocessable(ApiError):
    """422: `idempotency_key_reused`, `fee_refused`."""


class RateLimited(ApiError):
    """429: `rate_limited`, still refused after the retries allowed."""


class ServiceUnavailable(ApiError):
    """503: `sealed`, `node_unavailable`, `database_unavailable`, …"""


class ServerError(ApiError):
    """Any other 5xx."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Unprocessable,
    429: RateLimited,
    503: ServiceUnavailable,
}


def api_error(
    status: int,
    code: str,
    message: str,
    *,
    retry_after_s: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> ApiError:
    """The most precise error type for a status."""
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return kind(status, code, message, retry_after_s=retry_after_s, headers=headers)


class IntentMismatch(StrongroomError):
    """What the server says about a transfer is not what its intent bytes say
    (or not what the caller expected): nothing was signed."""


class WebhookVerificationError(StrongroomError):
    """A webhook delivery whose signature or timestamp does not check out."""

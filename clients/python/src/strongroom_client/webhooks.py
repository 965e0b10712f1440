"""Verifying a webhook delivery as Strongroom signs it: Standard Webhooks,
`v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>` (docs/FORMATS.md)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any, Mapping

from .errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300


def _secret_bytes(secret: str) -> bytes:
    text = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the webhook secret is not whsec_<base64>") from None


def webhook_signature(secret: str, webhook_id: str, timestamp_s: int, body: bytes) -> str:
    """The `webhook-signature` value for a delivery (`v1,<base64>`)."""
    content = webhook_id.encode("utf-8") + b"." + str(timestamp_s).encode("ascii") + b"." + body
    mac = hmac.new(_secret_bytes(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now_s: int | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> dict[str, Any]:
    """Checks a received delivery and returns its JSON payload
    (`{"type", "timestamp_ms", "data"}`).

    `headers` is looked up without regard to case; `body` must be the exact
    bytes received. Raises `WebhookVerificationError` when a header is
    missing, the timestamp is further than `tolerance_s` from `now_s`, or
    no `v1` signature in the header matches.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        webhook_id = lowered["webhook-id"]
        stamp = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"]
    except KeyError as missing:
        raise WebhookVerificationError(f"missing header {missing.args[0]}") from None
    try:
        timestamp_s = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    now = int(time.time()) if now_s is None else now_s
    if abs(now - timestamp_s) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    expected = webhook_signature(secret, webhook_id, timestamp_s, body)
    # Several space-separated signatures may be sent (secret rotation).
    if not any(
        hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))
        for given in signatures.split()
    ):
        raise WebhookVerificationError("no webhook signature matches")
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookVerificationError("the delivery body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookVerificationError("the delivery body is not a JSON object")
    return payload

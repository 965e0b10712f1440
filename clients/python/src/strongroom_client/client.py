"""The HTTP client: every request signed with an API key
(`strongroom-request-v2`), retried on 429 and 503 as `Retry-After` says
(bounded), with an `Idempotency-Key` per logical call where the server
honours one, and refusals raised as typed errors carrying the server's
stable `code`."""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import ssl
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping, Sequence

from . import audit as audit_log
from .errors import ApiError, IntentMismatch, TransportError, api_error
from .intent import TransferIntent, Vote, approval_statement, decode_intent
from .models import (
    Balance,
    Decision,
    DepositAddress,
    Page,
    Transfer,
    Wallet,
    WalletDetail,
    Webhook,
    WebhookDelivery,
)
from .signing import ApiKey, ApproverKey, signed_headers

USER_AGENT = "strongroom-client-python/0.1"
# 503 answers that a retry cannot change: a server without governance.
_PERMANENT = frozenset({"governance_not_configured"})


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again. A 429 or 503 is retried after its `Retry-After`
    (seconds or an HTTP date), or after `backoff_s` doubling when it has
    none, up to `max_attempts` attempts in all. A wait longer than
    `max_wait_s` is not shortened: the error is raised at once, carrying
    `retry_after_s`. A broken connection is retried only for a `GET` or a
    request carrying an `Idempotency-Key` (where a retry is safe)."""

    max_attempts: int = 4
    max_wait_s: float = 30.0
    backoff_s: float = 0.5
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _amount_text(amount: str | int | Decimal) -> str:
    """Amounts go out as decimal strings in the asset's units; never floats."""
    if isinstance(amount, bool) or isinstance(amount, float):
        raise TypeError("an amount is a str, int or Decimal, never a float")
    if isinstance(amount, Decimal):
        if not amount.is_finite():
            raise ValueError("an amount is finite")
        return format(amount, "f")
    return str(amount)


def _segment(value: str) -> str:
    return urllib.parse.quote(str(value), safe="")


class Client:
    """A Strongroom API client.

        client = Client("http://127.0.0.1:8200", ApiKey.from_file("initiator.key"))
        t = client.create_transfer(wallet, "eip155:1/native", "0.5", "0x5aAe…")
    """

    def __init__(
        self,
        base_url: str,
        api_key: ApiKey | None = None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url is http(s)://host[:port][/prefix]")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._ssl_context = ssl_context

    @classmethod
    def from_key_file(cls, base_url: str, key_file: str | os.PathLike[str], **kw: Any) -> "Client":
        return cls(base_url, ApiKey.from_file(key_file), **kw)

    def with_key(self, api_key: ApiKey | None) -> "Client":
        """The same server, as another principal (or anonymous)."""
        other = Client.__new__(Client)
        other.__dict__.update(self.__dict__)
        other.api_key = api_key
        return other

    # -- transport ---------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout_s, context=self._ssl_context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)

    def _send_once(
        self, method: str, path: str, query: str, body: bytes, idempotency_key: str | None
    ) -> Response:
        headers = {"user-agent": USER_AGENT, "accept": "application/json"}
        if body:
            headers["content-type"] = "application/json"
        if self.api_key is not None:
            # Signed afresh on every attempt: a nonce is spent once.
            headers.update(signed_headers(self.api_key, method, path, query, body, idempotency_key))
        elif idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        target = path + ("?" + query if query else "")
        conn = self._connection()
        try:
            conn.request(method, target, body=body if body else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        except (OSError, http.client.HTTPException) as e:
            raise TransportError(f"{method} {path}: {e}") from e
        finally:
            conn.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotency_key: str | None = None,
    ) -> Response:
        """One logical call: signed, retried as `self.retry` says, and a
        2xx `Response` or a typed `ApiError`. `path` starts with `/v1/`;
        `body` is JSON-serialised (or sent as given when `bytes`)."""
        method = method.upper()
        full_path = self._prefix + path
        pairs = [(k, str(v)) for k, v in (query or {}).items() if v is not None]
        query_text = urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)
        if body is None:
            data = b""
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        may_resend = method == "GET" or idempotency_key is not None
        policy = self.retry
        for attempt in range(1, policy.max_attempts + 1):
            last = attempt == policy.max_attempts
            try:
                resp = self._send_once(method, full_path, query_text, data, idempotency_key)
            except TransportError:
                if last or not may_resend:
                    raise
                policy.sleep(min(policy.backoff_s * 2 ** (attempt - 1), policy.max_wait_s))
                continue
            if resp.status < 400:
                return resp
            error = self._error(resp)
            if resp.status not in (429, 503) or error.code in _PERMANENT or last:
                raise error
            wait = error.retry_after_s
            if wait is None:
                wait = policy.backoff_s * 2 ** (attempt - 1)
            if wait > policy.max_wait_s:
                raise error
            policy.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def _error(resp: Response) -> ApiError:
        code, message = "http_error", resp.body.decode("utf-8", "replace")[:500]
        try:
            j = json.loads(resp.body)
            if isinstance(j, dict):
                code = str(j.get("code", code))
                message = str(j.get("message", message))
        except ValueError:
            pass
        return api_error(
            resp.status,
            code,
            message,
            retry_after_s=_retry_after(resp.headers.get("retry-after")),
            headers=resp.headers,
        )

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()

    # -- server ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._json("GET", "/v1/status")

    def me(self) -> dict[str, Any]:
        return self._json("GET", "/v1/me")

    # -- wallets -----------------------------------------------------------

    def list_wallets(self, *, after: str | None = None, limit: int = 100) -> Page[Wallet]:
        """One page of the wallets the caller may read, in creation order."""
        items = [
            Wallet.from_json(w)
            for w in self._json("GET", "/v1/wallets", query={"after": after, "limit": limit})
        ]
        return Page(items, items[-1].id if len(items) == limit else None)

    def iter_wallets(self, *, page_size: int = 100) -> Iterator[Wallet]:
        cursor: str | None = None
        while True:
            page = self.list_wallets(after=cursor, limit=page_size)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get_wallet(self, wallet_id: str) -> WalletDetail:
        return WalletDetail.from_json(self._json("GET", f"/v1/wallets/{_segment(wallet_id)}"))

    def create_wallet(self, name: str) -> Wallet:
        """A new wallet (admin)."""
        return Wallet.from_json(self._json("POST", "/v1/wallets", body={"name": name}))

    def open_account(self, wallet_id: str, network: str, backend: str | None = None) -> dict[str, Any]:
        """A new account (and transfer-signing key) for a wallet on a network (admin)."""
        body: dict[str, Any] = {"network": network}
        if backend is not None:
            body["backend"] = backend
        return self._json("POST", f"/v1/wallets/{_segment(wallet_id)}/accounts", body=body)

    def balances(self, wallet_id: str) -> list[Balance]:
        return [
            Balance.from_json(b)
            for b in self._json("GET", f"/v1/wallets/{_segment(wallet_id)}/balances")
        ]

    def deposit_address(
        self, wallet_id: str, network: str, label: str | None = None
    ) -> DepositAddress:
        """The wallet's deposit address on a network (an initiator of the wallet);
        on an Ethereum HD account, the one issued for ``label`` (a user of yours)."""
        body: dict[str, Any] = {"network": network}
        if label is not None:
            body["label"] = label
        return DepositAddress.from_json(
            self._json("POST", f"/v1/wallets/{_segment(wallet_id)}/addresses", body=body)
        )

    def sweep_deposits(self, wallet_id: str, network: str) -> dict[str, Any]:
        """Sweeps an Ethereum HD account's deposit addresses into its sender:
        ``{"transfers": [...], "left": [...]}``."""
        return self._json(
            "POST", f"/v1/wallets/{_segment(wallet_id)}/sweep", body={"network": network}
        )

    # -- transfers ---------------------------------------------------------

    @staticmethod
    def _transfer_body(
        wallet: str,
        asset: str,
        amount: str | int | Decimal,
        destination: str,
        extra: Mapping[str, Any],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "wallet": wallet,
            "asset": asset,
            "amount": _amount_text(amount),
            "destination": destination,
        }
        body.update({k: v for k, v in extra.items() if v is not None})
        return body

    def create_transfer(
        self,
        wallet: str,
        asset: str,
        amount: str | int | Decimal,
        destination: str,
        *,
        reference: str | None = None,
        external_id: str | None = None,
        priority: str | None = None,
        depends_on: str | None = None,
        idempotency_key: str | None = None,
    ) -> Transfer:
        """Requests a transfer. One `Idempotency-Key` (generated unless
        given) covers every retry of this call, so a retry never creates a
        second transfer; a replay answers the first (`replayed` True)."""
        key = idempotency_key or f"py-{uuid.uuid4()}"
        body = self._transfer_body(
            wallet,
            asset,
            amount,
            destination,
            {
                "reference": reference,
                "external_id": external_id,
                "priority": priority,
                "depends_on": depends_on,
            },
        )
        resp = self.request("POST", "/v1/transfers", body=body, idempotency_key=key)
        replayed = resp.status == 200 or resp.headers.get("idempotency-replayed") == "true"
        return Transfer.from_json(resp.json(), replayed=replayed)

    def dry_run(
        self,
        wallet: str,
        asset: str,
        amount: str | int | Decimal,
        destination: str,
        *,
        reference: str | None = None,
    ) -> Decision:
        """Would this transfer be allowed, and why? Creates nothing."""
        body = self._transfer_body(wallet, asset, amount, destination, {"reference": reference})
        return Decision.from_json(self._json("POST", "/v1/policy/dry-run", body=body))

    def get_transfer(self, transfer_id: str) -> Transfer:
        return Transfer.from_json(self._json("GET", f"/v1/transfers/{_segment(transfer_id)}"))

    def list_transfers(
        self,
        *,
        wallet: str | None = None,
        state: str | None = None,
        before: str | None = None,
        limit: int = 100,
    ) -> Page[Transfer]:
        """One page, newest first; `next_cursor` is the `before` of the next."""
        rows = self._json(
            "GET",
            "/v1/transfers",
            query={"wallet": wallet, "state": state, "before": before, "limit": limit},
        )
        items = [Transfer.from_json(t) for t in rows]
        return Page(items, items[-1].id if len(items) == limit else None)

    def iter_transfers(
        self, *, wallet: str | None = None, state: str | None = None, page_size: int = 100
    ) -> Iterator[Transfer]:
        cursor: str | None = None
        while True:
            page = self.list_transfers(wallet=wallet, state=state, before=cursor, limit=page_size)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel_transfer(self, transfer_id: str) -> Transfer:
        """Cancels a transfer not yet handed to the chain."""
        return Transfer.from_json(
            self._json("POST", f"/v1/transfers/{_segment(transfer_id)}/cancel")
        )

    def wait_for_transfer(
        self,
        transfer_id: str,
        states: Sequence[str],
        *,
        timeout_s: float = 60.0,
        poll_s: float = 0.5,
    ) -> Transfer:
        """Polls until the transfer is in one of `states` (or has finished);
        raises TimeoutError with its last state otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            t = self.get_transfer(transfer_id)
            if t.state in states or t.finished:
                return t
            if time.monotonic() > deadline:
                raise TimeoutError(f"transfer {transfer_id} still {t.state} after {timeout_s} s")
            time.sleep(poll_s)

    # -- approvals ---------------------------------------------------------

    def pending_approvals(self, *, wallet: str | None = None) -> list[Transfer]:
        """Transfers waiting for approvals, newest first."""
        return list(self.iter_transfers(wallet=wallet, state="pending_approval"))

    def approval_request(self, transfer_id: str) -> "ApprovalRequest":
        """The transfer and what its intent bytes say, checked against each
        other (`IntentMismatch` otherwise): the intent's SHA-256 is the
        digest, its transfer id is this one, and the asset, amount,
        destination, wallet and initiator the server reports are the ones
        the bytes commit to."""
        t = self.get_transfer(transfer_id)
        try:
            data = bytes.fromhex(t.intent_hex)
        except ValueError:
            raise IntentMismatch("the intent is not hex") from None
        intent = decode_intent(data)
        if intent.digest.hex() != t.digest:
            raise IntentMismatch("the intent's digest is not the one the server names")
        if str(intent.transfer_id) != str(uuid.UUID(transfer_id)) or t.id != str(intent.transfer_id):
            raise IntentMismatch("the server answered with another transfer's intent")
        _check_reported(t, intent)
        return ApprovalRequest(t, intent, t.policy_version, uuid.UUID(t.decision_id))

    def approve(
        self,
        transfer_id: str,
        approver_key: ApproverKey,
        *,
        expect: Callable[[TransferIntent], bool] | None = None,
        reject: bool = False,
        reason: str | None = None,
        ttl_s: int = 3600,
        now_ms: int | None = None,
    ) -> Transfer:
        """Signs and sends an approval (or rejection, with an optional
        `reason` kept in the transfer's history) as `strongroom approve`
        does: fetch the transfer, check its intent (`approval_request`) and
        `expect` (a check of the decoded intent: amount, destination…),
        sign the `SRAP` v1 statement over (digest, policy version, decision
        id, expiry, vote) with the approver's own key, send it."""
        request = self.approval_request(transfer_id)
        if expect is not None and not expect(request.intent):
            raise IntentMismatch("the transfer is not what the caller expected: not signed")
        return self.send_vote(
            request, approver_key, reject=reject, reason=reason, ttl_s=ttl_s, now_ms=now_ms
        )

    def send_vote(
        self,
        request: "ApprovalRequest",
        approver_key: ApproverKey,
        *,
        reject: bool = False,
        reason: str | None = None,
        ttl_s: int = 3600,
        now_ms: int | None = None,
    ) -> Transfer:
        """Signs the statement of an already checked `ApprovalRequest` and sends it."""
        if not 1 <= ttl_s <= 24 * 3600:
            raise ValueError("ttl_s is between 1 s and 24 h")
        if reason is not None and not reject:
            raise ValueError("a reason goes with a rejection")
        vote = Vote.REJECT if reject else Vote.APPROVE
        now = int(time.time() * 1000) if now_ms is None else now_ms
        expires_at_ms = now + ttl_s * 1000
        statement = approval_statement(
            request.intent.digest,
            request.policy_version,
            request.decision_id,
            expires_at_ms,
            vote,
        )
        body = {
            "vote": vote.wire_name,
            "expires_at_ms": expires_at_ms,
            "signature": approver_key.sign(statement).hex(),
        }
        if reason is not None:
            body["reason"] = reason
        return Transfer.from_json(
            self._json(
                "POST", f"/v1/transfers/{_segment(request.transfer.id)}/approvals", body=body
            )
        )

    # -- webhooks ----------------------------------------------------------

    def create_webhook(self, url: str, events: Sequence[str]) -> Webhook:
        """Subscribes `url`; the answer's `secret` is shown this once."""
        return Webhook.from_json(
            self._json("POST", "/v1/webhooks", body={"url": url, "events": list(events)})
        )

    def list_webhooks(self) -> list[Webhook]:
        return [Webhook.from_json(w) for w in self._json("GET", "/v1/webhooks")]

    def deactivate_webhook(self, webhook_id: str) -> None:
        self.request("POST", f"/v1/webhooks/{_segment(webhook_id)}/deactivate")

    def webhook_deliveries(self, webhook_id: str) -> list[WebhookDelivery]:
        return [
            WebhookDelivery.from_json(d)
            for d in self._json("GET", f"/v1/webhooks/{_segment(webhook_id)}/deliveries")
        ]

    # -- audit -------------------------------------------------------------

    def audit_page(self, *, after: int = 0, limit: int = 1000) -> list[audit_log.AuditRecord]:
        """Records after `after`, in sequence order (auditor, security officer, admin)."""
        rows = self._json("GET", "/v1/audit", query={"after": after, "limit": limit})
        return [audit_log.AuditRecord.from_json(r) for r in rows]

    def iter_audit(self, *, after: int = 0, page_size: int = 1000) -> Iterator[audit_log.AuditRecord]:
        cursor = after
        while True:
            page = self.audit_page(after=cursor, limit=page_size)
            yield from page
            if len(page) < page_size:
                return
            cursor = page[-1].seq


@dataclass(frozen=True)
class ApprovalRequest:
    """A transfer awaiting a vote, with its intent decoded from the bytes
    its digest is taken over: what an approver is shown and signs."""

    transfer: Transfer
    intent: TransferIntent
    policy_version: int
    decision_id: uuid.UUID


def _same_address(reported: str, committed: str) -> bool:
    # EVM addresses: the same 20 bytes, whatever the checksum casing.
    if committed.startswith("0x") and reported.startswith("0x"):
        return reported.lower() == committed.lower()
    return reported == committed


def _check_reported(t: Transfer, intent: TransferIntent) -> None:
    """What the server reports must be what the intent commits to."""
    mismatches = []
    if t.asset != intent.asset_id:
        mismatches.append("asset")
    # The amount is reported in base units, or in the asset's units.
    if t.amount not in (str(intent.units), intent.amount):
        mismatches.append("amount")
    if not _same_address(t.destination, intent.destination):
        mismatches.append("destination")
    if t.wallet != str(intent.wallet_id):
        mismatches.append("wallet")
    if t.initiator != intent.initiator:
        mismatches.append("initiator")
    if mismatches:
        raise IntentMismatch(
            "the server reports another " + ", ".join(mismatches) + " than the intent commits to"
        )

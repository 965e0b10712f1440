"""What the API answers, as dataclasses. Each keeps the JSON it was read from
(`raw`), so fields a newer server adds are not lost. Amounts stay strings:
they exceed 2^53 and are never floats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Mapping, Sequence, TypeVar

Json = Mapping[str, Any]
T = TypeVar("T")


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, and the cursor of the next (None on the last page)."""

    items: Sequence[T]
    next_cursor: str | None


@dataclass(frozen=True)
class Wallet:
    id: str
    name: str
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, j: Json) -> "Wallet":
        return cls(id=j["id"], name=j["name"], raw=j)


@dataclass(frozen=True)
class Account:
    network: str
    address: str
    key: str
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, j: Json) -> "Account":
        return cls(network=j["network"], address=j["address"], key=j["key"], raw=j)


@dataclass(frozen=True)
class WalletDetail:
    id: str
    name: str
    accounts: Sequence[Account]
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, j: Json) -> "WalletDetail":
        return cls(
            id=j["id"],
            name=j["name"],
            accounts=[Account.from_json(a) for a in j.get("accounts", [])],
            raw=j,
        )


@dataclass(frozen=True)
class Balance:
    """A wallet's balance of one asset, in base units (digit strings); each
    has its `*_decimal` twin in the asset's units (docs/FORMATS.md,
    "Amounts"). `on_chain`, `credited` and `available` are None when no
    node answered; `account` is the EVM address (None for Bitcoin)."""

    asset: str
    symbol: str
    decimals: int
    account: str | None
    on_chain: str | None
    credited: str | None
    incoming: str
    reserved: str
    awaiting: str
    available: str | None
    available_decimal: str | None
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, j: Json) -> "Balance":
        return cls(
            asset=j["asset"],
            symbol=j["symbol"],
            decimals=int(j["decimals"]),
            account=_opt_str(j.get("account")),
            on_chain=_opt_str(j.get("on_chain")),
            credited=_opt_str(j.get("credited")),
            incoming=str(j.get("incoming", "0")),
            reserved=str(j.get("reserved", "0")),
            awaiting=str(j.get("awaiting", "0")),
            available=_opt_str(j.get("available")),
            available_decimal=_opt_str(j.get("available_decimal")),
            raw=j,
        )


@dataclass(frozen=True)
class DepositAddress:
    """Where to deposit into a wallet on a network; HD accounts add their derivation."""

    network: str
    address: str
    key: str | None
    derivation_path: str | None
    index: int | None
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, j: Json) -> "DepositAddress":
        index = j.get("index")
        return cls(
            network=j["network"],
            address=j["address"],
            key=_opt_str(j.get("key")),
            derivation_path=_opt_str(j.get("derivation_path")),
            index=None if index is None else int(index),
            raw=j,
        )


@dataclass(frozen=True)
class Approval:
    approver: str
    vote: str
    expires_at_ms: int
    at_ms: int
    voided: bool

    @classmethod
    def from_json(cls, j: Json) -> "Approval":
        return cls(
            approver=j["approver"],
            vote=j["vote"],
            expires_at_ms=int(j["expires_at_ms"]),
            at_ms=int(j["at_ms"]),
            voided=bool(j.get("voided", False)),
        )


@dataclass(frozen=True)
class HistoryEntry:
    state: str
    actor: str
    why: str
    at_ms: int

    @classmethod
    def from_json(cls, j: Json) -> "HistoryEntry":
        return cls(state=j["state"], actor=j["actor"], why=j["why"], at_ms=int(j["at_ms"]))


TERMINAL_STATES = frozenset(
    {"completed", "failed", "blocked", "rejected", "expired", "cancelled"}
)


@dataclass(frozen=True)
class Transfer:
    """A transfer as the server reports it. `intent_hex` is the `SRTI` bytes
    whose SHA-256 is `digest`; `replayed` is True when a request with the
    same `Idempotency-Key` had already created it."""

    id: str
    wallet: str
    initiator: str
    asset: str
    amount: str
    amount_decimal: str | None
    destination: str
    state: str
    digest: str
    intent_hex: str
    policy_version: int
    decision_id: str
    decision: Json
    approvals: Sequence[Approval]
    history: Sequence[HistoryEntry] | None
    external_id: str | None
    priority: str | None
    created_at_ms: int
    expires_at_ms: int | None
    finished_at_ms: int | None
    last_error: str | None
    replayed: bool
    raw: Json = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def verdict(self) -> str | None:
        """`allow`, `block` or `require_approval`."""
        outcome = (self.decision or {}).get("outcome") or {}
        return outcome.get("verdict")

    @classmethod
    def from_json(cls, j: Json, *, replayed: bool = False) -> "Transfer":
        history = j.get("history")

        def opt_int(k: str) -> int | None:
            v = j.get(k)
            return None if v is None else int(v)

        return cls(
            id=j["id"],
            wallet=j["wallet"],
            initiator=j["initiator"],
            asset=j["asset"],
            amount=str(j["amount"]),
            amount_decimal=_opt_str(j.get("amount_decimal")),
            destination=j["destination"],
            state=j["state"],
            digest=j["digest"],
            intent_hex=j["intent"],
            policy_version=int(j["policy_version"]),
            decision_id=j["decision_id"],
            decision=j.get("decision") or {},
            approvals=[Approval.from_json(a) for a in j.get("approvals", [])],
            history=None if history is None else [HistoryEntry.from_json(h) for h in history],
            external_id=_opt_str(j.get("external_id")),
            priority=_opt_str(j.get("priority")),
            created_at_ms=int(j["created_at_ms"]),
            expires_at_ms=opt_int("expires_at_ms"),
            finished_at_ms=opt_int("finished_at_ms"),
            last_error=_opt_str(j.get("last_error")),
            replayed=replayed,
            raw=j,
        )


@dataclass(frozen=True)
class Decision:
    """A dry run's answer: the decision, its explanation, the policy version."""

    policy_version: int | None
    decision: Json
    explanation: str

    @property
    def verdict(self) -> str | None:
        outcome = (self.decision or {}).get("outcome") or {}
        return outcome.get("verdict")

    @property
    def rule(self) -> str | None:
        return (self.decision or {}).get("rule")

    @classmethod
    def from_json(cls, j: Json) -> "Decision":
        version = j.get("policy_version")
        return cls(
            policy_version=None if version is None else int(version),
            decision=j.get("decision") or {},
            explanation=j.get("explanation", ""),
        )


@dataclass(frozen=True)
class Webhook:
    """A subscription. `secret` (`whsec_…`) is present only in the answer
    that created it, and never shown by `repr`."""

    id: str
    url: str
    events: Sequence[str]
    active: bool
    secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, j: Json) -> "Webhook":
        return cls(
            id=j["id"],
            url=j["url"],
            events=list(j.get("events", [])),
            active=bool(j.get("active", True)),
            secret=_opt_str(j.get("secret")),
        )


@dataclass(frozen=True)
class WebhookDelivery:
    id: str
    event_id: str
    event_type: str
    state: str
    attempts: int
    last_error: str | None

    @classmethod
    def from_json(cls, j: Json) -> "WebhookDelivery":
        return cls(
            id=j["id"],
            event_id=j["event_id"],
            event_type=j["event_type"],
            state=j["state"],
            attempts=int(j.get("attempts", 0)),
            last_error=_opt_str(j.get("last_error")),
        )

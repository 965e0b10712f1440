"""Transfer intents (`SRTI` v1) decoded from their canonical bytes, and the
approval statement (`SRAP` v1) an approver signs (docs/FORMATS.md)."""

from __future__ import annotations

import enum
import hashlib
import struct
import uuid
from dataclasses import dataclass

from .errors import FormatError

INTENT_MAGIC = b"SRTI"
INTENT_VERSION = 1
STATEMENT_MAGIC = b"SRAP"
STATEMENT_VERSION = 1

_KINDS = {
    1: "withdrawal",
    2: "internal_move",
    3: "sweep",
    4: "consolidation",
    5: "gas_top_up",
}


class Vote(enum.Enum):
    APPROVE = 1
    REJECT = 2

    @property
    def wire_name(self) -> str:
        return "approve" if self is Vote.APPROVE else "reject"


class _Reader:
    """Reads canonical fields, refusing truncation and left-over bytes."""

    def __init__(self, data: bytes, magic: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what
        if self.take(len(magic)) != magic:
            raise FormatError(f"wrong magic: not a {what}")
        self.version = self.u16()

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise FormatError(f"{self._what}: truncated at byte {len(self._data)}")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def u128(self) -> int:
        return int.from_bytes(self.take(16), "big")

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self.take(16))

    def text(self, field: str) -> str:
        (length,) = struct.unpack(">I", self.take(4))
        try:
            return self.take(length).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{self._what}: {field} is not UTF-8") from None

    def finish(self) -> None:
        left = len(self._data) - self._pos
        if left:
            raise FormatError(f"{self._what}: {left} bytes left over")


def format_units(units: int, decimals: int) -> str:
    """Base units as a decimal amount in the asset's units, shortest form."""
    if decimals == 0:
        return str(units)
    whole, fraction = divmod(units, 10**decimals)
    digits = str(fraction).rjust(decimals, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


@dataclass(frozen=True)
class TransferIntent:
    """What an initiator asked for, exactly as its digest commits to it."""

    transfer_id: uuid.UUID
    kind: str
    account_id: uuid.UUID
    wallet_id: uuid.UUID
    asset_id: str
    symbol: str
    decimals: int
    units: int
    destination: str
    reference: str | None
    initiator: str
    created_at_ms: int
    digest: bytes

    @property
    def amount(self) -> str:
        """The amount in the asset's units (`1.5`), as an approver is shown it."""
        return format_units(self.units, self.decimals)

    def describe(self) -> str:
        lines = [
            f"transfer    {self.transfer_id}",
            f"wallet      {self.wallet_id}",
            f"initiator   {self.initiator}",
            f"asset       {self.asset_id}",
            f"amount      {self.amount} {self.symbol}",
            f"destination {self.destination}",
        ]
        if self.reference is not None:
            lines.append(f"reference   {self.reference}")
        lines.append(f"digest      {self.digest.hex()}")
        return "\n".join(lines)


def decode_intent(data: bytes) -> TransferIntent:
    """Decodes `SRTI` v1 bytes, strictly (docs/FORMATS.md)."""
    r = _Reader(data, INTENT_MAGIC, "transfer intent")
    if r.version != INTENT_VERSION:
        raise FormatError(f"transfer intent: unsupported version {r.version}")
    transfer_id = r.uuid()
    kind_code = r.u8()
    kind = _KINDS.get(kind_code)
    if kind is None:
        raise FormatError(f"transfer intent: unknown kind {kind_code}")
    account_id = r.uuid()
    wallet_id = r.uuid()
    asset_id = r.text("asset")
    symbol = r.text("symbol")
    decimals = r.u8()
    if decimals > 36:
        raise FormatError("transfer intent: more than 36 decimals")
    units = r.u128()
    if units == 0:
        raise FormatError("transfer intent: a zero amount")
    destination = r.text("destination")
    if not (1 <= len(destination) <= 128 and destination.isascii() and destination.isalnum()):
        raise FormatError("transfer intent: a malformed destination")
    present = r.u8()
    if present not in (0, 1):
        raise FormatError("transfer intent: bad reference presence flag")
    reference = r.text("reference") if present == 1 else None
    initiator = r.text("initiator")
    created_at_ms = r.i64()
    r.finish()
    return TransferIntent(
        transfer_id=transfer_id,
        kind=kind,
        account_id=account_id,
        wallet_id=wallet_id,
        asset_id=asset_id,
        symbol=symbol,
        decimals=decimals,
        units=units,
        destination=destination,
        reference=reference,
        initiator=initiator,
        created_at_ms=created_at_ms,
        digest=hashlib.sha256(data).digest(),
    )


def approval_statement(
    intent_digest: bytes,
    policy_version: int,
    decision_id: uuid.UUID,
    expires_at_ms: int,
    vote: Vote,
) -> bytes:
    """The 71 bytes of an `SRAP` v1 approval statement."""
    if len(intent_digest) != 32:
        raise ValueError("an intent digest is 32 bytes")
    return (
        STATEMENT_MAGIC
        + struct.pack(">H", STATEMENT_VERSION)
        + intent_digest
        + struct.pack(">Q", policy_version)
        + decision_id.bytes
        + struct.pack(">qB", expires_at_ms, vote.value)
    )

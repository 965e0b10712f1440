"""An independent verifier of Strongroom's audit log, written from
docs/FORMATS.md alone: `SRAR` records hash-chained from 32 zero bytes,
`SRCP` checkpoints signed with the audit key (Ed25519), the checkpoint
file's JSON lines. It names the first thing wrong, as `strongroom audit
verify` does.

    records = read_records("audit.jsonl")         # or Client.iter_audit()
    checkpoints = read_checkpoints("audit.checkpoints")
    report = verify(records, checkpoints, trusted_key_hex)   # raises AuditBreak
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import FormatError, StrongroomError

RECORD_MAGIC = b"SRAR"
RECORD_VERSION = 1
CHECKPOINT_MAGIC = b"SRCP"
CHECKPOINT_VERSION = 1
GENESIS_HASH = bytes(32)
EPOCH_ACTION = "restore.epoch"

_LOWER_HEX_64 = re.compile(r"[0-9a-f]{64}\Z")
_HEX_128 = re.compile(r"[0-9a-fA-F]{128}\Z")
_CHECKPOINT_MEMBERS = ("v", "seq", "head", "time_ms", "key", "sig")


def _str(value: str) -> bytes:
    data = value.encode("utf-8")
    return struct.pack(">I", len(data)) + data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class AuditRecord:
    """One record as the API (`GET /v1/audit`) or an export line gives it.
    `version` and `prev_hash` are given by servers since they were added to
    the API; absent (an older server), the version is 1 and the previous
    hash is the previous record's `hash`."""

    seq: int
    time_ms: int
    actor: str
    action: str
    subject: str
    details: str
    hash: str
    version: int = RECORD_VERSION
    prev_hash: str | None = None

    @classmethod
    def from_json(cls, j: Mapping[str, Any]) -> "AuditRecord":
        try:
            seq, time_ms = j["seq"], j["time_ms"]
            texts = [j[k] for k in ("actor", "action", "subject", "details", "hash")]
        except KeyError as missing:
            raise FormatError(f"audit record without {missing.args[0]}") from None
        version = j.get("version", RECORD_VERSION)
        prev_hash = j.get("prev_hash")
        if not (_is_int(seq) and _is_int(time_ms) and _is_int(version)):
            raise FormatError("audit record: seq, time_ms and version are integers")
        if not all(isinstance(t, str) for t in texts) or not (
            prev_hash is None or isinstance(prev_hash, str)
        ):
            raise FormatError("audit record: text fields are strings")
        actor, action, subject, details, hash_hex = texts
        return cls(seq, time_ms, actor, action, subject, details, hash_hex, version, prev_hash)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "time_ms": self.time_ms,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": self.details,
            "hash": self.hash,
        }
        if self.version != RECORD_VERSION:
            out["version"] = self.version
        if self.prev_hash is not None:
            out["prev_hash"] = self.prev_hash
        return out

    def canonical_bytes(self, prev_hash: bytes) -> bytes:
        """The `SRAR` bytes, with `prev_hash` as the link to the record before."""
        return (
            RECORD_MAGIC
            + struct.pack(">HQq", self.version, self.seq, self.time_ms)
            + _str(self.actor)
            + _str(self.action)
            + _str(self.subject)
            + _str(self.details)
            + prev_hash
        )

    def computed_hash(self, prev_hash: bytes) -> bytes:
        return hashlib.sha256(self.canonical_bytes(prev_hash)).digest()


@dataclass(frozen=True)
class Checkpoint:
    """One line of a checkpoint file. `line` numbers the checkpoints from 1
    across the main file and then its `.superseded` sibling (blank lines
    are not counted), as `strongroom audit verify` names them; `superseded`
    says which file it came from."""

    line: int
    v: int
    seq: int
    head: str
    time_ms: int
    key: str
    sig: str
    superseded: bool = False

    def message(self, head: bytes) -> bytes:
        """The `SRCP` bytes its signature covers."""
        return (
            CHECKPOINT_MAGIC
            + struct.pack(">HQ", CHECKPOINT_VERSION, self.seq)
            + head
            + struct.pack(">q", self.time_ms)
        )


class CheckpointFileError(StrongroomError):
    """A checkpoint line that is not a checkpoint: the file was damaged or edited."""


def parse_checkpoint_line(text: str, line: int, superseded: bool = False) -> Checkpoint:
    try:
        j = json.loads(text)
    except ValueError as e:
        raise CheckpointFileError(f"not JSON ({e})") from None
    if not isinstance(j, dict) or set(j) != set(_CHECKPOINT_MEMBERS):
        raise CheckpointFileError(
            f"expected exactly the members {', '.join(_CHECKPOINT_MEMBERS)}"
        )
    ints_ok = all(_is_int(j[k]) for k in ("v", "seq", "time_ms"))
    strs_ok = all(isinstance(j[k], str) for k in ("head", "key", "sig"))
    if not (ints_ok and strs_ok) or j["seq"] < 0 or j["v"] < 0:
        raise CheckpointFileError("a member has the wrong type")
    return Checkpoint(line, j["v"], j["seq"], j["head"], j["time_ms"], j["key"], j["sig"], superseded)


def parse_checkpoints(
    text: str, *, first_number: int = 1, superseded: bool = False
) -> list[Checkpoint]:
    """Checkpoints from a file's text, numbered from `first_number`. A last
    line without its line feed is a write torn by a crash: it never counted
    and is skipped. Blank lines are skipped."""
    complete = text[: text.rfind("\n") + 1]
    out: list[Checkpoint] = []
    for file_line, line_text in enumerate(complete.split("\n")[:-1], start=1):
        if not line_text.strip():
            continue
        try:
            cp = parse_checkpoint_line(line_text, first_number + len(out), superseded)
        except CheckpointFileError as e:
            raise CheckpointFileError(f"line {file_line}: {e}") from None
        out.append(cp)
    return out


def read_checkpoints(path: str | os.PathLike[str]) -> list[Checkpoint]:
    """The checkpoint file and, if it exists, its `.superseded` sibling
    (numbered after it). A missing main file gives no checkpoints."""
    name = os.fspath(path)
    out: list[Checkpoint] = []
    for file_name, superseded in ((name, False), (name + ".superseded", True)):
        text = _read_text(file_name)
        if not text:
            continue
        try:
            out += parse_checkpoints(text, first_number=len(out) + 1, superseded=superseded)
        except CheckpointFileError as e:
            raise CheckpointFileError(f"{file_name}, {e}") from None
    return out


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_records(path: str | os.PathLike[str]) -> Iterable[AuditRecord]:
    """Records from a JSON Lines export, one object a line, in file order."""
    with open(os.fspath(path), encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                yield AuditRecord.from_json(json.loads(text))
            except ValueError as e:
                raise FormatError(f"{os.fspath(path)} line {number}: {e}") from None


class AuditBreak(StrongroomError):
    """The first thing wrong with a log. `kind` is one of `missing`,
    `edited`, `relinked`, `version`, `checkpoint_mismatch`, `truncated`,
    `bad_checkpoint`, `conflicting_checkpoints`, `no_checkpoints`;
    `first_broken_record` is the first record that cannot be trusted (None
    when the checkpoints themselves are wrong)."""

    def __init__(self, kind: str, message: str, first_broken_record: int | None) -> None:
        super().__init__(message)
        self.kind = kind
        self.first_broken_record = first_broken_record


@dataclass(frozen=True)
class Report:
    records: int
    head_seq: int
    head_hash: str
    checkpoints: int
    last_checkpoint: int | None
    superseded: int


def _parse_hash(text: str) -> bytes | None:
    return bytes.fromhex(text) if _LOWER_HEX_64.match(text) else None


class Verifier:
    """Checks records one at a time, in `seq` order, against checkpoints
    already checked against the trusted audit key."""

    def __init__(self, checkpoints: Sequence[Checkpoint], trusted_key_hex: str) -> None:
        trusted = trusted_key_hex.strip().lower()
        if not _LOWER_HEX_64.match(trusted):
            raise ValueError("the trusted audit key is 64 hex digits")
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(trusted))
        # seq -> [(line, head hash, from the superseded file)]
        self._at: dict[int, list[tuple[int, bytes, bool]]] = {}
        for cp in checkpoints:
            head = self._check(cp, trusted, public)
            seen = self._at.setdefault(cp.seq, [])
            same = [i for i, (_, h, _) in enumerate(seen) if h == head]
            if same:
                # A checkpoint of this log too: never excused.
                line, h, lost = seen[same[0]]
                seen[same[0]] = (line, h, lost and cp.superseded)
            else:
                seen.append((cp.line, head, cp.superseded))
        self._count = len(checkpoints)
        self._excused: set[tuple[int, bytes]] = set()
        self._prev_seq = 0
        self._prev_hash = GENESIS_HASH

    @staticmethod
    def _check(cp: Checkpoint, trusted: str, public: Ed25519PublicKey) -> bytes:
        def bad(reason: str) -> AuditBreak:
            return AuditBreak(
                "bad_checkpoint", f"checkpoint {cp.line} is not valid: {reason}", None
            )

        if cp.v != CHECKPOINT_VERSION:
            raise bad(f"unsupported checkpoint version {cp.v}")
        if cp.key != trusted:
            raise bad(f"signed by key {cp.key}, which is not the trusted audit key")
        head = _parse_hash(cp.head)
        if head is None or not _HEX_128.match(cp.sig):
            raise bad("malformed head hash or signature")
        try:
            public.verify(bytes.fromhex(cp.sig), cp.message(head))
        except InvalidSignature:
            raise bad("signature does not verify") from None
        return head

    @property
    def head_seq(self) -> int:
        return self._prev_seq

    def push(self, r: AuditRecord) -> None:
        expected = self._prev_seq + 1
        if r.seq != expected:
            raise AuditBreak(
                "missing",
                f"record {expected} is missing (the next record given is {r.seq}): deleted or reordered",
                expected,
            )
        if r.version != RECORD_VERSION:
            raise AuditBreak(
                "version", f"record {r.seq} has unsupported version {r.version}", r.seq
            )
        stored = _parse_hash(r.hash)
        linked = self._prev_hash if r.prev_hash is None else _parse_hash(r.prev_hash)
        if stored is None or linked is None or r.computed_hash(linked) != stored:
            raise AuditBreak(
                "edited", f"record {r.seq} does not match its hash: edited or moved", r.seq
            )
        if linked != self._prev_hash:
            raise AuditBreak(
                "relinked",
                f"record {r.seq} does not link to record {self._prev_seq}: "
                "records deleted, inserted or reordered",
                r.seq,
            )
        if r.action == EPOCH_ACTION:
            self._note_epoch(r)
        for line, head, lost in self._at.get(r.seq, []):
            if head == stored or (lost and (r.seq, head) in self._excused):
                continue
            if any(h == stored for _, h, _ in self._at[r.seq]):
                raise AuditBreak(
                    "conflicting_checkpoints",
                    f"checkpoint {line} disagrees with an earlier checkpoint for record {r.seq}",
                    None,
                )
            raise AuditBreak(
                "checkpoint_mismatch",
                f"record {r.seq} differs from the signed checkpoint of that record: history rewritten",
                r.seq,
            )
        self._prev_seq, self._prev_hash = r.seq, stored

    def _note_epoch(self, r: AuditRecord) -> None:
        """A restore: the checkpoints of the lost copy that it names, from
        this record on, may disagree with the log."""
        try:
            named = json.loads(r.details).get("superseded_checkpoints", [])
            for s in named:
                h = _parse_hash(s["hash"])
                if h is None or not _is_int(s["seq"]):
                    raise ValueError("malformed")
                if s["seq"] >= r.seq:
                    self._excused.add((s["seq"], h))
        except (ValueError, AttributeError, KeyError, TypeError):
            raise AuditBreak(
                "edited", f"record {r.seq} does not match its hash: edited or moved", r.seq
            ) from None

    def finish(self) -> Report:
        last = self._prev_seq
        beyond = sorted(
            (
                (seq, head)
                for seq, at in self._at.items()
                if seq > last
                for _, head, lost in at
                if not (lost and (seq, head) in self._excused)
            ),
            reverse=True,
        )
        if beyond:
            checkpoint = beyond[0][0]
            raise AuditBreak(
                "truncated",
                f"the log ends at record {last} but a signed checkpoint covers record "
                f"{checkpoint}: records after {last} were deleted",
                last + 1,
            )
        superseded = sum(
            1
            for seq, at in self._at.items()
            for _, head, lost in at
            if lost and (seq, head) in self._excused
        )
        covered = [seq for seq in self._at if seq <= last]
        return Report(
            records=last,
            head_seq=last,
            head_hash=self._prev_hash.hex(),
            checkpoints=self._count,
            last_checkpoint=max(covered) if covered else None,
            superseded=superseded,
        )


def verify(
    records: Iterable[AuditRecord],
    checkpoints: Sequence[Checkpoint],
    trusted_key_hex: str,
) -> Report:
    """Verifies a whole log (records from 1, in order) against its
    checkpoints. Raises `AuditBreak` naming the first thing wrong."""
    v = Verifier(checkpoints, trusted_key_hex)
    for r in records:
        v.push(r)
    report = v.finish()
    if report.records > 0 and not any(not cp.superseded for cp in checkpoints):
        raise AuditBreak(
            "no_checkpoints",
            "the checkpoint file is missing or empty but the log has records: "
            "it may have been deleted or emptied",
            None,
        )
    return report


__all__ = [
    "AuditBreak",
    "AuditRecord",
    "Checkpoint",
    "CheckpointFileError",
    "GENESIS_HASH",
    "Report",
    "Verifier",
    "parse_checkpoints",
    "read_checkpoints",
    "read_records",
    "verify",
]

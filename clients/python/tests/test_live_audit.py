"""The independent audit verifier against a live server's real log and
checkpoint file: the log passes, and each kind of tampering fails it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom_client.audit import AuditBreak, read_checkpoints, verify

from conftest import wait_until


def _checkpointed(live) -> list:
    """The checkpoint file, once it covers more than the records made at
    start-up (checkpoints every second here)."""
    head = live.client("auditor").audit_page(after=0, limit=1000)[-1].seq
    wait_until(
        lambda: any(c.seq >= head for c in read_checkpoints(live.checkpoint_file)),
        "a checkpoint of the current head",
    )
    return read_checkpoints(live.checkpoint_file)


def _audit_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "strongroom_client.audit", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_real_log_verifies_from_the_api(live):
    # The checkpoints first, then the records: every checkpoint then covers
    # a record already written.
    checkpoints = _checkpointed(live)
    records = list(live.client("auditor").iter_audit(page_size=50))
    # Each record names its format and the hash it links to.
    assert all(r.version == 1 and r.prev_hash is not None for r in records)
    assert records[0].prev_hash == "00" * 32
    assert all(b.prev_hash == a.hash for a, b in zip(records, records[1:]))
    report = verify(records, checkpoints, live.audit_public_key)
    assert report.records == len(records) == records[-1].seq
    assert report.last_checkpoint is not None and report.last_checkpoint >= checkpoints[-1].seq
    assert {c.key for c in checkpoints} == {live.audit_public_key}
    # The key the server prints for verifiers is the one derived here from its seed.
    assert live.cli("audit", "public-key", "--config", str(live.config)).strip() == live.audit_public_key
    # Strongroom's own verifier agrees.
    rust = live.cli("audit", "verify", "--public-key", live.audit_public_key, "--config", str(live.config))
    assert rust.startswith("ok: "), rust


def test_the_cli_verifies_an_export_and_fails_each_tampering(live, tmp_path: Path):
    auditor_key = str(live.key_files["auditor"])
    _checkpointed(live)
    checkpoints = tmp_path / "audit.checkpoints"
    checkpoints.write_text(live.checkpoint_file.read_text())
    export = tmp_path / "audit.jsonl"
    fetched = _audit_cli("fetch", "--url", live.url, "--key-file", auditor_key, "--out", str(export))
    assert fetched.returncode == 0, fetched.stderr
    lines = export.read_text().splitlines()
    key = ["--public-key", live.audit_public_key]

    def check(records: list[str], checkpoint_text: str | None = None, public_key=None) -> tuple[int, str]:
        name = tmp_path / "case.jsonl"
        name.write_text("".join(line + "\n" for line in records))
        cps = tmp_path / "case.checkpoints"
        cps.write_text(checkpoints.read_text() if checkpoint_text is None else checkpoint_text)
        p = _audit_cli(
            "verify", *(public_key or key), "--checkpoints", str(cps), "--records", str(name)
        )
        return p.returncode, (p.stdout + p.stderr).strip()

    def edited(i: int, **change) -> list[str]:
        out = list(lines)
        out[i] = json.dumps({**json.loads(out[i]), **change})
        return out

    ok = check(lines)
    assert ok[0] == 0 and ok[1].startswith(f"ok: {len(lines)} records"), ok
    last_cp = max(c.seq for c in read_checkpoints(checkpoints))
    first_cp_line = checkpoints.read_text().splitlines()[0]
    forged_cp = json.loads(first_cp_line)
    forged_cp["time_ms"] += 1
    other_key = "ab" * 32
    cases = {
        "edited": check(edited(2, subject="user:someone-else")),
        "deleted": check(lines[:4] + lines[5:]),
        "reordered": check(lines[:4] + [lines[5], lines[4]] + lines[6:]),
        "truncated": check(lines[: last_cp - 1]),
        "forged checkpoint": check(lines, json.dumps(forged_cp) + "\n"),
        "no checkpoints": check(lines, ""),
        "another key": check(lines, public_key=["--public-key", other_key]),
        "unparsable checkpoint": check(lines, "{not json\n"),
    }
    assert {name: code for name, (code, _) in cases.items()} == {name: 3 for name in cases}
    assert "record 3 does not match its hash" in cases["edited"][1]
    assert "record 5 is missing" in cases["deleted"][1]
    assert "record 5 is missing" in cases["reordered"][1]
    assert f"the log ends at record {last_cp - 1}" in cases["truncated"][1]
    assert "checkpoint 1 is not valid: signature does not verify" in cases["forged checkpoint"][1]
    assert "missing or empty" in cases["no checkpoints"][1]
    assert "not the trusted audit key" in cases["another key"][1]

    from_api = _audit_cli(
        "verify", *key, "--checkpoints", str(checkpoints), "--url", live.url, "--key-file", auditor_key
    )
    assert from_api.returncode == 0, from_api.stderr


def test_a_rewritten_history_is_caught_by_the_checkpoints(live):
    checkpoints = _checkpointed(live)
    records = list(live.client("auditor").iter_audit())
    # Rewrite from record 2 on, each record re-hashed and re-linked, as an
    # intruder with the database but not the audit key would.
    prev = bytes.fromhex(records[0].hash)
    forged = [records[0]]
    for r in records[1:]:
        changed = type(r)(
            **{**r.__dict__, "subject": r.subject + " (rewritten)", "prev_hash": prev.hex()}
        )
        h = changed.computed_hash(prev)
        forged.append(type(r)(**{**changed.__dict__, "hash": h.hex()}))
        prev = h
    with pytest.raises(AuditBreak) as b:
        verify(forged, checkpoints, live.audit_public_key)
    assert b.value.kind == "checkpoint_mismatch"
    assert b.value.first_broken_record == min(c.seq for c in checkpoints if c.seq >= 2)

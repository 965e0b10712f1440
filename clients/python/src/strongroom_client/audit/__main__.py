"""`python -m strongroom_client.audit`: fetch a Strongroom audit log, or
verify one against its checkpoint file and the trusted audit public key.

    python -m strongroom_client.audit fetch --url URL --key-file auditor.key --out audit.jsonl
    python -m strongroom_client.audit verify --public-key HEX --checkpoints audit.checkpoints \\
        (--records audit.jsonl | --url URL --key-file auditor.key)

Exit codes: 0 the log verifies; 3 it does not (the first break is named on
standard error); 1 it could not be read or fetched; 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Iterable, Sequence

from ..errors import FormatError, StrongroomError
from . import AuditBreak, AuditRecord, CheckpointFileError, read_checkpoints, read_records, verify

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_BROKEN = 3


def _client(url: str, key_file: str):  # -> Client, imported late: no HTTP needed for files
    from ..client import Client

    return Client.from_key_file(url, key_file)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m strongroom_client.audit",
        description="Verify a Strongroom audit log and its signed checkpoints (docs/FORMATS.md).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="save the log from the API as JSON Lines")
    fetch.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8200")
    fetch.add_argument("--key-file", required=True, help="an API key file (auditor or admin)")
    fetch.add_argument("--out", required=True, help="where to write the records (not overwritten)")

    check = sub.add_parser("verify", help="verify records against the checkpoint file")
    check.add_argument(
        "--public-key", required=True, help="the trusted audit public key, 64 hex digits"
    )
    check.add_argument(
        "--checkpoints",
        required=True,
        help="the checkpoint file (its .superseded sibling is read too, if present)",
    )
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument("--records", help="a JSON Lines file of records (from `fetch`)")
    source.add_argument("--url", help="fetch the records from this server")
    check.add_argument("--key-file", help="with --url: an API key file (auditor or admin)")
    return p


def _fetch(url: str, key_file: str, out: str) -> int:
    records = _client(url, key_file).iter_audit()
    count = 0
    with open(out, "x", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), separators=(",", ":"), ensure_ascii=False) + "\n")
            count += 1
    print(f"{count} records written to {out}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    # The checkpoints first: then every checkpoint covers a record already
    # written when the records are fetched from a running server.
    checkpoints = read_checkpoints(args.checkpoints)
    records: Iterable[AuditRecord]
    if args.records is not None:
        records = read_records(args.records)
    else:
        if not args.key_file:
            print("error: --url needs --key-file", file=sys.stderr)
            return EXIT_USAGE
        records = _client(args.url, args.key_file).iter_audit()
    try:
        report = verify(records, checkpoints, args.public_key)
    except AuditBreak as b:
        print(f"audit log is broken: {b}", file=sys.stderr)
        if b.first_broken_record is not None:
            print(f"first untrusted record: {b.first_broken_record}", file=sys.stderr)
        return EXIT_BROKEN
    last = "none" if report.last_checkpoint is None else str(report.last_checkpoint)
    print(
        f"ok: {report.records} records, head {report.head_hash}, "
        f"{report.checkpoints} checkpoints, last checkpoint at record {last}"
        + (f", {report.superseded} superseded by a restore" if report.superseded else "")
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch":
            return _fetch(args.url, args.key_file, args.out)
        return _verify(args)
    except CheckpointFileError as e:
        # A checkpoint file that does not parse was damaged or edited.
        print(f"audit log is broken: {e}", file=sys.stderr)
        return EXIT_BROKEN
    except FormatError as e:
        print(f"audit log is broken: {e}", file=sys.stderr)
        return EXIT_BROKEN
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (StrongroomError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())

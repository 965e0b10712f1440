"""A live Strongroom for the client's tests, set up as scripts/dev and
scripts/contract.sh do: a dev chain (anvil), `dev init`, a 2-of-2 keystore,
API keys per role, an Ethereum wallet funded by the chain, the server,
unsealed, a starter policy (up to 1 ETH at once, more with the approver's
signed approval) and the approver's registered key.

The server binary is copied from STRONGROOM_BIN (default
target/debug/strongroom) so that a rebuild meanwhile does not disturb the
run; anvil is STRONGROOM_ANVIL (default the one scripts/lib.sh installs).
Every process started here is stopped at the end of the session (and, by
PR_SET_PDEATHSIG, if pytest itself dies).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from strongroom_client import ApiKey, ApproverKey, Client, RetryPolicy

REPO = Path(__file__).resolve().parents[3]
CHAIN_ID = 31337
ETH = f"eip155:{CHAIN_ID}/native"
# A foreign address (EIP-55), as in the README's examples.
DESTINATION = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
ROLES = ("admin", "policy-admin", "initiator", "approver", "viewer", "auditor")
STARTUP_TIMEOUT_S = 60


def _die_with_parent() -> None:
    """In the child: SIGTERM when pytest dies, whatever way it dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _interrupt(signum: int, frame: object) -> None:
    # pytest tears fixtures down on KeyboardInterrupt, not on a bare SIGTERM.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _interrupt)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Polls `check` (a condition on a live system) until true."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


@dataclass
class LiveServer:
    url: str
    dir: Path
    binary: Path
    config: Path
    eth_url: str
    wallet: str
    eth_address: str
    eth_key: str
    audit_public_key: str
    checkpoint_file: Path
    approver_key_file: Path
    key_files: dict[str, Path]
    processes: list[subprocess.Popen] = field(default_factory=list)

    def api_key(self, role: str) -> ApiKey:
        return ApiKey.from_file(self.key_files[role])

    def client(self, role: str | None, **kw) -> Client:
        key = None if role is None else self.api_key(role)
        kw.setdefault("retry", RetryPolicy(max_attempts=6, max_wait_s=5.0))
        return Client(self.url, key, **kw)

    def approver_key(self) -> ApproverKey:
        return ApproverKey.from_file(self.approver_key_file)

    def cli(self, *args: str, stdin: bytes | None = None) -> str:
        return _run(self.binary, self.dir, *args, stdin=stdin)


def _run(binary: Path, cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    """Runs the strongroom binary. Its output (which may hold a printed key)
    is returned, never shown; a failure shows its standard error."""
    p = subprocess.run(
        [str(binary), *args], input=stdin, capture_output=True, cwd=cwd, timeout=120
    )
    if p.returncode != 0:
        raise RuntimeError(
            f"strongroom {' '.join(args[:2])} exited {p.returncode}: "
            + p.stderr.decode(errors="replace")[-2000:]
        )
    return p.stdout.decode()


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    out = open(log, "wb")
    try:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,
        )
    finally:
        out.close()


def _wait_for_line(proc: subprocess.Popen, log: Path, needle: str) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{log.name} exited {proc.returncode}: {log.read_text()[-3000:]}")
        return log.exists() and needle in log.read_text(errors="replace")

    wait_until(ready, f"{needle!r} in {log.name}", STARTUP_TIMEOUT_S)


def _stop(processes: list[subprocess.Popen]) -> None:
    for p in reversed(processes):
        if p.poll() is None:
            p.terminate()
    for p in reversed(processes):
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _eth_rpc(url: str, method: str, params: list) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.load(resp)
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


def _audit_public_key(seed_file: Path) -> str:
    seed = bytes.fromhex(seed_file.read_text().strip())
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _binary() -> Path:
    given = os.environ.get("STRONGROOM_BIN")
    path = Path(given) if given else REPO / "target" / "debug" / "strongroom"
    if not path.is_file():
        raise RuntimeError(f"no strongroom binary at {path}: build it, or set STRONGROOM_BIN")
    return path


def _anvil() -> Path:
    given = os.environ.get("STRONGROOM_ANVIL")
    path = (
        Path(given)
        if given
        else REPO / ".tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
    )
    if not path.is_file():
        raise RuntimeError(f"no anvil at {path}: scripts/lib.sh ensure_anvil installs it")
    return path


def _policy(approver_key_id: str) -> str:
    return "\n".join(
        [
            "[[groups]]",
            'name = "approvers"',
            f'members = ["api-key:{approver_key_id}"]',
            "",
            "[[rules]]",
            'name = "small"',
            'amount = { at_most = "1" }',
            'action = "allow"',
            "",
            "[[rules]]",
            'name = "large"',
            'action = "require_approval"',
            'approvals = { group = "approvers", threshold = 1 }',
            "",
        ]
    )


def _set_up(work: Path, processes: list[subprocess.Popen]) -> LiveServer:
    binary = work / "strongroom"
    shutil.copy2(_binary(), binary)

    anvil_port, port = free_port(), free_port()
    eth_url = f"http://127.0.0.1:{anvil_port}"
    anvil_home = work / "anvil-home"
    anvil_home.mkdir()
    anvil_log = work / "anvil.log"
    anvil = _spawn(
        [str(_anvil()), "--host", "127.0.0.1", "--port", str(anvil_port), "--block-time", "1"],
        anvil_log,
        env={**os.environ, "HOME": str(anvil_home)},
    )
    processes.append(anvil)
    _wait_for_line(anvil, anvil_log, "Listening on")

    def run(*args: str, stdin: bytes | None = None) -> str:
        return _run(binary, work, *args, stdin=stdin)

    config = Path(
        run("dev", "init", "--dir", str(work / "data"), "--listen", f"127.0.0.1:{port}",
            "--eth-endpoint", eth_url).strip()
    )
    text = config.read_text()
    # Checkpoints every second (or five records) so that the audit tests
    # see several; webhook receivers on this machine.
    text = re.sub(r"checkpoint_every_records = \d+", "checkpoint_every_records = 5", text)
    text = re.sub(r"checkpoint_every_seconds = \d+", "checkpoint_every_seconds = 1", text)
    text += "\n[webhooks]\nallow_loopback = true\n"
    config.write_text(text)

    password = work / "admin-password"
    password.write_text(secrets.token_urlsafe(18) + "\n")
    password.chmod(0o600)
    shares_dir = work / "shares"
    run("init", "--config", str(config), "--shares", "2", "--threshold", "2",
        "--share-dir", str(shares_dir), "--admin", "admin", stdin=password.read_bytes())
    shares = sorted(shares_dir.glob("share-*.txt"))
    key_files = {role: work / f"{role}.key" for role in ROLES}
    run("apikey", "create", "--config", str(config), "--name", "admin", "--role", "admin",
        "--out", str(key_files["admin"]))

    # An Ethereum key in the keystore, registered as the sender of a new
    # wallet on the dev chain (key ceremonies read the shares on stdin).
    created = run("key", "create", "--config", str(config), "--purpose", "transfer-signing",
                  "--algorithm", "ecdsa-secp256k1",
                  stdin=b"".join(s.read_bytes() for s in shares))
    eth_key = re.search(r"^key (\S+)", created, re.M).group(1)
    registered = run("eth", "register-sender", "--config", str(config), "--key", eth_key,
                     "--chain-id", str(CHAIN_ID), "--wallet", "dev")
    eth_address = re.search(r"^address (\S+)", registered, re.M).group(1)
    wallet = re.search(r"^wallet (\S+)", registered, re.M).group(1)
    # Any role is granted from the console until governance first acts.
    for role in ROLES[1:]:
        scope = ["--scope", f"wallet:{wallet}"] if role in ("initiator", "approver") else []
        run("apikey", "create", "--config", str(config), "--name", role, "--role", role,
            *scope, "--out", str(key_files[role]))
    # Deposits to the key before a backup holds it: the risk accepted (dev).
    run("key", "accept-unbacked", "--config", str(config), "--key", eth_key)

    serve_log = work / "serve.log"
    server = _spawn([str(binary), "serve", "--config", str(config)], serve_log)
    processes.append(server)
    _wait_for_line(server, serve_log, "listening on")
    url = f"http://127.0.0.1:{port}"
    for share in shares:
        run("operator", "unseal", "--addr", url, stdin=share.read_bytes())
    _eth_rpc(eth_url, "anvil_setBalance", [eth_address, hex(1000 * 10**18)])

    live = LiveServer(
        url=url,
        dir=work,
        binary=binary,
        config=config,
        eth_url=eth_url,
        wallet=wallet,
        eth_address=eth_address,
        eth_key=eth_key,
        audit_public_key=_audit_public_key(work / "data" / "audit.key"),
        checkpoint_file=work / "data" / "audit.checkpoints",
        approver_key_file=work / "approver.sign",
        key_files=key_files,
        processes=processes,
    )
    _govern(live)
    initiator = live.client("initiator")

    def funded() -> bool:
        eth = [b for b in initiator.balances(wallet) if b.asset == ETH]
        return bool(eth) and eth[0].available not in (None, "0")

    wait_until(funded, "the wallet's balance", 60)
    return live


def _govern(live: LiveServer) -> None:
    """The starter policy and the approver's key, each proposed and voted
    by the admin (a quorum of one in dev)."""
    approver_id = live.api_key("approver").key_id
    out = live.cli("approver-key", "new", "--out", str(live.approver_key_file))
    public = re.search(r"^public key: (\S+)", out, re.M).group(1)
    policy_file = live.dir / "policy.toml"
    policy_file.write_text(_policy(approver_id))
    checked = live.cli("policy", "check", str(policy_file))
    body = json.loads(re.search(r"^proposal body: (.*)$", checked, re.M).group(1))
    proposals = [
        live.client("policy-admin").request("POST", "/v1/proposals", body=body).json(),
        live.client("admin")
        .request(
            "POST",
            "/v1/proposals",
            body={
                "change": {
                    "kind": "register_approver_key",
                    "principal": f"api-key:{approver_id}",
                    "public_key": public,
                }
            },
        )
        .json(),
    ]
    for p in proposals:
        voted = live.cli("approve", "--addr", live.url, "--key-file",
                         str(live.key_files["admin"]), "--proposal", p["id"])
        if not voted.strip().endswith("applied"):
            raise RuntimeError(f"proposal {p['kind']} was not applied")


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    work = tmp_path_factory.mktemp("strongroom")
    processes: list[subprocess.Popen] = []
    try:
        yield _set_up(work, processes)
    finally:
        _stop(processes)

#!/usr/bin/env bash
# The Python client (clients/python) against a live server: installs it
# into the tools venv (pip install -e) and runs its tests, which start a
# dev chain (anvil) and a server of their own from a copy of the binary
# (STRONGROOM_BIN, default target/debug/strongroom), sign requests with
# API keys of each role, move funds, approve, receive webhooks, and check
# the real audit log and checkpoint file with the independent verifier.
# Usage: scripts/clients.sh WORKDIR   (after a debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_py_tools
ensure_anvil
work=$1
dir="$work/clients"
mkdir -p "$dir"

step "Python client: install (pip install -e clients/python)"
"$PY_VENV/bin/pip" install --quiet --disable-pip-version-check -e clients/python

step "Python client: tests against a live server"
pid=
stop_tests() {
  # pytest stops the server and anvil it started on SIGTERM (and they
  # die with it in any case).
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
}
trap 'stop_tests; exit 130' INT TERM
trap stop_tests EXIT
STRONGROOM_BIN="${STRONGROOM_BIN:-$PWD/target/debug/strongroom}" STRONGROOM_ANVIL="$ANVIL" \
  PYTHONDONTWRITEBYTECODE=1 "$PY_VENV/bin/python" -m pytest clients/python/tests \
  -p no:cacheprovider --basetemp "$dir/pytest" -q --durations=5 &
pid=$!
wait "$pid"
pid=

# Shared helpers for scripts/dev and scripts/test. Sourced, not run.

step() { printf '\n== %s ==\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
ensure_apt_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing ${missing[*]}"
  if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] && source "$HOME/.cargo/env"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust with rustup (https://rustup.rs) and run again" >&2
    exit 1
  fi
}

ensure_nextest() {
  command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
}

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

# start_postgres DIR: a private cluster in DIR on a free loopback port, owned
# by an unprivileged user (initdb refuses root). Sets PG_URL.
start_postgres() {
  local dir=$1 bin port attempt
  bin=$(pg_bin)
  [ -n "$bin" ] || { echo "PostgreSQL server binaries not found" >&2; return 1; }
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$dir"
    chmod 700 "$dir"
    run_pg() { runuser -u postgres -- "$@"; }
  else
    run_pg() { "$@"; }
  fi
  run_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-instructions -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  # A random high port; another is tried if it is taken.
  for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    if run_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on -c max_connections=200" start >/dev/null; then
      PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
      return 0
    fi
  done
  cat "$dir/server.log" >&2
  return 1
}

stop_postgres() {
  local dir=$1 bin
  [ -d "$dir/data" ] || return 0
  bin=$(pg_bin)
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
  else
    "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
  fi
}

# ensure_anvil: the real anvil from the npm package, in .tools/ (git-ignored).
# Sets ANVIL to the binary.
ANVIL_VERSION=1.7.1
ensure_anvil() {
  ANVIL="$PWD/.tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
  if [ -x "$ANVIL" ] && "$ANVIL" --version 2>/dev/null | grep -q "$ANVIL_VERSION"; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || ensure_apt_packages nodejs npm
  step "installing anvil $ANVIL_VERSION from npm"
  mkdir -p .tools
  npm install --prefix .tools --no-audit --no-fund --no-save --silent \
    "@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION"
  [ -x "$ANVIL" ] || { echo "anvil did not install at $ANVIL" >&2; return 1; }
}

# Python tools for the API contract checks, in a venv under .tools/ (kept
# between runs): the OpenAPI validator and Schemathesis, pinned; pytest for
# the Python client's tests (scripts/clients.sh); embit, the independent
# BIP-174 signer of the cold tier's tests (scripts/embit_sign.py).
PY_TOOLS=(openapi-spec-validator==0.9.0 schemathesis==4.32.5 cryptography==51.0.1 pytest==9.2.0 embit==0.8.0)
ensure_py_tools() {
  PY_VENV="$PWD/.tools/py"
  if [ ! -x "$PY_VENV/bin/python" ]; then
    step "creating a Python venv for ${PY_TOOLS[*]}"
    python3 -m venv "$PY_VENV" 2>/dev/null || { ensure_apt_packages python3-venv; python3 -m venv "$PY_VENV"; }
  fi
  "$PY_VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}"
}

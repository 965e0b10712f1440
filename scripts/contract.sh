#!/usr/bin/env bash
# The API contract against a live server: the OpenAPI document validated,
# then Schemathesis calling every operation as an admin, a viewer and an
# anonymous caller (through scripts/signing_proxy.py, which signs each
# request with the role's API key). No 5xx, every status documented.
# Usage: scripts/contract.sh WORKDIR   (after a debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_py_tools
work=$1
bin=target/debug/strongroom
py="$PY_VENV/bin/python"
dir="$work/contract"
mkdir -p "$dir"
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$bin" openapi > "$dir/openapi.json"
"$py" -m openapi_spec_validator "$dir/openapi.json"

port=$(free_port)
config=$("$bin" dev init --dir "$dir/data" --listen "127.0.0.1:$port")
head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/password"
"$bin" init --config "$config" --shares 2 --threshold 2 --share-dir "$dir/shares" \
  --admin admin < "$dir/password" > /dev/null
"$bin" apikey create --config "$config" --name admin --role admin --out "$dir/admin.key" > /dev/null
"$bin" apikey create --config "$config" --name viewer --role viewer --out "$dir/viewer.key" > /dev/null

pids=()
stop_contract() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
trap stop_contract EXIT
"$bin" serve --config "$config" > "$dir/serve.log" 2>&1 &
pids+=($!)
until grep -q "listening on" "$dir/serve.log" 2>/dev/null; do
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$dir/serve.log" >&2; exit 1; }
  sleep 0.2
done
for share in "$dir"/shares/share-*.txt; do
  "$bin" operator unseal --addr "http://127.0.0.1:$port" < "$share" > /dev/null
done

# Sealing (and discarding a round of shares) would stop the rest of the run.
common=(--checks not_a_server_error,status_code_conformance,response_schema_conformance
  --exclude-path /v1/sys/seal --exclude-path /v1/sys/unseal/reset
  --request-timeout 20 --max-failures 20)
# The admin last: its stateful phase may revoke the other keys.
for role in anonymous viewer admin; do
  proxy=$(free_port)
  key=()
  [ "$role" = anonymous ] || key=(--key "$dir/$role.key")
  "$py" scripts/signing_proxy.py --listen "127.0.0.1:$proxy" --to "http://127.0.0.1:$port" \
    "${key[@]}" 2> "$dir/proxy-$role.log" &
  pids+=($!)
  until grep -q "signing proxy on" "$dir/proxy-$role.log" 2>/dev/null; do sleep 0.1; done
  if [ "$role" = admin ]; then
    phases=(--phases coverage,fuzzing,stateful -n 10)
  else
    phases=(--phases fuzzing -n 5)
  fi
  step "Schemathesis as $role"
  (cd "$dir" && "$PY_VENV/bin/st" run "$dir/openapi.json" --url "http://127.0.0.1:$proxy" \
    "${phases[@]}" "${common[@]}")
done

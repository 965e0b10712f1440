#!/usr/bin/env python3
"""A loopback proxy that signs every request it forwards with a Strongroom
API key (strongroom-request-v2), so that a tool that knows nothing of the
signature (Schemathesis) can call the API as that key's principal.

It signs the exact bytes it forwards: the method, the path and query as
received, the body, a fresh timestamp and nonce, and the Idempotency-Key
header if any (docs/FORMATS.md). Without a key file it forwards unsigned
(the anonymous caller).

    signing_proxy.py --listen 127.0.0.1:9001 --to http://127.0.0.1:8200 [--key admin.key]
"""

import argparse
import base64
import hashlib
import http.client
import http.server
import secrets
import sys
import time
import urllib.parse

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def read_key(path):
    fields = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines or lines[0] != "strongroom-api-key-v1":
        raise SystemExit(f"{path}: not a strongroom API key file")
    for line in lines[1:]:
        name, _, value = line.partition(" ")
        fields[name] = value
    return fields["id"], Ed25519PrivateKey.from_private_bytes(bytes.fromhex(fields["secret"]))


def message(method, path, query, body, timestamp, nonce, idempotency_key):
    return "\n".join(
        [
            "strongroom-request-v2",
            method,
            path,
            query,
            hashlib.sha256(body).hexdigest(),
            timestamp,
            nonce,
            idempotency_key,
        ]
    ).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--key")
    args = ap.parse_args()
    key = read_key(args.key) if args.key else None
    target = urllib.parse.urlsplit(args.to)
    host, port = args.listen.rsplit(":", 1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def forward(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("host", "connection", "content-length", "accept-encoding")
            }
            if key is not None:
                key_id, private = key
                timestamp = str(int(time.time() * 1000))
                nonce = secrets.token_hex(16)
                idem = self.headers.get("idempotency-key") or ""
                signature = private.sign(
                    message(self.command, path, query, body, timestamp, nonce, idem)
                )
                headers.update(
                    {
                        "x-strongroom-key": key_id,
                        "x-strongroom-timestamp": timestamp,
                        "x-strongroom-nonce": nonce,
                        "x-strongroom-signature": base64.b64encode(signature).decode(),
                    }
                )
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def __getattr__(self, name):
            # Every method goes through, whatever it is (the server judges).
            if name.startswith("do_"):
                return self.forward
            raise AttributeError(name)

    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    print(f"signing proxy on {args.listen}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

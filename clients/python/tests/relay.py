"""Loopback HTTP helpers for the live tests: a relay in front of the server
that answers some requests itself (a 429 or a 503, as a loaded or sealed
server does) and records what the client sent, and a webhook receiver."""

from __future__ import annotations

import http.client
import http.server
import queue
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


class _Server:
    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class Relay(_Server):
    """Forwards every request to `target`, except that the first requests
    are answered with `answers` (status, headers) without reaching it."""

    def __init__(self, target: str, answers: list[tuple[int, dict[str, str]]]) -> None:
        self.seen: list[Seen] = []
        self.forwarded = 0
        pending = list(answers)
        to = urllib.parse.urlsplit(target)
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                relay.seen.append(Seen(self.command, self.path, headers, body))
                if pending:
                    status, extra = pending.pop(0)
                    payload = b'{"code":"rate_limited","message":"injected by the test relay"}'
                    if status == 503:
                        payload = b'{"code":"sealed","message":"injected by the test relay"}'
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                relay.forwarded += 1
                conn = http.client.HTTPConnection(to.hostname, to.port, timeout=30)
                try:
                    forward = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    conn.request(self.command, self.path, body=body or None, headers=forward)
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

            do_GET = do_POST = _handle

        super().__init__(Handler)


class WebhookReceiver(_Server):
    """Answers 204 to every POST and queues what it received."""

    def __init__(self) -> None:
        self.received: "queue.Queue[Seen]" = queue.Queue()
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                # Headers as sent (their case as received).
                received.put(Seen("POST", self.path, dict(self.headers.items()), body))
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

        super().__init__(Handler)

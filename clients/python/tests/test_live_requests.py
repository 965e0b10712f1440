"""Signed requests against a live server: who the key is, and the typed
errors (with the server's codes) for what it refuses."""

from __future__ import annotations

import http.client
import time
import urllib.parse
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from strongroom_client import (
    ApiKey,
    BadRequest,
    Forbidden,
    NotFound,
    Unauthenticated,
    signed_headers,
)

from conftest import DESTINATION, ETH


def test_a_signed_request_is_its_key(live):
    for role in ("viewer", "initiator"):
        me = live.client(role).me()
        assert me["actor"] == f"api-key:{live.api_key(role).key_id}"
        assert [g["role"] for g in me["grants"]] == [role]


def test_anonymous_callers_see_only_the_status(live):
    anonymous = live.client(None)
    assert isinstance(anonymous.status(), dict)
    with pytest.raises(Unauthenticated) as e:
        anonymous.me()
    assert (e.value.status, e.value.code) == (401, "unauthenticated")


def test_a_key_signing_with_another_private_half_is_refused(live):
    real = live.api_key("viewer")
    impostor = ApiKey(real.key_id, Ed25519PrivateKey.generate())
    with pytest.raises(Unauthenticated) as e:
        live.client(None).with_key(impostor).me()
    assert e.value.code == "bad_signature"
    unknown = ApiKey(str(uuid.uuid4()), Ed25519PrivateKey.generate())
    with pytest.raises(Unauthenticated) as e:
        live.client(None).with_key(unknown).me()
    assert e.value.code == "bad_signature"


def _raw_get(live, path: str, headers) -> tuple[int, bytes]:
    target = urllib.parse.urlsplit(live.url)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
    try:
        conn.request("GET", path, headers=dict(headers))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_replayed_or_stale_request_is_refused(live):
    key = live.api_key("viewer")
    headers = signed_headers(key, "GET", "/v1/me", "", b"")
    assert _raw_get(live, "/v1/me", headers)[0] == 200
    status, body = _raw_get(live, "/v1/me", headers)
    assert (status, b"replayed_request" in body) == (401, True)
    old = signed_headers(key, "GET", "/v1/me", "", b"", timestamp_ms=int(time.time() * 1000) - 120_000)
    status, body = _raw_get(live, "/v1/me", old)
    assert (status, b"stale_request" in body) == (401, True)
    # The signature covers the query: another query is another request.
    signed = signed_headers(key, "GET", "/v1/wallets", "limit=1", b"")
    status, body = _raw_get(live, "/v1/wallets?limit=2", signed)
    assert (status, b"bad_signature" in body) == (401, True)


def test_refusals_carry_their_codes(live):
    viewer = live.client("viewer")
    with pytest.raises(BadRequest) as e:
        viewer.list_transfers(wallet=live.wallet, limit=0)
    assert (e.value.status, e.value.code) == (400, "invalid_query")
    with pytest.raises(BadRequest) as e:
        viewer.list_transfers(wallet="not-a-wallet-id")
    assert e.value.code == "invalid_request"
    with pytest.raises(NotFound) as e:
        viewer.get_transfer(str(uuid.uuid4()))
    assert e.value.code == "not_found"
    with pytest.raises(Forbidden) as e:
        viewer.create_transfer(live.wallet, ETH, "0.01", DESTINATION)
    assert e.value.code == "forbidden"
    with pytest.raises(BadRequest) as e:
        live.client("initiator").request("POST", "/v1/transfers", body={"wallet": live.wallet})
    assert e.value.code == "invalid_body"

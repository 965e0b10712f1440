"""Transfers on a live server and a live dev chain: dry runs, requests with
idempotency keys, retries after 429/503, listing by cursor, cancelling."""

from __future__ import annotations

import pytest

from strongroom_client import Client, RateLimited, RetryPolicy, Unprocessable

from conftest import DESTINATION, ETH
from relay import Relay


def test_a_dry_run_says_what_the_policy_would_do(live):
    initiator = live.client("initiator")
    small = initiator.dry_run(live.wallet, ETH, "0.25", DESTINATION)
    large = initiator.dry_run(live.wallet, ETH, "2", DESTINATION)
    assert (small.verdict, small.rule) == ("allow", "small")
    assert (large.verdict, large.rule) == ("require_approval", "large")
    assert small.policy_version == large.policy_version == 1
    assert "small" in small.explanation


def test_a_transfer_is_requested_once_whatever_the_retries(live):
    initiator = live.client("initiator")
    t = initiator.create_transfer(
        live.wallet, ETH, "0.5", DESTINATION, reference="py-once", idempotency_key="py-once-1"
    )
    assert (t.replayed, t.verdict, t.asset, t.destination) == (False, "allow", ETH, DESTINATION)
    # Amounts come back in base units and in the asset's units.
    assert (t.amount, t.amount_decimal, t.raw["decimals"]) == ("500000000000000000", "0.5", 18)
    again = initiator.create_transfer(
        live.wallet, ETH, "0.5", DESTINATION, reference="py-once", idempotency_key="py-once-1"
    )
    assert (again.replayed, again.id) == (True, t.id)
    with pytest.raises(Unprocessable) as e:
        initiator.create_transfer(
            live.wallet, ETH, "0.6", DESTINATION, reference="py-once", idempotency_key="py-once-1"
        )
    assert e.value.code == "idempotency_key_reused"
    done = initiator.wait_for_transfer(t.id, ["completed"], timeout_s=60)
    assert done.state == "completed"
    assert [h.state for h in done.history][-1] == "completed"


def test_retries_after_429_and_503_reuse_the_idempotency_key(live):
    waits: list[float] = []
    answers = [(429, {"retry-after": "1"}), (503, {})]
    with Relay(live.url, answers) as relay:
        client = Client(
            relay.url,
            live.api_key("initiator"),
            retry=RetryPolicy(max_attempts=3, max_wait_s=5, backoff_s=0.25, sleep=waits.append),
        )
        t = client.create_transfer(live.wallet, ETH, "0.01", DESTINATION, reference="py-retried")
    assert waits == [1.0, 0.5]
    assert relay.forwarded == 1 and len(relay.seen) == 3
    keys = {s.headers["idempotency-key"] for s in relay.seen}
    nonces = {s.headers["x-strongroom-nonce"] for s in relay.seen}
    assert len(keys) == 1 and len(nonces) == 3
    assert not t.replayed
    # Exactly one transfer was made.
    made = [
        x for x in live.client("viewer").iter_transfers(wallet=live.wallet)
        if x.raw.get("intent") == t.intent_hex
    ]
    assert [x.id for x in made] == [t.id]


def test_a_long_retry_after_is_not_shortened(live):
    waits: list[float] = []
    with Relay(live.url, [(429, {"retry-after": "120"})]) as relay:
        client = Client(
            relay.url, live.api_key("viewer"), retry=RetryPolicy(max_wait_s=5, sleep=waits.append)
        )
        with pytest.raises(RateLimited) as e:
            client.me()
    assert (e.value.code, e.value.retry_after_s, waits, relay.forwarded) == (
        "rate_limited",
        120.0,
        [],
        0,
    )


def test_transfers_page_newest_first_by_cursor(live):
    initiator = live.client("initiator")
    made = [
        initiator.create_transfer(live.wallet, ETH, "2", DESTINATION, reference=f"py-page-{i}")
        for i in range(3)
    ]
    assert {t.state for t in made} == {"pending_approval"}
    viewer = live.client("viewer")
    whole = [t.id for t in viewer.iter_transfers(wallet=live.wallet, page_size=500)]
    paged = [t.id for t in viewer.iter_transfers(wallet=live.wallet, page_size=2)]
    assert paged == whole and len(set(whole)) == len(whole)
    assert whole[:3] == [t.id for t in reversed(made)]
    pending = [t.id for t in viewer.iter_transfers(wallet=live.wallet, state="pending_approval")]
    assert set(t.id for t in made) <= set(pending)
    for t in made:
        assert initiator.cancel_transfer(t.id).state == "cancelled"
    assert not set(t.id for t in made) & {t.id for t in live.client("approver").pending_approvals(wallet=live.wallet)}

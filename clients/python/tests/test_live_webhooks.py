"""Webhooks on a live server: a subscription, real deliveries to a receiver
on this machine, and their signatures checked as a receiver would."""

from __future__ import annotations

import json
import queue
import time

import pytest

from strongroom_client import WebhookVerificationError, verify_webhook

from conftest import DESTINATION, ETH
from relay import WebhookReceiver


def test_deliveries_verify_with_the_subscription_secret(live):
    admin = live.client("admin")
    with WebhookReceiver() as receiver:
        hook = admin.create_webhook(receiver.url + "/hooks/strongroom", ["transfer.state_changed"])
        assert hook.secret and hook.secret.startswith("whsec_")
        assert hook.secret not in repr(hook)
        listed = {w.id: w for w in admin.list_webhooks()}
        assert listed[hook.id].active and listed[hook.id].secret is None
        try:
            t = live.client("initiator").create_transfer(
                live.wallet, ETH, "0.02", DESTINATION, reference="py-webhook"
            )
            delivery = _first_delivery_for(receiver, t.id)
        finally:
            admin.deactivate_webhook(hook.id)
    assert delivery.path == "/hooks/strongroom"
    payload = verify_webhook(hook.secret, delivery.headers, delivery.body)
    assert payload["type"] == "transfer.state_changed"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(hook.secret, delivery.headers, delivery.body.replace(b"}", b" }", 1))
    other_secret = admin.create_webhook(receiver.url + "/other", ["freeze"])
    admin.deactivate_webhook(other_secret.id)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(other_secret.secret, delivery.headers, delivery.body)
    deliveries = admin.webhook_deliveries(hook.id)
    assert any(d.state == "delivered" and d.event_type == "transfer.state_changed" for d in deliveries)
    assert not {w.id: w for w in admin.list_webhooks()}[hook.id].active


def _first_delivery_for(receiver: WebhookReceiver, transfer_id: str, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no webhook delivery for transfer {transfer_id}")
        try:
            seen = receiver.received.get(timeout=left)
        except queue.Empty:
            continue
        if transfer_id in json.dumps(json.loads(seen.body)):
            return seen

"""Approvals on a live server: the intent decoded and checked before the
approver's key signs the `SRAP` statement, as `strongroom approve` does."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from strongroom_client import ApproverKey, BadRequest, Client, IntentMismatch, Transfer

from conftest import DESTINATION, ETH


def _large(live, reference: str) -> Transfer:
    t = live.client("initiator").create_transfer(
        live.wallet, ETH, "2", DESTINATION, reference=reference
    )
    assert (t.state, t.verdict) == ("pending_approval", "require_approval")
    return t


def test_an_approval_signed_with_the_approvers_key_releases_the_transfer(live):
    t = _large(live, "py-approved")
    approver = live.client("approver")
    assert t.id in [p.id for p in approver.pending_approvals(wallet=live.wallet)]
    request = approver.approval_request(t.id)
    i = request.intent
    assert (i.amount, i.symbol, i.units, i.decimals) == ("2", "ETH", 2 * 10**18, 18)
    assert (i.destination, i.reference, i.asset_id) == (DESTINATION, "py-approved", ETH)
    assert i.initiator == f"api-key:{live.api_key('initiator').key_id}"
    after = approver.approve(
        t.id,
        live.approver_key(),
        expect=lambda intent: intent.amount == "2" and intent.destination == DESTINATION,
    )
    assert after.state != "pending_approval"
    assert [(a.approver, a.vote) for a in after.approvals] == [
        (f"api-key:{live.api_key('approver').key_id}", "approve")
    ]
    assert approver.wait_for_transfer(t.id, ["completed"], timeout_s=60).state == "completed"


def test_nothing_is_signed_for_a_transfer_other_than_expected(live):
    t = _large(live, "py-unexpected")
    approver = live.client("approver")
    with pytest.raises(IntentMismatch):
        approver.approve(t.id, live.approver_key(), expect=lambda intent: intent.amount == "0.2")
    assert approver.get_transfer(t.id).approvals == []
    rejected = approver.approve(
        t.id, live.approver_key(), reject=True, reason="not the invoice we agreed"
    )
    assert rejected.state == "rejected"
    history = approver.get_transfer(t.id).history or []
    assert history[-1].why == "rejected by an approver: not the invoice we agreed"


class _LyingServer(Client):
    """Reports another destination than the transfer's intent commits to."""

    def get_transfer(self, transfer_id: str) -> Transfer:
        t = super().get_transfer(transfer_id)
        return dataclasses.replace(t, destination="0x000000000000000000000000000000000000dEaD")


class _SwappedIntent(Client):
    """Serves another transfer's intent bytes under this transfer's digest."""

    other: Transfer

    def get_transfer(self, transfer_id: str) -> Transfer:
        t = super().get_transfer(transfer_id)
        return dataclasses.replace(t, intent_hex=self.other.intent_hex)


def test_a_server_that_misreports_the_intent_gets_no_signature(live):
    t = _large(live, "py-misreported")
    other = _large(live, "py-other")
    lying = _LyingServer(live.url, live.api_key("approver"))
    with pytest.raises(IntentMismatch, match="destination"):
        lying.approve(t.id, live.approver_key())
    swapped = _SwappedIntent(live.url, live.api_key("approver"))
    swapped.other = other
    with pytest.raises(IntentMismatch, match="digest"):
        swapped.approve(t.id, live.approver_key())
    approver = live.client("approver")
    assert approver.get_transfer(t.id).approvals == []
    for x in (t, other):
        live.client("initiator").cancel_transfer(x.id)


def test_a_signature_by_another_key_is_refused(live):
    t = _large(live, "py-wrong-key")
    stranger = ApproverKey(Ed25519PrivateKey.generate())
    with pytest.raises(BadRequest) as e:
        live.client("approver").approve(t.id, stranger)
    assert e.value.code == "bad_approval_signature"
    live.client("initiator").cancel_transfer(t.id)

"""The vectors of docs/FORMATS.md, read by this package's encoders and
decoders: what Strongroom's own Rust snapshots pin, checked independently."""

from __future__ import annotations

import json
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from strongroom_client import (
    ApiKey,
    FormatError,
    Vote,
    WebhookVerificationError,
    approval_statement,
    decode_intent,
    request_message,
    verify_webhook,
    webhook_signature,
)
from strongroom_client.audit import (
    AuditBreak,
    AuditRecord,
    Checkpoint,
    parse_checkpoints,
    verify,
)

SRTI_VECTOR = bytes.fromhex(
    "5352544900010190b5a87a3e7cc19d3e3f1c2a4b5c6d010190b5a80000700080"
    "000000000000010190b5a800007000800000000000000200000016626974636f"
    "696e3a6d61696e6e65742f6e6174697665000000034254430800000000000000"
    "000000000008f0d1800000002a62633171617230737272723778666b7679356c"
    "3634336c79646e77397265353967747a7a7766356d6471010000000a696e766f"
    "6963652034320000002c6170692d6b65793a30313930623561382d303030302d"
    "373030302d383030302d303030303030303030303033000001a2018987bb"
)
SRAR_VECTOR_HASH = "6c980ff6c3d3580c633852a7a65383b8ec0d82f2d1f667d739634e18a3ea37c4"
CHECKPOINT_VECTOR = (
    '{"v":1,"seq":42,"head":"' + "ab" * 32 + '","time_ms":1795322120123,'
    '"key":"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c",'
    '"sig":"23ef20b7df4cca631412693c94b0de3c51248afc9a364618779de5c3836b5ab0'
    '621755268c0f2007c776ac4923d69b05c671cab40c21646ef018f08fc2d33e0b"}\n'
)


def test_the_intent_vector_decodes_to_what_it_says():
    i = decode_intent(SRTI_VECTOR)
    assert i.digest.hex() == "88589f1cd533172412ec8bb7430790849514ff63ae562004ca9f1d976d148f7a"
    assert (str(i.transfer_id), i.kind) == ("0190b5a8-7a3e-7cc1-9d3e-3f1c2a4b5c6d", "withdrawal")
    assert str(i.wallet_id) == "0190b5a8-0000-7000-8000-000000000002"
    assert (i.asset_id, i.symbol, i.decimals, i.units) == (
        "bitcoin:mainnet/native",
        "BTC",
        8,
        150_000_000,
    )
    assert i.amount == "1.5"
    assert i.destination == "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
    assert i.reference == "invoice 42"
    assert i.initiator == "api-key:0190b5a8-0000-7000-8000-000000000003"
    assert i.created_at_ms == 1_795_322_120_123


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b + b"\x00",  # trailing byte
        lambda b: b[:-1],  # truncated
        lambda b: b"SRTX" + b[4:],  # another format
        lambda b: b[:5] + b"\x02" + b[6:],  # version 2
        lambda b: b[:22] + b"\x09" + b[23:],  # unknown kind
    ],
)
def test_a_damaged_intent_is_refused(damage):
    with pytest.raises(FormatError):
        decode_intent(damage(SRTI_VECTOR))


def test_the_approval_statement_layout():
    digest = bytes(range(32))
    decision = uuid.UUID("0190b5a8-0000-7000-8000-0000000000aa")
    m = approval_statement(digest, 7, decision, 1_795_322_120_123, Vote.REJECT)
    assert len(m) == 71
    assert m[:6] == b"SRAP\x00\x01"
    assert m[6:38] == digest
    assert m[38:46] == (7).to_bytes(8, "big")
    assert m[46:62] == decision.bytes
    assert m[62:70] == (1_795_322_120_123).to_bytes(8, "big")
    assert m[70] == 2


def test_the_request_message_vector():
    m = request_message(
        "POST", "/v1/x", "a=1", b"{}", "1700000000000", "n0nce-n0nce-n0nce", "order-17"
    )
    assert m.decode() == (
        "strongroom-request-v2\nPOST\n/v1/x\na=1\n"
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\n"
        "1700000000000\nn0nce-n0nce-n0nce\norder-17"
    )


def test_an_api_key_file_is_read_and_never_shown(tmp_path):
    seed = bytes([3] * 32)
    path = tmp_path / "k.key"
    path.write_text(
        "strongroom-api-key-v1\nid 0190b5a8-0000-7000-8000-000000000003\n"
        f"secret {seed.hex()}\n"
    )
    key = ApiKey.from_file(path)
    assert key.key_id == "0190b5a8-0000-7000-8000-000000000003"
    assert seed.hex() not in repr(key)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key.public_key_hex == raw.hex()
    public.verify(key.sign(b"m"), b"m")


def test_the_standard_webhooks_vector():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    sig = webhook_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {
        "Webhook-Id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "Webhook-Timestamp": "1614265330",
        "Webhook-Signature": "v1,bm90IHRoaXMgb25l " + sig,
    }
    assert verify_webhook(secret, headers, body, now_s=1614265331) == {"test": 2432232314}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, headers, body + b" ", now_s=1614265331)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, headers, body, now_s=1614265330 + 301)


def _chain(n: int) -> list[AuditRecord]:
    out, prev = [], bytes(32)
    for seq in range(1, n + 1):
        r = AuditRecord(seq, seq, "system", "test.event", f"n:{seq}", "{}", "")
        h = r.computed_hash(prev)
        out.append(AuditRecord(seq, seq, "system", "test.event", f"n:{seq}", "{}", h.hex()))
        prev = h
    return out


def test_the_record_vector_hashes_from_the_zero_hash():
    r = AuditRecord(
        seq=1,
        time_ms=1_795_322_120_123,
        actor="operator:alice",
        action="account.created",
        subject="account:0190b5a8-0000-7000-8000-000000000001",
        details='{"name":"Treasury","tier":1}',
        hash=SRAR_VECTOR_HASH,
    )
    assert r.computed_hash(bytes(32)).hex() == SRAR_VECTOR_HASH


def test_the_checkpoint_vector_verifies():
    (cp,) = parse_checkpoints(CHECKPOINT_VECTOR)
    assert (cp.seq, cp.line) == (42, 1)
    key = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
    # As the only checkpoint, of record 42, of a log of one record: truncated.
    with pytest.raises(AuditBreak) as b:
        verify(_chain(1), [cp], key)
    assert b.value.kind == "truncated"
    forged = Checkpoint(1, 1, 41, cp.head, cp.time_ms, cp.key, cp.sig)
    with pytest.raises(AuditBreak) as b:
        verify([], [forged], key)
    assert b.value.kind == "bad_checkpoint"


def _sign(seed: bytes, seq: int, head: str, time_ms: int, line: int) -> Checkpoint:
    k = Ed25519PrivateKey.from_private_bytes(seed)
    public = k.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    unsigned = Checkpoint(line, 1, seq, head, time_ms, public.hex(), "")
    sig = k.sign(unsigned.message(bytes.fromhex(head)))
    return Checkpoint(line, 1, seq, head, time_ms, public.hex(), sig.hex())


def test_every_kind_of_tampering_is_named():
    seed = bytes([9] * 32)
    good = _chain(10)
    cp = _sign(seed, 8, good[7].hash, 0, 1)
    key = cp.key

    def check(records, cps=(cp,)):
        try:
            r = verify(records, list(cps), key)
            return f"ok {r.records} last checkpoint {r.last_checkpoint}"
        except AuditBreak as b:
            return f"{b.kind} {b.first_broken_record}"

    edited = list(good)
    edited[4] = AuditRecord(5, 5, "system", "test.event", "n:50", "{}", good[4].hash)
    deleted = good[:3] + good[4:]
    reordered = good[:5] + [good[6], good[5]] + good[7:]
    # Record 2 hashed over another previous hash, as if record 1 were another.
    unlinked = AuditRecord(**{**good[1].__dict__, "prev_hash": "00" * 32})
    unlinked = AuditRecord(
        **{**unlinked.__dict__, "hash": unlinked.computed_hash(bytes(32)).hex()}
    )
    linked = [good[0], unlinked] + good[2:]
    other_key = _sign(bytes([8] * 32), 8, good[7].hash, 0, 1)
    assert [
        check(good),
        check(edited),
        check(deleted),
        check(reordered),
        check(good[:6]),
        check(good, ()),
        check(linked),
        check(good, (other_key,)),
    ] == [
        "ok 10 last checkpoint 8",
        "edited 5",
        "missing 4",
        "missing 6",
        "truncated 7",
        "no_checkpoints None",
        "relinked 2",
        "bad_checkpoint None",
    ]


def test_a_rewritten_tail_is_caught_only_by_the_checkpoint():
    seed = bytes([9] * 32)
    good = _chain(10)
    cp = _sign(seed, 8, good[7].hash, 0, 1)
    rewritten, prev = good[:5], bytes.fromhex(good[4].hash)
    for seq in range(6, 11):
        r = AuditRecord(seq, seq, "system", "test.event", f"forged:{seq}", "{}", "")
        h = r.computed_hash(prev)
        rewritten.append(AuditRecord(seq, seq, "system", "test.event", f"forged:{seq}", "{}", h.hex()))
        prev = h
    with pytest.raises(AuditBreak) as b:
        verify(rewritten, [cp], cp.key)
    assert (b.value.kind, b.value.first_broken_record) == ("checkpoint_mismatch", 8)


def test_a_torn_last_line_never_counted():
    text = CHECKPOINT_VECTOR + '{"v":1,"seq":43,"he'
    assert [c.seq for c in parse_checkpoints(text)] == [42]


def test_records_survive_their_json_form():
    r = _chain(1)[0]
    assert AuditRecord.from_json(json.loads(json.dumps(r.to_json()))) == r

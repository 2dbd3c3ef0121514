"""Tests of webhook parsing and signatures (capsule_freshbooks_connector/freshbooks/webhooks.py)."""

import base64
import hashlib
import hmac
import json

import pytest
from freshbooks import parse_webhook_body, sign_webhook, verify_webhook

VERIFIER = "scADVVi5QuKuj5qTjVkbJNYQe7V7USpGd"
# A client.update delivery as FreshBooks posts it (form-encoded, only IDs).
BODY = (b"name=client.update&object_id=921895&user_id=1&identity_id=14051539"
        b"&business_id=14393743&account_id=p7rQW5")
# base64(HMAC-SHA256(VERIFIER, json.dumps(fields))) for BODY, computed once with FreshBooks'
# snippet below: pins the algorithm even if both copies were changed alike.
SIGNATURE = "iJZOXmjrd3oWVqpjPSOD3T4h++SND5zKcEcZTK3y6g0="


def freshbooks_signature(verifier, message):
    """FreshBooks' own signing snippet, as its SDKs' documentation quotes it."""
    msg = dict((k, str(v)) for k, v in message.items())  # noqa: C402 - quoted verbatim
    dig = hmac.new(verifier.encode("utf-8"), msg=json.dumps(msg).encode("utf-8"),
                   digestmod=hashlib.sha256).digest()
    return base64.b64encode(dig).decode()


def test_parse_keeps_the_received_order():
    assert parse_webhook_body(BODY) == [
        ("name", "client.update"), ("object_id", "921895"), ("user_id", "1"),
        ("identity_id", "14051539"), ("business_id", "14393743"), ("account_id", "p7rQW5")]


def test_parse_decodes_the_form_encoding():
    assert parse_webhook_body(b"a=x+y&b=%C3%A9t%C3%A9&c=") == [("a", "x y"), ("b", "été"), ("c", "")]


@pytest.mark.parametrize("raw", [
    b"\xff\xfe\x00garbage",  # not UTF-8
    b"",
    b"   ",
    b"name",  # a field without '='
    b"name=a&&object_id=1",  # an empty field
    b"object_id=1&object_id=2",  # a repeated field: the signed JSON object would be ambiguous
    b"name=%ff",  # percent-encoded bytes that are not UTF-8
    None,
])
def test_parse_rejects_malformed_bodies(raw):
    with pytest.raises(ValueError):
        parse_webhook_body(raw)


def test_sign_matches_freshbooks_algorithm():
    fields = parse_webhook_body(BODY)
    assert sign_webhook(VERIFIER, fields) == SIGNATURE
    assert freshbooks_signature(VERIFIER, dict(fields)) == SIGNATURE
    assert sign_webhook(VERIFIER, dict(fields)) == SIGNATURE


def test_sign_casts_values_to_text():
    assert sign_webhook(VERIFIER, [("object_id", 921895)]) == \
        sign_webhook(VERIFIER, [("object_id", "921895")])


def test_sign_depends_on_field_order():
    fields = parse_webhook_body(BODY)
    assert sign_webhook(VERIFIER, list(reversed(fields))) != SIGNATURE


def test_verify_accepts_freshbooks_signature():
    assert verify_webhook(VERIFIER, BODY, SIGNATURE) is True
    assert verify_webhook(VERIFIER, BODY, f"  {SIGNATURE}\n") is True


@pytest.mark.parametrize("verifier, raw, signature", [
    (VERIFIER, BODY, sign_webhook("another-verifier", parse_webhook_body(BODY))),  # wrong
    (VERIFIER, BODY, "AAAA" + SIGNATURE[4:]),  # wrong
    (VERIFIER, BODY, ""),  # missing
    (VERIFIER, BODY, None),  # missing
    (VERIFIER, BODY.replace(b"921895", b"921896"), SIGNATURE),  # tampered body
    (VERIFIER, BODY + b"&extra=1", SIGNATURE),  # tampered body
    (VERIFIER, b"&".join(reversed(BODY.split(b"&"))), SIGNATURE),  # reordered fields
    (VERIFIER, b"\x00\xff\xfe\x9c garbage", SIGNATURE),  # garbage bytes
    (VERIFIER, BODY, "not base64 at all!"),
    (VERIFIER, BODY, "é"),
    (VERIFIER, None, SIGNATURE),
    ("", BODY, SIGNATURE),
    (None, BODY, SIGNATURE),
    ("another-verifier", BODY, SIGNATURE),
])
def test_verify_rejects(verifier, raw, signature):
    assert verify_webhook(verifier, raw, signature) is False

"""FreshBooks webhook deliveries: body parsing and the HMAC signature.

FreshBooks signs a delivery (header X-FreshBooks-Hmac-SHA256) with
base64(HMAC-SHA256(key=verifier, msg=json.dumps({field: str(value), ...}))): the form fields in the
order they were sent, serialised with Python's default separators. That is FreshBooks' own snippet,
quoted in its SDKs' documentation.
"""

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qsl

# A delivery has six fields; a body with many more is not FreshBooks'.
MAX_FIELDS = 50


def parse_webhook_body(raw_body):
    """The form fields of a delivery as (key, value) pairs, in the order they were received.

    Raises ValueError when the body is not a UTF-8 form or repeats a field (the signature is
    computed over a JSON object, where a repeated key would be ambiguous).
    """
    if isinstance(raw_body, (bytes, bytearray)):
        try:
            raw_body = bytes(raw_body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError("The webhook body is not UTF-8 text.") from error
    if not isinstance(raw_body, str):
        raise ValueError("The webhook body must be bytes.")
    if not raw_body.strip():
        raise ValueError("The webhook body is empty.")
    # strict_parsing and errors="strict" turn garbage into ValueError instead of odd fields.
    pairs = parse_qsl(raw_body, keep_blank_values=True, strict_parsing=True, errors="strict",
                      max_num_fields=MAX_FIELDS)
    keys = [key for key, _value in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("The webhook body repeats a field.")
    return pairs


def sign_webhook(verifier, fields):
    """FreshBooks' signature of these fields: (key, value) pairs or a dict, in received order."""
    pairs = fields.items() if isinstance(fields, dict) else fields
    message = json.dumps({key: str(value) for key, value in pairs})
    digest = hmac.new(verifier.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_webhook(verifier, raw_body, signature):
    """True only when `signature` is FreshBooks' signature of `raw_body` under `verifier`.

    Never raises: a missing verifier or signature, a signature that is not base64 or a body that
    is not a form all give False.
    """
    if not isinstance(verifier, str) or not verifier or not isinstance(signature, str):
        return False
    try:
        given = base64.b64decode(signature.strip(), validate=True)
        pairs = parse_webhook_body(raw_body)
    except ValueError:  # binascii.Error is a ValueError too
        return False
    expected = base64.b64decode(sign_webhook(verifier, pairs))
    return hmac.compare_digest(expected, given)

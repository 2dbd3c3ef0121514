"""FreshBooks webhook signatures.

FreshBooks signs a delivery with base64(HMAC-SHA256(verifier, json.dumps(fields))), where fields
are the form fields in the order received, every value a string, serialised with Python's default
separators (FreshBooks' own snippet, quoted in its SDKs' docs).
"""

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qsl


def parse_webhook_body(raw_body):
    """The form fields of a delivery as (key, value) pairs, in the order they came."""
    if isinstance(raw_body, bytes):
        try:
            raw_body = raw_body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError("webhook body is not UTF-8") from error
    try:
        return parse_qsl(raw_body, keep_blank_values=True, strict_parsing=bool(raw_body))
    except ValueError as error:
        raise ValueError(f"webhook body is not a form: {error}") from error


def sign_webhook(verifier, fields):
    """The signature FreshBooks sends for these fields (pairs or a dict, in order)."""
    pairs = fields.items() if isinstance(fields, dict) else fields
    message = json.dumps({str(k): str(v) for k, v in pairs})
    digest = hmac.new(verifier.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_webhook(verifier, raw_body, signature):
    """True when `signature` is FreshBooks' signature of `raw_body`; never raises."""
    if not verifier or not signature or not isinstance(signature, str):
        return False
    try:
        expected = sign_webhook(verifier, parse_webhook_body(raw_body))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("ascii", "replace"))

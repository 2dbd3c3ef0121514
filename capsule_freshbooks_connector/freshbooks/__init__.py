"""FreshBooks API client: plain Python and requests, nothing here imports Odoo."""

from .client import ACCOUNTING_RESOURCES, DEFAULT_SCOPES, Business, FreshBooksClient, TokenSet
from .errors import (
    AuthError,
    FreshBooksError,
    MalformedResponseError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from .webhooks import parse_webhook_body, sign_webhook, verify_webhook

__all__ = [
    "ACCOUNTING_RESOURCES",
    "DEFAULT_SCOPES",
    "AuthError",
    "Business",
    "FreshBooksClient",
    "FreshBooksError",
    "MalformedResponseError",
    "NetworkError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "TokenSet",
    "ValidationError",
    "parse_webhook_body",
    "sign_webhook",
    "verify_webhook",
]

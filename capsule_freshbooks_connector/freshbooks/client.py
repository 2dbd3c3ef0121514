"""A small FreshBooks API client: OAuth 2, identity, clients, invoices and webhook callbacks.

Plain `requests` rather than oauthlib or FreshBooks' SDK: single-use refresh tokens need a refresh
the caller can lock and persist, which neither gives, and the SDK neither retries well nor pages.
"""

import email.utils
import logging
import random
import time
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlencode, urlsplit

import requests
from urllib3.exceptions import NewConnectionError

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

_logger = logging.getLogger(__name__)

DEFAULT_SCOPES = ("user:profile:read", "user:clients:read", "user:clients:write",
                  "user:invoices:read")
PER_PAGE = 100  # FreshBooks caps per_page at 100
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A create may have happened when the answer was lost; only these say it certainly did not.
POST_RETRY_STATUSES = frozenset({429, 503})
REFRESH_MARGIN = 60  # seconds before expiry at which a token is renewed
GRANT_ERRORS = frozenset({"invalid_grant", "unauthorized_client", "invalid_client"})
NOT_FOUND_ERRNOS = frozenset({1011, 1012})


@dataclass
class TokenSet:
    access_token: str
    refresh_token: str
    expires_at: float  # epoch seconds
    scope: str = ""


@dataclass
class Business:
    account_id: str
    business_id: str
    name: str
    role: str


def _day(value):
    if isinstance(value, (date, datetime)):
        return value.strftime("%Y-%m-%d")
    text = str(value)
    datetime.strptime(text, "%Y-%m-%d")  # raises ValueError on anything else
    return text


def _not_sent(error):
    """True when a request failed before reaching FreshBooks (safe to resend a POST)."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(error, requests.exceptions.ConnectionError) and isinstance(
        reason, NewConnectionError)


def _error_fields(data, text):
    """(errno, field, message, details) from any of FreshBooks' error shapes."""
    if isinstance(data, dict):
        errors = (data.get("response") or {}).get("errors") if isinstance(
            data.get("response"), dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            return first.get("errno"), first.get("field"), first.get("message"), errors
        details = data.get("details")
        if "code" in data and isinstance(details, list) and details and isinstance(
                details[0], dict):
            meta = details[0].get("metadata") or {}
            reason = details[0].get("reason")
            errno = int(reason) if str(reason or "").isdigit() else data.get("code")
            return errno, meta.get("field"), meta.get("message") or data.get("message"), details
        if "error" in data:
            return data.get("error"), None, data.get("error_description") or data["error"], None
        if "errno" in data or "message" in data:
            return data.get("errno"), None, data.get("message"), details
    snippet = " ".join((text or "").split())[:200]
    return None, None, snippet or None, None


def _retry_after(response):
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class FreshBooksClient:
    """One FreshBooks user's view of the API. Not thread-safe: one client per job."""

    def __init__(self, client_id, client_secret, redirect_uri, *,
                 api_url="https://api.freshbooks.com", auth_url="https://auth.freshbooks.com",
                 tokens=None, token_refresher=None, token_updater=None, timeout=(5, 30),
                 max_retries=4, backoff=0.5, max_retry_wait=60, min_interval=0.0,
                 sleep=time.sleep, session=None):
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.api_url = api_url.rstrip("/")
        self.auth_url = auth_url.rstrip("/")
        self.tokens = tokens
        self.token_refresher = token_refresher
        self.token_updater = token_updater
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_retry_wait = max_retry_wait
        self.min_interval = min_interval
        self.sleep = sleep
        self.session = session or requests.Session()
        self.request_count = 0
        self._last_request = 0.0

    # --- OAuth -----------------------------------------------------------------------------------

    def authorization_url(self, state, scopes=DEFAULT_SCOPES):
        query = urlencode({"client_id": self.client_id, "response_type": "code",
                           "redirect_uri": self.redirect_uri, "scope": " ".join(scopes),
                           "state": state})
        return f"{self.auth_url}/oauth/authorize?{query}"

    def exchange_code(self, code):
        return self._token_request({"grant_type": "authorization_code", "code": code})

    def refresh(self):
        """Trade the refresh token for a new pair; the old refresh token is spent."""
        if not self.tokens or not self.tokens.refresh_token:
            raise AuthError("No FreshBooks refresh token: connect again.", grant_invalid=True)
        return self._token_request({"grant_type": "refresh_token",
                                    "refresh_token": self.tokens.refresh_token})

    def revoke(self):
        """Revoke the grant where FreshBooks offers it; a missing endpoint is not an error."""
        token = self.tokens and (self.tokens.refresh_token or self.tokens.access_token)
        if not token:
            return
        response = self._send("POST", self.api_url + "/auth/oauth/revoke", json={
            "client_id": self.client_id, "client_secret": self.client_secret, "token": token},
            auth=False)
        if response.status_code in (404, 405):
            return
        self._parse(response)

    def _token_request(self, body):
        body = dict(body, client_id=self.client_id, client_secret=self.client_secret,
                    redirect_uri=self.redirect_uri)
        data = self._parse(self._send("POST", self.api_url + "/auth/oauth/token", json=body,
                                      auth=False), token_endpoint=True)
        try:
            expires_in = float(data["expires_in"])
            created_at = float(data.get("created_at") or time.time())
            tokens = TokenSet(str(data["access_token"]), str(data.get("refresh_token") or ""),
                              created_at + expires_in, str(data.get("scope") or ""))
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedResponseError(
                "FreshBooks' token answer lacks the access token or its lifetime") from error
        self.tokens = tokens
        if self.token_updater:
            self.token_updater(tokens)
        return tokens

    def _renew(self):
        if self.token_refresher:
            self.tokens = self.token_refresher(self)
        else:
            self.refresh()

    # --- identity --------------------------------------------------------------------------------

    def me(self):
        data = self._call("GET", "/auth/api/v1/users/me")
        me = data.get("response", data)
        if not isinstance(me, dict):
            raise MalformedResponseError("FreshBooks' users/me answer is not an object")
        return me

    def businesses(self):
        """The businesses this user can connect (not those where they are only a client)."""
        result = []
        for membership in self.me().get("business_memberships") or []:
            business = membership.get("business") or {}
            if membership.get("role") == "client" or not business.get("account_id"):
                continue
            result.append(Business(str(business["account_id"]), str(business.get("id") or ""),
                                   str(business.get("name") or business["account_id"]),
                                   str(membership.get("role") or "")))
        return result

    # --- clients ---------------------------------------------------------------------------------

    def _clients_path(self, account_id):
        return f"/accounting/account/{account_id}/users/clients"

    def iter_clients(self, account_id, updated_since=None, vis_state=None, client_ids=None):
        params = []
        if updated_since is not None:
            params.append(("search[updated_min]", _day(updated_since)))
        if vis_state is not None:
            params.append(("search[vis_state]", int(vis_state)))
        for client_id in client_ids or ():
            params.append(("search[userids][]", client_id))
        return self._iter_pages(self._clients_path(account_id), "clients", params)

    def get_client(self, account_id, client_id):
        return self._one(self._call("GET", f"{self._clients_path(account_id)}/{client_id}"),
                         "client")

    def create_client(self, account_id, data):
        return self._one(self._call("POST", self._clients_path(account_id),
                                    json={"client": data}), "client")

    def update_client(self, account_id, client_id, data):
        if "vis_state" in data and len(data) > 1:
            # FreshBooks applies vis_state alone and silently drops the other fields.
            raise ValueError("send vis_state on its own, not with other client fields")
        return self._one(self._call("PUT", f"{self._clients_path(account_id)}/{client_id}",
                                    json={"client": data}), "client")

    # --- invoices --------------------------------------------------------------------------------

    def _invoices_path(self, account_id):
        return f"/accounting/account/{account_id}/invoices/invoices"

    def iter_invoices(self, account_id, updated_since=None, client_id=None):
        params = []
        if updated_since is not None:
            params.append(("search[updated_min]", _day(updated_since)))
        if client_id is not None:
            params.append(("search[customerid]", client_id))
        return self._iter_pages(self._invoices_path(account_id), "invoices", params)

    def get_invoice(self, account_id, invoice_id):
        return self._one(self._call("GET", f"{self._invoices_path(account_id)}/{invoice_id}"),
                         "invoice")

    # --- webhook callbacks -----------------------------------------------------------------------

    def _callbacks_path(self, account_id):
        return f"/events/account/{account_id}/events/callbacks"

    def create_callback(self, account_id, event, uri):
        return self._one(self._call("POST", self._callbacks_path(account_id),
                                    json={"callback": {"event": event, "uri": uri}}), "callback")

    def verify_callback(self, account_id, callback_id, verifier):
        return self._one(self._call("PUT", f"{self._callbacks_path(account_id)}/{callback_id}",
                                    json={"callback": {"verifier": verifier}}), "callback")

    def resend_callback_verification(self, account_id, callback_id):
        return self._one(self._call("PUT", f"{self._callbacks_path(account_id)}/{callback_id}",
                                    json={"callback": {"resend": True}}), "callback")

    def list_callbacks(self, account_id):
        return list(self._iter_pages(self._callbacks_path(account_id), "callbacks", []))

    def delete_callback(self, account_id, callback_id):
        self._call("DELETE", f"{self._callbacks_path(account_id)}/{callback_id}")

    # --- machinery -------------------------------------------------------------------------------

    @staticmethod
    def _result(data):
        """The `result` object, with or without the `response` wrapper."""
        inner = data.get("response", data) if isinstance(data, dict) else None
        inner = inner.get("result", inner) if isinstance(inner, dict) else None
        if not isinstance(inner, dict):
            raise MalformedResponseError("FreshBooks' answer has no result object")
        return inner

    def _one(self, data, key):
        value = self._result(data).get(key)
        if not isinstance(value, dict):
            raise MalformedResponseError(f"FreshBooks' answer has no {key} object")
        return value

    def _iter_pages(self, path, key, params):
        page = 1
        while True:
            data = self._call("GET", path, params=[*params, ("page", page), ("per_page", PER_PAGE)])
            result = self._result(data)
            items = result.get(key)
            if not isinstance(items, list):
                raise MalformedResponseError(f"FreshBooks' answer has no list of {key}")
            yield from items
            try:
                pages = int(result.get("pages") or 1)
            except (TypeError, ValueError):
                pages = 1
            if not items or page >= pages:
                return
            page += 1

    def _call(self, method, path, params=None, json=None):
        """An authenticated API call with one token renewal on 401; returns the JSON body."""
        if self.tokens and self.tokens.refresh_token and \
                self.tokens.expires_at - time.time() < REFRESH_MARGIN:
            self._renew()
        url = self.api_url + path
        response = self._send(method, url, params=params, json=json)
        if response.status_code == 401:
            if not self.tokens or not self.tokens.refresh_token:
                raise self._error(response, grant_invalid=True)
            self._renew()
            response = self._send(method, url, params=params, json=json)
        return self._parse(response)

    def _send(self, method, url, params=None, json=None, auth=True):
        """One request, resent on 429, 5xx and network errors with backoff; returns the answer."""
        headers = {"Accept": "application/json"}
        attempt = 0
        while True:
            if auth and self.tokens:
                headers["Authorization"] = f"Bearer {self.tokens.access_token}"
            wait = self.min_interval - (time.monotonic() - self._last_request)
            if wait > 0:
                self.sleep(wait)
            self.request_count += 1
            try:
                response = self.session.request(method, url, params=params, json=json,
                                                headers=headers, timeout=self.timeout)
            except requests.exceptions.RequestException as error:
                self._last_request = time.monotonic()
                retryable = method != "POST" or _not_sent(error)
                if not retryable or attempt >= self.max_retries:
                    raise NetworkError(
                        f"FreshBooks could not be reached ({type(error).__name__})") from error
                _logger.info("FreshBooks %s %s failed (%s), retrying", method,
                             urlsplit(url).path, type(error).__name__)
                self.sleep(self._wait(attempt, None))
                attempt += 1
                continue
            self._last_request = time.monotonic()
            status = response.status_code
            _logger.debug("FreshBooks %s %s -> %s", method, urlsplit(url).path, status)
            retryable = status in (POST_RETRY_STATUSES if method == "POST" else RETRY_STATUSES)
            if not retryable or attempt >= self.max_retries:
                return response
            _logger.info("FreshBooks %s %s answered %s, retrying", method,
                         urlsplit(url).path, status)
            self.sleep(self._wait(attempt, _retry_after(response)))
            attempt += 1

    def _wait(self, attempt, retry_after):
        if retry_after is not None:
            return min(retry_after, self.max_retry_wait)
        return min(self.backoff * 2 ** attempt + random.uniform(0, self.backoff),  # noqa: S311
                   self.max_retry_wait)

    def _parse(self, response, token_endpoint=False):
        status = response.status_code
        if 200 <= status < 300:
            if status == 204 or not response.content:
                return {}
            try:
                data = response.json()
            except ValueError:
                raise MalformedResponseError(
                    f"FreshBooks answered {status} with a body that is not JSON",
                    status=status) from None
            if not isinstance(data, dict):
                raise MalformedResponseError("FreshBooks' answer is not a JSON object",
                                             status=status)
            errors = data.get("response", {}).get("errors") if isinstance(
                data.get("response"), dict) else None
            if errors:
                raise self._error(response, data=data)
            return data
        raise self._error(response, token_endpoint=token_endpoint)

    def _error(self, response, data=None, grant_invalid=False, token_endpoint=False):
        status = response.status_code
        if data is None:
            try:
                data = response.json()
            except ValueError:
                data = None
        errno, field, message, details = _error_fields(data, response.text)
        kwargs = {"status": status, "errno": errno, "field": field, "details": details}
        try:
            errno_int = int(errno)
        except (TypeError, ValueError):
            errno_int = None
        if errno in GRANT_ERRORS or (token_endpoint and status in (400, 401)):
            return AuthError(f"FreshBooks refused the sign-in: {message}", grant_invalid=True,
                             **kwargs)
        if status == 401:
            return AuthError(f"FreshBooks refused the access token: {message}",
                             grant_invalid=grant_invalid, **kwargs)
        if status == 404 or errno_int in NOT_FOUND_ERRNOS:
            return NotFoundError(f"Not found in FreshBooks: {message}", **kwargs)
        if status == 403:
            return AuthError(f"FreshBooks denied access: {message}", **kwargs)
        if status == 429:
            return RateLimitError(f"FreshBooks is rate limiting requests: {message}",
                                  retry_after=_retry_after(response), **kwargs)
        if status >= 500:
            return ServerError(f"FreshBooks had a server error ({status}): {message}", **kwargs)
        if status in (400, 422) or 200 <= status < 300:
            return ValidationError(f"FreshBooks rejected the request: {message}", **kwargs)
        return FreshBooksError(f"FreshBooks answered {status}: {message}", **kwargs)

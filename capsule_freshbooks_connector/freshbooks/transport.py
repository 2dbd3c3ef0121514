"""The HTTP side of the FreshBooks client: requests with timeouts, retries and typed errors
(OAuth answers read by oauthlib), token renewal on expiry, and paging."""

import email.utils
import errno as errno_codes
import json
import logging
import random
import re
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from oauthlib.oauth2 import (
    InvalidGrantError,
    OAuth2Error,
    UnauthorizedClientError,
    WebApplicationClient,
)

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


@dataclass
class TokenSet:
    # Kept out of repr so that logging a TokenSet cannot leak the tokens.
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float  # epoch seconds
    scope: str = ""

PER_PAGE = 100  # FreshBooks silently caps per_page at 100
# A listing that keeps sending full pages without a page count stops here (a million items).
MAX_PAGES = 10000
REFRESH_MARGIN = 60  # seconds: a token this close to expiry is renewed before the call
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A create may have happened behind a 500 or a lost answer; 429 and 503 say it was not processed.
POST_RETRY_STATUSES = frozenset({429, 503})
# connect() failures: the request never left, so even a POST can be sent again.
CONNECT_ERRNOS = frozenset({errno_codes.ECONNREFUSED, errno_codes.ENETUNREACH,
                            errno_codes.EHOSTUNREACH, errno_codes.EADDRNOTAVAIL})
# oauthlib's RFC 6749 errors saying the grant itself is gone: only a new authorization helps.
GRANT_GONE = (InvalidGrantError, UnauthorizedClientError)
NOT_FOUND_ERRNOS = frozenset({1011, 1012})  # DeletedResource, UnknownResource
VALIDATION_ERRNOS = frozenset({1001, 1004, 1005, 1013, 1014, 1017})
ACCESS_DENIED_ERRNO = 1003
SNIPPET_LENGTH = 200


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_token_answer(data):
    """A token answer (a JSON object) read by oauthlib: its OAuth2Token, or the typed
    OAuth2Error it holds raised (InvalidGrantError, MissingTokenError, ...).

    Read leniently where oauthlib is strict: the refresh token the answer replaces is already
    spent, so an odd `expires_in` or `scope` must not lose the new pair.
    """
    answer = dict(data)
    if "expires_in" in answer:
        answer["expires_in"] = _number(answer["expires_in"])
    if "scope" in answer:
        answer["scope"] = str(answer["scope"] or "")
    # A client of its own per answer: oauthlib keeps the token it parsed on the client, and page
    # helper threads read error bodies at the same time.
    return WebApplicationClient(None).parse_request_body_response(json.dumps(answer))


def _oauth_error(data):
    """oauthlib's typed error for an OAuth error body ({"error": code, ...}), else None."""
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        return None
    try:
        read_token_answer(data)
    except OAuth2Error as error:
        return error


def _never_sent(error):
    """True when the request failed while connecting, before FreshBooks could see it."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(error, requests.exceptions.ConnectionError):
        return False
    # requests wraps urllib3's errors, which wrap the socket's: look down the whole chain.
    seen, pending = set(), [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror) or (
                isinstance(current, OSError) and current.errno in CONNECT_ERRNOS):
            return True
        linked = (*current.args[:1], getattr(current, "reason", None), current.__cause__,
                  current.__context__)
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return False


def _retry_after(response):
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    seconds = _number(value)
    if seconds is None:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds)


def _snippet(text):
    """A short, tag-free excerpt of a body that is not JSON (an HTML error page, say)."""
    text = " ".join(re.sub(r"<[^>]*>", " ", text or "").split())
    return text if len(text) <= SNIPPET_LENGTH else text[:SNIPPET_LENGTH] + "…"


def _detail_field(detail):
    """'event' from an events-API detail such as 'event: Value error, Unrecognized event.'."""
    match = re.match(r"\s*([A-Za-z_][\w.\[\]]*)\s*:", detail)
    return match.group(1) if match else None


def _error_parts(data):
    """(errno, field, message, details, oauthlib error) from any of FreshBooks' error bodies."""
    if not isinstance(data, dict):
        return None
    response = data.get("response")
    errors = response.get("errors") if isinstance(response, dict) else None
    if isinstance(errors, list) and errors:
        # Accounting: {"response": {"errors": [{"errno", "field", "message", ...}]}}
        first = errors[0] if isinstance(errors[0], dict) else {}
        return first.get("errno"), first.get("field"), first.get("message"), errors, None
    details = data.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        # The google.rpc shape some API versions used: the FreshBooks errno is the "reason".
        info = details[0]
        meta = info.get("metadata") if isinstance(info.get("metadata"), dict) else {}
        return (_int(info.get("reason")), meta.get("field"), meta.get("message") or data.get("message"),
                details, None)
    oauth = _oauth_error(data)
    if oauth is not None:
        # OAuth: {"error": "invalid_grant", "error_description": "..."}, typed by oauthlib. The
        # words are the body's own: oauthlib's default descriptions may name another error.
        code, description = data["error"], data.get("error_description")
        return None, None, f"{description} ({code})" if description else code, None, oauth
    if "errno" in data or "message" in data:
        # Events: {"errno": 422, "message": "...", "details": ["uri: ...", ...]}
        message, first_field = data.get("message"), None
        if isinstance(details, list) and details:
            reasons = [str(item) for item in details]
            first_field = _detail_field(reasons[0])
            message = f"{message} ({'; '.join(reasons)})" if message else "; ".join(reasons)
        return data.get("errno"), first_field, message, details, None
    return None


class _RenewFirst(Exception):
    """A page asked by a helper thread needs the token renewed: only the caller's thread
    renews (its refresher may use the caller's database connection), so it asks again."""


def _result(data):
    """The result object, with or without the {"response": {"result": ...}} wrappers."""
    if isinstance(data, dict) and isinstance(data.get("response"), dict):
        data = data["response"]
    if isinstance(data, dict) and isinstance(data.get("result"), dict):
        data = data["result"]
    if not isinstance(data, dict):
        raise MalformedResponseError("The answer holds no result object.",
                                     summary=MalformedResponseError.summary)
    return data


class Transport:
    """Requests to FreshBooks as one connected user. Subclasses provide `refresh()`, the plain
    token refresh used when no `token_refresher` is given. One per job: only the pages a listing
    asks ahead come from helper threads, and they never renew the token."""

    def __init__(self, api_url, tokens=None, token_refresher=None, timeout=(5, 30),
                 max_retries=4, backoff=0.5, max_retry_wait=60, min_interval=0.0, sleep=time.sleep,
                 max_pages=MAX_PAGES):
        self.api_url = api_url.rstrip("/")
        self.tokens = tokens
        self.token_refresher = token_refresher
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_retry_wait = max_retry_wait
        self.min_interval = min_interval
        self.sleep = sleep
        self.max_pages = max_pages
        # Listings cut short by max_pages: a caller must not take them as complete.
        self.truncated = []
        # FreshBooks' count of each listing's objects (its `total`), as of its latest page.
        self.totals = {}
        self.session = requests.Session()  # one connection pool for all calls
        self.request_count = 0
        self._last_request_at = None
        self._lock = threading.Lock()  # the count and the pacing, shared with page helpers

    def _can_renew(self):
        return self.token_refresher is not None or bool(self.tokens and self.tokens.refresh_token)

    def _renew(self):
        if self.token_refresher is None:
            self.refresh()
            return
        tokens = self.token_refresher(self)
        if not isinstance(tokens, TokenSet):
            raise TypeError("token_refresher must return a TokenSet")
        self.tokens = tokens

    def _pages(self, url, key, params, ahead=1, start=1):
        """Each non-empty page of a listing from page `start`, as a list; FreshBooks' `pages`
        may be 0 when empty.

        With `ahead` > 1, once the first answer gives the page count, up to that many pages are
        asked at once by helper threads (each request waits on the network far longer than its
        answer takes to read) and still handed over in order.
        """
        def fetch(page, renew=True):
            return _result(self._request(
                "GET", url, params=[*params, ("page", page), ("per_page", PER_PAGE)],
                renew=renew))

        # Pages asked ahead are consecutive, from the next one to hand over.
        page, next_ask, pending = start, start + 1, deque()
        with ThreadPoolExecutor(max(ahead, 1), "freshbooks-page") as helpers:
            try:
                result = fetch(page)
                while True:
                    items = self._items(result, key)
                    if items:
                        yield items
                    pages = _int(result.get("pages"))
                    # Without a page count, a short page is the last one.
                    if not items or (page >= pages if pages is not None else
                                     len(items) < PER_PAGE):
                        return
                    if page >= self.max_pages:
                        _logger.warning("FreshBooks listing of %s stopped after %s pages", key,
                                        page)
                        self.truncated.append(key)
                        return
                    page += 1
                    if ahead > 1 and pages is not None:
                        while next_ask <= min(pages, self.max_pages) and next_ask < page + ahead:
                            pending.append(helpers.submit(fetch, next_ask, False))
                            next_ask += 1
                    if pending:
                        try:
                            result = pending.popleft().result()
                        except _RenewFirst:
                            result = fetch(page)
                    else:
                        result = fetch(page)
                        next_ask = page + 1
            finally:
                for future in pending:
                    future.cancel()

    def _items(self, result, key):
        """A page's objects; FreshBooks' count of the listing is kept as of its latest page."""
        items = result.get(key)
        if not isinstance(items, list):
            raise MalformedResponseError(f"The answer holds no list of {key}.",
                                         summary=MalformedResponseError.summary)
        total = _int(result.get("total"))
        if total is not None and total >= 0:
            self.totals[key] = total
        return items

    def _request(self, method, url, *, params=None, json=None, auth=True, timeout=None,
                 renew=True):
        """Send one API call and return its JSON body, or raise a typed FreshBooksError.

        Bearer token, throttle, timeout, retries with backoff, and one token renewal on 401.
        `auth=False` is for the OAuth endpoints, which authenticate with the client secret.
        `renew=False` (a page helper) raises _RenewFirst where a renewal is due instead.
        """
        path = urlsplit(url).path
        if auth and self.tokens and self._can_renew() and \
                self.tokens.expires_at - time.time() < REFRESH_MARGIN:
            if not renew:
                raise _RenewFirst()
            self._renew()
        retryable = POST_RETRY_STATUSES if method == "POST" else RETRY_STATUSES
        attempt, renewed = 0, False
        while True:
            headers = {"Accept": "application/json"}
            if auth and self.tokens:
                headers["Authorization"] = f"Bearer {self.tokens.access_token}"
            with self._lock:
                if self.min_interval and self._last_request_at is not None:
                    pause = self._last_request_at + self.min_interval - time.monotonic()
                    if pause > 0:
                        self.sleep(pause)
                self._last_request_at = time.monotonic()
                self.request_count += 1
            try:
                response = self.session.request(method, url, params=params, json=json,
                                                headers=headers, timeout=timeout or self.timeout)
            except requests.RequestException as error:
                # A POST that may have reached FreshBooks is not resent: it could create twice.
                may_retry = isinstance(error, (requests.ConnectionError, requests.Timeout)) and (
                    method != "POST" or _never_sent(error))
                if not may_retry or attempt >= self.max_retries:
                    _logger.warning("FreshBooks %s %s failed: %s", method, path, type(error).__name__)
                    raise NetworkError(f"{method} {path} failed ({type(error).__name__}).",
                                       summary=NetworkError.summary) from error
                wait = self._backoff_wait(attempt)
                _logger.info("FreshBooks %s %s failed (%s); retrying in %.1f s", method, path,
                             type(error).__name__, wait)
                self.sleep(wait)
                attempt += 1
                continue
            status = response.status_code
            _logger.debug("FreshBooks %s %s -> %s", method, path, status)
            if status == 401 and auth and not renewed:
                if not self._can_renew():
                    raise self._error(response, grant_invalid=True)
                if not renew:
                    raise _RenewFirst()
                _logger.info("FreshBooks %s %s -> 401; renewing the token once", method, path)
                self._renew()
                renewed = True
                continue
            if status in retryable and attempt < self.max_retries:
                retry_after = _retry_after(response)
                # A server asking for a longer pause than we may wait gets none of our retries.
                if retry_after is None or retry_after <= self.max_retry_wait:
                    wait = self._backoff_wait(attempt) if retry_after is None else retry_after
                    _logger.info("FreshBooks %s %s -> %s; retrying in %.1f s", method, path, status,
                                 wait)
                    self.sleep(wait)
                    attempt += 1
                    continue
            if status >= 400:
                _logger.info("FreshBooks %s %s -> %s", method, path, status)
            return self._parse(response, oauth=not auth)

    def _backoff_wait(self, attempt):
        delay = self.backoff * 2 ** attempt
        # Jitter spreads out the retries of workers that failed together.
        delay += random.uniform(0, delay / 10)  # noqa: S311 - timing jitter, not security
        return min(delay, self.max_retry_wait)

    def _parse(self, response, oauth=False):
        status = response.status_code
        if not 200 <= status < 300:
            raise self._error(response, oauth=oauth)
        if status == 204 or not response.content.strip():
            return {}
        try:
            data = response.json()
        except ValueError:
            raise MalformedResponseError(
                f"HTTP {status} with a body that is not JSON: {_snippet(response.text)}",
                status=status, summary=MalformedResponseError.summary) from None
        if not isinstance(data, dict):
            raise MalformedResponseError(f"HTTP {status} with JSON that is not an object.",
                                         status=status, summary=MalformedResponseError.summary)
        inner = data.get("response")
        # Errors may come inside a 200 answer: FreshBooks' own, and (to oauthlib) an OAuth one.
        if isinstance(inner, dict) and inner.get("errors") or oauth and _oauth_error(data):
            raise self._error(response, data=data, oauth=oauth)
        return data

    def _error(self, response, data=None, oauth=False, grant_invalid=False):
        """The typed error for a failed answer, classified by status, then by FreshBooks' errno."""
        status = response.status_code
        if data is None:
            try:
                data = response.json()
            except ValueError:
                data = None
        parts = _error_parts(data)
        if parts is None:
            errno, field_name, message, details, oauth_error = (
                None, None, _snippet(response.text) or None, None, None)
        else:
            errno, field_name, message, details, oauth_error = parts
        number = _int(errno)
        kwargs = {"status": status, "errno": errno, "field": field_name, "details": details}
        if grant_invalid or isinstance(oauth_error, GRANT_GONE):
            error = AuthError(message, grant_invalid=True,
                              summary="FreshBooks must be connected again", **kwargs)
            error.__cause__ = oauth_error  # oauthlib's reading shows in the traceback
            return error
        if status == 401 or (oauth and 400 <= status < 500 and status not in (404, 405, 429)):
            return AuthError(message, summary=AuthError.summary, **kwargs)
        if status == 403 or number == ACCESS_DENIED_ERRNO:
            return AuthError(message, summary="FreshBooks denied access", **kwargs)
        if status == 429:
            return RateLimitError(message, retry_after=_retry_after(response),
                                  summary=RateLimitError.summary, **kwargs)
        if status >= 500:
            return ServerError(message, retry_after=_retry_after(response),
                               summary=ServerError.summary, **kwargs)
        if status == 404 or number in NOT_FOUND_ERRNOS:
            return NotFoundError(message, summary=NotFoundError.summary, **kwargs)
        if status in (400, 422) or number in VALIDATION_ERRNOS:
            return ValidationError(message, summary=ValidationError.summary, **kwargs)
        return FreshBooksError(message, summary=f"FreshBooks answered HTTP {status}", **kwargs)

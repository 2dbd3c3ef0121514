"""FreshBooks API client: OAuth 2, identity, accounting resources and webhook callbacks."""

# oauthlib builds and reads the OAuth messages; the requests that carry them are our own, not
# requests-oauthlib's nor FreshBooks' SDK's: refresh tokens are single-use, so the caller must be able
# to lock and persist each refresh, and the SDK neither refreshes, pages nor reuses connections.

import itertools
import logging
import time
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import parse_qsl, urlsplit

from oauthlib.oauth2 import MissingTokenError, WebApplicationClient

from .errors import (
    AuthError,
    FreshBooksError,
    MalformedResponseError,
)
from .transport import TokenSet, Transport, _number, _result, read_token_answer

_logger = logging.getLogger(__name__)

# Token requests get a timeout of their own: a refresh answer that arrives after a caller's short
# timeout would lose the new single-use refresh token, and with it the connection.
TOKEN_TIMEOUT = (10, 60)

DEFAULT_SCOPES = ("user:profile:read", "user:clients:read", "user:clients:write", "user:invoices:read",
                  "user:payments:read", "user:estimates:read")
# Accounting resources: name (also the key of the list in a listing) -> (path under
# /accounting/account/<account_id>/, key of the single object in a get answer).
ACCOUNTING_RESOURCES = {
    "clients": ("users/clients", "client"),
    "invoices": ("invoices/invoices", "invoice"),
    "payments": ("payments/payments", "payment"),
    "estimates": ("estimates/estimates", "estimate"),
}
DEFAULT_EXPIRES_IN = 43200  # FreshBooks documents 12 h access tokens; used if an answer omits it
# oauthlib refuses a plain-http authorization URL; the sandbox serves one on loopback, where the
# browser's request never crosses a network.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass
class Business:
    account_id: str  # used in /accounting/account/<account_id>/... and /events/account/...
    business_id: str  # business.id, which webhook payloads carry
    name: str
    role: str


def _day(value):
    """'YYYY-MM-DD' for a date, a datetime or such a string: FreshBooks filters by day."""
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    return datetime.strptime(str(value), "%Y-%m-%d").strftime("%Y-%m-%d")


def _search_value(value):
    """A search filter value as FreshBooks reads it: booleans are written true and false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _object(data, key):
    value = _result(data).get(key)
    if not isinstance(value, dict):
        raise MalformedResponseError(f"The answer holds no {key} object.",
                                     summary=MalformedResponseError.summary)
    return value


def _json_body(form):
    """oauthlib's form-encoded token request body as the JSON object we send (FreshBooks takes
    both; the body has always gone as JSON)."""
    return dict(parse_qsl(form, keep_blank_values=True))


def _callback(data):
    """A callback object; the events API may answer it bare or wrapped."""
    result = _result(data)
    return result["callback"] if isinstance(result.get("callback"), dict) else result


class FreshBooksClient(Transport):
    """The FreshBooks API as one connected user sees it. Not thread-safe: one client per job."""

    def __init__(self, client_id, client_secret, redirect_uri,
                 api_url="https://api.freshbooks.com", auth_url="https://auth.freshbooks.com",
                 tokens=None, token_refresher=None, token_updater=None, **transport):
        super().__init__(api_url, tokens=tokens, token_refresher=token_refresher, **transport)
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.auth_url = auth_url.rstrip("/")
        self.token_updater = token_updater
        self._oauth = WebApplicationClient(client_id)

    # --- OAuth ---------------------------------------------------------------------------------

    def authorization_url(self, state, scopes=DEFAULT_SCOPES):
        endpoint = f"{self.auth_url}/oauth/authorize"
        parts = urlsplit(endpoint)
        loopback = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
        if loopback:
            endpoint = parts._replace(scheme="https").geturl()
        url = self._oauth.prepare_request_uri(endpoint, redirect_uri=self.redirect_uri,
                                              scope=list(scopes), state=state)
        return "http" + url[len("https"):] if loopback else url

    def exchange_code(self, code):
        return self._token_request(self._oauth.prepare_request_body(
            code=code, redirect_uri=self.redirect_uri, client_secret=self.client_secret))

    def refresh(self):
        """A new token pair; FreshBooks refresh tokens are single-use, so it replaces the old."""
        if not self.tokens or not self.tokens.refresh_token:
            raise AuthError("There is no refresh token.", grant_invalid=True,
                            summary="FreshBooks must be connected again")
        # Both FreshBooks SDKs send redirect_uri on a refresh too; whether it is needed is unknown.
        body = self._oauth.prepare_refresh_body(
            refresh_token=self.tokens.refresh_token, client_id=self.client_id,
            client_secret=self.client_secret, redirect_uri=self.redirect_uri)
        return self._token_request(body, previous_refresh_token=self.tokens.refresh_token)

    def revoke(self):
        """Revoke the grant; FreshBooks may not offer revocation (404/405), which is fine."""
        if not self.tokens or not self.tokens.refresh_token:
            return
        try:
            self._request("POST", self.api_url + "/auth/oauth/revoke", auth=False, json={
                "client_id": self.client_id, "client_secret": self.client_secret,
                "token": self.tokens.refresh_token})
        except FreshBooksError as error:
            if error.status not in (404, 405):
                raise

    def _token_request(self, form, previous_refresh_token=""):
        """Send a token request body oauthlib prepared; its answer, read by oauthlib, becomes
        the client's tokens (an OAuth error in it was raised, typed, by the transport)."""
        data = self._request("POST", self.api_url + "/auth/oauth/token", json=_json_body(form),
                             auth=False, timeout=TOKEN_TIMEOUT)
        try:
            token = read_token_answer(data)
            if not isinstance(token["access_token"], str) or not token["access_token"]:
                raise MissingTokenError()  # an empty one is no better than none
        except MissingTokenError as error:
            raise MalformedResponseError("The token answer holds no access token.",
                                         summary=MalformedResponseError.summary) from error
        expires_in = token.get("expires_in") or DEFAULT_EXPIRES_IN
        created_at = _number(data.get("created_at")) or time.time()
        # The scope as FreshBooks wrote it: oauthlib's own keeps the scopes in a set, unordered.
        self.tokens = TokenSet(token["access_token"],
                               str(token.get("refresh_token") or previous_refresh_token),
                               created_at + expires_in, str(data.get("scope") or ""))
        if self.token_updater is not None:
            self.token_updater(self.tokens)
        return self.tokens

    # --- identity ------------------------------------------------------------------------------

    def me(self):
        """The signed-in identity: the `response` object of /auth/api/v1/users/me."""
        data = self._request("GET", self.api_url + "/auth/api/v1/users/me")
        if not isinstance(data.get("response"), dict):
            raise MalformedResponseError("The users/me answer holds no response object.",
                                         summary=MalformedResponseError.summary)
        return data["response"]

    def businesses(self):
        """The businesses this identity can connect: every membership except client access."""
        found = []
        for membership in self.me().get("business_memberships") or []:
            business = membership.get("business") if isinstance(membership, dict) else None
            if not isinstance(business, dict) or not business.get("account_id") or \
                    membership.get("role") == "client":
                continue
            found.append(Business(str(business["account_id"]), str(business.get("id") or ""),
                                  str(business.get("name") or business["account_id"]),
                                  str(membership.get("role") or "")))
        return found

    # --- accounting resources ------------------------------------------------------------------

    def _resource_url(self, account_id, resource):
        if resource not in ACCOUNTING_RESOURCES:
            raise ValueError(f"Unknown FreshBooks resource {resource!r}; known: "
                             f"{', '.join(ACCOUNTING_RESOURCES)}.")
        return f"{self.api_url}/accounting/account/{account_id}/{ACCOUNTING_RESOURCES[resource][0]}"

    def iter_pages(self, account_id, resource, updated_since=None, newest_first=False, search=None,
                   ahead=1, start_page=1):
        """Every page (a list of objects, in FreshBooks' order) of a listing of `resource`, from
        page `start_page` (a listing taken up again where it was left).

        Lazy: nothing is requested until the first page is wanted; a bad argument fails at once.
        `search` adds `search[name]=value` filters; a list value repeats `search[name][]`, and a
        None value is left out. `ahead` pages may be asked at once (for a listing read whole:
        a page asked ahead is a request made even if the caller stops before it).
        """
        params = [("sort", "updated_desc")] if newest_first else []
        if updated_since is not None:
            params.append(("search[updated_min]", _day(updated_since)))
        for name, value in (search or {}).items():
            if isinstance(value, (list, tuple, set, frozenset)):
                params.extend((f"search[{name}][]", _search_value(item)) for item in value)
            elif value is not None:
                params.append((f"search[{name}]", _search_value(value)))
        return self._pages(self._resource_url(account_id, resource), resource, params, ahead,
                           max(int(start_page), 1))

    def get(self, account_id, resource, object_id):
        """One object of `resource`, unwrapped from {"response": {"result": {"<key>": {...}}}}."""
        url = f"{self._resource_url(account_id, resource)}/{object_id}"
        return _object(self._request("GET", url), ACCOUNTING_RESOURCES[resource][1])

    # --- clients -------------------------------------------------------------------------------

    def iter_clients(self, account_id, updated_since=None, vis_state=None, client_ids=None,
                     newest_first=False, email=None):
        """Every client, page by page: nothing is requested until the first item is wanted."""
        search = {"email": email or None,
                  "vis_state": None if vis_state is None else int(vis_state),
                  "userids": list(client_ids or ())}
        return itertools.chain.from_iterable(self.iter_pages(
            account_id, "clients", updated_since, newest_first, search))

    def get_client(self, account_id, client_id):
        return self.get(account_id, "clients", client_id)

    def create_client(self, account_id, data):
        return _object(self._request("POST", self._resource_url(account_id, "clients"),
                                     json={"client": data}), "client")

    def update_client(self, account_id, client_id, data):
        if "vis_state" in data and len(data) > 1:
            # FreshBooks applies a vis_state change alone and silently drops the other fields.
            raise ValueError("Send vis_state on its own, not together with other client fields.")
        return _object(self._request("PUT", f"{self._resource_url(account_id, 'clients')}/{client_id}",
                                     json={"client": data}), "client")

    # --- invoices ------------------------------------------------------------------------------

    def iter_invoices(self, account_id, updated_since=None, client_id=None, newest_first=False):
        """Every invoice (of one client if given), page by page, lazily."""
        return itertools.chain.from_iterable(self.iter_pages(
            account_id, "invoices", updated_since, newest_first, {"customerid": client_id}))

    def get_invoice(self, account_id, invoice_id):
        return self.get(account_id, "invoices", invoice_id)

    # --- webhook callbacks ---------------------------------------------------------------------

    def _callbacks_url(self, account_id):
        return f"{self.api_url}/events/account/{account_id}/events/callbacks"

    def create_callback(self, account_id, event, uri):
        callback = _callback(self._request("POST", self._callbacks_url(account_id),
                                           json={"callback": {"event": event, "uri": uri}}))
        if "callbackid" not in callback:
            raise MalformedResponseError("The answer holds no callback id.",
                                         summary=MalformedResponseError.summary)
        return callback

    def verify_callback(self, account_id, callback_id, verifier):
        return _callback(self._request("PUT", f"{self._callbacks_url(account_id)}/{callback_id}",
                                       json={"callback": {"verifier": verifier}}))

    def resend_callback_verification(self, account_id, callback_id):
        return _callback(self._request("PUT", f"{self._callbacks_url(account_id)}/{callback_id}",
                                       json={"callback": {"resend": True}}))

    def list_callbacks(self, account_id):
        return list(itertools.chain.from_iterable(
            self._pages(self._callbacks_url(account_id), "callbacks", [])))

    def delete_callback(self, account_id, callback_id):
        self._request("DELETE", f"{self._callbacks_url(account_id)}/{callback_id}")

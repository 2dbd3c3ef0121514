"""Tests of the FreshBooks HTTP client (capsule_freshbooks_connector/freshbooks/client.py)."""

import copy
import email.utils
import json
import logging
import socket
import threading
import time
from datetime import date
from unittest import mock
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests
import responses
from conftest import ACCESS_TOKEN, API, AUTH, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, REFRESH_TOKEN
from freshbooks import (
    DEFAULT_SCOPES,
    AuthError,
    Business,
    FreshBooksClient,
    FreshBooksError,
    MalformedResponseError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TokenSet,
    ValidationError,
)
from freshbooks.client import TOKEN_TIMEOUT
from oauthlib.oauth2 import (
    InsecureTransportError,
    InvalidGrantError,
    MissingTokenError,
    WebApplicationClient,
)

ACCOUNT = "ABC123"
CLIENTS = f"{API}/accounting/account/{ACCOUNT}/users/clients"
INVOICES = f"{API}/accounting/account/{ACCOUNT}/invoices/invoices"
PAYMENTS = f"{API}/accounting/account/{ACCOUNT}/payments/payments"
ESTIMATES = f"{API}/accounting/account/{ACCOUNT}/estimates/estimates"
CALLBACKS = f"{API}/events/account/{ACCOUNT}/events/callbacks"
TOKEN_URL = f"{API}/auth/oauth/token"
REVOKE_URL = f"{API}/auth/oauth/revoke"
ME_URL = f"{API}/auth/api/v1/users/me"
NOW = int(time.time())
NEW_PAIR = {"access_token": "access-token-two", "refresh_token": "refresh-token-two",
            "token_type": "Bearer", "expires_in": 43200, "scope": " ".join(DEFAULT_SCOPES),
            "created_at": NOW}
OTHER_PAIR = {"access_token": "access-token-three", "refresh_token": "refresh-token-three",
              "expires_in": 43200, "created_at": NOW}
CLIENT_404 = "get_client_response__not_found.json"


def body(call):
    return json.loads(call.request.body)


def query(call):
    """The query string of a recorded call as (key, value) pairs, in order."""
    return parse_qsl(urlsplit(call.request.url).query)


def page_of(key, items, page, pages):
    return {"response": {"result": {key: items, "page": page, "pages": pages, "per_page": 100,
                                    "total": 0}}}


def invalid_email():
    return {"response": {"errors": [{"errno": 1004, "field": "email",
                                     "message": "Invalid email address.", "object": "client",
                                     "value": "not-an-email"}]}}


# --- OAuth -----------------------------------------------------------------------------------

def test_authorization_url(fb):
    url = fb.authorization_url("db:1:nonce")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{AUTH}/oauth/authorize"
    assert parse_qs(parts.query) == {
        "client_id": [CLIENT_ID], "response_type": ["code"], "redirect_uri": [REDIRECT_URI],
        "scope": ["user:profile:read user:clients:read user:clients:write user:invoices:read "
                  "user:payments:read user:estimates:read"],
        "state": ["db:1:nonce"]}
    assert DEFAULT_SCOPES == ("user:profile:read", "user:clients:read", "user:clients:write",
                              "user:invoices:read", "user:payments:read", "user:estimates:read")


def test_authorization_url_with_other_scopes(fb):
    url = fb.authorization_url("s", scopes=("user:profile:read", "user:invoices:read"))
    assert parse_qs(urlsplit(url).query)["scope"] == ["user:profile:read user:invoices:read"]


def spy(method):
    """Records the calls of a WebApplicationClient method, which still does its work."""
    return mock.patch.object(WebApplicationClient, method, autospec=True,
                             side_effect=getattr(WebApplicationClient, method))


def test_authorization_url_is_built_by_oauthlib(fb):
    with spy("prepare_request_uri") as prepare:
        url = fb.authorization_url("db:1:nonce")
    prepare.assert_called_once_with(
        mock.ANY, f"{AUTH}/oauth/authorize", redirect_uri=REDIRECT_URI, scope=list(DEFAULT_SCOPES),
        state="db:1:nonce")
    assert prepare.call_args.args[0].client_id == CLIENT_ID
    assert parse_qs(urlsplit(url).query)["client_id"] == [CLIENT_ID]


def sign_in_at(auth_url):
    return FreshBooksClient(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, api_url=API, auth_url=auth_url)


def test_authorization_url_on_loopback_stays_plain_http():
    url = sign_in_at("http://127.0.0.1:8123").authorization_url("s")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://127.0.0.1:8123/oauth/authorize"
    assert parse_qs(parts.query)["state"] == ["s"]


def test_plain_http_sign_in_elsewhere_is_refused():
    with pytest.raises(InsecureTransportError):
        sign_in_at("http://auth.example.com").authorization_url("s")


def test_exchange_code(api, make_client, fixture):
    updates = []
    fb = make_client(tokens=None, token_updater=updates.append)
    api.post(TOKEN_URL, json=fixture("auth_token_response.json"))
    tokens = fb.exchange_code("the-code")
    assert body(api.calls[0]) == {"grant_type": "authorization_code", "client_id": CLIENT_ID,
                                  "client_secret": CLIENT_SECRET, "redirect_uri": REDIRECT_URI,
                                  "code": "the-code"}
    assert "Authorization" not in api.calls[0].request.headers
    assert tokens == TokenSet("my_access_token", "my_refresh_token", 1287273500 + 100, "some:scope")
    assert fb.tokens == tokens
    assert updates == [tokens]


def test_exchange_code_without_created_at_counts_from_now(api, make_client, fixture):
    answer = fixture("auth_token_response.json")
    del answer["created_at"]
    api.post(TOKEN_URL, json=answer)
    before = time.time()
    tokens = make_client(tokens=None).exchange_code("the-code")
    assert before + 100 <= tokens.expires_at <= time.time() + 100


def test_exchange_code_rejected(api, make_client):
    api.post(TOKEN_URL, status=400, json={"error": "invalid_grant",
                                          "error_description": "The code has expired."})
    with pytest.raises(AuthError) as caught:
        make_client(tokens=None).exchange_code("old-code")
    assert caught.value.grant_invalid
    assert "The code has expired." in str(caught.value)


def test_token_answer_without_access_token(api, make_client):
    api.post(TOKEN_URL, json={"token_type": "Bearer"})
    with pytest.raises(MalformedResponseError):
        make_client(tokens=None).exchange_code("the-code")


def test_code_exchange_body_is_prepared_by_oauthlib(api, make_client, fixture):
    api.post(TOKEN_URL, json=fixture("auth_token_response.json"))
    with spy("prepare_request_body") as prepare:
        make_client(tokens=None).exchange_code("the-code")
    prepare.assert_called_once_with(mock.ANY, code="the-code", redirect_uri=REDIRECT_URI,
                                    client_secret=CLIENT_SECRET)


def test_token_answer_is_read_by_oauthlib(api, make_client):
    api.post(TOKEN_URL, json={"token_type": "Bearer"})
    with pytest.raises(MalformedResponseError) as caught:
        make_client(tokens=None).exchange_code("the-code")
    assert isinstance(caught.value.__cause__, MissingTokenError)


@pytest.mark.parametrize("access_token", ["", 12345, None])
def test_token_answer_with_an_unusable_access_token(api, make_client, access_token):
    api.post(TOKEN_URL, json={"access_token": access_token, "token_type": "Bearer"})
    with pytest.raises(MalformedResponseError):
        make_client(tokens=None).exchange_code("the-code")


def test_token_answer_is_read_leniently(api, fb):
    # The refresh token is spent once FreshBooks answers: an odd field must not lose the new pair.
    api.post(TOKEN_URL, json={**NEW_PAIR, "expires_in": "43200.0", "scope": 7})
    tokens = fb.refresh()
    assert (tokens.refresh_token, tokens.expires_at, tokens.scope) == (
        "refresh-token-two", NOW + 43200, "7")


def test_refresh_replaces_the_pair(api, make_client):
    updates = []
    fb = make_client(token_updater=updates.append)
    api.post(TOKEN_URL, json=NEW_PAIR)
    tokens = fb.refresh()
    assert body(api.calls[0]) == {"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN,
                                  "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                  "redirect_uri": REDIRECT_URI}
    assert tokens == TokenSet("access-token-two", "refresh-token-two", NOW + 43200,
                              " ".join(DEFAULT_SCOPES))
    assert fb.tokens is tokens
    assert updates == [tokens]


def test_refresh_body_is_prepared_by_oauthlib(api, fb):
    api.post(TOKEN_URL, json=NEW_PAIR)
    with spy("prepare_refresh_body") as prepare:
        fb.refresh()
    prepare.assert_called_once_with(mock.ANY, refresh_token=REFRESH_TOKEN, client_id=CLIENT_ID,
                                    client_secret=CLIENT_SECRET, redirect_uri=REDIRECT_URI)


def test_refresh_never_reuses_a_spent_refresh_token(api, fb):
    api.post(TOKEN_URL, json=NEW_PAIR)
    api.post(TOKEN_URL, json=OTHER_PAIR)
    fb.refresh()
    fb.refresh()
    assert [body(call)["refresh_token"] for call in api.calls] == [REFRESH_TOKEN,
                                                                   "refresh-token-two"]
    assert fb.tokens.refresh_token == "refresh-token-three"


@pytest.mark.parametrize("error", ["invalid_grant", "unauthorized_client"])
def test_refresh_with_a_revoked_grant(api, fb, error):
    api.post(TOKEN_URL, status=400, json={
        "error": error, "error_description": "The refresh token is invalid or was already used."})
    with pytest.raises(AuthError) as caught:
        fb.refresh()
    assert caught.value.grant_invalid
    assert caught.value.status == 400
    assert "The refresh token is invalid or was already used." in str(caught.value)


def test_a_revoked_grant_is_read_by_oauthlib(api, fb):
    api.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(AuthError) as caught:
        fb.refresh()
    assert caught.value.grant_invalid
    assert isinstance(caught.value.__cause__, InvalidGrantError)
    assert caught.value.message == "invalid_grant"


def test_an_oauth_error_in_a_200_token_answer(api, fb):
    api.post(TOKEN_URL, json={"error": "invalid_grant", "error_description": "Already used."})
    with pytest.raises(AuthError) as caught:
        fb.refresh()
    assert caught.value.grant_invalid
    assert isinstance(caught.value.__cause__, InvalidGrantError)
    assert "Already used. (invalid_grant)" in str(caught.value)


def test_refresh_without_refresh_token_asks_for_reconnection(make_client):
    fb = make_client(tokens=TokenSet(ACCESS_TOKEN, "", time.time() + 3600))
    with pytest.raises(AuthError) as caught:
        fb.refresh()
    assert caught.value.grant_invalid
    assert fb.request_count == 0


def test_wrong_client_secret_is_an_auth_error_but_keeps_the_grant(api, fb):
    api.post(TOKEN_URL, status=401, json={"error": "invalid_client",
                                          "error_description": "Client authentication failed."})
    with pytest.raises(AuthError) as caught:
        fb.refresh()
    assert not caught.value.grant_invalid
    assert "Client authentication failed." in str(caught.value)


def test_revoke(api, fb):
    api.post(REVOKE_URL, json={})
    assert fb.revoke() is None
    assert body(api.calls[0]) == {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                  "token": REFRESH_TOKEN}


@pytest.mark.parametrize("status", [404, 405])
def test_revoke_is_optional_on_the_server(api, fb, status):
    api.post(REVOKE_URL, status=status, json={"error": "not_found"})
    fb.revoke()
    assert len(api.calls) == 1


def test_revoke_reports_other_errors(api, fb):
    api.post(REVOKE_URL, status=401, json={"error": "invalid_client",
                                           "error_description": "Client authentication failed."})
    with pytest.raises(AuthError):
        fb.revoke()


# --- identity ----------------------------------------------------------------------------------

def test_me(api, fb, fixture):
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    me = fb.me()
    assert me["email"] == "skovalic@cis.com"
    assert api.calls[0].request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_businesses_leave_out_client_memberships(api, fb, fixture):
    answer = fixture("auth_me_response.json")
    memberships = answer["response"]["business_memberships"]
    client_access = copy.deepcopy(memberships[0])
    client_access["role"] = "client"
    client_access["business"].update(id=777, account_id="GAF54", name="Someone Else Inc")
    memberships.append(client_access)
    api.get(ME_URL, json=answer)
    assert fb.businesses() == [
        Business("ABC123", "439000", "Commonwealth of Independent Systems", "owner"),
        Business("ABC124", "438000", "Bayern Corporation", "business_employee")]


def test_me_unauthenticated_without_refresh_token(api, make_client, fixture):
    fb = make_client(tokens=TokenSet(ACCESS_TOKEN, "", time.time() + 3600))
    api.get(ME_URL, status=401, json=fixture("auth_me_response__no_auth.json"))
    with pytest.raises(AuthError) as caught:
        fb.me()
    assert caught.value.grant_invalid
    assert "This action requires authentication to continue." in str(caught.value)
    assert fb.request_count == 1


# --- clients -----------------------------------------------------------------------------------

def test_iter_clients_one_page(api, fb, fixture):
    api.get(CLIENTS, json=fixture("list_clients_response.json"))
    clients = list(fb.iter_clients(ACCOUNT))
    assert [c["id"] for c in clients] == [12345, 12346, 12457]
    assert query(api.calls[0]) == [("page", "1"), ("per_page", "100")]


def test_iter_clients_pages_lazily(api, fb):
    for page in (1, 2, 3):
        api.get(CLIENTS, json=page_of("clients", [{"id": page * 10}, {"id": page * 10 + 1}],
                                      page, 3))
    clients = fb.iter_clients(ACCOUNT)
    assert len(api.calls) == 0, "nothing is requested before the first item is wanted"
    assert next(clients)["id"] == 10
    assert next(clients)["id"] == 11
    assert len(api.calls) == 1, "page 2 waits until page 1 is consumed"
    assert next(clients)["id"] == 20
    assert len(api.calls) == 2
    assert [c["id"] for c in clients] == [21, 30, 31]
    assert [dict(query(call))["page"] for call in api.calls] == ["1", "2", "3"]
    assert all(dict(query(call))["per_page"] == "100" for call in api.calls)


def test_iter_clients_stops_at_an_empty_page(api, fb):
    api.get(CLIENTS, json=page_of("clients", [{"id": 1}], 1, 5))
    api.get(CLIENTS, json=page_of("clients", [], 2, 5))
    assert [c["id"] for c in fb.iter_clients(ACCOUNT)] == [1]
    assert len(api.calls) == 2


def test_iter_clients_stops_at_the_page_count(api, fb):
    api.get(CLIENTS, json=page_of("clients", [{"id": n} for n in range(100)], 1, 1))
    assert len(list(fb.iter_clients(ACCOUNT))) == 100
    assert len(api.calls) == 1
    assert fb.truncated == []


def test_endless_full_pages_stop_at_the_cap(api, make_client, caplog):
    # Full pages and no page count: without a cap this loops for as long as FreshBooks answers.
    fb = make_client(max_pages=3)
    full = {"response": {"result": {"clients": [{"id": n} for n in range(100)]}}}
    api.get(CLIENTS, json=full)
    with caplog.at_level(logging.WARNING):
        assert len(list(fb.iter_clients(ACCOUNT))) == 300
    assert len(api.calls) == 3
    assert fb.truncated == ["clients"]
    assert "stopped after 3 pages" in caplog.text


def test_iter_clients_filters(api, fb):
    api.get(CLIENTS, json=page_of("clients", [], 1, 1))
    list(fb.iter_clients(ACCOUNT, updated_since=date(2024, 5, 1), vis_state=1,
                         client_ids=[12345, 12346]))
    assert query(api.calls[0]) == [
        ("search[updated_min]", "2024-05-01"), ("search[vis_state]", "1"),
        ("search[userids][]", "12345"), ("search[userids][]", "12346"),
        ("page", "1"), ("per_page", "100")]


def test_newest_first_asks_freshbooks_to_sort_by_update(api, fb):
    api.get(CLIENTS, json=page_of("clients", [], 1, 1))
    list(fb.iter_clients(ACCOUNT, updated_since="2024-12-31", newest_first=True))
    assert query(api.calls[0])[0] == ("sort", "updated_desc")
    api.get(INVOICES, json=page_of("invoices", [], 1, 1))
    list(fb.iter_invoices(ACCOUNT, newest_first=True))
    assert query(api.calls[1])[0] == ("sort", "updated_desc")


def test_iter_clients_by_email(api, fb):
    api.get(CLIENTS, json=page_of("clients", [], 1, 1))
    list(fb.iter_clients(ACCOUNT, email="a@b.test"))
    assert ("search[email]", "a@b.test") in query(api.calls[0])


def test_iter_clients_takes_a_day_string(api, fb):
    api.get(CLIENTS, json=page_of("clients", [], 1, 1))
    list(fb.iter_clients(ACCOUNT, updated_since="2024-12-31"))
    assert dict(query(api.calls[0]))["search[updated_min]"] == "2024-12-31"


def test_iter_clients_refuses_a_bad_day_before_any_request(fb):
    with pytest.raises(ValueError):
        fb.iter_clients(ACCOUNT, updated_since="31/12/2024")
    assert fb.request_count == 0


def test_get_client(api, fb, fixture):
    api.get(f"{CLIENTS}/12345", json=fixture("get_client_response.json"))
    client = fb.get_client(ACCOUNT, 12345)
    assert client["organization"] == "American Cyanamid"
    assert client["p_street"] == "123 Huron St"


def test_create_client(api, fb, fixture):
    api.post(CLIENTS, json=fixture("create_client_response.json"))
    client = fb.create_client(ACCOUNT, {"email": "john.doe@abcorp.com"})
    assert client["id"] == 56789
    assert body(api.calls[0]) == {"client": {"email": "john.doe@abcorp.com"}}
    assert api.calls[0].request.headers["Content-Type"] == "application/json"


def test_update_client(api, fb, fixture):
    api.put(f"{CLIENTS}/12345", json=fixture("get_client_response.json"))
    client = fb.update_client(ACCOUNT, 12345, {"note": "I like cats"})
    assert client["note"] == "I like cats"
    assert body(api.calls[0]) == {"client": {"note": "I like cats"}}


def test_update_client_refuses_vis_state_with_field_edits(fb):
    with pytest.raises(ValueError, match="vis_state"):
        fb.update_client(ACCOUNT, 12345, {"vis_state": 0, "fname": "Gordon"})
    assert fb.request_count == 0


def test_update_client_sends_vis_state_alone(api, fb, fixture):
    api.put(f"{CLIENTS}/12345", json=fixture("get_client_response.json"))
    fb.update_client(ACCOUNT, 12345, {"vis_state": 2})
    assert body(api.calls[0]) == {"client": {"vis_state": 2}}


# --- invoices ----------------------------------------------------------------------------------

def test_iter_invoices_of_a_client(api, fb, fixture):
    api.get(INVOICES, json=fixture("list_invoices_response.json"))
    invoices = list(fb.iter_invoices(ACCOUNT, updated_since=date(2019, 11, 1), client_id=217572))
    assert [(i["invoice_number"], i["amount"]["amount"]) for i in invoices] == [("SS007", "1222.00")]
    assert query(api.calls[0]) == [("search[updated_min]", "2019-11-01"),
                                   ("search[customerid]", "217572"), ("page", "1"),
                                   ("per_page", "100")]


def test_get_invoice(api, fb, fixture):
    invoice = fixture("list_invoices_response.json")["response"]["result"]["invoices"][0]
    api.get(f"{INVOICES}/217506", json={"response": {"result": {"invoice": invoice}}})
    assert fb.get_invoice(ACCOUNT, 217506)["customerid"] == 217572


# --- any accounting resource -------------------------------------------------------------------

def test_iter_pages_yields_whole_pages_lazily(api, fb):
    for page in (1, 2):
        api.get(PAYMENTS, json=page_of("payments", [{"id": page * 10}, {"id": page * 10 + 1}],
                                       page, 2))
    pages = fb.iter_pages(ACCOUNT, "payments")
    assert len(api.calls) == 0, "nothing is requested before the first page is wanted"
    assert [p["id"] for p in next(pages)] == [10, 11]
    assert len(api.calls) == 1, "page 2 waits until it is wanted"
    assert [[p["id"] for p in page] for page in pages] == [[20, 21]]
    assert [dict(query(call))["page"] for call in api.calls] == ["1", "2"]


def test_iter_pages_records_freshbooks_totals(api, fb):
    answer = page_of("payments", [{"id": 1}], 1, 2)
    answer["response"]["result"]["total"] = 101
    api.get(PAYMENTS, json=answer)
    api.get(PAYMENTS, json=page_of("payments", [{"id": 2}], 2, 2))
    api.get(INVOICES, json={"response": {"result": {"invoices": [], "page": 1, "pages": 0}}})
    pages = fb.iter_pages(ACCOUNT, "payments")
    assert fb.totals == {}
    next(pages)
    assert fb.totals == {"payments": 101}, "known when the page is handed over"
    list(pages)
    assert fb.totals == {"payments": 0}, "the latest answer counts"
    assert list(fb.iter_pages(ACCOUNT, "invoices")) == []
    assert "invoices" not in fb.totals, "no total in the answer, none recorded"


def test_iter_pages_of_the_payments_sample(api, fb, fixture):
    api.get(PAYMENTS, json=fixture("list_payments_response.json"))
    pages = list(fb.iter_pages(ACCOUNT, "payments"))
    assert [[(p["logid"], p["type"]) for p in page] for page in pages] == [
        [(235435, "Credit Card"), (235436, "2Checkout")]]


def test_iter_pages_search_filters(api, fb):
    api.get(ESTIMATES, json=page_of("estimates", [], 1, 1))
    list(fb.iter_pages(ACCOUNT, "estimates", updated_since=date(2024, 5, 1), newest_first=True,
                       search={"customerid": 12345, "statusids": [1, 5], "notes": None,
                               "estimate_number_like": "00"}))
    assert query(api.calls[0]) == [
        ("sort", "updated_desc"), ("search[updated_min]", "2024-05-01"),
        ("search[customerid]", "12345"), ("search[statusids][]", "1"),
        ("search[statusids][]", "5"), ("search[estimate_number_like]", "00"),
        ("page", "1"), ("per_page", "100")]


def test_iter_pages_writes_booleans_as_freshbooks_reads_them(api, fb):
    api.get(PAYMENTS, json=page_of("payments", [], 1, 1))
    list(fb.iter_pages(ACCOUNT, "payments", search={"from_credit": False}))
    assert ("search[from_credit]", "false") in query(api.calls[0])


def test_empty_payments_with_zero_pages(api, fb):
    # FreshBooks answers an empty payment listing with "pages": 0.
    api.get(PAYMENTS, json=page_of("payments", [], 1, 0))
    assert list(fb.iter_pages(ACCOUNT, "payments", search={"clientid": 12345})) == []
    assert len(api.calls) == 1
    assert fb.truncated == []


def test_zero_pages_after_a_full_page_stops(api, fb):
    api.get(PAYMENTS, json=page_of("payments", [{"id": n} for n in range(100)], 1, 0))
    assert [len(page) for page in fb.iter_pages(ACCOUNT, "payments")] == [100]
    assert len(api.calls) == 1


def test_iter_pages_stops_at_the_cap(api, make_client):
    fb = make_client(max_pages=2)
    api.get(ESTIMATES, json={"response": {"result": {"estimates": [{"id": n} for n in range(100)]}}})
    assert len(list(fb.iter_pages(ACCOUNT, "estimates"))) == 2
    assert fb.truncated == ["estimates"]


def serve_pages(api, pages, answer=None):
    """Payments pages 1..pages of 2 objects each, answered by their page number (requests asked
    ahead arrive in any order); `answer(page, request)` may answer first. Returns what was seen:
    the pages asked, the most requests in flight at once, and the tokens that came."""
    seen = {"pages": [], "in_flight": 0, "most": 0, "tokens": []}
    lock = threading.Lock()

    def respond(request):
        page = int(dict(parse_qsl(urlsplit(request.url).query))["page"])
        with lock:
            seen["pages"].append(page)
            seen["tokens"].append(request.headers["Authorization"])
            seen["in_flight"] += 1
            seen["most"] = max(seen["most"], seen["in_flight"])
        time.sleep(0.02 * (pages - page + 1))  # later pages answer sooner
        with lock:
            seen["in_flight"] -= 1
        special = answer and answer(page, request)
        if special:
            return special
        items = [{"id": page * 10}, {"id": page * 10 + 1}]
        return 200, {}, json.dumps(page_of("payments", items, page, pages))

    api.add_callback(responses.GET, PAYMENTS, callback=respond)
    return seen


def test_pages_asked_ahead_are_handed_over_in_order(api, fb):
    seen = serve_pages(api, 7)
    pages = list(fb.iter_pages(ACCOUNT, "payments", ahead=3))
    assert [[p["id"] for p in page] for page in pages] == [
        [n * 10, n * 10 + 1] for n in range(1, 8)]
    assert sorted(seen["pages"]) == list(range(1, 8)), "each page asked once"
    assert seen["most"] == 3, "three pages at once, never more"
    assert fb.request_count == 7


def test_a_page_asked_ahead_never_renews_the_token_itself(api, make_client):
    renewals = []

    def refresher(client):
        renewals.append(threading.current_thread())
        return TokenSet("access-token-two", REFRESH_TOKEN, time.time() + 3600)

    fb = make_client(token_refresher=refresher)
    seen = serve_pages(api, 4, lambda page, request: (
        (401, {}, json.dumps({"errno": 1003, "message": "Unauthorized"}))
        if page > 1 and request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}" else None))
    pages = list(fb.iter_pages(ACCOUNT, "payments", ahead=3))
    assert len(pages) == 4
    assert renewals == [threading.current_thread()], "renewed once, by the caller's thread"
    assert seen["tokens"][-1] == "Bearer access-token-two"
    assert sorted(set(seen["pages"])) == [1, 2, 3, 4]


def test_an_error_on_a_page_asked_ahead_comes_in_its_turn(api, fb):
    serve_pages(api, 5, lambda page, request: (
        (400, {}, json.dumps({"response": {"errors": [
            {"errno": 1001, "field": "page", "message": "Bad page."}]}})) if page == 3 else None))
    pages = fb.iter_pages(ACCOUNT, "payments", ahead=3)
    assert [page[0]["id"] for page in (next(pages), next(pages))] == [10, 20]
    with pytest.raises(ValidationError):
        next(pages)


def test_pages_asked_ahead_stop_at_the_cap(api, make_client):
    fb = make_client(max_pages=3)
    seen = serve_pages(api, 10)
    assert len(list(fb.iter_pages(ACCOUNT, "payments", ahead=4))) == 3
    assert sorted(seen["pages"]) == [1, 2, 3], "nothing asked past the cap"
    assert fb.truncated == ["payments"]


def test_unknown_resource_is_refused_before_any_request(fb):
    with pytest.raises(ValueError, match="expenses"):
        fb.iter_pages(ACCOUNT, "expenses")
    with pytest.raises(ValueError, match="expenses"):
        fb.get(ACCOUNT, "expenses", 1)
    assert fb.request_count == 0


def test_get_payment(api, fb, fixture):
    api.get(f"{PAYMENTS}/235435", json=fixture("get_payment_response.json"))
    payment = fb.get(ACCOUNT, "payments", 235435)
    assert (payment["logid"], payment["invoiceid"], payment["clientid"]) == (235435, 987654, 12345)
    assert payment["amount"] == {"amount": "41.94", "code": "CAD"}


def test_get_estimate(api, fb, fixture):
    api.get(f"{ESTIMATES}/41002", json=fixture("get_estimate_response.json"))
    estimate = fb.get(ACCOUNT, "estimates", 41002)
    assert (estimate["estimate_number"], estimate["customerid"], estimate["ui_status"]) == (
        "0000002", 12345, "draft")


def test_get_a_missing_estimate(api, fb):
    api.get(f"{ESTIMATES}/9", status=404, json={"response": {"errors": [
        {"errno": 1012, "field": "estimateid", "message": "Estimate not found."}]}})
    with pytest.raises(NotFoundError) as caught:
        fb.get(ACCOUNT, "estimates", 9)
    assert (caught.value.errno, caught.value.field) == (1012, "estimateid")


def test_get_answer_without_the_object(api, fb):
    api.get(f"{PAYMENTS}/1", json={"response": {"result": {"invoice": {"id": 1}}}})
    with pytest.raises(MalformedResponseError):
        fb.get(ACCOUNT, "payments", 1)


# --- webhook callbacks -------------------------------------------------------------------------

def test_create_callback(api, fb, fixture):
    api.post(CALLBACKS, json=fixture("get_callback_response.json"))
    callback = fb.create_callback(ACCOUNT, "invoice.create", "https://odoo.example.com/hook")
    assert callback["callbackid"] == 123
    assert body(api.calls[0]) == {"callback": {"event": "invoice.create",
                                               "uri": "https://odoo.example.com/hook"}}


def test_create_callback_rejected(api, fb, fixture):
    api.post(CALLBACKS, status=422, json=fixture("create_callback_response__validation_error.json"))
    with pytest.raises(ValidationError) as caught:
        fb.create_callback(ACCOUNT, "client.explode", "not a url")
    error = caught.value
    assert (error.status, error.errno, error.field) == (422, 422, "event")
    assert "Unrecognized event." in str(error)
    assert error.details[1].startswith("uri:")


def test_verify_callback(api, fb, fixture):
    api.put(f"{CALLBACKS}/123", json=fixture("get_callback_response.json"))
    assert fb.verify_callback(ACCOUNT, 123, "the-verifier")["verified"] is True
    assert body(api.calls[0]) == {"callback": {"verifier": "the-verifier"}}


def test_verify_callback_accepts_an_unwrapped_answer(api, fb, fixture):
    bare = fixture("get_callback_response.json")["response"]["result"]
    api.put(f"{CALLBACKS}/123", json=bare)
    assert fb.verify_callback(ACCOUNT, 123, "the-verifier")["callbackid"] == 123


def test_resend_callback_verification(api, fb, fixture):
    api.put(f"{CALLBACKS}/125", json=fixture("get_callback_response.json"))
    fb.resend_callback_verification(ACCOUNT, 125)
    assert body(api.calls[0]) == {"callback": {"resend": True}}


def test_list_callbacks(api, fb, fixture):
    api.get(CALLBACKS, json=fixture("list_callbacks_response.json"))
    callbacks = fb.list_callbacks(ACCOUNT)
    assert [c["event"] for c in callbacks] == ["invoice.create", "estimate.create",
                                               "estimate.delete"]


def test_list_callbacks_reads_every_page(api, fb):
    api.get(CALLBACKS, json=page_of("callbacks", [{"callbackid": 1}], 1, 2))
    api.get(CALLBACKS, json=page_of("callbacks", [{"callbackid": 2}], 2, 2))
    assert [c["callbackid"] for c in fb.list_callbacks(ACCOUNT)] == [1, 2]


def test_delete_callback(api, fb):
    api.delete(f"{CALLBACKS}/123", status=204)
    assert fb.delete_callback(ACCOUNT, 123) is None
    assert len(api.calls) == 1


def test_delete_missing_callback(api, fb, fixture):
    api.delete(f"{CALLBACKS}/999", status=404, json=fixture("get_callback_response__not_found.json"))
    with pytest.raises(NotFoundError) as caught:
        fb.delete_callback(ACCOUNT, 999)
    assert "Requested resource could not be found." in str(caught.value)


# --- tokens during calls -----------------------------------------------------------------------

def test_401_refreshes_once_then_succeeds(api, make_client, fixture):
    updates = []
    fb = make_client(token_updater=updates.append)
    api.get(f"{CLIENTS}/12345", status=401, json={"errno": 1003, "message": "Unauthorized"})
    api.post(TOKEN_URL, json=NEW_PAIR)
    api.get(f"{CLIENTS}/12345", json=fixture("get_client_response.json"))
    assert fb.get_client(ACCOUNT, 12345)["id"] == 12345
    assert body(api.calls[1])["refresh_token"] == REFRESH_TOKEN
    assert api.calls[2].request.headers["Authorization"] == "Bearer access-token-two"
    assert [(t.access_token, t.refresh_token) for t in updates] == [
        ("access-token-two", "refresh-token-two")]
    assert fb.request_count == 3
    # The spent refresh token is never sent again: the next renewal uses the new one.
    api.post(TOKEN_URL, json=OTHER_PAIR)
    fb.refresh()
    assert body(api.calls[3])["refresh_token"] == "refresh-token-two"


def test_a_second_401_is_an_auth_error(api, fb):
    api.get(ME_URL, status=401, json={"error": "unauthenticated"})
    api.post(TOKEN_URL, json=NEW_PAIR)
    with pytest.raises(AuthError) as caught:
        fb.me()
    assert not caught.value.grant_invalid
    assert caught.value.status == 401
    assert [call.request.url for call in api.calls] == [ME_URL, TOKEN_URL, ME_URL]


def test_401_with_a_revoked_grant(api, fb):
    api.get(ME_URL, status=401, json={"error": "unauthenticated"})
    api.post(TOKEN_URL, status=400, json={"error": "invalid_grant",
                                          "error_description": "Token revoked."})
    with pytest.raises(AuthError) as caught:
        fb.me()
    assert caught.value.grant_invalid


def test_token_near_expiry_is_renewed_first(api, make_client, fixture):
    fb = make_client(tokens=TokenSet(ACCESS_TOKEN, REFRESH_TOKEN, time.time() + 30))
    api.post(TOKEN_URL, json=NEW_PAIR)
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    fb.me()
    assert [call.request.url for call in api.calls] == [TOKEN_URL, ME_URL]
    assert api.calls[1].request.headers["Authorization"] == "Bearer access-token-two"


def test_token_far_from_expiry_is_used_as_is(api, fb, fixture):
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    fb.me()
    assert fb.request_count == 1


def test_token_refresher_replaces_the_plain_refresh(api, make_client, fixture):
    calls = []
    renewed = TokenSet("access-from-hook", "refresh-from-hook", time.time() + 43200)

    def refresher(client):
        calls.append(client)
        return renewed

    fb = make_client(token_refresher=refresher)
    api.get(ME_URL, status=401, json={"error": "unauthenticated"})
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    fb.me()
    assert calls == [fb]
    assert fb.tokens is renewed
    assert api.calls[1].request.headers["Authorization"] == "Bearer access-from-hook"
    assert TOKEN_URL not in [call.request.url for call in api.calls]


def test_token_refresher_renews_near_expiry(api, make_client, fixture):
    renewed = TokenSet("access-from-hook", "refresh-from-hook", time.time() + 43200)
    fb = make_client(tokens=TokenSet(ACCESS_TOKEN, REFRESH_TOKEN, time.time() + 10),
                     token_refresher=lambda client: renewed)
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    fb.me()
    assert api.calls[0].request.headers["Authorization"] == "Bearer access-from-hook"


# --- retries -----------------------------------------------------------------------------------

def test_429_waits_for_retry_after(api, fb, fixture, sleeps):
    api.get(ME_URL, status=429, headers={"Retry-After": "7"}, json={"error": "rate_limited"})
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    assert fb.me()["id"] == 12345
    assert sleeps == [7.0]
    assert fb.request_count == 2


def test_retry_after_as_an_http_date(api, fb, fixture, sleeps):
    later = email.utils.formatdate(time.time() + 20, usegmt=True)
    api.get(ME_URL, status=503, headers={"Retry-After": later}, json={})
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    fb.me()
    assert len(sleeps) == 1 and 15 <= sleeps[0] <= 20


def test_retry_after_longer_than_allowed_gives_up_at_once(api, make_client, sleeps):
    fb = make_client(max_retry_wait=60)
    api.get(ME_URL, status=429, headers={"Retry-After": "3600"}, json={"error": "rate_limited"})
    with pytest.raises(RateLimitError) as caught:
        fb.me()
    assert caught.value.retry_after == 3600
    assert sleeps == []


def test_429_until_give_up(api, make_client, sleeps):
    fb = make_client(max_retries=2)
    for _attempt in range(3):
        api.get(ME_URL, status=429, headers={"Retry-After": "1"}, json={"error": "rate_limited"})
    with pytest.raises(RateLimitError) as caught:
        fb.me()
    assert caught.value.retry_after == 1
    assert fb.request_count == 3
    assert sleeps == [1.0, 1.0]


def test_5xx_until_give_up(api, make_client, sleeps):
    fb = make_client(max_retries=3, backoff=0.5)
    for _attempt in range(4):
        api.get(f"{CLIENTS}/1", status=500, json={"response": {"errors": [
            {"errno": 500, "message": "An unexpected error occurred."}]}})
    with pytest.raises(ServerError) as caught:
        fb.get_client(ACCOUNT, 1)
    assert fb.request_count == 3 + 1
    assert caught.value.status == 500
    assert "An unexpected error occurred." in str(caught.value)
    # Exponential backoff with at most 10 % jitter.
    assert len(sleeps) == 3
    for attempt, wait in enumerate(sleeps):
        assert 0.5 * 2 ** attempt <= wait <= 0.55 * 2 ** attempt


def test_backoff_is_capped(api, make_client, sleeps):
    fb = make_client(max_retries=3, backoff=10, max_retry_wait=15)
    for _attempt in range(4):
        api.get(ME_URL, status=502, body="<html><body><h1>502 Bad Gateway</h1></body></html>")
    with pytest.raises(ServerError) as caught:
        fb.me()
    assert sleeps[1:] == [15, 15]
    assert "502 Bad Gateway" in str(caught.value)
    assert "<h1>" not in str(caught.value)


def test_gateway_error_then_success(api, fb, fixture, sleeps):
    api.get(ME_URL, status=504, body="Gateway Timeout")
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    assert fb.me()["email"] == "skovalic@cis.com"
    assert len(sleeps) == 1


def test_post_is_not_retried_on_500(api, fb, sleeps):
    api.post(CLIENTS, status=500, json={"response": {"errors": [
        {"errno": 500, "message": "An unexpected error occurred."}]}})
    with pytest.raises(ServerError):
        fb.create_client(ACCOUNT, {"email": "a@example.com"})
    assert fb.request_count == 1
    assert sleeps == []


def test_post_is_retried_on_503(api, fb, fixture):
    api.post(CLIENTS, status=503, json={"response": {"errors": [
        {"errno": 503, "message": "Service temporarily unavailable."}]}})
    api.post(CLIENTS, json=fixture("create_client_response.json"))
    assert fb.create_client(ACCOUNT, {"email": "john.doe@abcorp.com"})["id"] == 56789
    assert fb.request_count == 2


def test_post_is_retried_when_the_connection_is_refused(api, fb, fixture):
    refused = requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    api.post(CLIENTS, body=refused)
    api.post(CLIENTS, json=fixture("create_client_response.json"))
    assert fb.create_client(ACCOUNT, {"email": "john.doe@abcorp.com"})["id"] == 56789
    assert fb.request_count == 2


def test_post_to_a_closed_port_is_retried_then_fails(make_client, sleeps):
    # A real refused connection, so the check walks requests' and urllib3's own exception chain.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fb = make_client(max_retries=2)
    fb.api_url = f"http://127.0.0.1:{port}"
    fb.session.trust_env = False  # no proxy between us and the loopback port
    with pytest.raises(NetworkError):
        fb.create_client(ACCOUNT, {"email": "a@example.com"})
    assert fb.request_count == 3
    assert len(sleeps) == 2


def test_post_is_not_retried_after_a_read_timeout(api, fb, sleeps):
    api.post(CLIENTS, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(NetworkError) as caught:
        fb.create_client(ACCOUNT, {"email": "a@example.com"})
    assert "ReadTimeout" in str(caught.value)
    assert fb.request_count == 1
    assert sleeps == []


def test_post_is_not_retried_after_a_reset_connection(api, fb):
    reset = requests.exceptions.ConnectionError(ConnectionResetError(104, "Connection reset"))
    api.post(CLIENTS, body=reset)
    with pytest.raises(NetworkError):
        fb.create_client(ACCOUNT, {"email": "a@example.com"})
    assert fb.request_count == 1


def test_network_timeout_until_give_up(api, make_client, sleeps):
    fb = make_client(max_retries=2)
    for _attempt in range(3):
        api.get(ME_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(NetworkError) as caught:
        fb.me()
    assert isinstance(caught.value.__cause__, requests.exceptions.ReadTimeout)
    assert fb.request_count == 3
    assert len(sleeps) == 2


def test_connection_error_then_success(api, fb, fixture):
    api.get(ME_URL, body=requests.exceptions.ConnectionError("connection aborted"))
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    assert fb.me()["id"] == 12345


def test_every_request_has_the_timeout(api, make_client, fixture):
    fb = make_client(timeout=(3, 9))
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    fb.me()
    fb.me()
    assert [call.request.req_kwargs["timeout"] for call in api.calls] == [(3, 9), (3, 9)]


def test_a_token_refresh_is_never_cut_short_by_a_short_timeout(api, make_client, fixture):
    # The refresh token works once: an answer lost to the caller's timeout loses the connection.
    fb = make_client(timeout=(3, 5), tokens=TokenSet(ACCESS_TOKEN, REFRESH_TOKEN, NOW - 10))
    api.post(TOKEN_URL, json=NEW_PAIR)
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    fb.me()
    assert [call.request.req_kwargs["timeout"] for call in api.calls] == [TOKEN_TIMEOUT, (3, 5)]


def test_min_interval_spaces_requests(api, make_client, fixture, sleeps):
    fb = make_client(min_interval=5)
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    api.get(ME_URL, json=fixture("auth_me_response.json"))
    fb.me()
    assert sleeps == []
    fb.me()
    assert len(sleeps) == 1 and 4 < sleeps[0] <= 5


# --- error answers -----------------------------------------------------------------------------

def test_malformed_json(api, fb):
    api.get(f"{CLIENTS}/12345", body="{not json", content_type="application/json")
    with pytest.raises(MalformedResponseError) as caught:
        fb.get_client(ACCOUNT, 12345)
    assert caught.value.status == 200


def test_json_of_the_wrong_shape(api, fb):
    api.get(CLIENTS, json={"response": {"result": {"people": []}}})
    with pytest.raises(MalformedResponseError):
        list(fb.iter_clients(ACCOUNT))


def test_not_found(api, fb, fixture):
    api.get(f"{CLIENTS}/12345", status=404, json=fixture(CLIENT_404))
    with pytest.raises(NotFoundError) as caught:
        fb.get_client(ACCOUNT, 12345)
    error = caught.value
    assert (error.status, error.errno, error.field, error.message) == (
        404, 1012, "userid", "Client not found.")
    assert str(error) == "FreshBooks has no such object (userid): Client not found. [errno 1012]"


@pytest.mark.parametrize("status", [400, 422])
def test_validation_error(api, fb, status):
    api.put(f"{CLIENTS}/12345", status=status, json=invalid_email())
    with pytest.raises(ValidationError) as caught:
        fb.update_client(ACCOUNT, 12345, {"email": "not-an-email"})
    error = caught.value
    assert (error.errno, error.field, error.message) == (1004, "email", "Invalid email address.")
    assert str(error) == "FreshBooks rejected the request (email): Invalid email address. [errno 1004]"


def test_google_rpc_error_shape(api, fb):
    api.get(f"{CLIENTS}/12345", status=404, json={
        "code": 5, "message": "Request failed with status_code: 404",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "1012",
                     "domain": "accounting.api.freshbooks.com",
                     "metadata": {"object": "client", "message": "Client not found.",
                                  "value": "12345", "field": "userid"}}]})
    with pytest.raises(NotFoundError) as caught:
        fb.get_client(ACCOUNT, 12345)
    assert (caught.value.errno, caught.value.field, caught.value.message) == (
        1012, "userid", "Client not found.")


def test_errors_inside_a_200_answer(api, fb):
    api.get(f"{CLIENTS}/12345", json={"response": {"errors": [
        {"errno": 1011, "field": "userid", "message": "Client was deleted."}]}})
    with pytest.raises(NotFoundError) as caught:
        fb.get_client(ACCOUNT, 12345)
    assert caught.value.errno == 1011


def test_access_denied_is_an_auth_error(api, fb):
    api.get(CLIENTS, status=403, json={"response": {"errors": [
        {"errno": 1003, "message": "The server could not verify that you are authorized."}]}})
    with pytest.raises(AuthError) as caught:
        list(fb.iter_clients(ACCOUNT))
    assert not caught.value.grant_invalid
    assert caught.value.errno == 1003


def test_other_status_is_a_plain_freshbooks_error(api, fb):
    api.put(f"{CLIENTS}/1", status=409, json={"response": {"errors": [
        {"errno": 409, "message": "Being modified by another request."}]}})
    with pytest.raises(FreshBooksError) as caught:
        fb.update_client(ACCOUNT, 1, {"note": "x"})
    assert type(caught.value) is FreshBooksError
    assert "Being modified by another request." in str(caught.value)


def test_error_message_wording():
    assert str(AuthError("FreshBooks needs to be connected again.", grant_invalid=True)) == \
        "FreshBooks needs to be connected again."
    assert str(NotFoundError()) == "FreshBooks has no such object."
    assert str(ServerError("Oops.", status=503, summary="FreshBooks had a server error")) == \
        "FreshBooks had a server error: Oops. [HTTP 503]"


def test_secrets_stay_out_of_errors_and_logs(api, fb, caplog):
    caplog.set_level(logging.DEBUG, logger="freshbooks")
    api.get(ME_URL, status=401, json={"error": "unauthenticated"})
    api.post(TOKEN_URL, status=400, json={"error": "invalid_grant",
                                          "error_description": "Token revoked."})
    with pytest.raises(AuthError) as caught:
        fb.me()
    assert caplog.records, "the calls were logged"
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
        assert secret not in repr(fb.tokens)

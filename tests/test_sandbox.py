"""Tests of the FreshBooks sandbox (dev/sandbox/freshbooks_sandbox.py), over loopback HTTP."""

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests

SANDBOX_DIR = Path(__file__).resolve().parent.parent / "dev" / "sandbox"
sys.path.insert(0, str(SANDBOX_DIR))

import freshbooks_sandbox as fbs  # noqa: E402
from freshbooks import FreshBooksClient, TokenSet  # noqa: E402 - the add-on's client (conftest)

CLIENT_ID, CLIENT_SECRET = "sandbox-client-id", "sandbox-client-secret"
REDIRECT = "http://127.0.0.1:8069/freshbooks/oauth/callback"
SCOPES = "user:profile:read user:clients:read user:clients:write user:invoices:read"


# -- helpers ----------------------------------------------------------------------------------

class Api:
    """requests against one sandbox, with a timeout and no proxies."""

    def __init__(self, sandbox, token=None):
        self.base = sandbox.url
        self.session = requests.Session()
        self.session.trust_env = False
        self.token = token

    def call(self, method, path, token=..., **kwargs):
        token = self.token if token is ... else token
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("allow_redirects", False)
        return self.session.request(method, self.base + path, headers=headers, timeout=10,
                                    **kwargs)

    def get(self, path, **kwargs):
        return self.call("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.call("POST", path, **kwargs)

    def put(self, path, **kwargs):
        return self.call("PUT", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.call("DELETE", path, **kwargs)


@pytest.fixture
def sandbox():
    with fbs.Sandbox(webhook_delay=0.01) as box:
        yield box


@pytest.fixture
def api(sandbox):
    return Api(sandbox, sandbox.issue_tokens()["access_token"])


class Receiver:
    """A tiny local HTTP server that records the POSTs it receives."""

    def __init__(self, status=200):
        self.posts = []
        self.cond = threading.Condition()
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.cond:
                    receiver.posts.append({"path": self.path, "headers": dict(self.headers),
                                           "body": body.decode()})
                    receiver.cond.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def wait(self, n, timeout=5):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.posts) >= n, timeout), self.posts
            return list(self.posts)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    box = Receiver()
    yield box
    box.close()


def accounting(sandbox, rest=""):
    return f"/accounting/account/{sandbox.account_ids[0]}/users/clients{rest}"


def invoices_path(sandbox, rest=""):
    return f"/accounting/account/{sandbox.account_ids[0]}/invoices/invoices{rest}"


def records_path(sandbox, kind, rest=""):
    return f"/accounting/account/{sandbox.account_ids[0]}/{kind}s/{kind}s{rest}"


def callbacks_path(sandbox, rest=""):
    return f"/events/account/{sandbox.account_ids[0]}/events/callbacks{rest}"


def authorize(api, **overrides):
    params = {"client_id": CLIENT_ID, "response_type": "code", "redirect_uri": REDIRECT,
              "scope": SCOPES, "state": "db:xyz"}
    params.update(overrides)
    return params


def consent(api, decision="allow", **overrides):
    params = authorize(api, **overrides)
    return api.post("/oauth/authorize", data=dict(params, decision=decision), token=None)


def location_query(response):
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def exchange(api, code, **overrides):
    body = {"grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET, "redirect_uri": REDIRECT}
    body.update(overrides)
    return api.post("/auth/oauth/token", json=body, token=None)


def refresh(api, refresh_token, as_form=False):
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uri": REDIRECT}
    if as_form:
        return api.post("/auth/oauth/token", data=body, token=None)
    return api.post("/auth/oauth/token", json=body, token=None)


def all_pages(api, path, key, **params):
    items, page = [], 1
    while True:
        result = api.get(path, params=dict(params, page=page, per_page=100)).json()
        result = result["response"]["result"]
        items += result[key]
        if page >= result["pages"]:
            return items
        page += 1


# -- OAuth ------------------------------------------------------------------------------------

def test_consent_page_and_allow_gives_a_working_code(sandbox):
    api = Api(sandbox)
    page = api.get("/oauth/authorize", params=authorize(api), token=None)
    assert page.status_code == 200
    for text in ("Sandbox FreshBooks", CLIENT_ID, "owner@sandbox.test", "user:clients:write",
                 'id="fb-allow"', 'id="fb-deny"', 'action="/oauth/authorize"', "db:xyz"):
        assert text in page.text
    allowed = consent(api)
    assert allowed.status_code == 302
    assert allowed.headers["Location"].startswith(REDIRECT + "?")
    answer = location_query(allowed)
    assert answer["state"] == "db:xyz" and answer["code"]
    tokens = exchange(api, answer["code"])
    assert tokens.status_code == 200
    body = tokens.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "scope",
                         "created_at"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 43200
    assert body["scope"] == SCOPES and abs(body["created_at"] - time.time()) < 5
    me = api.get("/auth/api/v1/users/me", token=body["access_token"])
    assert me.status_code == 200 and me.json()["response"]["email"] == "owner@sandbox.test"


def test_consent_autoclick_option_adds_the_script():
    with fbs.Sandbox(consent_autoclick_ms=250) as box:
        api = Api(box)
        page = api.get("/oauth/authorize", params=authorize(api), token=None).text
        assert "getElementById('fb-allow').click()" in page and "250" in page


def test_deny_redirects_with_access_denied(sandbox):
    denied = consent(Api(sandbox), decision="deny")
    assert denied.status_code == 302
    answer = location_query(denied)
    assert answer["error"] == "access_denied" and answer["error_description"]
    assert answer["state"] == "db:xyz" and "code" not in answer


def test_unknown_client_and_redirect_with_query_are_refused(sandbox):
    api = Api(sandbox)
    unknown = api.get("/oauth/authorize", params=authorize(api, client_id="nope"), token=None)
    assert unknown.status_code == 400 and "Unknown application" in unknown.text
    with_query = api.get("/oauth/authorize", token=None,
                         params=authorize(api, redirect_uri=REDIRECT + "?next=1"))
    assert with_query.status_code == 400 and "query string" in with_query.text
    assert consent(api, redirect_uri=REDIRECT + "?next=1").status_code == 400
    assert consent(api, client_id="nope").status_code == 400
    bad_scope = location_query(api.get("/oauth/authorize", token=None,
                                       params=authorize(api, scope="user:everything:write")))
    assert bad_scope["error"] == "invalid_scope"


def test_code_is_single_use_and_bound_to_client_and_redirect(sandbox):
    api = Api(sandbox)
    code = location_query(consent(api))["code"]
    wrong_secret = exchange(api, code, client_secret="guess")
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    wrong_redirect = exchange(api, code, redirect_uri="http://127.0.0.1:9/other")
    assert wrong_redirect.status_code == 400
    assert wrong_redirect.json()["error"] == "invalid_grant"
    assert exchange(api, code).status_code == 200
    again = exchange(api, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert again.json()["error_description"]
    # A form-encoded exchange works too, and an expired code does not.
    code = location_query(consent(api))["code"]
    with sandbox.lock:
        sandbox._codes[code]["expires_at"] = time.time() - 1
    expired = api.post("/auth/oauth/token", token=None, data={
        "grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "redirect_uri": REDIRECT})
    assert expired.status_code == 400 and "expired" in expired.json()["error_description"]
    code = location_query(consent(api))["code"]
    multipart = api.post("/auth/oauth/token", token=None, files={
        k: (None, v) for k, v in {"grant_type": "authorization_code", "code": code,
                                  "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                  "redirect_uri": REDIRECT}.items()})
    assert multipart.status_code == 200, multipart.text


def test_refresh_rotates_and_old_refresh_token_is_rejected(sandbox):
    api = Api(sandbox)
    first = sandbox.issue_tokens()
    second = refresh(api, first["refresh_token"])
    assert second.status_code == 200
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    reused = refresh(api, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant" and reused.json()["error_description"]
    third = refresh(api, second["refresh_token"], as_form=True)
    assert third.status_code == 200
    assert api.get("/auth/api/v1/users/me", token=third.json()["access_token"]).status_code == 200


def test_revoke_kills_access_and_refresh_tokens(sandbox):
    api = Api(sandbox)
    grant, other = sandbox.issue_tokens(), sandbox.issue_tokens()
    bad = api.post("/auth/oauth/revoke", token=None, json={
        "client_id": CLIENT_ID, "client_secret": "wrong", "token": grant["refresh_token"]})
    assert bad.status_code == 401
    revoked = api.post("/auth/oauth/revoke", token=None, json={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "token": grant["refresh_token"]})
    assert revoked.status_code == 200
    assert api.get("/auth/api/v1/users/me", token=grant["access_token"]).status_code == 401
    assert refresh(api, grant["refresh_token"]).json()["error"] == "invalid_grant"
    assert api.get("/auth/api/v1/users/me", token=other["access_token"]).status_code == 200


def test_expire_tokens_and_revoke_all(sandbox):
    api = Api(sandbox)
    grant = sandbox.issue_tokens()
    assert api.get(accounting(sandbox), token=grant["access_token"]).status_code == 200
    sandbox.expire_tokens()
    expired = api.get(accounting(sandbox), token=grant["access_token"])
    assert expired.status_code == 401
    fresh = refresh(api, grant["refresh_token"]).json()
    assert api.get(accounting(sandbox), token=fresh["access_token"]).status_code == 200
    assert api.post("/_sandbox/revoke_all").status_code == 200
    assert api.get(accounting(sandbox), token=fresh["access_token"]).status_code == 401
    assert refresh(api, fresh["refresh_token"]).status_code == 400


def test_token_ttl_is_enforced():
    with fbs.Sandbox(token_ttl=1) as box:
        grant = box.issue_tokens()
        assert grant["expires_in"] == 1
        api = Api(box, grant["access_token"])
        assert api.get("/auth/api/v1/users/me").status_code == 200
        time.sleep(1.1)
        assert api.get("/auth/api/v1/users/me").status_code == 401


def test_unauthenticated_error_shapes(sandbox):
    api = Api(sandbox)
    for token in (None, "not-a-token"):
        accounting_401 = api.get(accounting(sandbox), token=token)
        assert accounting_401.status_code == 401
        assert accounting_401.json() == {"response": {"errors": [{
            "errno": 1003, "message": "The server could not verify that you are authorized to "
                                      "access the URL requested."}]}}
        auth_401 = api.get("/auth/api/v1/users/me", token=token)
        assert auth_401.status_code == 401
        assert auth_401.json() == {"error": "unauthenticated", "error_description":
                                   "This action requires authentication to continue."}
        events_401 = api.get(callbacks_path(sandbox), token=token)
        assert events_401.status_code == 401
        assert events_401.json()["errno"] == 401
        assert events_401.json()["message"].startswith("invalid_token: ")


# -- identity ---------------------------------------------------------------------------------

def test_users_me_lists_businesses_and_a_foreign_client_membership():
    with fbs.Sandbox(businesses=2) as box:
        assert box.account_ids == ["SBX001", "SBX002"]
        me = Api(box, box.issue_tokens()["access_token"]).get("/auth/api/v1/users/me").json()
        me = me["response"]
        assert me["email"] == "owner@sandbox.test" and me["identity_id"] == me["id"]
        assert me["first_name"] and me["last_name"]
        memberships = me["business_memberships"]
        assert [m["role"] for m in memberships] == ["owner", "admin", "client"]
        ours = [m["business"] for m in memberships if m["role"] != "client"]
        assert [b["account_id"] for b in ours] == ["SBX001", "SBX002"]
        assert [b["id"] for b in ours] == [100001, 100002]
        assert all(b["business_uuid"] and b["name"] for b in ours)
        foreign = memberships[2]["business"]["account_id"]
        assert foreign not in box.account_ids
        # The foreign business cannot be read through the API.
        api = Api(box, box.issue_tokens()["access_token"])
        assert api.get(f"/accounting/account/{foreign}/users/clients").status_code == 403


# -- clients ----------------------------------------------------------------------------------

def test_list_paging_and_per_page_cap():
    with fbs.Sandbox(clients=250, seed=3) as box:
        api = Api(box, box.issue_tokens()["access_token"])
        visible = [c for c in box.clients() if c["vis_state"] != 1]
        first = api.get(accounting(box), params={"page": 1, "per_page": 100}).json()
        result = first["response"]["result"]
        assert (result["page"], result["pages"], result["per_page"], result["total"]) == (
            1, 3, 100, len(visible))
        capped = api.get(accounting(box), params={"per_page": 500}).json()["response"]["result"]
        assert capped["per_page"] == 100 and len(capped["clients"]) == 100
        default = api.get(accounting(box)).json()["response"]["result"]
        assert default["per_page"] == 15 and len(default["clients"]) == 15
        zero = api.get(accounting(box), params={"page": 0, "per_page": 100}).json()
        assert zero["response"]["result"]["page"] == 1
        assert zero["response"]["result"]["clients"] == result["clients"]
        last = api.get(accounting(box), params={"page": 3, "per_page": 100}).json()
        assert len(last["response"]["result"]["clients"]) == len(visible) - 200
        past = api.get(accounting(box), params={"page": 4, "per_page": 100}).json()
        assert past["response"]["result"]["clients"] == []
        everything = all_pages(api, accounting(box), "clients")
        ids = [c["id"] for c in everything]
        assert ids == sorted(ids) and len(set(ids)) == len(visible) == 250
        bad = api.get(accounting(box), params={"page": "two"})
        assert bad.status_code == 400
        assert bad.json()["response"]["errors"][0]["errno"] == 1014


def test_updated_min_and_max_have_day_granularity(sandbox, api):
    early = sandbox.add_client(organization="Early", updated="2024-01-09 23:59:59")
    morning = sandbox.add_client(organization="Morning", updated="2024-01-10 00:00:01")
    night = sandbox.add_client(organization="Night", updated="2024-01-10 23:59:59")
    later = sandbox.add_client(organization="Later", updated="2024-01-11 08:00:00")

    def ids(**search):
        params = {f"search[{k}]": v for k, v in search.items()}
        return [c["id"] for c in api.get(accounting(sandbox), params=dict(
            params, per_page=100)).json()["response"]["result"]["clients"]]

    assert ids(updated_min="2024-01-10") == [morning["id"], night["id"], later["id"]]
    assert ids(updated_min="2024-01-11") == [later["id"]]
    assert ids(updated_max="2024-01-11") == [early["id"], morning["id"], night["id"]]
    assert ids(updated_min="2024-01-10", updated_max="2024-01-11") == [morning["id"], night["id"]]
    assert ids(userids=[]) == ids()
    one = api.get(accounting(sandbox), params={"search[userids][]": [early["id"], later["id"]]})
    assert [c["id"] for c in one.json()["response"]["result"]["clients"]] == [
        early["id"], later["id"]]
    assert api.get(accounting(sandbox), params={
        "search[updated_min]": "yesterday"}).status_code == 400


def test_vis_state_defaults_hide_deleted_show_archived(sandbox, api):
    active = sandbox.add_client(organization="Active")
    archived = sandbox.archive_client(sandbox.add_client(organization="Archived")["id"])
    deleted = sandbox.delete_client(sandbox.add_client(organization="Deleted")["id"])
    assert (archived["vis_state"], deleted["vis_state"]) == (2, 1)

    def listed(**params):
        result = api.get(accounting(sandbox), params=params).json()["response"]["result"]
        return {c["id"] for c in result["clients"]}

    assert listed() == {active["id"], archived["id"]}
    assert listed(**{"search[vis_state]": 1}) == {deleted["id"]}
    assert listed(**{"search[vis_state]": 2}) == {archived["id"]}
    assert listed(**{"search[vis_state]": 0}) == {active["id"]}
    got = api.get(accounting(sandbox, f"/{deleted['id']}")).json()
    assert got["response"]["result"]["client"]["vis_state"] == 1
    # Lists follow every change (they are cached between changes).
    sandbox.restore_client(deleted["id"])
    assert listed() == {active["id"], archived["id"], deleted["id"]}
    api.put(accounting(sandbox, f"/{active['id']}"), json={"client": {"vis_state": 1}})
    assert listed() == {archived["id"], deleted["id"]}


def test_get_unknown_client_is_a_1012(sandbox, api):
    missing = api.get(accounting(sandbox, "/999999"))
    assert missing.status_code == 404
    assert missing.json() == {"response": {"errors": [{
        "errno": 1012, "field": "userid", "message": "Client not found.", "object": "client",
        "value": "999999"}]}}
    assert api.put(accounting(sandbox, "/999999"), json={"client": {"fname": "x"}}
                   ).status_code == 404


def test_create_client_fills_the_full_field_set(sandbox, api):
    created = api.post(accounting(sandbox), json={"client": {
        "fname": "Ada", "lname": "Lovelace", "organization": "Analytical Engines",
        "email": "ada@engines.test", "p_country": "United Kingdom", "currency_code": "GBP",
        "vat_name": None, "not_a_field": "dropped"}})
    assert created.status_code == 200
    client = created.json()["response"]["result"]["client"]
    assert client["id"] == client["userid"] and client["id"] > 0
    assert client["accounting_systemid"] == sandbox.account_ids[0]
    assert set(fbs.CLIENT_DEFAULTS) <= set(client)
    assert "not_a_field" not in client
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", client["updated"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", client["signup_date"])
    assert (client["role"], client["vis_state"], client["p_country"]) == (
        "client", 0, "United Kingdom")
    write = sandbox.client_writes[-1]
    assert (write["method"], write["client_id"], write["status"]) == ("POST", client["id"], 200)
    assert write["body"]["client"]["fname"] == "Ada"
    assert write["ignored_keys"] == ["not_a_field"]
    fetched = api.get(accounting(sandbox, f"/{client['id']}")).json()
    assert fetched["response"]["result"]["client"] == client
    # Only an email: FreshBooks fills the organization with it.
    only_email = api.post(accounting(sandbox), json={"client": {"email": "solo@x.test"}}).json()
    assert only_email["response"]["result"]["client"]["organization"] == "solo@x.test"


def test_create_validation_errors(sandbox, api):
    bad_email = api.post(accounting(sandbox), json={"client": {
        "organization": "Bad Mail", "email": "not-an-email"}})
    assert bad_email.status_code == 422
    error = bad_email.json()["response"]["errors"][0]
    assert (error["errno"], error["field"], error["message"]) == (
        1004, "email", "Invalid email address.")
    nameless = api.post(accounting(sandbox), json={"client": {
        "fname": "", "lname": " ", "organization": "", "email": "", "note": "x"}})
    assert nameless.status_code == 422
    assert nameless.json()["response"]["errors"][0]["errno"] == 1001
    wrong_type = api.post(accounting(sandbox), json={"client": {"organization": 12}})
    assert wrong_type.status_code == 422
    assert wrong_type.json()["response"]["errors"][0]["field"] == "organization"
    unwrapped = api.post(accounting(sandbox), json={"organization": "No Wrapper"})
    assert unwrapped.status_code == 400
    # An empty email is fine when there is a name.
    assert api.post(accounting(sandbox), json={"client": {
        "fname": "No", "lname": "Mail", "email": ""}}).status_code == 200
    assert [w["status"] for w in sandbox.client_writes] == [422, 422, 422, 400, 200]
    assert len(sandbox.clients()) == 1


def test_update_changes_only_given_keys(sandbox, api):
    client = sandbox.add_client(organization="Keep Co", fname="Kim", email="kim@keep.test",
                                bus_phone="111", updated="2020-01-01 00:00:00")
    updated = api.put(accounting(sandbox, f"/{client['id']}"),
                      json={"client": {"bus_phone": "222"}})
    assert updated.status_code == 200
    result = updated.json()["response"]["result"]["client"]
    assert result["bus_phone"] == "222"
    assert (result["organization"], result["fname"], result["email"]) == (
        "Keep Co", "Kim", "kim@keep.test")
    assert result["updated"] > "2020-01-01 00:00:00"
    bad = api.put(accounting(sandbox, f"/{client['id']}"), json={"client": {"email": "nope"}})
    assert bad.status_code == 422
    assert sandbox.get_client(client["id"])["email"] == "kim@keep.test"
    assert [(w["method"], w["client_id"], w["status"]) for w in sandbox.client_writes] == [
        ("PUT", client["id"], 200), ("PUT", client["id"], 422)]


def test_vis_state_put_drops_the_other_fields(sandbox, api):
    client = sandbox.add_client(organization="Phase Co", note="before")
    response = api.put(accounting(sandbox, f"/{client['id']}"), json={"client": {
        "vis_state": 2, "organization": "Renamed", "note": "after"}})
    assert response.status_code == 200
    result = response.json()["response"]["result"]["client"]
    assert (result["vis_state"], result["organization"], result["note"]) == (
        2, "Phase Co", "before")
    restored = api.put(accounting(sandbox, f"/{client['id']}"),
                       json={"client": {"vis_state": 0}}).json()["response"]["result"]["client"]
    assert restored["vis_state"] == 0
    assert api.put(accounting(sandbox, f"/{client['id']}"),
                   json={"client": {"vis_state": "deleted"}}).status_code == 422


# -- invoices ---------------------------------------------------------------------------------

def test_invoice_shape_and_filters(sandbox, api):
    alice = sandbox.add_client(organization="Alice Ltd", currency_code="CAD")
    bob = sandbox.add_client(fname="Bob", lname="Builder", currency_code="EUR")
    a1 = sandbox.add_invoice(alice["id"], amount="120.50", v3_status="sent",
                             updated="2024-03-01 10:00:00")
    a2 = sandbox.add_invoice(alice["id"], amount={"amount": "80.00", "code": "CAD"},
                             v3_status="partial", paid="30.00", updated="2024-03-05 10:00:00")
    b1 = sandbox.add_invoice(bob["id"], v3_status="paid", updated="2024-03-07 10:00:00")
    gone = sandbox.add_invoice(bob["id"])
    sandbox.delete_invoice(gone["id"])

    def listed(**search):
        params = {f"search[{k}]": v for k, v in search.items()}
        result = api.get(invoices_path(sandbox), params=params).json()["response"]["result"]
        return [i["id"] for i in result["invoices"]]

    assert listed() == [a1["id"], a2["id"], b1["id"]]
    assert listed(customerid=alice["id"]) == [a1["id"], a2["id"]]
    assert listed(updated_min="2024-03-05") == [a2["id"], b1["id"]]
    assert listed(vis_state=1) == [gone["id"]]
    assert listed(customerid=bob["id"], vis_state=1) == [gone["id"]]
    invoice = api.get(invoices_path(sandbox, f"/{a2['id']}")).json()["response"]["result"][
        "invoice"]
    assert invoice["id"] == invoice["invoiceid"] == a2["id"]
    assert re.fullmatch(r"INV-\d{6}", invoice["invoice_number"])
    assert (invoice["customerid"], invoice["accountid"], invoice["currency_code"]) == (
        alice["id"], sandbox.account_ids[0], "CAD")
    assert invoice["amount"] == {"amount": "80.00", "code": "CAD"}
    assert invoice["paid"] == {"amount": "30.00", "code": "CAD"}
    assert invoice["outstanding"] == {"amount": "50.00", "code": "CAD"}
    assert (invoice["status"], invoice["v3_status"], invoice["payment_status"]) == (
        8, "partial", "partial")
    assert invoice["organization"] == "Alice Ltd" and invoice["display_status"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", invoice["create_date"])
    paid = sandbox.get_invoice(b1["id"])
    assert paid["currency_code"] == "EUR" and paid["outstanding"]["amount"] == "0.00"
    assert paid["date_paid"] and paid["status"] == 4
    assert api.get(invoices_path(sandbox, "/1")).status_code == 404
    lines = api.get(invoices_path(sandbox, f"/{a1['id']}"), params={"include[]": "lines"})
    assert lines.json()["response"]["result"]["invoice"]["lines"][0]["amount"]["amount"] == \
        "120.50"


def test_update_invoice_recomputes_money(sandbox):
    client = sandbox.add_client(organization="Payer", currency_code="USD")
    invoice = sandbox.add_invoice(client["id"], amount="250.00", v3_status="sent")
    assert invoice["outstanding"]["amount"] == "250.00"
    paid = sandbox.update_invoice(invoice["id"], v3_status="paid")
    assert (paid["outstanding"]["amount"], paid["paid"]["amount"], paid["v3_status"]) == (
        "0.00", "250.00", "paid")
    with pytest.raises(ValueError):
        sandbox.update_invoice(invoice["id"], v3_status="bogus")
    with pytest.raises(KeyError):
        sandbox.update_invoice(1, v3_status="paid")


# -- payments and estimates -------------------------------------------------------------------

@pytest.fixture(scope="module")
def seeded():
    with fbs.Sandbox(clients=40, invoices=3, seed=3) as box:
        yield box, Api(box, box.issue_tokens()["access_token"])


@pytest.mark.parametrize(("kind", "client_field"), [("payment", "clientid"),
                                                    ("estimate", "customerid")])
def test_payments_and_estimates_list_and_get(seeded, kind, client_field):
    box, api = seeded
    stored = getattr(box, f"{kind}s")()
    assert stored, "the seed made some"
    listed = all_pages(api, records_path(box, kind), f"{kind}s")
    assert listed == stored
    second = api.get(records_path(box, kind), params={"per_page": 5, "page": 2}).json()
    result = second["response"]["result"]
    assert (result["page"], result["per_page"], result["total"]) == (2, 5, len(stored))
    assert result["pages"] == -(-len(stored) // 5)
    assert result[f"{kind}s"] == listed[5:10]
    one = stored[len(stored) // 2]
    by_client = all_pages(api, records_path(box, kind), f"{kind}s",
                          **{f"search[{client_field}]": one[client_field]})
    assert by_client and all(r[client_field] == one[client_field] for r in by_client)
    assert by_client == [r for r in listed if r[client_field] == one[client_field]]
    day = sorted(r["updated"][:10] for r in stored)[len(stored) // 2]
    recent = all_pages(api, records_path(box, kind), f"{kind}s", **{"search[updated_min]": day})
    assert recent == [r for r in listed if r["updated"][:10] >= day]
    newest = all_pages(api, records_path(box, kind), f"{kind}s", sort="updated_desc")
    assert [r["updated"] for r in newest] == sorted((r["updated"] for r in stored), reverse=True)
    got = api.get(records_path(box, kind, f"/{one['id']}")).json()["response"]["result"][kind]
    assert got == next(r for r in listed if r["id"] == one["id"])
    missing = api.get(records_path(box, kind, "/1"))
    assert missing.status_code == 404
    assert missing.json()["response"]["errors"][0]["errno"] == 1012


def test_payments_of_an_invoice(seeded):
    box, api = seeded
    payment = box.payments()[0]
    listed = all_pages(api, records_path(box, "payment"), "payments",
                       **{"search[invoiceid]": payment["invoiceid"]})
    assert [p["invoiceid"] for p in listed] == [payment["invoiceid"]] * len(listed)
    assert sum(fbs._cents(p["amount"]) for p in listed) == fbs._cents(
        box.get_invoice(payment["invoiceid"])["paid"])


def test_an_empty_payment_listing_has_zero_pages(sandbox, api):
    result = api.get(records_path(sandbox, "payment")).json()["response"]["result"]
    assert (result["payments"], result["page"], result["pages"], result["total"]) == ([], 1, 0, 0)
    result = api.get(records_path(sandbox, "estimate")).json()["response"]["result"]
    assert (result["estimates"], result["pages"]) == ([], 1)


def test_the_client_reads_payment_pages_from_the_sandbox():
    with fbs.Sandbox(clients=120, invoices=3, seed=2) as box:
        tokens = box.issue_tokens()
        fb = FreshBooksClient(CLIENT_ID, CLIENT_SECRET, REDIRECT, api_url=box.url,
                              auth_url=box.url, tokens=TokenSet(
                                  tokens["access_token"], tokens["refresh_token"],
                                  time.time() + 3600))
        fb.session.trust_env = False
        account = box.account_ids[0]
        pages = list(fb.iter_pages(account, "payments"))
        assert [len(page) for page in pages[:-1]] == [100] * (len(pages) - 1)
        assert [p for page in pages for p in page] == box.payments()
        estimate = box.estimates()[0]
        assert fb.get(account, "estimates", estimate["id"])["estimate_number"] == \
            estimate["estimate_number"]
        client = box.add_client(organization="Nothing Paid")
        assert list(fb.iter_pages(account, "payments", search={"clientid": client["id"]})) == []


def test_deleted_payments_and_estimates_are_listed_like_invoices(sandbox, api):
    client = sandbox.add_client(organization="Deleting")
    invoice = sandbox.add_invoice(client["id"], amount="50.00", v3_status="sent")
    payment = sandbox.add_payment(invoice["id"], amount="20.00")
    estimate = sandbox.add_estimate(client["id"])
    sandbox.delete_payment(payment["id"])
    sandbox.delete_estimate(estimate["id"])
    for kind, record in (("payment", payment), ("estimate", estimate)):
        assert all_pages(api, records_path(sandbox, kind), f"{kind}s") == [], \
            "deleted ones are left out by default"
        deleted = all_pages(api, records_path(sandbox, kind), f"{kind}s",
                            **{"search[vis_state]": 1})
        assert [(r["id"], r["vis_state"]) for r in deleted] == [(record["id"], 1)]
        got = api.get(records_path(sandbox, kind, f"/{record['id']}")).json()
        assert got["response"]["result"][kind]["vis_state"] == 1
    state = sandbox.state()["accounts"]["SBX001"]
    assert (state["payments"], state["payments_deleted"]) == (1, 1)
    assert (state["estimates"], state["estimates_deleted"]) == (1, 1)
    assert sandbox.payments(include_deleted=False) == []
    assert sandbox.estimates(client_id=client["id"], include_deleted=False) == []


def money(record, key="amount"):
    return record[key]["amount"]


def test_payments_move_their_invoice_and_fire_webhooks(sandbox, api, receiver):
    for event in ("payment.create", "payment.update", "payment.delete", "estimate.create",
                  "estimate.update", "estimate.delete"):
        answer = api.post(callbacks_path(sandbox), json={"callback": {
            "event": event, "uri": receiver.url}})
        assert answer.status_code == 200, "FreshBooks' payment and estimate events are accepted"
    verified_callback(sandbox, api, receiver, "payment")
    verified_callback(sandbox, api, receiver, "invoice.update")
    client = sandbox.add_client(organization="Paying", currency_code="EUR")
    invoice = sandbox.add_invoice(client["id"], amount="100.00", v3_status="sent")
    first = sandbox.add_payment(invoice["id"], amount="40.00", date="2024-05-02",
                                type="Cash")
    assert (first["id"], first["invoiceid"], first["clientid"]) == (
        first["logid"], invoice["id"], client["id"])
    assert (first["amount"], first["date"], first["type"], first["from_credit"]) == (
        {"amount": "40.00", "code": "EUR"}, "2024-05-02", "Cash", False)
    assert first["accounting_systemid"] == sandbox.account_ids[0]
    after = sandbox.get_invoice(invoice["id"])
    assert (money(after, "paid"), money(after, "outstanding"), after["v3_status"]) == (
        "40.00", "60.00", "partial")
    rest = sandbox.add_payment(invoice["id"], date="2024-05-09")  # what is outstanding
    assert money(rest) == "60.00"
    after = sandbox.get_invoice(invoice["id"])
    assert (money(after, "outstanding"), after["v3_status"], after["date_paid"]) == (
        "0.00", "paid", "2024-05-09")
    assert sandbox.update_payment(first["id"], amount="30.00")["amount"]["amount"] == "30.00"
    assert money(sandbox.get_invoice(invoice["id"]), "paid") == "90.00"
    sandbox.delete_payment(rest["id"])
    after = sandbox.get_invoice(invoice["id"])
    assert (money(after, "paid"), after["v3_status"], after["date_paid"]) == (
        "30.00", "partial", None)
    sandbox.delete_payment(first["id"])
    assert sandbox.get_invoice(invoice["id"])["v3_status"] == "sent"
    deliveries = sandbox.wait_deliveries(10)
    assert [(d["event"], d["object_id"]) for d in deliveries] == [
        ("payment.create", first["id"]), ("invoice.update", invoice["id"]),
        ("payment.create", rest["id"]), ("invoice.update", invoice["id"]),
        ("payment.update", first["id"]), ("invoice.update", invoice["id"]),
        ("payment.delete", rest["id"]), ("invoice.update", invoice["id"]),
        ("payment.delete", first["id"]), ("invoice.update", invoice["id"])]
    assert all(d["status"] == 200 and d["signature"] for d in deliveries)


def test_payments_keep_their_invoice_consistent(sandbox):
    client = sandbox.add_client(organization="Careful", currency_code="USD")
    invoice = sandbox.add_invoice(client["id"], amount="10.00", v3_status="sent")
    for bad in ({"amount": "10.01"}, {"amount": "0"}, {"amount": {"amount": "5", "code": "EUR"}}):
        with pytest.raises(ValueError):
            sandbox.add_payment(invoice["id"], **bad)
    payment = sandbox.add_payment(invoice["id"], amount="4.00")
    with pytest.raises(ValueError):
        sandbox.update_payment(payment["id"], amount="10.50")
    assert sandbox.payments(client_id=client["id"]) == [sandbox.get_payment(payment["id"])]
    assert money(sandbox.get_invoice(invoice["id"]), "paid") == "4.00"
    sandbox.delete_payment(payment["id"])
    sandbox.update_payment(payment["id"], vis_state=0)  # restored: it counts again
    assert money(sandbox.get_invoice(invoice["id"]), "outstanding") == "6.00"
    with pytest.raises(KeyError):
        sandbox.add_payment(424242)


def test_a_new_payment_is_found_by_a_sync_of_todays_changes(sandbox, api):
    client = sandbox.add_client(organization="Paying Today", currency_code="USD")
    invoice = sandbox.add_invoice(client["id"], amount="10.00", v3_status="sent")
    payment = sandbox.add_payment(invoice["id"], amount="4.00")
    assert payment["updated"], "stamped like every other change"
    today = payment["updated"][:10]
    listed = api.get(f"/accounting/account/{sandbox.account_ids[0]}/payments/payments",
                     params={"search[updated_min]": today}).json()
    assert [p["id"] for p in listed["response"]["result"]["payments"]] == [payment["id"]]


def test_estimates_python_api_and_webhooks(sandbox, api, receiver):
    verified_callback(sandbox, api, receiver, "estimate")
    client = sandbox.add_client(organization="Quoting", fname="Ada", lname="Quote",
                                currency_code="CAD")
    estimate = sandbox.add_estimate(client["id"], amount="250", ui_status="sent",
                                    create_date="2024-06-01")
    assert (estimate["id"], estimate["estimate_number"], estimate["customerid"]) == (
        estimate["estimateid"], "0000001", client["id"])
    assert (estimate["amount"], estimate["currency_code"], estimate["create_date"]) == (
        {"amount": "250.00", "code": "CAD"}, "CAD", "2024-06-01")
    assert (estimate["status"], estimate["ui_status"], estimate["display_status"],
            estimate["accepted"], estimate["invoiced"]) == (2, "sent", "sent", False, False)
    assert (estimate["organization"], estimate["fname"], estimate["lname"],
            estimate["current_organization"]) == ("Quoting", "Ada", "Quote", "Quoting")
    sandbox.update_client(client["id"], organization="Quoting Renamed")
    accepted = sandbox.update_estimate(estimate["id"], status=5)
    assert (accepted["ui_status"], accepted["accepted"], accepted["invoiced"]) == (
        "accepted", True, False)
    assert (accepted["organization"], accepted["current_organization"]) == (
        "Quoting", "Quoting Renamed")
    assert sandbox.update_estimate(estimate["id"], ui_status="invoiced")["invoiced"] is True
    with pytest.raises(ValueError):
        sandbox.update_estimate(estimate["id"], ui_status="lost")
    assert sandbox.add_estimate(client["id"])["estimate_number"] == "0000002"
    sandbox.delete_estimate(estimate["id"])
    deliveries = sandbox.wait_deliveries(5)
    assert [d["event"] for d in deliveries] == [
        "estimate.create", "estimate.update", "estimate.update", "estimate.create",
        "estimate.delete"]
    assert sandbox.get_estimate(estimate["id"])["vis_state"] == 1
    assert [e["id"] for e in sandbox.estimates(client_id=client["id"])] == [
        estimate["id"], estimate["id"] + 1]


def test_control_api_for_payments_and_estimates(sandbox):
    control = Api(sandbox)
    client = sandbox.add_client(organization="Controlled")
    invoice = sandbox.add_invoice(client["id"], amount="80.00", v3_status="sent")
    created = control.post("/_sandbox/payments", json={"invoice_id": invoice["id"],
                                                       "amount": "30.00", "type": "Check"})
    assert created.status_code == 201
    payment = created.json()["payment"]
    assert control.get(f"/_sandbox/payments/{payment['id']}").json()["payment"] == payment
    changed = control.put(f"/_sandbox/payments/{payment['id']}", json={"note": "cheque 12"})
    assert changed.json()["payment"]["note"] == "cheque 12"
    listed = control.get("/_sandbox/payments", params={"client_id": client["id"]})
    assert [p["id"] for p in listed.json()["payments"]] == [payment["id"]]
    assert control.post(f"/_sandbox/payments/{payment['id']}/delete").json()["payment"][
        "vis_state"] == 1
    assert control.post("/_sandbox/payments", json={"amount": "1"}).status_code == 400
    assert control.post("/_sandbox/payments", json={"invoice_id": invoice["id"],
                                                    "amount": "99"}).status_code == 400
    assert control.get("/_sandbox/payments/1").status_code == 404
    estimate = control.post("/_sandbox/estimates", json={
        "customerid": client["id"], "status": 3}).json()["estimate"]
    assert (estimate["customerid"], estimate["ui_status"]) == (client["id"], "viewed")
    assert control.put(f"/_sandbox/estimates/{estimate['id']}", json={
        "ui_status": "accepted"}).json()["estimate"]["accepted"] is True
    assert control.post(f"/_sandbox/estimates/{estimate['id']}/delete").json()["estimate"][
        "vis_state"] == 1
    listed = control.get("/_sandbox/estimates", params={"include_deleted": "0"})
    assert listed.json()["estimates"] == []
    assert control.post("/_sandbox/estimates", json={"client_id": 424242}).status_code == 404


# -- callbacks and webhooks -------------------------------------------------------------------

def test_callback_verification_flow(sandbox, api, receiver):
    created = api.post(callbacks_path(sandbox), json={"callback": {
        "event": "client.create", "uri": receiver.url}})
    assert created.status_code == 200
    callback = created.json()["response"]["result"]["callback"]
    assert set(callback) == {"callbackid", "event", "uri", "verified", "updated_at"}
    assert (callback["event"], callback["uri"], callback["verified"]) == (
        "client.create", receiver.url, False)
    post = receiver.wait(1)[0]
    assert post["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert "X-FreshBooks-Hmac-SHA256" not in post["headers"]
    form = dict(parse_qsl(post["body"]))
    assert form["name"] == "callback.verify"
    assert form["object_id"] == str(callback["callbackid"])
    assert form["account_id"] == sandbox.account_ids[0] and form["business_id"] == "100001"
    verifier = form["verifier"]
    one = callbacks_path(sandbox, f"/{callback['callbackid']}")
    wrong = api.put(one, json={"callback": {"verifier": "wrong"}})
    assert wrong.status_code == 422 and wrong.json()["errno"] == 422
    assert api.get(one).json()["response"]["result"]["callback"]["verified"] is False
    right = api.put(one, json={"callback": {"verifier": verifier}})
    assert right.json()["response"]["result"]["callback"]["verified"] is True
    assert api.put(one, json={"callback": {"resend": True}}).status_code == 200
    resent = dict(parse_qsl(receiver.wait(2)[1]["body"]))
    assert resent["verifier"] == verifier and resent["name"] == "callback.verify"
    api.post(callbacks_path(sandbox), json={"callback": {"event": "invoice", "uri": receiver.url}})
    listed = api.get(callbacks_path(sandbox), params={"search[event]": "invoice.create"}).json()
    assert [c["event"] for c in listed["response"]["result"]["callbacks"]] == ["invoice"]
    every = api.get(callbacks_path(sandbox)).json()["response"]["result"]
    assert every["total"] == 2 and every["pages"] == 1
    assert api.delete(one).status_code == 204
    missing = api.get(one)
    assert missing.status_code == 404 and missing.json()["errno"] == 404


def test_callback_validation_errors(sandbox, api):
    response = api.post(callbacks_path(sandbox), json={"callback": {
        "event": "client.explode", "uri": "not a url"}})
    assert response.status_code == 422
    body = response.json()
    assert body["errno"] == 422 and body["message"].startswith("The request was well-formed")
    assert body["details"] == ["event: Value error, Unrecognized event.",
                               "uri: Input should be a valid URL, relative URL without a base"]
    only_event = api.post(callbacks_path(sandbox), json={"callback": {
        "event": "expense.create", "uri": "http://127.0.0.1:9/x"}})
    assert only_event.json()["details"] == ["event: Value error, Unrecognized event."]
    assert sandbox.callbacks() == []


def verified_callback(sandbox, api, receiver, event):
    """Register a callback and answer its verification, as a connector does."""
    created = api.post(callbacks_path(sandbox), json={"callback": {
        "event": event, "uri": receiver.url}}).json()["response"]["result"]["callback"]
    wanted = str(created["callbackid"])

    def verification():
        for post in receiver.posts:
            fields = dict(parse_qsl(post["body"]))
            if fields.get("name") == "callback.verify" and fields.get("object_id") == wanted:
                return fields["verifier"]
        return None

    with receiver.cond:
        assert receiver.cond.wait_for(verification, 5)
        verifier = verification()
    answer = api.put(callbacks_path(sandbox, f"/{wanted}"),
                     json={"callback": {"verifier": verifier}})
    assert answer.json()["response"]["result"]["callback"]["verified"] is True
    return created, verifier


def test_signed_deliveries_for_api_and_control_changes(sandbox, api, receiver):
    _callback, verifier = verified_callback(sandbox, api, receiver, "client")
    unverified = api.post(callbacks_path(sandbox), json={"callback": {
        "event": "client.create", "uri": receiver.url}}).json()
    assert unverified["response"]["result"]["callback"]["verified"] is False
    receiver.wait(2)
    client = sandbox.add_client(organization="Hooked")
    api.put(accounting(sandbox, f"/{client['id']}"), json={"client": {"note": "changed"}})
    sandbox.delete_client(client["id"])
    deliveries = sandbox.wait_deliveries(3)
    assert [d["event"] for d in deliveries] == ["client.create", "client.update",
                                                "client.delete"]
    assert all(d["status"] == 200 and d["object_id"] == client["id"] for d in deliveries)
    posts = receiver.wait(5)[2:]
    assert len(posts) == 3, "the unverified callback gets nothing"
    for post, event in zip(posts, ("client.create", "client.update", "client.delete")):
        pairs = parse_qsl(post["body"])
        assert [k for k, _v in pairs] == ["name", "object_id", "user_id", "identity_id",
                                          "business_id", "account_id"]
        fields = dict(pairs)
        assert (fields["name"], fields["object_id"], fields["user_id"]) == (
            event, str(client["id"]), "1")
        assert fields["business_id"] == "100001"
        assert fields["account_id"] == sandbox.account_ids[0]
        message = json.dumps({k: str(v) for k, v in pairs})
        expected = base64.b64encode(hmac.new(verifier.encode("utf-8"), message.encode("utf-8"),
                                             hashlib.sha256).digest()).decode()
        assert post["headers"]["X-FreshBooks-Hmac-SHA256"] == expected


def test_invoice_events_and_failed_deliveries_are_recorded(sandbox, api, receiver):
    verified_callback(sandbox, api, receiver, "invoice.delete")
    client = sandbox.add_client(organization="Quiet")
    invoice = sandbox.add_invoice(client["id"])
    sandbox.delete_invoice(invoice["id"])
    deliveries = sandbox.wait_deliveries(1)
    assert [(d["event"], d["object_id"]) for d in deliveries] == [
        ("invoice.delete", invoice["id"])]
    # A receiver that is gone: the attempt is recorded, the sandbox carries on.
    receiver.close()
    sandbox.update_invoice(invoice["id"], vis_state=1)
    failed = sandbox.wait_deliveries(2)[1]
    assert failed["status"] is None and failed["error"]
    assert api.get(accounting(sandbox)).status_code == 200
    state = api.get("/_sandbox/state").json()
    assert len(state["deliveries"]) == 2 and state["deliveries"][1]["error"]


# -- faults -----------------------------------------------------------------------------------

def test_fault_injection_rate_and_shapes():
    with fbs.Sandbox(clients=3, fault_rate=0.5, seed=11) as box:
        api = Api(box, box.issue_tokens()["access_token"])
        statuses = Counter()
        for _ in range(200):
            response = api.get(accounting(box))
            statuses[response.status_code] += 1
            if response.status_code == 429:
                assert response.headers["Retry-After"] in ("0", "1")
        faults = sum(n for code, n in statuses.items() if code != 200)
        assert set(statuses) <= {200, 429, 500, 502, 503}
        assert 60 <= faults <= 140, statuses
        assert {429, 500, 502, 503} <= set(statuses)
        # Control routes and the consent page are never faulted.
        box.set_faults(fault_rate=1.0)
        for _ in range(20):
            assert api.get("/_sandbox/state").status_code == 200
            assert api.get("/oauth/authorize", params=authorize(api)).status_code == 200
        assert api.get(accounting(box)).status_code in (429, 500, 502, 503)
        assert api.post("/_sandbox/faults", json={"fault_rate": 0}).json()["fault_rate"] == 0
        assert api.get(accounting(box)).status_code == 200


def test_the_next_requests_can_be_answered_503(sandbox, api):
    assert api.post("/_sandbox/faults", json={"fail_next": 2}).json()["fail_next"] == 2
    assert api.get("/_sandbox/state").status_code == 200, "control routes are never faulted"
    statuses = [api.get(accounting(sandbox)).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert sandbox.set_faults()["fail_next"] == 0


def test_latency_is_added_to_api_requests(sandbox, api):
    assert api.post("/_sandbox/faults", json={"latency_ms": 150}).json()["latency_ms"] == 150
    start = time.perf_counter()
    assert api.get("/auth/api/v1/users/me").status_code == 200
    assert time.perf_counter() - start >= 0.15
    start = time.perf_counter()
    api.get("/_sandbox/state")
    assert time.perf_counter() - start < 0.15
    sandbox.set_faults(latency_ms=0)
    start = time.perf_counter()
    api.get("/auth/api/v1/users/me")
    assert time.perf_counter() - start < 0.15


def test_a_create_whose_caller_stopped_waiting_is_done_quietly(sandbox, api, capfd):
    sandbox.set_faults(latency_ms=300)
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.session.post(sandbox.url + accounting(sandbox), json={"client": {"lname": "Late"}},
                         headers={"Authorization": f"Bearer {api.token}"}, timeout=0.1)
    deadline = time.monotonic() + 5
    while not sandbox.clients() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [c["lname"] for c in sandbox.clients()] == ["Late"], "made, its answer lost"
    time.sleep(0.2)
    assert "Traceback" not in capfd.readouterr().err


# -- seeding ----------------------------------------------------------------------------------

def test_seeding_is_reproducible_and_realistic():
    first = fbs.Sandbox(clients=300, invoices=2, seed=5)
    second = fbs.Sandbox(clients=300, invoices=2, seed=5)
    other = fbs.Sandbox(clients=300, invoices=2, seed=6)
    clients = first.clients()
    assert clients == second.clients()
    assert first.invoices() == second.invoices()
    assert clients != other.clients()
    assert len(clients) == 300 and len(first.invoices()) == 600
    companies = [c for c in clients if c["organization"]]
    assert 0.5 <= len(companies) / 300 <= 0.7
    assert any(c["fname"] and c["lname"] for c in companies), "companies have contact people"
    keys = [c["organization"].lower() if c["organization"] else
            f"{c['fname']} {c['lname']}".lower() for c in clients]
    assert len(set(keys)) == len(keys), "names are unique within the business"
    assert {c["p_country"] for c in clients} == {"Canada", "United States", "United Kingdom",
                                                "France", "Germany"}
    assert {c["vis_state"] for c in clients} <= {0, 2}
    provinces = {c["p_province"] for c in clients if c["p_country"] == "Canada"}
    assert provinces & {"ON", "QC", "BC"} and provinces & {"Ontario", "Quebec",
                                                           "British Columbia"}
    days = sorted(c["updated"][:10] for c in clients)
    assert days[0] >= time.strftime("%Y-%m-%d", time.gmtime(time.time() - 92 * 86400))
    by_client = {c["id"]: c for c in clients}
    for invoice in first.invoices():
        assert invoice["currency_code"] == by_client[invoice["customerid"]]["currency_code"]
        assert invoice["v3_status"] in ("draft", "sent", "viewed", "paid", "partial", "overdue")
    archived = [c for c in fbs.Sandbox(clients=2000, seed=1).clients() if c["vis_state"] == 2]
    assert 10 <= len(archived) <= 80


def test_hostile_seed_contents_survive_the_api():
    with fbs.Sandbox(clients=5, hostile=True, seed=2) as box:
        clients = box.clients()
        hostile = {c["username"][8:]: c for c in clients if c["username"].startswith("hostile_")}
        assert len(hostile) >= 12
        assert all(hostile["empty_names"][f] == "" for f in ("fname", "lname", "organization",
                                                             "email"))
        assert len(hostile["long_note"]["note"]) == 10000
        assert any(ord(ch) < 32 for ch in hostile["control_chars"]["fname"])
        assert hostile["html_name"]["organization"] == "<script>alert(1)</script> Ltd"
        assert isinstance(hostile["numeric_org"]["organization"], int)
        assert isinstance(hostile["list_email"]["email"], list)
        assert hostile["string_vis_state"]["vis_state"] == "0"
        assert hostile["unknown_country"]["p_country"] == "Atlantis"
        assert len(hostile["long_org"]["organization"]) == 300
        assert hostile["duplicate_org_1"]["organization"] == \
            hostile["duplicate_org_2"]["organization"]
        api = Api(box, box.issue_tokens()["access_token"])
        listed = all_pages(api, accounting(box), "clients")
        assert len(listed) == len(clients)
        assert {c["id"]: c for c in listed}[hostile["control_chars"]["id"]]["fname"] == \
            hostile["control_chars"]["fname"]
        page = api.get("/").text
        assert "<script>alert(1)</script> Ltd" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt; Ltd" in page


def test_10000_clients_are_seeded_and_listed_in_100_pages():
    # How fast is dev/bench's to print (it seeds and lists this many): a timed assertion here
    # only fails on a slower or busier machine.
    box = fbs.Sandbox(clients=10000, invoices=5, seed=1)
    with box:
        api = Api(box, box.issue_tokens()["access_token"])
        clients = all_pages(api, accounting(box), "clients")
        assert len(clients) == len([c for c in box.clients() if c["vis_state"] != 1]) == 10000
        assert len({c["id"] for c in clients}) == 10000


def test_seeded_payments_add_up_to_each_invoice_paid_amount():
    box = fbs.Sandbox(clients=300, invoices=3, seed=5)
    by_invoice = {}
    for payment in box.payments():
        by_invoice.setdefault(payment["invoiceid"], []).append(payment)
    for invoice in box.invoices():
        payments = by_invoice.pop(invoice["id"], [])
        paid = fbs._cents(invoice["paid"])
        assert sum(fbs._cents(p["amount"]) for p in payments) == paid
        assert len(payments) <= 2
        assert bool(payments) == (invoice["v3_status"] in ("paid", "partial"))
        for payment in payments:
            assert payment["id"] == payment["logid"]
            assert payment["clientid"] == invoice["customerid"]
            assert payment["amount"]["code"] == invoice["currency_code"]
            assert fbs._cents(payment["amount"]) > 0
            assert invoice["create_date"] <= payment["date"] == payment["updated"][:10]
            assert payment["type"] in fbs.PAYMENT_TYPES and payment["from_credit"] is False
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", payment["updated"])
        if invoice["v3_status"] == "paid":
            assert max(p["date"] for p in payments) == invoice["date_paid"]
    assert by_invoice == {}, "every payment belongs to an invoice"
    counts = Counter(Counter(p["invoiceid"] for p in box.payments()).values())
    assert set(counts) == {1, 2}, "invoices paid at once and in two goes"


def test_seeded_estimates():
    box = fbs.Sandbox(clients=300, invoices=1, seed=5)
    clients = {c["id"]: c for c in box.clients()}
    estimates = box.estimates()
    assert 0.2 <= len(estimates) / len(clients) <= 0.45
    assert len({e["customerid"] for e in estimates}) == len(estimates), "one per client"
    assert [e["estimate_number"] for e in estimates] == [
        f"{n:07d}" for n in range(1, len(estimates) + 1)]
    assert {e["ui_status"] for e in estimates} == {"draft", "sent", "viewed", "accepted",
                                                   "invoiced"}
    for estimate in estimates:
        client = clients[estimate["customerid"]]
        assert estimate["id"] == estimate["estimateid"]
        assert fbs.ESTIMATE_STATUSES[estimate["status"] - 1] == estimate["ui_status"]
        assert estimate["accepted"] == (estimate["status"] >= 5)
        assert estimate["currency_code"] == estimate["amount"]["code"] == client["currency_code"]
        assert (estimate["organization"], estimate["fname"]) == (client["organization"],
                                                                 client["fname"])
        assert estimate["create_date"] <= estimate["updated"][:10]


def test_payments_and_estimates_are_seeded_alike_for_a_seed_without_changing_invoices():
    first = fbs.Sandbox(clients=300, invoices=2, seed=5)
    second = fbs.Sandbox(clients=300, invoices=2, seed=5)
    other = fbs.Sandbox(clients=300, invoices=2, seed=6)
    assert first.payments() == second.payments() and first.estimates() == second.estimates()
    assert first.payments() != other.payments() and first.estimates() != other.estimates()
    # Invoices' amounts and statuses for seed 5 as they were before payments and estimates.
    rows = [[i["id"], i["customerid"], i["amount"]["amount"], i["paid"]["amount"],
             i["v3_status"]] for i in first.invoices()]
    assert hashlib.sha256(json.dumps(rows).encode()).hexdigest() == \
        "3d217af8256610dd1968703f76e75f7a1e0e962b0c11c89239e53f8c5cce41a6"


# -- control API, counters, CLI ---------------------------------------------------------------

def test_control_api_and_counters(sandbox, api):
    control = Api(sandbox)
    created = control.post("/_sandbox/clients", json={"organization": "Via Control"})
    assert created.status_code == 201
    client = created.json()["client"]
    assert client["accounting_systemid"] == sandbox.account_ids[0]
    changed = control.put(f"/_sandbox/clients/{client['id']}", json={"email": "c@ctl.test"})
    assert changed.json()["client"]["email"] == "c@ctl.test"
    assert control.post(f"/_sandbox/clients/{client['id']}/archive").json()["client"][
        "vis_state"] == 2
    assert control.post(f"/_sandbox/clients/{client['id']}/delete").json()["client"][
        "vis_state"] == 1
    invoice = control.post("/_sandbox/invoices", json={"client_id": client["id"],
                                                       "amount": "9.99"}).json()["invoice"]
    assert invoice["amount"]["amount"] == "9.99"
    assert control.put(f"/_sandbox/invoices/{invoice['id']}",
                       json={"v3_status": "paid"}).json()["invoice"]["v3_status"] == "paid"
    assert control.post(f"/_sandbox/invoices/{invoice['id']}/delete").json()["invoice"][
        "vis_state"] == 1
    assert control.get("/_sandbox/clients/424242").status_code == 404
    listed = control.get("/_sandbox/clients", params={"account_id": sandbox.account_ids[0]})
    assert [c["id"] for c in listed.json()["clients"]] == [client["id"]]
    api.get(accounting(sandbox))
    api.get(accounting(sandbox, f"/{client['id']}"))
    api.get(invoices_path(sandbox))
    state = control.get("/_sandbox/state").json()
    assert state["requests"] == {
        "GET /accounting/account/{account_id}/users/clients": 1,
        "GET /accounting/account/{account_id}/users/clients/{client_id}": 1,
        "GET /accounting/account/{account_id}/invoices/invoices": 1}
    assert state["total_requests"] == 3
    assert state["accounts"]["SBX001"]["clients"] == 1
    assert state["accounts"]["SBX001"]["clients_deleted"] == 1
    assert state["accounts"]["SBX001"]["invoices"] == 1
    assert state["businesses"][0]["account_id"] == "SBX001"
    assert sandbox.request_count() == 3
    assert sandbox.request_count(method="GET", prefix=accounting(sandbox)) == 2
    assert sandbox.request_count(prefix="/accounting/account/{account_id}/invoices") == 1
    grant = control.post("/_sandbox/grant").json()
    assert grant["account_id"] == "SBX001" and grant["access_token"]
    assert control.post("/_sandbox/reset_counters").status_code == 200
    assert sandbox.request_count() == 0 and sandbox.client_writes == []
    assert control.post("/_sandbox/expire_tokens").status_code == 200
    assert api.get(accounting(sandbox)).status_code == 401
    index = control.get("/")
    assert index.status_code == 200 and "SBX001" in index.text and "Via Control" in index.text
    assert 'id="invoice-SBX001-' in index.text and "location.hash" in index.text


def test_python_api_is_thread_safe(sandbox):
    def add(n):
        for i in range(50):
            sandbox.add_client(organization=f"Thread {n}-{i}")

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [c["id"] for c in sandbox.clients()]
    assert len(ids) == len(set(ids)) == 400 and ids == sorted(ids)


def test_loopback_only():
    for host in ("0.0.0.0", "192.168.1.10", "::"):  # noqa: S104 - each must be refused
        with pytest.raises(ValueError):
            fbs.Sandbox(host=host)


def test_cli_prints_its_url_and_stops_on_sigterm():
    process = subprocess.Popen(
        [sys.executable, str(SANDBOX_DIR / "freshbooks_sandbox.py"), "--port", "0",
         "--clients", "7", "--invoices", "1", "--seed", "4", "--hostile"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        found = re.fullmatch(r"FreshBooks sandbox on (http://127\.0\.0\.1:\d+) \(client_id="
                             r"sandbox-client-id, client_secret=sandbox-client-secret\)\n", line)
        assert found, line
        session = requests.Session()
        session.trust_env = False
        state = session.get(found.group(1) + "/_sandbox/state", timeout=10).json()
        assert state["accounts"]["SBX001"]["clients"] == 7 + 16
        assert state["accounts"]["SBX001"]["invoices"] == 7 + 4  # the hostile documents
        process.terminate()
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import requests

from odoo.exceptions import AccessDenied, AccessError, UserError, ValidationError
from odoo.tests import new_test_user, tagged

from .common import FreshbooksCase


def consent(authorize_url, allow=True):
    """Answer the sandbox consent page like the user would; returns the callback's query."""
    parts = urlsplit(authorize_url)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    params["decision"] = "allow" if allow else "deny"
    response = requests.post(f"{parts.scheme}://{parts.netloc}{parts.path}", data=params,
                             allow_redirects=False, timeout=10)
    assert response.status_code in (302, 303), response.text[:200]
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


@tagged("post_install", "-at_install")
class TestSettings(FreshbooksCase):

    def test_url_rules(self):
        Account = self.env["freshbooks.account"]
        self.assertEqual(Account._normalize_url("my.freshbooks.com"), ("my.freshbooks.com", False))
        self.assertEqual(Account._normalize_url(" https://my.freshbooks.com/ "),
                         ("my.freshbooks.com", False))
        self.assertEqual(Account._normalize_url("acme-co.freshbooks.com"),
                         ("acme-co.freshbooks.com", True))
        for bad in ("", "   ", "evil.example.com", "my.freshbooks.com.evil.io", "api.freshbooks.com",
                    "https://acme.freshbooks.com/some/path", "not a url", "freshbooks.com"):
            with self.assertRaises(ValidationError, msg=bad):
                Account._normalize_url(bad)

    def test_settings_save_and_reject_without_saving(self):
        account = self.env["freshbooks.account"]._for_company(self.env.company)
        settings = self.env["res.config.settings"].create({
            "freshbooks_url": "acme.freshbooks.com", "freshbooks_client_id": "id-1",
            "freshbooks_client_secret": "secret-1"})
        self.assertTrue(settings.freshbooks_is_classic)
        for other in ("my.freshbooks.com", "acme.freshbooks.com.evil.io", ""):
            settings.freshbooks_url = other
            self.assertFalse(settings.freshbooks_is_classic, other)
        settings.freshbooks_url = "acme.freshbooks.com"
        settings.execute()
        self.assertEqual((account.freshbooks_url, account.client_id), ("acme.freshbooks.com", "id-1"))
        bad = self.env["res.config.settings"].create({
            "freshbooks_url": "evil.example.com", "freshbooks_client_id": "id-2"})
        with self.assertRaises(ValidationError):
            bad.execute()
        self.assertEqual((account.freshbooks_url, account.client_id), ("acme.freshbooks.com", "id-1"))

    def test_secrets_are_admin_only(self):
        user = new_test_user(self.env, login="sales", groups="base.group_user,base.group_partner_manager")
        with self.assertRaises(AccessError):
            self.env["freshbooks.account"].with_user(user).search([]).read(["state"])
        fields = self.env["freshbooks.account"].with_user(user).fields_get()
        self.assertNotIn("refresh_token", fields)
        self.assertNotIn("client_secret", fields)
        settings_fields = self.env["res.config.settings"].with_user(user).fields_get()
        self.assertNotIn("freshbooks_client_secret", settings_fields)
        partner = self.Partner.create({"name": "Visible"})
        # Reading a contact's FreshBooks fields never needs the secrets.
        partner.with_user(user).read(["freshbooks_client_id", "freshbooks_url", "freshbooks_can_add"])


@tagged("post_install", "-at_install")
class TestOAuth(FreshbooksCase):

    def setUp(self):
        super().setUp()
        # Start from a company that is not connected yet.
        self.account.write({"state": "draft", "access_token": False, "refresh_token": False,
                            "fb_account_id": False})

    def test_connect_single_business(self):
        url = self.account._begin_oauth()
        query = parse_qs(urlsplit(url).query)
        self.assertEqual(query["redirect_uri"][0], self.account._redirect_uri())
        answer = consent(url)
        account = self.env["freshbooks.account"]._consume_state(answer["state"])
        self.assertEqual(account, self.account)
        account._finish_oauth(answer["code"])
        self.assertEqual(account.state, "connected")
        self.assertEqual(account.fb_account_id, self.sandbox.account_ids[0])
        self.assertTrue(account.fb_business_name)
        self.assertTrue(self.env["ir.cron.trigger"].search([
            ("cron_id", "=", self.env.ref(
                "capsule_freshbooks_connector.ir_cron_freshbooks_sync").id)]),
            "the first sync is queued for a cron worker")

    def test_state_is_single_use_and_bound(self):
        answer = consent(self.account._begin_oauth())
        state = answer["state"]
        Account = self.env["freshbooks.account"]
        with self.assertRaises(AccessDenied):
            Account._consume_state(state + "x")
        Account._consume_state(state)
        with self.assertRaises(AccessDenied):
            Account._consume_state(state)  # replayed
        # Another admin cannot use a state started by this one.
        other = new_test_user(self.env, login="admin2", groups="base.group_system")
        state = consent(self.account._begin_oauth())["state"]
        with self.assertRaises(AccessDenied):
            Account.with_user(other)._consume_state(state)
        # Nor can anyone use an expired one, or one for another database.
        state = consent(self.account._begin_oauth())["state"]
        self.account.oauth_state_expiry = datetime.now() - timedelta(minutes=1)
        with self.assertRaises(AccessDenied):
            Account._consume_state(state)
        state = consent(self.account._begin_oauth())["state"]
        with self.assertRaises(AccessDenied):
            Account._consume_state("otherdb:" + state.split(":", 1)[1])

    def test_bad_code_leaves_previous_connection(self):
        from ..freshbooks import FreshBooksError
        connected = {"state": "connected", "fb_account_id": self.sandbox.account_ids[0],
                     "refresh_token": "keep-me"}
        self.account.write(connected)
        with self.assertRaises(FreshBooksError), self.env.cr.savepoint():
            self.account._finish_oauth("bogus-code")
        self.assertEqual((self.account.state, self.account.refresh_token), ("connected", "keep-me"))


@tagged("post_install", "-at_install")
class TestSeveralBusinesses(FreshbooksCase):
    sandbox_options = {"businesses": 2}

    def test_admin_chooses_and_company_gets_one_business(self):
        self.account.write({"state": "draft", "fb_account_id": False})
        answer = consent(self.account._begin_oauth())
        account = self.env["freshbooks.account"]._consume_state(answer["state"])
        account._finish_oauth(answer["code"])
        self.assertEqual(account.state, "choose")
        roles = {b["role"] for b in account.business_choices}
        self.assertNotIn("client", roles, "client memberships cannot be connected")
        self.assertEqual(len(account.business_choices), 2)
        account._set_business(self.sandbox.account_ids[1])
        self.assertEqual((account.state, account.fb_account_id),
                         ("connected", self.sandbox.account_ids[1]))
        # A second company cannot connect the same business.
        company = self.env["res.company"].create({"name": "Second Co"})
        other = self.env["freshbooks.account"]._for_company(company)
        other.business_choices = account.business_choices
        with self.assertRaises(UserError):
            other._set_business(self.sandbox.account_ids[1])


@tagged("post_install", "-at_install")
class TestTokens(FreshbooksCase):

    def test_expired_access_token_is_refreshed_and_rotated(self):
        old_refresh = self.account.refresh_token
        self.sandbox.add_client(organization="After Refresh")
        self.sandbox.expire_tokens()
        log = self.sync()
        self.assertEqual(log.state, "done")
        self.assertNotEqual(self.account.refresh_token, old_refresh)
        self.assertTrue(self.Partner.search([("name", "=", "After Refresh")]))
        # The old refresh token is spent at FreshBooks: only the stored new one works.
        response = requests.post(f"{self.sandbox.url}/auth/oauth/token", json={
            "grant_type": "refresh_token", "refresh_token": old_refresh,
            "client_id": self.sandbox.client_id, "client_secret": self.sandbox.client_secret,
            "redirect_uri": self.account._redirect_uri()}, timeout=10)
        self.assertEqual(response.status_code, 400)

    def test_token_near_expiry_is_refreshed_before_the_call(self):
        self.account.token_expiry = datetime.now() + timedelta(seconds=10)
        old_access = self.account.access_token
        self.account._get_client().me()
        self.assertNotEqual(self.account.access_token, old_access)
        self.assertGreater(self.account.token_expiry, datetime.now() + timedelta(hours=1))

    def test_waiting_worker_adopts_the_pair_another_one_saved(self):
        client = self.account._get_client()
        newer = self.sandbox.issue_tokens()
        self.account.write({"access_token": newer["access_token"],
                            "refresh_token": newer["refresh_token"],
                            "token_expiry": datetime.now() + timedelta(hours=12)})
        self.env.flush_all()
        token_calls = self.sandbox.request_count(prefix="/auth/oauth/token")
        tokens = self.account._refresh_tokens_locked(client)
        self.assertEqual(tokens.access_token, newer["access_token"])
        self.assertEqual(self.sandbox.request_count(prefix="/auth/oauth/token"), token_calls)

    def test_removing_stale_webhooks_keeps_the_renewed_token(self):
        # Stale callbacks removed on a live connection whose token expired meanwhile: the
        # renewal spends the stored refresh token, so the new pair must be stored.
        self.account.token_expiry = datetime.now() - timedelta(minutes=1)
        self.sandbox.expire_tokens()
        old_refresh = self.account.refresh_token
        self.env["freshbooks.webhook"]._remove_all(self.account)
        self.run_postcommit()
        self.assertNotEqual(self.account.refresh_token, old_refresh)
        self.assertTrue(self.account._get_client().me(), "the stored pair works")
        self.assertEqual(self.account.state, "connected")

    def test_revoked_grant_asks_for_reconnect(self):
        self.sandbox.revoke_all()
        self.sandbox.expire_tokens()
        log = self.sync()
        self.assertEqual(log.state, "failed")
        self.assertEqual(self.account.state, "reconnect")
        self.assertTrue(self.account.activity_ids, "admins are told")
        requests_before = self.sandbox.request_count()
        self.Sync._cron_sync()
        self.assertEqual(self.sandbox.request_count(), requests_before, "no more sync attempts")

    def test_disconnect_keeps_links_and_reconnect_resumes(self):
        client = self.sandbox.add_client(organization="Loyal")
        self.sync()
        partner = self.linked(client["id"])
        self.account.action_disconnect()
        self.assertEqual(self.account.state, "draft")
        self.assertFalse(self.account.refresh_token)
        revoke = "/auth/oauth/revoke"
        self.assertEqual(self.sandbox.request_count(prefix=revoke), 0, "not before the commit")
        self.run_postcommit()
        self.assertEqual(self.sandbox.request_count(prefix=revoke), 1)
        self.assertEqual(self.sandbox.request_count(method="DELETE"),
                         len(self.env["freshbooks.synced"]._fb_events()), "webhooks removed")
        self.assertEqual(partner.freshbooks_client_id, str(client["id"]))
        grant = self.sandbox.issue_tokens()
        self.account.write({"state": "connected", "access_token": grant["access_token"],
                            "refresh_token": grant["refresh_token"],
                            "token_expiry": datetime.now() + timedelta(hours=12)})
        self.sync(full=True)
        self.assertEqual(self.Partner.search_count([("name", "=", "Loyal")]), 1)

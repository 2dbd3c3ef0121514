from urllib.parse import parse_qs, urlsplit

from odoo.tests import HttpCase, new_test_user, tagged

from .common import OneTransaction, point_at_sandbox, start_sandbox
from .test_connect import consent


@tagged("post_install", "-at_install")
class TestConnectBrowser(OneTransaction, HttpCase):

    def setUp(self):
        super().setUp()
        # The sandbox answers its own consent page after a moment, as a user would: the tour
        # cannot run on another site's page.
        self.sandbox = start_sandbox(self, consent_autoclick_ms=300)
        point_at_sandbox(self.env, self.sandbox)
        self.account = self.env["freshbooks.account"]._for_company(self.env.company)
        self.admin = self.env.ref("base.user_admin")

    def start(self):
        """Begin a connection as the admin; returns the FreshBooks consent URL."""
        self.account.write({"freshbooks_url": "my.freshbooks.com",
                            "client_id": self.sandbox.client_id,
                            "client_secret": self.sandbox.client_secret})
        return self.account.with_user(self.admin)._begin_oauth()

    def callback(self, query, login="admin"):
        self.authenticate(login, login)
        return self.url_open("/freshbooks/oauth/callback?" + "&".join(
            f"{k}={v}" for k, v in query.items()))

    def test_connect_round_trip_in_the_browser(self):
        self.start_tour("/odoo/settings", "freshbooks_connect_tour", login="admin", timeout=120)
        self.assertEqual(self.account.state, "connected")
        self.assertEqual(self.account.connected_uid, self.admin)
        self.assertEqual(self.sandbox.request_count(prefix="/auth/oauth/token"), 1)

    def test_bad_state(self):
        self.start()
        response = self.callback({"state": "nonsense", "code": "x"})
        self.assertIn("not valid", response.text)
        self.assertEqual(self.account.state, "draft")

    def test_replayed_state(self):
        answer = consent(self.start())
        self.assertIn("/odoo/settings", self.callback(answer).url)
        self.assertEqual(self.account.state, "connected")
        self.account.write({"state": "draft"})
        response = self.callback(answer)
        self.assertIn("already used", response.text)
        self.assertEqual(self.account.state, "draft")

    def test_denied_consent_keeps_the_previous_connection(self):
        self.account.write({"state": "connected", "fb_account_id": "KEEP1",
                            "fb_business_name": "Kept"})
        answer = consent(self.start(), allow=False)
        self.assertEqual(answer["error"], "access_denied")
        response = self.callback(answer)
        self.assertIn("did not allow", response.text)
        self.assertEqual((self.account.state, self.account.fb_account_id), ("connected", "KEEP1"))

    def test_token_endpoint_error(self):
        answer = consent(self.start())
        answer["code"] = "not-the-code"
        response = self.callback(answer)
        self.assertIn("did not accept", response.text)
        self.assertEqual(self.account.state, "draft")
        self.assertFalse(self.account.access_token)

    def test_non_admin_cannot_use_the_callback(self):
        new_test_user(self.env, login="clerk", password="clerk", groups="base.group_user")
        answer = consent(self.start())
        response = self.callback(answer, login="clerk")
        self.assertIn("Only Settings administrators", response.text)
        self.assertEqual(self.account.state, "draft")
        # The state was not spent by the refused attempt: the admin can still finish.
        self.assertIn("/odoo/settings", self.callback(answer).url)
        self.assertEqual(self.account.state, "connected")

    def test_authorization_url(self):
        query = parse_qs(urlsplit(self.start()).query)
        self.assertEqual(query["response_type"], ["code"])
        self.assertIn("user:clients:write", query["scope"][0])
        self.assertTrue(query["state"][0].startswith(self.env.cr.dbname + ":"))

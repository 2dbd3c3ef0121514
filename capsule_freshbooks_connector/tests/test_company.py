"""One FreshBooks business per company: nothing of one company's connection is reachable, or
usable for FreshBooks calls, from another company."""

from odoo.exceptions import AccessError
from odoo.tests import new_test_user, tagged

from ..hooks import uninstall_hook
from .common import FreshbooksCase, connect_account, mark_webhooks_registered


@tagged("post_install", "-at_install")
class TestCompanyIsolation(FreshbooksCase):
    sandbox_options = {"businesses": 2}

    def setUp(self):
        super().setUp()
        self.company_a = self.env.company
        self.company_b = self.env["res.company"].create({"name": "Company B"})
        self.account_b = connect_account(self.env, self.sandbox, company=self.company_b,
                                         account_id=self.sandbox.account_ids[1])
        mark_webhooks_registered(self.env, self.account_b)
        client = self.sandbox.add_client(account_id=self.sandbox.account_ids[1],
                                         organization="B Customer")
        self.Sync._sync_account(self.account_b)
        self.partner_b = self.Partner.search([("freshbooks_account_id", "=", self.account_b.id),
                                              ("freshbooks_client_id", "=", str(client["id"]))])
        self.env["freshbooks.queue"]._enqueue(self.account_b, "client", "424242", "webhook")
        self.user_a = new_test_user(
            self.env, login="fb_a", groups="base.group_user,base.group_partner_manager,"
            "capsule_freshbooks_connector.group_freshbooks_user",
            company_id=self.company_a.id, company_ids=[self.company_a.id])
        self.admin_a = new_test_user(
            self.env, login="fb_admin_a", groups="base.group_user,base.group_system",
            company_id=self.company_a.id, company_ids=[self.company_a.id])
        self.sandbox.reset_counters()

    def test_another_companys_contact_cannot_be_refreshed_added_or_pushed(self):
        self.assertEqual(self.partner_b.company_id, self.company_b)
        with self.assertRaises(AccessError):
            self.partner_b.with_user(self.user_a).action_freshbooks_refresh_invoices()
        with self.assertRaises(AccessError):
            self.partner_b.with_user(self.user_a).action_freshbooks_add()
        # A contact shared by every company, linked to B's business: A's user may read and edit
        # it, but no FreshBooks call is made with B's connection for them.
        self.partner_b.company_id = False
        with self.assertRaises(AccessError):
            self.partner_b.with_user(self.user_a).action_freshbooks_refresh_invoices()
        self.partner_b.with_user(self.user_a).phone = "+1 555 0123"
        self.run_postcommit()
        self.assertEqual(self.sandbox.request_count(), 0, "no call with B's tokens")
        self.assertNotEqual(self.partner_b.freshbooks_push_state, "pending")
        # B's own people still send that change with their next edit.
        self.partner_b.with_company(self.company_b).with_context(
            allowed_company_ids=[self.company_b.id]).email = "b@customer.test"
        self.run_postcommit()
        body = self.sandbox.client_writes[-1]["body"]["client"]
        self.assertEqual(body, {"bus_phone": "+1 555 0123", "email": "b@customer.test"})

    def test_an_admin_of_one_company_sees_nothing_of_another_connection(self):
        env = self.env(user=self.admin_a)
        log_b = self.env["freshbooks.sync.log"].search([("account_id", "=", self.account_b.id)])
        log_b[0]._add_line("warning", "Something about B")
        rows_b = {
            "freshbooks.account": self.account_b,
            "freshbooks.token": self.account_b._token_record(),
            "freshbooks.webhook": self.account_b.webhook_ids,
            "freshbooks.queue": self.env["freshbooks.queue"].search(
                [("account_id", "=", self.account_b.id)]),
            "freshbooks.sync.log": log_b,
            "freshbooks.sync.log.line": log_b.line_ids,
        }
        for model, records in rows_b.items():
            self.assertTrue(records, model)
            self.assertFalse(env[model].search([("id", "in", records.ids)]), model)
        with self.assertRaises(AccessError):
            env["freshbooks.token"].browse(self.account_b._token_record().id).read(
                ["refresh_token"])
        with self.assertRaises(AccessError):
            env["freshbooks.account"].browse(self.account_b.id).action_disconnect()
        with self.assertRaises(AccessError):
            env["freshbooks.account"].browse(self.account_b.id).action_sync_now()
        self.assertEqual(self.account_b.state, "connected")

    def test_uninstall_removes_webhooks_and_revokes_the_grant(self):
        self.env["ir.config_parameter"].set_param("capsule_freshbooks_connector.push_interval", "1")
        uninstall_hook(self.env)
        self.assertEqual(self.sandbox.request_count(), 0, "nothing before the commit")
        self.run_postcommit()
        self.assertEqual(self.sandbox.request_count(prefix="/auth/oauth/revoke"), 2)
        events = len(self.env["freshbooks.synced"]._fb_events())
        self.assertEqual(self.sandbox.request_count(method="DELETE"), 2 * events,
                         "every callback of each connection")
        self.assertFalse(self.env["ir.config_parameter"].search(
            [("key", "=like", "capsule_freshbooks_connector.%")]))

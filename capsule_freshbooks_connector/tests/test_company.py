"""One FreshBooks business per company: nothing of one company's connection is reachable, or
usable for FreshBooks calls, from another company."""

import re

from odoo.exceptions import AccessError, UserError
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


@tagged("post_install", "-at_install")
class TestContactsOwnCompany(FreshbooksCase):
    """A user working in companies A and B, B current: a contact goes to its own company's
    business, and a review is decided with its own connection, once."""

    sandbox_options = {"businesses": 2, "unique_emails": True}

    def setUp(self):
        super().setUp()
        self.company_a = self.env.company
        self.company_b = self.env["res.company"].create({"name": "Company B"})
        self.account.fb_business_name = "A Business"
        self.account_b = connect_account(self.env, self.sandbox, company=self.company_b,
                                         account_id=self.sandbox.account_ids[1])
        self.account_b.fb_business_name = "B Business"
        mark_webhooks_registered(self.env, self.account_b)
        both = [self.company_b.id, self.company_a.id]
        self.user = new_test_user(
            self.env, login="fb_ab", groups="base.group_user,base.group_partner_manager,"
            "capsule_freshbooks_connector.group_freshbooks_user",
            company_id=self.company_b.id, company_ids=both)
        self.admin = new_test_user(
            self.env, login="fb_admin_ab", groups="base.group_user,base.group_system",
            company_id=self.company_b.id, company_ids=both)
        self.in_b = {"allowed_company_ids": both}

    def as_user(self, records, user=None):
        return records.with_user(user or self.user).with_context(**self.in_b)

    def assert_sent_to(self, account, name):
        """The client is in this connection's business, and not in the other one's."""
        for each in (self.account, self.account_b):
            clients = {c["organization"] for c in self.sandbox.clients(each.fb_account_id)}
            self.assertEqual(name in clients, each == account, each.fb_business_name)

    def held_contact(self):
        """A contact of A that A's business refused to add (its email is another client's)."""
        self.sandbox.add_client(account_id=self.account.fb_account_id, organization="ACME Corp",
                                email="shared@acme.test")
        johnny = self.Partner.create({"name": "Johnny Smith", "is_company": True,
                                      "email": "shared@acme.test",
                                      "company_id": self.company_a.id})
        johnny.action_freshbooks_add()
        self.run_postcommit()
        review = self.env["freshbooks.review"].search([("contact_id", "=", johnny.id)])
        self.assertEqual((review.account_id, review.state), (self.account, "open"))
        return johnny, review

    def test_add_sends_a_contact_to_its_own_companys_business(self):
        partner = self.Partner.create({"name": "A Customer", "is_company": True,
                                       "company_id": self.company_a.id})
        self.as_user(partner).action_freshbooks_add()
        self.run_postcommit()
        self.assertEqual(partner.freshbooks_account_id, self.account)
        self.assert_sent_to(self.account, "A Customer")
        # A's own users push its edits with A's connection.
        user_a = new_test_user(
            self.env, login="fb_only_a", groups="base.group_user,base.group_partner_manager,"
            "capsule_freshbooks_connector.group_freshbooks_user",
            company_id=self.company_a.id, company_ids=[self.company_a.id])
        partner.with_user(user_a).phone = "+1 555 0123"
        self.run_postcommit()
        self.assertEqual(partner.freshbooks_push_state, "synced")
        self.assertEqual(self.sandbox.get_client(partner.freshbooks_client_id)["bus_phone"],
                         "+1 555 0123")

    def test_add_is_offered_only_where_the_contacts_company_is_connected(self):
        partner = self.Partner.create({"name": "A Customer", "is_company": True,
                                       "company_id": self.company_a.id})
        self.assertTrue(self.as_user(partner).freshbooks_can_add)
        self.account.state = "draft"
        partner.invalidate_recordset(["freshbooks_can_add"])
        self.assertFalse(self.as_user(partner).freshbooks_can_add, "B's connection is not A's")
        with self.assertRaisesRegex(UserError, re.escape(self.company_a.name)):
            self.as_user(partner).action_freshbooks_add()
        self.assertFalse(partner.freshbooks_account_id)

    def test_a_shared_contact_goes_to_the_current_companys_business_and_says_which(self):
        partner = self.Partner.create({"name": "Shared Customer", "is_company": True,
                                       "company_id": False})
        action = self.as_user(partner).action_freshbooks_add()
        self.assertEqual(partner.freshbooks_account_id, self.account_b)
        self.assertEqual(action["tag"], "display_notification")
        self.assertIn("B Business", action["params"]["message"])
        self.run_postcommit()
        self.assert_sent_to(self.account_b, "Shared Customer")

    def test_send_again_uses_the_reviews_own_connection(self):
        johnny, review = self.held_contact()
        johnny.email = "johnny@smith.test"
        self.as_user(review, self.admin).action_create()
        self.run_postcommit()
        self.assertEqual(johnny.freshbooks_account_id, self.account)
        self.assert_sent_to(self.account, "Johnny Smith")

    def test_a_resolved_review_is_not_decided_again(self):
        johnny, review = self.held_contact()
        johnny.email = "johnny@smith.test"
        self.as_user(review, self.admin).action_create()
        # A stale form of the same review: its link would take the contact over.
        with self.assertRaisesRegex(UserError, "already resolved"):
            self.as_user(review, self.admin).action_link()
        self.run_postcommit()
        self.assertNotIn(johnny.freshbooks_client_id, (False, review.link_client_ref))

    def test_a_review_does_not_relink_a_contact_linked_meanwhile(self):
        johnny, review = self.held_contact()
        # Added from its own form with a corrected email, while the review stays open.
        johnny.email = "johnny@smith.test"
        johnny.action_freshbooks_add()
        self.run_postcommit()
        linked_to = johnny.freshbooks_client_id
        self.assertTrue(linked_to)
        for action in ("action_link", "action_create"):
            with self.assertRaisesRegex(UserError, "already linked"):
                getattr(self.as_user(review, self.admin), action)()
        self.assertEqual(johnny.freshbooks_client_id, linked_to)

    def test_a_review_of_a_company_one_is_not_working_in_is_refused(self):
        _johnny, review = self.held_contact()
        only_b = review.with_user(self.admin).with_context(
            allowed_company_ids=[self.company_b.id])
        with self.assertRaisesRegex(UserError, re.escape(self.company_a.name)):
            only_b.action_link()
        self.assertEqual(review.state, "open")

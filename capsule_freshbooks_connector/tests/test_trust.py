"""What must hold for the connector to be trusted with a company's FreshBooks data: pushes that
never blank what Odoo did not change, never another customer's record, runs that always end, and
work that is never blocked by one bad object."""

import inspect
from datetime import datetime, timedelta
from unittest.mock import patch

import psycopg2

from odoo.exceptions import UserError
from odoo.sql_db import Cursor
from odoo.tests import tagged

from ..freshbooks import AuthError, FreshBooksClient, MalformedResponseError, ServerError
from ..models.cron_budget import Budget
from ..models.freshbooks_sync import LOCK_NAMESPACE, FreshbooksSync, Tally
from .common import FreshbooksCase


@tagged("post_install", "-at_install")
class TestPushSendsOnlyChanges(FreshbooksCase):
    """Items 1, 7 and 9 of the trust issue."""

    def setUp(self):
        super().setUp()
        self.client = self.sandbox.add_client(
            organization="Far Away Ltd", fname="Lucy", lname="Pevensie", email="lucy@far.test",
            bus_phone="+1 555 0001", p_street="1 Lamp Post", p_country="Narnia",
            p_province="Wonderland", fax="+1 555 0009")
        self.sync()
        self.partner = self.linked(self.client["id"])
        self.run_postcommit()
        self.writes_before = len(self.sandbox.client_writes)

    def fb(self):
        return self.sandbox.get_client(self.client["id"])

    def bodies(self):
        return [w["body"]["client"] for w in self.sandbox.client_writes[self.writes_before:]]

    def test_editing_the_phone_sends_the_phone_only(self):
        self.assertIn("Narnia", str(self.partner.comment), "kept in the notes on import")
        self.partner.phone = "+1 555 0002"
        self.run_postcommit()
        self.assertEqual(self.bodies(), [{"bus_phone": "+1 555 0002"}])
        fb = self.fb()
        self.assertEqual((fb["p_country"], fb["p_province"], fb["fax"], fb["fname"]),
                         ("Narnia", "Wonderland", "+1 555 0009", "Lucy"),
                         "what Odoo never held is left alone")
        self.assertEqual(fb["bus_phone"], "+1 555 0002")

    def test_what_was_sent_is_remembered_after_the_commit(self):
        # The push runs after the commit, in a cursor of its own: its writes must be saved too.
        self.partner.phone = "+1 555 0010"
        self.run_postcommit()
        self.assertEqual(self.partner.freshbooks_sent_values["bus_phone"], "+1 555 0010")
        self.partner.email = "again@far.test"
        self.run_postcommit()
        self.assertEqual(self.bodies()[-1], {"email": "again@far.test"})

    def test_clearing_a_field_in_odoo_clears_it_in_freshbooks(self):
        self.partner.write({"street": False, "email": "new@far.test"})
        self.run_postcommit()
        self.assertEqual(self.bodies(), [{"p_street": "", "email": "new@far.test"}])
        self.assertEqual((self.fb()["p_street"], self.fb()["p_country"]), ("", "Narnia"))

    def test_a_change_made_in_freshbooks_is_not_overwritten_by_an_unrelated_edit(self):
        self.sandbox.update_client(self.client["id"], email="changed@far.test")
        self.partner.phone = "+1 555 0003"
        self.run_postcommit()
        self.assertEqual(self.fb()["email"], "changed@far.test")

    def test_a_contact_linked_before_odoo_kept_what_it_sent_is_compared_with_freshbooks(self):
        self.partner.with_context(freshbooks_no_push=True).freshbooks_sent_values = None
        self.partner.phone = "+1 555 0004"
        self.run_postcommit()
        self.assertEqual(self.bodies(), [{"bus_phone": "+1 555 0004"}])
        self.assertEqual(self.fb()["p_country"], "Narnia")

    def test_push_after_a_save_never_refreshes_the_token_itself(self):
        # FreshBooks refresh tokens work once: a refresh cut short by the save's 3 s/5 s timeout
        # would lose the connection. The background job refreshes, with its own long timeout.
        self.account.token_expiry = datetime.now() - timedelta(minutes=1)
        self.sandbox.expire_tokens()
        self.sandbox.reset_counters()
        self.partner.phone = "+1 555 0005"
        self.run_postcommit()
        self.assertEqual(self.sandbox.request_count(prefix="/auth/oauth/token"), 0)
        self.assertEqual(self.partner.freshbooks_push_state, "pending")
        self.Sync._cron_work()
        self.assertEqual(self.sandbox.request_count(prefix="/auth/oauth/token"), 1)
        self.assertEqual(self.partner.freshbooks_push_state, "synced")
        self.assertEqual(self.fb()["bus_phone"], "+1 555 0005")

    def test_no_row_lock_is_held_while_freshbooks_answers(self):
        queries = []
        execute = Cursor.execute

        def spy(cr, query, params=None, log_exceptions=True):
            queries.append(str(query))
            return execute(cr, query, params, log_exceptions)

        update = FreshBooksClient.update_client

        def update_client(fb, *args, **kwargs):
            queries.append("-- FreshBooks call")
            return update(fb, *args, **kwargs)

        self.partner.phone = "+1 555 0006"
        self.env.flush_all()
        with patch.object(Cursor, "execute", spy), \
                patch.object(FreshBooksClient, "update_client", update_client):
            self.run_postcommit()
        self.assertIn("-- FreshBooks call", queries)
        self.assertFalse([q for q in queries if "FOR UPDATE" in q.upper()])
        self.assertTrue([q for q in queries if "lock_timeout" in q], "a user's save never waits")
        self.assertEqual(self.partner.freshbooks_push_state, "synced")


@tagged("post_install", "-at_install")
class TestAddNeverTakesOverAnotherCustomer(FreshbooksCase):
    """Item 2."""

    sandbox_options = {"unique_emails": True}

    def setUp(self):
        super().setUp()
        self.acme = self.sandbox.add_client(
            organization="ACME Corp", fname="John", lname="Smith", email="shared@acme.test",
            p_street="1 Road Runner Way", bus_phone="+1 555 0100")
        self.sync()
        self.acme_before = dict(self.sandbox.get_client(self.acme["id"]))
        self.acme_partner = self.linked(self.acme["id"])
        # The shared address belongs to ACME's contact in Odoo, not to a FreshBooks client.
        self.acme_partner.unlink()
        self.env["freshbooks.queue"].search([]).unlink()
        self.writes_before = len(self.sandbox.client_writes)

    def test_a_different_customer_with_the_same_email_is_held_for_review(self):
        johnny = self.Partner.create({"name": "Johnny Smith", "email": "shared@acme.test",
                                      "phone": "+1 555 0199"})
        johnny.action_freshbooks_add()
        self.run_postcommit()
        self.assertEqual(self.sandbox.get_client(self.acme["id"]), self.acme_before,
                         "ACME Corp is untouched")
        self.assertEqual([w["method"] for w in self.sandbox.client_writes[self.writes_before:]],
                         ["POST"], "a new client was asked for, nothing else")
        self.assertFalse(johnny.freshbooks_client_id)
        self.assertEqual(johnny.freshbooks_push_state, "error")
        review = self.env["freshbooks.review"].search([("contact_id", "=", johnny.id)])
        self.assertEqual((review.kind, review.state), ("add", "open"))
        self.assertIn("already exists", review.message)
        self.assertIn("ACME Corp", review.client_choices_text)
        self.assertEqual(review.link_client_ref, str(self.acme["id"]))

        # The admin knows better: Johnny is ACME's John. Link, and fill the gaps from there.
        review.action_link()
        self.assertEqual(johnny.freshbooks_client_id, str(self.acme["id"]))
        self.assertEqual(johnny.street, "1 Road Runner Way")
        self.assertEqual(review.state, "done")

    def test_a_different_customer_is_created_when_freshbooks_accepts(self):
        self.sandbox.unique_emails = False
        johnny = self.Partner.create({"name": "Johnny Smith", "email": "shared@acme.test"})
        johnny.action_freshbooks_add()
        self.run_postcommit()
        self.assertTrue(johnny.freshbooks_client_id)
        self.assertNotEqual(johnny.freshbooks_client_id, str(self.acme["id"]))
        self.assertEqual(self.sandbox.get_client(self.acme["id"]), self.acme_before)

    def test_send_again_after_correcting_the_email(self):
        johnny = self.Partner.create({"name": "Johnny Smith", "email": "shared@acme.test"})
        johnny.action_freshbooks_add()
        self.run_postcommit()
        review = self.env["freshbooks.review"].search([("contact_id", "=", johnny.id)])
        johnny.email = "johnny@smith.test"
        review.action_create()
        self.run_postcommit()
        self.assertTrue(johnny.freshbooks_client_id)
        self.assertEqual(self.sandbox.get_client(johnny.freshbooks_client_id)["email"],
                         "johnny@smith.test")
        with self.assertRaises(UserError):
            review.link_client_ref = "999999"
            review.state = "open"
            review.action_link()


@tagged("post_install", "-at_install")
class TestRunsAlwaysEnd(FreshbooksCase):
    """Items 3, 4, 6, 8, 11 and 12."""

    def test_a_sync_does_not_write_the_connection_row(self):
        # Webhook handshakes and admins share that row: under the prefork server, a sync that
        # wrote it failed at its last commit.
        self.sandbox.add_client(organization="Quiet Co")
        self.env.flush_all()
        with patch.object(type(self.account), "write", side_effect=AssertionError("written")):
            log = self.sync()
        self.assertEqual(log.state, "done")
        self.assertEqual((self.account.last_sync_state, self.account.last_success_start),
                         ("done", log.start))

    def test_a_failed_last_commit_ends_the_log_instead_of_leaving_it_running(self):
        self.sandbox.add_client(organization="Late Co")
        failed = []

        def commit(sync):
            # The run's own end fails once, as when a concurrent update won the row.
            if not failed and inspect.stack()[1].function == "_end":
                failed.append(1)
                raise psycopg2.errors.SerializationFailure("could not serialize access")

        with patch.object(FreshbooksSync, "_commit", commit):
            log = self.sync()
        self.assertEqual(log.state, "failed")
        self.assertIn("could not be saved", log.message)
        self.assertNotEqual(self.account.last_sync_state, "running")

    def test_a_revoked_grant_ends_the_run_and_frees_the_lock(self):
        self.sandbox.revoke_all()
        self.sandbox.expire_tokens()
        self.account.token_expiry = datetime.now() - timedelta(minutes=1)
        log = self.sync()
        self.assertEqual((log.state, self.account.state), ("failed", "reconnect"))
        self.assertEqual(self.account.activity_ids.summary, "Reconnect FreshBooks")
        self.assertFalse(self.env["freshbooks.sync.log"].search([("state", "=", "running")]))
        self.env.cr.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                            "AND classid = %s AND objid = %s", [LOCK_NAMESPACE, self.account.id])
        self.assertEqual(self.env.cr.fetchone()[0], 0)

    def queue(self, kind, ref):
        self.env["freshbooks.queue"]._enqueue(self.account, kind, ref, "webhook")

    def test_one_bad_queue_row_does_not_block_the_rest(self):
        good = self.sandbox.add_client(organization="Good News Co")
        invoice = self.sandbox.add_invoice(good["id"])
        bad_refs = ("7001", "7002", "7003")
        for ref in bad_refs:
            self.queue("invoice", ref)
        self.queue("client", good["id"])
        self.queue("invoice", invoice["id"])
        errors = {"7001": ServerError("boom", status=500), "7002": MalformedResponseError("junk"),
                  "7003": AuthError("denied", status=403)}
        get = FreshBooksClient.get

        def flaky(fb, account_id, resource, object_id):
            if str(object_id) in errors:
                raise errors[str(object_id)]
            return get(fb, account_id, resource, object_id)

        with patch.object(FreshBooksClient, "get", flaky):
            log = self.Sync._work_account(self.account)
            self.assertEqual(log.state, "done")
            self.assertTrue(self.linked(good["id"]), "the good client came in")
            self.assertTrue(self.env["freshbooks.invoice"].search(
                [("invoice_ref", "=", str(invoice["id"]))]))
            rows = self.env["freshbooks.queue"].search([])
            self.assertEqual(sorted(rows.mapped("object_ref")), sorted(bad_refs))
            self.assertEqual(set(rows.mapped("attempts")), {1})
            self.assertTrue(all(r.next_try > datetime.now() for r in rows))
            # Not due yet: the next runs leave them alone, and a full sync still succeeds.
            self.assertIsNone(self.Sync._work_account(self.account))
            self.assertEqual(self.sync(full=True).state, "done")
            # After a few tries, each is given up with its reason in the log.
            rows.write({"attempts": 4, "next_try": datetime.now() - timedelta(seconds=1)})
            log = self.Sync._work_account(self.account)
        self.assertFalse(self.env["freshbooks.queue"].search([]))
        self.assertEqual(log.state, "partial")
        self.assertEqual(sorted(log.line_ids.mapped("client_ref")), sorted(bad_refs))
        self.assertIn("could not be read after 5 tries", log.line_ids[0].reason)

    def test_creating_a_contact_from_a_review_with_bad_data(self):
        self.Partner.create({"name": "Twin", "is_company": True})
        self.Partner.create({"name": "twin", "is_company": True})
        client = self.sandbox.add_client(organization="Twin", email="not-an-email")
        self.sync()
        review = self.env["freshbooks.review"].search([("client_ref", "=", str(client["id"]))])
        review.action_create()
        partner = self.linked(client["id"])
        self.assertTrue(partner)
        self.assertFalse(partner.email)
        log = self.env["freshbooks.sync.log"].search([("kind", "=", "review")])
        self.assertIn("not an email address", log.line_ids.reason)

    def test_a_listing_cut_short_says_so_and_marks_nothing_deleted(self):
        partner = self.Partner.create({"name": "Still Here", "is_company": True})
        partner.with_context(freshbooks_no_push=True).write(
            self.env["freshbooks.client.sync"]._link_values(self.account, "999999"))
        log = self.env["freshbooks.sync.log"].create(
            {"account_id": self.account.id, "kind": "full"})
        fb = self.account._get_client()
        fb.truncated.append("clients")  # as if FreshBooks had sent pages past the cap
        tally = Tally()
        self.assertTrue(self.Sync._sync_type(
            self.account, fb, self.env["freshbooks.client.sync"], None, tally,
            lambda: tally._apply(log), log.id, Budget()))
        tally._apply(log)  # the run's own last commit
        self.assertEqual(partner.freshbooks_state, "active", "not listed, yet not taken as deleted")
        self.assertIn("stopped there", log.line_ids.reason)


@tagged("post_install", "-at_install")
class TestSwitchingBusiness(FreshbooksCase):
    """Item 11."""

    sandbox_options = {"businesses": 2}

    def test_switching_business_is_confirmed_and_starts_over(self):
        client = self.sandbox.add_client(organization="Old Friend")
        self.sync()
        partner = self.linked(client["id"])
        self.run_postcommit()
        self.account.business_choices = [
            {"account_id": a, "business_id": "", "name": f"Business {a}", "role": "owner"}
            for a in self.sandbox.account_ids]
        new = self.sandbox.account_ids[1]
        warning = self.account._switch_warning(new)
        self.assertIn("unlinks 1 contacts", warning)
        self.assertFalse(self.account._switch_warning(self.fb_account))
        with self.assertRaises(UserError):
            self.account._set_business(new)
        self.assertEqual(self.account.fb_account_id, self.fb_account, "nothing changed")
        deletes = self.sandbox.request_count(method="DELETE")
        self.account._set_business(new, confirmed=True)
        self.run_postcommit()
        self.assertEqual(self.account.fb_account_id, new)
        self.assertFalse(partner.freshbooks_client_id)
        self.assertFalse(self.account.webhook_ids)
        self.assertEqual(self.account.webhook_state, "none", "registered anew for the business")
        self.assertEqual(self.sandbox.request_count(method="DELETE") - deletes,
                         len(self.env["freshbooks.synced"]._fb_events()))
        self.assertFalse(self.account.last_success_start, "the new business starts with a full sync")

    def test_switching_business_removes_every_copy_of_the_old_one(self):
        client = self.sandbox.add_client(organization="Old Friend")
        invoice = self.sandbox.add_invoice(client["id"], amount="120.00", v3_status="sent")
        self.sandbox.add_payment(invoice["id"], amount="20.00")
        self.sandbox.add_estimate(client["id"])
        self.sync()
        # A run whose time was up after its first page: it would go on from its positions.
        log = self.Sync._sync_account(self.account, budget=Budget(real=0))
        types = self.env["freshbooks.synced"]._fb_types()
        inheriting = self.env["freshbooks.document"]._inherit_children
        documents = [model for model in types.values() if model._name in inheriting]
        self.assertEqual({model._name for model in documents},
                         {"freshbooks.invoice", "freshbooks.payment", "freshbooks.estimate"})
        for model in documents:
            self.assertTrue(model.search([("account_id", "=", self.account.id)]), model._name)
        positions = self.env["freshbooks.sync.position"].search([("log_id", "=", log.id)])
        self.assertTrue(positions)
        self.env["freshbooks.queue"]._enqueue(self.account, "invoice", "424242", "webhook")
        self.account.business_choices = [
            {"account_id": a, "business_id": "", "name": f"Business {a}", "role": "owner"}
            for a in self.sandbox.account_ids]
        new = self.sandbox.account_ids[1]
        warning = self.account._switch_warning(new)
        self.account._set_business(new, confirmed=True)
        for model in documents:
            self.assertFalse(model.search([("account_id", "=", self.account.id)]), model._name)
        self.assertFalse(self.linked(client["id"]))
        self.assertFalse(self.env["freshbooks.queue"].search([("account_id", "=", self.account.id)]))
        self.assertFalse(positions.exists(), "no position of the old business to go on from")
        self.assertTrue(log.exists(), "its logs stay")
        self.assertIn("removes 3 copies", warning, "the admin was told of every copy")

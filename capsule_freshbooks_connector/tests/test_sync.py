from datetime import datetime, timedelta
from unittest.mock import patch

from odoo.sql_db import db_connect
from odoo.tests import tagged

from ..models.freshbooks_client_sync import FreshbooksClientSync
from ..models.freshbooks_sync import LOCK_NAMESPACE, FreshbooksSync
from .common import FreshbooksCase


class Killed(BaseException):
    """Stands for a worker killed mid-run: nothing in the sync may catch it."""


@tagged("post_install", "-at_install")
class TestContactSync(FreshbooksCase):

    def company(self, name, **values):
        return self.Partner.create(dict(values, name=name, is_company=True))

    def test_first_import_links_by_name_holds_ambiguous_creates_the_rest(self):
        acme = self.company("Acme  Widgets")
        jose = self.Partner.create({"name": "josé GARCÍA"})
        twins = self.company("Twin Co") | self.company("twin co")
        c_acme = self.sandbox.add_client(organization="ACME widgets", email="ap@acme.test",
                                         p_country="Canada", p_province="ON")
        c_jose = self.sandbox.add_client(fname="José", lname="García", organization="")
        c_twin = self.sandbox.add_client(organization="Twin Co")
        c_new = self.sandbox.add_client(organization="Brand New Ltd", p_country="United States",
                                        p_province="California")
        # A person named like a company does not match the company.
        c_person = self.sandbox.add_client(fname="Acme", lname="Widgets", organization="")

        log = self.sync()

        self.assertEqual(self.linked(c_acme["id"]), acme)
        self.assertEqual(acme.name, "Acme  Widgets", "an Odoo name is never overwritten")
        self.assertEqual(acme.email, "ap@acme.test", "empty fields are filled from FreshBooks")
        self.assertEqual(acme.country_id, self.env.ref("base.ca"))
        self.assertTrue(any("Linked to FreshBooks client" in m.body for m in acme.message_ids))
        self.assertEqual(self.linked(c_jose["id"]), jose)
        self.assertFalse(self.linked(c_twin["id"]))
        review = self.env["freshbooks.review"].search([("client_ref", "=", str(c_twin["id"]))])
        self.assertEqual(review.candidate_ids, twins)
        self.assertEqual(self.Partner.search([("freshbooks_held", "=", True)]), twins)
        new = self.linked(c_new["id"])
        self.assertTrue(new.is_company)
        self.assertEqual(new.state_id, self.env.ref("base.state_us_5"))
        self.assertFalse(new.team_id, "imports are Unassigned by default")
        person = self.linked(c_person["id"])
        self.assertTrue(person and person != acme and not person.is_company)
        self.assertEqual((log.created, log.linked, log.held, log.failed), (2, 2, 1, 0))
        self.assertEqual(log.state, "done")

    def test_second_run_changes_nothing(self):
        for i in range(5):
            self.sandbox.add_client(organization=f"Stable {i}")
        self.sync()
        count = self.Partner.search_count([])
        log = self.sync(full=True)
        self.assertEqual(self.Partner.search_count([]), count)
        self.assertEqual((log.created, log.linked, log.updated, log.held), (0, 0, 0, 0))

    def test_idle_run_costs_one_request_per_list(self):
        clients = [self.sandbox.add_client(organization=f"Idle {i:03d}") for i in range(250)]
        for client in clients[:60]:
            self.sandbox.add_invoice(client["id"])
            self.sandbox.add_invoice(client["id"])
        first = self.sync()
        # The next run starts well after every change FreshBooks has.
        first.start = datetime.now() + timedelta(minutes=30)
        self.sandbox.reset_counters()
        log = self.sync()
        self.assertEqual(log.kind, "incremental")
        self.assertEqual(self.sandbox.request_count(), len(self.env["freshbooks.synced"]._fb_types()),
                         self.sandbox.requests_by_route())
        # Changes after the last run are still found.
        (first | log).start = datetime.now() - timedelta(minutes=10)
        later = self.sandbox.add_client(organization="After")
        self.sync()
        self.assertTrue(self.linked(later["id"]))

    def test_unsorted_answers_are_read_to_the_end(self):
        # 12:00 UTC is 08:00 in New York; with the clock margin, 07:55 and later is new.
        moment = datetime(2026, 5, 1, 12, 0)
        stamps = [datetime(2026, 5, 1, 9, 0) - timedelta(minutes=n) for n in range(250)]
        items = [{"id": n, "updated": f"{stamp:%Y-%m-%d %H:%M:%S}"} for n, stamp in enumerate(stamps)]
        consumed = []

        def listing(source):
            for start in range(0, len(source), 100):
                consumed.extend(source[start:start + 100])
                yield source[start:start + 100]

        new = [i for page in self.Sync._unseen(listing(items), moment) for i in page]
        self.assertEqual([i["id"] for i in new], list(range(66)))
        self.assertEqual(len(consumed), 100, "the second page is never asked for")
        oldest_first = list(reversed(items))
        self.assertEqual(sum(map(len, self.Sync._unseen(listing(oldest_first), moment))), 250)

    def test_freshbooks_edit_does_not_overwrite_odoo(self):
        client = self.sandbox.add_client(organization="Keeper", email="old@keeper.test")
        self.sync()
        partner = self.linked(client["id"])
        self.sandbox.update_client(client["id"], email="new@keeper.test", organization="Renamed")
        self.sync(full=True)
        self.assertEqual((partner.email, partner.name), ("old@keeper.test", "Keeper"))

    def test_deleted_in_odoo_comes_back(self):
        client = self.sandbox.add_client(organization="Phoenix")
        self.sync()
        first = self.linked(client["id"])
        first.unlink()
        self.sync()  # incremental: FreshBooks did not change, the queue brings it back
        again = self.linked(client["id"])
        self.assertTrue(again)
        self.assertNotEqual(again.id, first.id)
        self.assertEqual(again.name, "Phoenix")

    def test_deleted_in_freshbooks_then_in_odoo_stays_gone(self):
        client = self.sandbox.add_client(organization="Gone Corp")
        self.sync()
        partner = self.linked(client["id"])
        self.sandbox.delete_client(client["id"])
        self.sync(full=True)
        self.assertEqual(partner.freshbooks_state, "deleted")
        partner.unlink()
        self.sync(full=True)
        self.sync()
        self.assertFalse(self.linked(client["id"]))
        self.assertFalse(self.Partner.search([("name", "=", "Gone Corp")]))

    def test_client_unknown_to_freshbooks_is_marked_deleted(self):
        partner = self.Partner.create({"name": "Vanished", "is_company": True})
        partner.with_context(freshbooks_no_push=True).write(
            self.env["freshbooks.client.sync"]._link_values(self.account, "999999"))
        self.env["freshbooks.queue"]._enqueue(self.account, "client", "999999", "webhook")
        self.Sync._cron_work()
        self.assertEqual(partner.freshbooks_state, "deleted")
        self.assertFalse(self.env["freshbooks.queue"].search([]))

    def test_archived_client_is_not_imported(self):
        client = self.sandbox.add_client(organization="Dusty")
        self.sandbox.archive_client(client["id"])
        log = self.sync()
        self.assertFalse(self.linked(client["id"]))
        self.assertEqual(log.skipped, 1)

    def test_team_for_imports(self):
        team = self.env["crm.team"].create({"name": "Imports"})
        self.account.import_team_id = team
        client = self.sandbox.add_client(organization="Teamed")
        self.sync()
        self.assertEqual(self.linked(client["id"]).team_id, team)

    def test_concurrent_run_is_skipped(self):
        self.sandbox.add_client(organization="Lonely")
        with db_connect(self.env.cr.dbname).cursor() as other:
            other.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_NAMESPACE, self.account.id])
            try:
                cron = self.env.ref("capsule_freshbooks_connector.ir_cron_freshbooks_sync")
                triggers = self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)])
                self.assertIsNone(self.sync())
                self.assertFalse(self.Partner.search([("name", "=", "Lonely")]))
                self.assertEqual(
                    self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)]),
                    triggers + 1, "the skipped sync is asked for again, not lost")
            finally:
                other.execute("SELECT pg_advisory_unlock(%s, %s)",
                              [LOCK_NAMESPACE, self.account.id])
        self.sync()
        self.assertEqual(self.Partner.search_count([("name", "=", "Lonely")]), 1)

    def test_killed_run_then_rerun_converges(self):
        for i in range(250):
            self.sandbox.add_client(organization=f"Bulk {i:03d}")
        original = FreshbooksClientSync._fb_store_page
        pages = []

        def import_then_die(sync, account, raws, log):
            if len(pages) == 2:
                raise Killed()
            pages.append(len(raws))
            return original(sync, account, raws, log)

        # Not assertRaises: Odoo's rolls back to a savepoint, and a killed worker keeps what it
        # committed.
        killed = False
        with patch.object(FreshbooksClientSync, "_fb_store_page", import_then_die):
            try:
                self.sync()
            except Killed:
                killed = True
        self.assertTrue(killed)
        self.assertEqual(self.Partner.search_count([("name", "=like", "Bulk %")]), 200)
        self.assertFalse(self.account.last_success_start, "a killed run is not a success")
        self.sync()
        self.assertEqual(self.Partner.search_count([("name", "=like", "Bulk %")]), 250)
        self.assertEqual(self.Partner.search_count([("freshbooks_account_id", "=", self.account.id)]),
                         250)

    def test_bad_records_are_logged_and_the_rest_imported(self):
        good = self.sandbox.add_client(organization="Good One")
        self.sandbox.add_client(organization="", fname="", lname="", email="")
        weird = self.sandbox.add_client(organization="Ctrl\x07Char\x00s", note="x" * 10000,
                                        p_country="Atlantis")
        log = self.sync()
        self.assertTrue(self.linked(good["id"]))
        partner = self.linked(weird["id"])
        self.assertEqual(partner.name, "Ctrl Char s")
        self.assertIn("Atlantis", partner.comment)
        self.assertEqual(log.failed, 1)
        self.assertEqual(log.state, "partial")
        self.assertIn("no organization, name or email", log.line_ids.filtered(
            lambda line: line.level == "error").reason)

    def test_review_link_and_create(self):
        twins = self.company("Double") | self.company("Double")
        client = self.sandbox.add_client(organization="Double")
        other = self.sandbox.add_client(organization="Double")
        self.sync()
        reviews = self.env["freshbooks.review"].search([("state", "=", "open")])
        self.assertEqual(len(reviews), 2)
        first = reviews.filtered(lambda r: r.client_ref == str(client["id"]))
        first.partner_id = twins[0]
        first.action_link()
        self.assertEqual(self.linked(client["id"]), twins[0])
        second = reviews - first
        second.action_create()
        created = self.linked(other["id"])
        self.assertTrue(created and created not in twins)
        self.assertEqual(set(reviews.mapped("state")), {"done"})
        # Resolved clients are plain linked clients afterwards: nothing new on the next run.
        log = self.sync(full=True)
        self.assertEqual((log.created, log.held), (0, 0))


@tagged("post_install", "-at_install")
class TestWebhookRegistration(FreshbooksCase):

    def test_a_handshake_that_never_came_is_asked_for_again_once(self):
        # FreshBooks posted it before Odoo had committed the callback's row: it was refused.
        Webhook = self.env["freshbooks.webhook"]
        Webhook.search([]).write({"verified": False})
        self.env.flush_all()
        self.env.cr.execute("UPDATE freshbooks_webhook SET create_date = "
                            "now() at time zone 'UTC' - interval '2 minutes'")
        self.env.invalidate_all()
        self.sandbox.reset_counters()
        self.sync()
        resends = self.sandbox.request_count(method="PUT", prefix="/events/")
        self.assertEqual(resends, len(self.env["freshbooks.synced"]._fb_events()))
        self.assertTrue(all(Webhook.search([]).mapped("resent_at")))
        self.sync()
        self.assertEqual(self.sandbox.request_count(method="PUT", prefix="/events/"), resends,
                         "asked once")
        self.assertEqual(self.account.webhook_state, "pending", "not given up before the grace")

    def test_unconfirmed_webhooks_are_given_up_then_retried_on_sync_now(self):
        Webhook = self.env["freshbooks.webhook"]
        Webhook.search([]).write({"verified": False})
        self.env.flush_all()
        self.env.cr.execute("UPDATE freshbooks_webhook SET create_date = now() at time zone 'UTC' "
                            "- interval '1 hour', resent_at = now() at time zone 'UTC' "
                            "- interval '1 hour'")
        self.env.invalidate_all()
        self.sync()
        self.assertEqual(self.account.webhook_state, "unavailable")
        self.assertIn("could not reach Odoo", self.account.webhook_message)
        self.assertFalse(Webhook.search([]))
        requests = self.sandbox.request_count()
        self.sync()
        self.assertEqual(self.sandbox.request_count() - requests,
                         len(self.env["freshbooks.synced"]._fb_types()),
                         "one request per list, no webhook retries")
        self.account.action_sync_now()
        self.assertEqual(self.account.webhook_state, "none")
        self.sync()
        self.assertEqual(len(Webhook.search([])), len(self.env["freshbooks.synced"]._fb_events()),
                         "registered again")

    def test_a_new_connection_tries_webhooks_again(self):
        self.env["ir.config_parameter"].set_param("web.base.url", "http://localhost:8069")
        self.env["ir.config_parameter"].set_param("capsule_freshbooks_connector.api_url",
                                                  "https://api.freshbooks.com")
        self.env["freshbooks.webhook"].search([]).unlink()
        log = self.env["freshbooks.sync.log"].create(
            {"account_id": self.account.id, "kind": "incremental"})
        self.env["freshbooks.webhook"]._ensure(self.account, None, log)
        self.assertEqual(self.account.webhook_state, "unavailable")
        # Disconnected, then connected again (to this business or another) after that run.
        self.account.connected_at = log.create_date + timedelta(seconds=1)
        self.assertEqual(self.account.webhook_state, "none")


@tagged("post_install", "-at_install")
class TestSyncCrash(FreshbooksCase):

    def test_unexpected_error_is_logged_as_a_failed_run(self):
        self.sandbox.add_client(organization="Before The Crash")

        def crash(*args, **kwargs):
            raise RuntimeError("disk on fire")

        with patch.object(FreshbooksSync, "_process_queue", crash), \
                self.assertLogs("odoo.addons.capsule_freshbooks_connector", "ERROR"):
            log = self.sync(full=True)
        self.assertEqual(log.state, "failed")
        self.assertIn("disk on fire", log.message)
        self.assertEqual(self.account.last_sync_state, "failed")
        self.assertFalse(self.account.last_success_start, "the next run starts over")

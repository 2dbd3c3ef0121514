"""Runs that always finish: a run works for a bounded time per execution and goes on at the next
one from its last committed page; deletions are what FreshBooks says, never a guess."""

import resource
import threading
import time
from unittest.mock import patch

from odoo.tests import BaseCase, tagged
from odoo.tools import config

from ..freshbooks import FreshBooksClient
from ..models import cron_budget
from ..models.cron_budget import Budget
from .common import FreshbooksCase


class Pages(Budget):
    """A budget spent after a given number of commits (one page each here)."""

    def __init__(self, commits):
        super().__init__()
        self.commits = commits

    def spent(self):
        self.commits -= 1
        return self.commits < 0

    def left(self):
        return 30.0


@tagged("post_install", "-at_install")
class TestResumableRuns(FreshbooksCase):
    sandbox_options = {"businesses": 2}

    def setUp(self):
        super().setUp()
        self.clients = [self.sandbox.add_client(organization=f"Resumed {n:03d}")
                        for n in range(350)]
        self.Log = self.env["freshbooks.sync.log"]

    def client_pages(self):
        return self.sandbox.request_count(
            method="GET", prefix=f"/accounting/account/{self.fb_account}/users/clients")

    def test_a_run_goes_on_from_its_last_committed_page(self):
        log = self.Sync._sync_account(self.account, budget=Pages(1))
        self.assertEqual(log.state, "running", "its time was up: it goes on at the next one")
        self.assertEqual(log.created, 200, "two pages read, the second after the budget check")
        self.assertEqual(self.Partner.search_count([("name", "=like", "Resumed %")]), 200)
        position = self.env["freshbooks.sync.position"].search([("log_id", "=", log.id)])
        self.assertEqual((position.listing, position.next_page, position.done,
                          position.finished), ("client", 3, 200, False))
        pages = self.client_pages()

        again = self.Sync._sync_account(self.account, budget=Pages(10))

        self.assertEqual(again, log, "one run, one log")
        self.assertEqual((log.state, log.executions, log.created), ("done", 2, 350))
        self.assertEqual(self.client_pages() - pages, 3,
                         "pages 3 and 4, then the listing of deleted clients")
        self.assertEqual(len(self.linked_counts()), 350)
        self.assertEqual(set(self.linked_counts().values()), {1})
        self.assertEqual(self.Log.search_count([]), 1)
        self.assertTrue(self.account.last_success_start)
        self.assertFalse(self.env["freshbooks.sync.position"].search([("log_id", "=", log.id)]),
                         "an ended run keeps no position")

    def test_pushes_and_webhook_hints_get_their_turn_during_a_long_run(self):
        self.Sync._sync_account(self.account, budget=Pages(0))
        partner = self.linked(self.clients[0]["id"])
        partner.phone = "+1 555 0142"
        self.env["freshbooks.queue"]._enqueue(self.account, "client", self.clients[1]["id"],
                                              "webhook")
        self.sandbox.archive_client(self.clients[1]["id"])
        log = self.Sync._sync_account(self.account, budget=Pages(0))
        self.assertEqual(log.state, "running")
        self.assertEqual(self.sandbox.get_client(self.clients[0]["id"])["bus_phone"],
                         "+1 555 0142", "sent while the first sync is under way")
        self.assertEqual(self.linked(self.clients[1]["id"]).freshbooks_state, "archived")
        self.assertFalse(self.env["freshbooks.queue"].search([]))

    def test_the_scheduled_action_says_what_is_left_and_runs_again(self):
        cron = self.env.ref("capsule_freshbooks_connector.ir_cron_freshbooks_sync")
        progress = self.env["ir.cron.progress"].create({"cron_id": cron.id})
        Sync = self.Sync.with_context(ir_cron_progress_id=progress.id)
        # One check before the connection's run, one after its first page.
        with patch.object(cron_budget, "for_cron", lambda: Pages(1)):
            Sync._cron_sync()
        self.assertEqual(progress.done, 100)
        self.assertEqual(progress.remaining, 250, "FreshBooks' total less what was read")

        # Too little left of Odoo's pass for another execution: one of its own, triggered.
        class Spent(Pages):
            def left(self):
                return 0.0

        triggers = self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)])
        with patch.object(cron_budget, "for_cron", lambda: Spent(0)):
            Sync._cron_sync()
        self.assertEqual(progress.remaining, 0)
        self.assertEqual(self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)]),
                         triggers + 1)

        with patch.object(cron_budget, "for_cron", lambda: Pages(100)):
            Sync._cron_sync()
        self.assertEqual((progress.done, progress.remaining), (250, 0))
        log = self.Log.search([])
        self.assertEqual((log.state, log.executions, log.created), ("done", 2, 350))

    def test_a_run_of_a_business_no_longer_connected_is_not_taken_up(self):
        log = self.Sync._sync_account(self.account, budget=Pages(0))
        self.account.fb_account_id = self.sandbox.account_ids[1]
        fresh = self.Sync._sync_account(self.account, budget=Pages(0))
        self.assertNotEqual(fresh, log)
        self.assertEqual(log.state, "failed")
        self.assertIn("Interrupted", log.message)


@tagged("post_install", "-at_install")
class TestDeletionsSeen(FreshbooksCase):

    def test_a_client_a_page_did_not_show_is_not_taken_as_deleted(self):
        clients = [self.sandbox.add_client(organization=f"Shifted {n}") for n in range(5)]
        self.sync()
        hidden = str(clients[2]["id"])
        iter_pages = FreshBooksClient.iter_pages

        def shifted(fb, account_id, resource, *args, **kwargs):
            # A client deleted before this page moved the next one out of it: not shown.
            for page in iter_pages(fb, account_id, resource, *args, **kwargs):
                yield [raw for raw in page if str(raw.get("id")) != hidden]

        with patch.object(FreshBooksClient, "iter_pages", shifted):
            log = self.sync(full=True)
        self.assertEqual(log.state, "done")
        self.assertEqual(self.linked(hidden).freshbooks_state, "active")

    def test_deleted_in_freshbooks_is_seen_and_edits_wait_until_it_comes_back(self):
        client = self.sandbox.add_client(organization="Lazarus Ltd", email="old@lazarus.test")
        self.sync()
        partner = self.linked(client["id"])
        self.sandbox.delete_client(client["id"])
        self.sync(full=True)
        self.assertEqual(partner.freshbooks_state, "deleted")

        partner.email = "new@lazarus.test"
        self.run_postcommit()
        self.assertEqual(partner.freshbooks_push_state, "pending", "kept for when it comes back")
        self.sync()
        self.assertEqual(self.sandbox.get_client(client["id"])["email"], "old@lazarus.test",
                         "nothing is sent to a deleted client")

        self.sandbox.restore_client(client["id"])
        self.sync(full=True)
        self.assertEqual(partner.freshbooks_state, "active")
        self.assertEqual(self.sandbox.get_client(client["id"])["email"], "new@lazarus.test")
        self.assertEqual(partner.freshbooks_push_state, "synced")

    def test_deleted_documents_are_removed_by_what_freshbooks_lists(self):
        client = self.sandbox.add_client(organization="Paper Trail")
        kept, dropped = (self.sandbox.add_invoice(client["id"]) for _n in range(2))
        self.sync()
        self.sandbox.delete_invoice(dropped["id"])
        log = self.sync(full=True)
        refs = self.env["freshbooks.invoice"].search([]).mapped("invoice_ref")
        self.assertEqual(refs, [str(kept["id"])])
        self.assertEqual(log.invoices_removed, 1)


@tagged("post_install", "-at_install")
class TestCronBudget(BaseCase):
    """What one execution may spend, from Odoo's worker limits (prefork: a CPU limit per pass)."""

    def budget(self, cpu_limit, real_limit, started=None):
        soft = int(cron_budget.cpu_seconds() + cpu_limit)
        limits = {"limit_time_real_cron": -1, "limit_time_real": real_limit}
        with patch.object(resource, "getrlimit", return_value=(soft, resource.RLIM_INFINITY)), \
                patch.dict(config.options, limits), \
                patch.object(threading.current_thread(), "start_time", None, create=True):
            if started is not None:
                cron_budget._pass.update(soft=soft, started=started, spent=False)
            return cron_budget.for_cron()

    def setUp(self):
        super().setUp()
        self.addCleanup(cron_budget._pass.clear)

    def test_an_execution_takes_a_share_of_what_the_limits_leave(self):
        budget = self.budget(cpu_limit=8, real_limit=75)
        # 40% of the CPU left in the pass (8 s, less what this process spent in its last second).
        self.assertAlmostEqual(budget.left(), 0.4 * 8, delta=0.45)
        self.assertFalse(budget.spent())
        generous = self.budget(cpu_limit=600, real_limit=1200)
        self.assertAlmostEqual(generous.left(), cron_budget.MAX_SECONDS, delta=0.1)

    def test_the_next_execution_of_a_pass_gets_what_is_left_of_it(self):
        budget = self.budget(cpu_limit=60, real_limit=15, started=time.time() - 13)
        self.assertAlmostEqual(budget.left(), 0.4 * 2, delta=0.1)
        # A pass said to be spent starts over at the next execution.
        cron_budget.end_pass()
        fresh = self.budget(cpu_limit=60, real_limit=15)
        self.assertAlmostEqual(fresh.left(), 0.4 * 15, delta=0.1)

import json
from unittest.mock import patch

from lxml import etree

from odoo.tests import new_test_user, tagged

from ..models import freshbooks_sync
from ..models.freshbooks_sync_log import FreshbooksSyncLog
from .common import FreshbooksCase

SYNC_MODULE = freshbooks_sync.__name__


@tagged("post_install", "-at_install")
class TestProgress(FreshbooksCase):
    """A run says how far it got, page by page, with FreshBooks' totals, live on the bus."""

    def notifications(self):
        """The progress notifications sent so far (the bus writes them when committing)."""
        self.env.cr.precommit.run()
        rows = self.env["bus.bus"].search_read([("message", "like", "freshbooks_progress")],
                                               ["channel", "message"], order="id")
        return [(json.loads(row["channel"])[1:], json.loads(row["message"])["payload"])
                for row in rows]

    def test_before_any_sync_the_block_says_nothing(self):
        self.assertFalse(self.account.last_sync_message)
        self.assertFalse(self.account.last_sync_progress)

    def spy_progress(self):
        """Patches the log's progress reports; returns the list they are appended to."""
        pages = []
        progress = FreshbooksSyncLog._progress_many

        def spy(log, reports):
            progress(log, reports)
            for kind, (done, total) in reports.items():
                pages.append((kind, done, total, log.progress_text,
                              log.account_id.last_sync_progress))

        self.startPatcher(patch.object(FreshbooksSyncLog, "_progress_many", spy))
        return pages

    def test_a_sync_shows_progress_per_page_then_its_summary(self):
        clients = [self.sandbox.add_client(organization=f"Client {n}") for n in range(250)]
        self.sandbox.add_invoice(clients[0]["id"])
        clerk = new_test_user(self.env, login="clerk", groups="base.group_user")
        pages = self.spy_progress()
        before = len(self.notifications())
        log = self.sync(full=True)

        client_pages = [page for page in pages if page[0] == "client"]
        self.assertEqual([page[1:3] for page in client_pages], [(100, 250), (200, 250), (250, 250)])
        self.assertEqual(client_pages[0][3], "Clients 100 / 250")
        self.assertEqual(client_pages[0][4], "Clients 100 / 250",
                         "the settings block reads the running log's progress")
        self.assertIn("Clients 250 / 250 · Invoices 1 / 1", [page[3] for page in pages])
        self.assertEqual(log.state, "done")
        self.assertTrue(log.progress_text.startswith("Clients 250 / 250 · Invoices 1 / 1"),
                        log.progress_text)
        self.assertFalse(self.account.last_sync_progress, "shown only while the run runs")

        sent = self.notifications()[before:]
        admin = self.env.ref("base.user_admin").partner_id
        mine = [payload for channel, payload in sent if channel == ["res.partner", admin.id]]
        # One per page or empty listing, and one at the end.
        self.assertEqual(len(mine), len(pages) + 1)
        self.assertNotIn(["res.partner", clerk.partner_id.id], [c for c, _p in sent],
                         "only Settings administrators are told")
        self.assertEqual(mine[0], {"account_id": self.account.id, "log_id": log.id,
                                   "state": "running", "text": "Clients 100 / 250"})
        self.assertEqual(mine[-1], {"account_id": self.account.id, "log_id": log.id,
                                    "state": "done", "text": f"Done: {log._summary()}"})

    def test_pages_are_committed_and_reported_together_at_most_once_a_second(self):
        for n in range(250):
            self.sandbox.add_client(organization=f"Client {n}")
        pages = self.spy_progress()
        self.startPatcher(patch(f"{SYNC_MODULE}.COMMIT_INTERVAL", 1))
        clock = iter(range(0, 10000, 2))  # two seconds go by between two looks at the clock
        with patch(f"{SYNC_MODULE}.time.monotonic", lambda: next(clock)):
            self.sync(full=True)
        client_pages = [page[1:3] for page in pages if page[0] == "client"]
        self.assertEqual(client_pages, [(100, 250), (200, 250), (250, 250)],
                         "each page when a second has gone by")

        pages.clear()
        with patch(f"{SYNC_MODULE}.time.monotonic", lambda: 0):
            self.sync(full=True)
        self.assertEqual([page[1:3] for page in pages if page[0] == "client"], [(250, 250)],
                         "a fast listing is committed and reported once, at its end")


@tagged("post_install", "-at_install")
class TestScreens(FreshbooksCase):
    """What the contact's FreshBooks tab and the settings block say, as a new user reads them."""

    def test_the_contact_tab_labels_read_as_words(self):
        fields_ = self.Partner._fields
        self.assertEqual(fields_["freshbooks_state"].string, "FreshBooks status")
        self.assertEqual(fields_["freshbooks_push_state"].string, "Sent to FreshBooks")

    def block_values(self, settings):
        """{field: value} of the fields the settings block shows under Status."""
        arch = etree.fromstring(settings.get_views([(False, "form")])["views"]["form"]["arch"])
        block = arch.xpath("//div[@name='freshbooks_status']")[0]
        return {field.get("name"): settings[field.get("name")] for field in block.iter("field")}

    def test_the_settings_block_says_each_thing_once(self):
        self.account.business_choices = [{"account_id": self.fb_account, "name": "Sandbox",
                                          "business_id": 1}]
        self.account._set_business(self.fb_account)
        settings = self.env["res.config.settings"].create({})
        self.assertEqual(settings.freshbooks_status_message,
                         "Connected. The first sync runs in the background.")

        log = self.sync(full=True)
        settings = self.env["res.config.settings"].create({})
        self.assertFalse(settings.freshbooks_status_message,
                         "once a sync has run, Last sync says how it went")
        shown = self.block_values(settings)
        self.assertEqual([name for name, value in shown.items()
                          if isinstance(value, str) and log._summary() in value],
                         ["freshbooks_last_sync_text"], "the summary is shown once")
        self.assertEqual(shown["freshbooks_last_sync_text"], log._status_text(),
                         "the live end of a run replaces this line, not adds to it")

    def test_a_sync_log_is_named_by_its_run(self):
        log = self.sync(full=True)
        self.assertTrue(log.display_name.startswith("Full sync "), log.display_name)

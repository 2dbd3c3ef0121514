"""Fault injection: a FreshBooks that fails often, and FreshBooks data that is hostile.

The sandbox answers a share of API requests with 429/5xx; the client retries them after sleeping,
and the sleep is replaced here so the tests do not wait (the production defaults are untouched).
"""

import re
import unicodedata
from unittest.mock import patch

from odoo.tests import tagged

from ..models.freshbooks_client_sync import FreshbooksClientSync
from ..models.freshbooks_mapping import MAX_FIELD, MAX_NOTE
from .common import FreshbooksCase

FAULT_RATE = 0.2
CLIENTS = 150
ARCHIVED = 5
EDITS_INLINE = 8  # fewer than INLINE_PUSH_LIMIT: pushed by the post-commit hook
EDITS_BULK = 22  # more than INLINE_PUSH_LIMIT: left to the background job
MAX_RUNS = 15  # the cron's next runs, bounded
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Characters that hide or reorder text (zero width, bidi overrides and isolates).
INVISIBLE = re.compile("[\u200b\u2060\ufeff\u202a-\u202e\u2066-\u2069]")


class FaultsCase(FreshbooksCase):

    def sync_until_done(self, runs=MAX_RUNS):
        """Full syncs until one ends without failing, as the cron would; returns all the logs."""
        logs = self.env["freshbooks.sync.log"]
        for _run in range(runs):
            log = self.sync(full=True)
            self.assertTrue(log, "no other run holds the lock in a test")
            logs |= log
            if log.state != "failed":
                break
        return logs


@tagged("post_install", "-at_install")
class TestFlakyFreshbooks(FaultsCase):

    # The fault sequence follows the seed: with this one the first sync meets faults too.
    sandbox_options = {"seed": 3}

    def setUp(self):
        super().setUp()
        self.clients = []
        for i in range(CLIENTS):
            if i % 3:
                fields = {"organization": f"Flaky Company {i:03d}", "email": f"c{i}@flaky.test"}
            else:
                fields = {"organization": "", "fname": "Flaky", "lname": f"Person {i:03d}"}
            self.clients.append(self.sandbox.add_client(**fields))
            self.sandbox.add_invoice(self.clients[-1]["id"], amount=100 + i, v3_status="sent")
        for client in self.clients[:ARCHIVED]:
            self.sandbox.archive_client(client["id"])
        self.active = {str(c["id"]) for c in self.sandbox.clients() if c["vis_state"] == 0}
        self.assertEqual(len(self.active), CLIENTS - ARCHIVED)
        # Faults only from here: the clients above exist whatever happens.
        self.sandbox.set_faults(fault_rate=FAULT_RATE, latency_ms=5)

    def assert_one_contact_per_active_client(self):
        counts = self.linked_counts()
        self.assertEqual(set(counts), self.active, "every active client, and nothing else, linked")
        self.assertEqual(set(counts.values()), {1}, "no client linked twice")
        names = self.Partner.with_context(active_test=False).search(
            [("name", "=like", "Flaky %")]).mapped("name")
        self.assertEqual(len(names), len(set(names)), "no contact imported twice")
        self.assertEqual(len(names), len(self.active))

    def test_full_sync_then_edits_through_faults(self):
        sleeps = self.fast_client()
        logs = self.sync_until_done()
        self.assertNotEqual(logs[-1:].state, "failed", f"still failing after {len(logs)} runs")
        self.assert_one_contact_per_active_client()

        partners = self.Partner.search([("freshbooks_client_id", "in", sorted(self.active))],
                                       order="id")
        inline, bulk = partners[:EDITS_INLINE], partners[EDITS_INLINE:EDITS_INLINE + EDITS_BULK]
        expected = {}
        for n, partner in enumerate(inline):
            partner.write({"email": f"edited{n}@flaky.test", "phone": f"+1 555 01{n:02d}"})
            expected[partner.freshbooks_client_id] = {"email": f"edited{n}@flaky.test",
                                                       "bus_phone": f"+1 555 01{n:02d}"}
        self.run_postcommit()  # a few edits: sent at once, without retries; failures wait
        bulk.write({"phone": "+1 555 0199", "city": "Retryville"})
        for partner in bulk:
            expected[partner.freshbooks_client_id] = {"bus_phone": "+1 555 0199",
                                                       "p_city": "Retryville"}
        self.run_postcommit()  # many edits: handed to the background job
        self.assertEqual(len(expected), EDITS_INLINE + EDITS_BULK)
        for _run in range(MAX_RUNS):
            if not self.Partner.search_count([("freshbooks_push_state", "=", "pending")]):
                break
            self.Sync._cron_work()
        edited = inline | bulk
        self.assertEqual(set(edited.mapped("freshbooks_push_state")), {"synced"},
                         edited.filtered(lambda p: p.freshbooks_push_state != "synced").mapped(
                             "freshbooks_push_error"))

        in_freshbooks = {str(c["id"]): c for c in self.sandbox.clients()}
        for ref, fields in expected.items():
            self.assertEqual({key: in_freshbooks[ref][key] for key in fields}, fields, ref)
        self.assertEqual(len(in_freshbooks), CLIENTS, "an edit never creates a client")
        puts = [w for w in self.sandbox.client_writes if w["method"] == "PUT"]
        self.assertGreaterEqual(len(puts), len(expected))
        self.assertGreater(self.sandbox.request_count("PUT"), len(puts),
                           "some pushes met a fault and were sent again")
        self.assertTrue(sleeps, "the client waited between attempts (recorded, not slept)")
        invoices = self.env["freshbooks.invoice"].search([("account_id", "=", self.account.id)])
        self.assertEqual(sorted(invoices.mapped("invoice_ref")),
                         sorted(str(i["id"]) for i in self.sandbox.invoices()))
        self.assertEqual(len(invoices.partner_id), len(self.active))

        # Without faults, the same full run costs fewer requests: the first one met faults.
        self.sandbox.set_faults(fault_rate=0)
        clean = self.sync(full=True)
        self.assertEqual((clean.state, clean.created, clean.linked), ("done", 0, 0))
        self.assertTrue(len(logs) > 1 or logs[-1].requests > clean.requests,
                        f"the first sync met no fault ({logs[-1].requests} requests, {clean.requests} "
                        "without faults): the fault sequence follows the sandbox seed, pick another")
        self.assert_one_contact_per_active_client()

    def test_sync_failing_as_a_whole_converges_on_later_runs(self):
        # No retries: a fault fails the run where it stands, as a long outage would.
        self.fast_client(max_retries=0)
        original, outages = FreshbooksClientSync._fb_store_page, []

        def outage_after_first_page(sync, account, raws, log):
            seen = original(sync, account, raws, log)
            if not outages:
                outages.append(len(raws))
                self.sandbox.set_faults(fault_rate=1.0)
            return seen

        self.patch(FreshbooksClientSync, "_fb_store_page", outage_after_first_page)
        self.sandbox.set_faults(fault_rate=0)  # until the outage
        first = self.sync(full=True)
        self.assertEqual(first.state, "failed")
        self.assertTrue(first.message)
        self.assertEqual(self.account.last_sync_state, "failed")
        self.assertFalse(self.account.last_success_start, "a failed run is not a success")
        half_done = self.linked_counts()
        self.assertTrue(0 < len(half_done) < len(self.active), len(half_done))

        self.sandbox.set_faults(fault_rate=FAULT_RATE)
        logs = first | self.sync_until_done()
        self.assertNotEqual(logs[-1].state, "failed", f"still failing after {len(logs)} runs")
        self.assertEqual(self.account.last_sync_state, logs[-1].state)
        self.assert_one_contact_per_active_client()
        self.assertEqual(sum(logs.mapped("created")), len(self.active), "each created once")


class Killed(BaseException):
    """Stands for a worker killed mid-run: nothing in the sync may catch it."""


@tagged("post_install", "-at_install")
class TestKilledRun(FaultsCase):

    def test_next_run_goes_on_with_the_run_of_a_killed_worker(self):
        for i in range(120):
            self.sandbox.add_client(organization=f"Cut Short {i:03d}")
        original = FreshbooksClientSync._fb_store_page
        pages = []

        def import_then_die(sync, account, raws, log):
            # The first page is stored and committed, the worker dies storing the second.
            original(sync, account, raws, log)
            pages.append(raws)
            if len(pages) == 2:
                raise Killed()

        # A killed worker keeps what it committed, its log included (no assertRaises: it would
        # roll back to a savepoint).
        died = False
        with patch.object(FreshbooksClientSync, "_fb_store_page", import_then_die):
            try:
                self.sync(full=True)
            except Killed:
                died = True
        self.assertTrue(died)
        killed = self.env["freshbooks.sync.log"].search([("account_id", "=", self.account.id)])
        self.assertEqual(killed.state, "running")
        pages = self.sandbox.request_count(prefix=f"/accounting/account/{self.fb_account}/users")
        log = self.sync(full=True)
        self.assertEqual(log, killed, "one run, one log, across its executions")
        self.assertEqual((log.state, log.executions), ("done", 2))
        self.assertEqual(log.created, 120)
        self.assertEqual(len(self.linked_counts()), 120)
        # From its committed page on: the second of two client pages, then the deleted ones.
        self.assertEqual(self.sandbox.request_count(
            prefix=f"/accounting/account/{self.fb_account}/users") - pages, 2)


@tagged("post_install", "-at_install")
class TestHostileData(FaultsCase):

    sandbox_options = {"hostile": True, "clients": 6, "seed": 4}

    def test_hostile_clients_are_imported_safely_or_reported(self):
        self.sandbox.add_client(organization="Plain Normal Ltd", email="plain@normal.test")
        self.sandbox.add_client(organization="", fname="Norma", lname="Normal")
        clients = self.sandbox.clients()
        hostile = {c["username"][len("hostile_"):]: c for c in clients
                   if str(c.get("username") or "").startswith("hostile_")}
        self.assertGreaterEqual(len(hostile), 14)
        normal = [c for c in clients if c not in hostile.values()]

        log = self.sync()

        self.assertIn(log.state, ("done", "partial"), log.message)
        reasons = {}
        for line in log.line_ids:
            reasons.setdefault(line.client_ref, []).append(line)
        imported, reported = set(), set()
        for kind, client in hostile.items():
            partner = self.linked(client["id"])
            ref = str(client["id"])
            if not partner:
                errors = [line for line in reasons.get(ref, []) if line.level == "error"]
                self.assertTrue(errors and all(line.reason.strip() for line in errors),
                                f"{kind}: neither imported nor reported")
                reported.add(kind)
                continue
            imported.add(kind)
            self.assertEqual(len(partner), 1, kind)
            name = partner.name
            self.assertTrue(name and name == name.strip(), f"{kind}: {name!r}")
            self.assertFalse(CONTROL.search(name) or INVISIBLE.search(name), f"{kind}: {name!r}")
            self.assertTrue(any(unicodedata.category(c)[0] in "LNPS" for c in name),
                            f"{kind}: nothing visible in {name!r}")
            self.assertLessEqual(len(name), MAX_FIELD, kind)
            comment = str(partner.comment or "")
            self.assertNotIn("<script", comment.lower(), kind)
            self.assertNotIn("<b>", comment, kind)
            self.assertFalse(CONTROL.search(comment.replace("\n", "")), kind)
            for field in ("email", "phone", "mobile", "street", "city", "zip", "vat"):
                value = partner[field] or ""
                self.assertFalse(CONTROL.search(value), f"{kind}: {field} {value!r}")
                self.assertLessEqual(len(value), MAX_FIELD, f"{kind}: {field}")
        self.assertEqual(imported | reported, set(hostile))
        # Nothing to make a contact of: reported, never a contact without a visible name.
        self.assertLessEqual({"empty_names", "blank_names"}, reported)
        self.assertEqual(log.failed, len(reported))
        self.assertEqual(log.state, "partial" if reported else "done")

        def partner_of(kind):
            self.assertIn(kind, imported)
            return self.linked(hostile[kind]["id"])

        self.assertEqual(partner_of("control_chars").name, "Control Corp")
        # HTML is text: kept as typed in the name, escaped in the notes.
        html = partner_of("html_name")
        self.assertEqual(html.name, "<script>alert(1)</script> Ltd")
        self.assertIn("&lt;b&gt;Bold&lt;/b&gt;", str(html.comment))
        note = partner_of("long_note")
        self.assertIn("This note goes on and on, with &lt;b&gt;markup&lt;/b&gt;", str(note.comment))
        self.assertGreater(len(str(note.comment)), 9000, "the long note is kept")
        self.assertLessEqual(len(str(note.comment)), 2 * MAX_NOTE, "and bounded")
        self.assertLessEqual(len(partner_of("long_org").name), MAX_FIELD)
        self.assertFalse(partner_of("list_email").email)
        self.assertFalse(partner_of("numeric_org").email, "an invalid email is left out")
        self.assertEqual(partner_of("numeric_org").name, "12345")
        self.assertEqual(partner_of("string_vis_state").freshbooks_state, "active")
        lost = partner_of("unknown_country")
        self.assertFalse(lost.country_id)
        self.assertIn("Atlantis", str(lost.comment))
        self.assertEqual(partner_of("null_names").name, "only.email@hostile.example")
        self.assertNotIn("\u202e", partner_of("unicode_name").name)
        self.assertIn("😀", str(partner_of("unicode_name").comment))
        # Documents of the wrong types are stored, read as well as they can be.
        documents = partner_of("documents")
        self.assertEqual(len(documents.freshbooks_invoice_ids), 4)
        self.assertEqual(documents.freshbooks_payment_ids.note, "nul inside")
        self.assertEqual((documents.freshbooks_estimate_ids.number,
                          documents.freshbooks_estimate_ids.amount), ("E 1", 0.0))
        twins = partner_of("duplicate_org_1") | partner_of("duplicate_org_2")
        self.assertEqual(len(twins), 2, "two clients, two contacts")

        for client in normal:
            linked = self.linked(client["id"])
            self.assertEqual(len(linked), 1 if client["vis_state"] == 0 else 0, client)
        self.assertTrue(self.linked(next(c["id"] for c in normal if c.get("lname") == "Normal")))

        # Hostile data does not make a second run import anything twice.
        counts = self.linked_counts()
        again = self.sync(full=True)
        self.assertEqual((again.created, again.linked), (0, 0))
        self.assertIn(again.state, ("done", "partial"))
        self.assertEqual(self.linked_counts(), counts)
        self.assertEqual(set(counts.values()), {1})

"""Payments and estimates beside invoices: synced whole, then by change and by webhook, removed
when FreshBooks deletes them, and readable by whoever may read invoices."""

from datetime import datetime, timedelta

from odoo.exceptions import AccessError
from odoo.tests import new_test_user, tagged

from .common import FreshbooksCase, connect_account, mark_webhooks_registered


@tagged("post_install", "-at_install")
class TestPaymentsAndEstimates(FreshbooksCase):
    sandbox_options = {"clients": 12, "invoices": 3, "seed": 5}

    def setUp(self):
        super().setUp()
        self.Payment = self.env["freshbooks.payment"]
        self.Estimate = self.env["freshbooks.estimate"]

    def active(self, records):
        return {str(r["id"]): r for r in records if r.get("vis_state", 0) == 0}

    def test_first_sync_copies_every_payment_and_estimate(self):
        log = self.sync()
        payments = self.active(self.sandbox.payments())
        estimates = self.active(self.sandbox.estimates())
        self.assertTrue(payments and estimates, "the seed gives both")
        self.assertEqual(set(self.Payment.search([]).mapped("payment_ref")), set(payments))
        self.assertEqual(set(self.Estimate.search([]).mapped("estimate_ref")), set(estimates))
        self.assertEqual((log.payments_updated, log.estimates_updated),
                         (len(payments), len(estimates)))
        for payment in self.Payment.search([]):
            raw = payments[payment.payment_ref]
            self.assertEqual(payment.partner_id, self.linked(raw["clientid"]))
            self.assertEqual(payment.invoice_id.invoice_ref, str(raw["invoiceid"]))
            self.assertAlmostEqual(payment.amount, float(raw["amount"]["amount"]))
            self.assertEqual(payment.payment_type, raw["type"])
            self.assertIn(f"/#/invoice/{self.fb_account}-{raw['invoiceid']}", payment.url)
        for estimate in self.Estimate.search([]):
            raw = estimates[estimate.estimate_ref]
            self.assertEqual(estimate.partner_id, self.linked(raw["customerid"]))
            self.assertEqual((estimate.number, estimate.status),
                             (raw["estimate_number"], raw["ui_status"]))
            self.assertTrue(estimate.url.endswith(f"/#/estimate/{raw['id']}"))
        # Paid invoices are paid by their payments, to the cent.
        for invoice in self.env["freshbooks.invoice"].search([("status", "=", "paid")]):
            paid = sum(self.Payment.search([("invoice_ref", "=", invoice.invoice_ref)])
                       .mapped("amount"))
            self.assertAlmostEqual(paid, invoice.amount - invoice.outstanding, places=2)
        partner = self.Payment.search([], limit=1).partner_id
        self.assertEqual(partner.freshbooks_payment_ids,
                         self.Payment.search([("partner_id", "=", partner.id)]))

    def test_attaching_every_document_first_gives_postgresql_their_count(self):
        # A first sync's documents are attached at its end in one statement; planned with the
        # statistics of an empty table, it read every linked contact for each document.
        self.sync()
        Invoice = self.env["freshbooks.invoice"].sudo()
        Invoice.search([]).write({"partner_id": False})
        Invoice._fb_attach(self.account, analyze=True)
        self.env.cr.execute("SELECT reltuples FROM pg_class WHERE relname = 'freshbooks_invoice'")
        self.assertEqual(self.env.cr.fetchone()[0], Invoice.search_count([]))
        self.assertEqual(Invoice.search_count([("partner_id", "=", False)]), 0,
                         "every invoice is on its contact again")

    def test_contacts_have_no_index_on_the_connection_alone(self):
        # PostgreSQL took it to find each stored document's contact while its statistics still
        # said no contact was linked, reading every linked contact per document.
        self.env.cr.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'res_partner' "
                            "AND indexdef LIKE '%%(freshbooks_account_id)%%'")
        self.assertEqual(self.env.cr.fetchall(), [])
        self.env.cr.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'res_partner' "
                            "AND indexname = 'res_partner_freshbooks_client_uniq'")
        self.assertIn("(freshbooks_account_id, freshbooks_client_id)", self.env.cr.fetchone()[0],
                      "lookups by connection use the unique (connection, client) index")

    def test_later_runs_bring_changes_and_full_runs_drop_deletions(self):
        first = self.sync()
        first.start = datetime.now() - timedelta(minutes=10)
        client = self.sandbox.clients()[0]
        invoice = self.sandbox.add_invoice(client["id"], amount={"amount": "80.00", "code": "USD"},
                                           outstanding={"amount": "80.00", "code": "USD"})
        payment = self.sandbox.add_payment(invoice["id"], amount="30.00", type="Cash")
        estimate = self.sandbox.add_estimate(client["id"], ui_status="sent")
        log = self.sync()
        self.assertEqual(log.kind, "incremental")
        copy = self.Payment.search([("payment_ref", "=", str(payment["id"]))])
        self.assertEqual((copy.amount, copy.payment_type), (30.0, "Cash"))
        self.sandbox.update_estimate(estimate["id"], ui_status="accepted")
        self.sync()
        self.assertEqual(self.Estimate.search([("estimate_ref", "=", str(estimate["id"]))]).status,
                         "accepted")
        self.sandbox.delete_payment(payment["id"])
        self.sandbox.delete_estimate(estimate["id"])
        log = self.sync(full=True)
        self.assertFalse(self.Payment.search([("payment_ref", "=", str(payment["id"]))]))
        self.assertFalse(self.Estimate.search([("estimate_ref", "=", str(estimate["id"]))]))
        self.assertTrue(log.payments_removed and log.estimates_removed)

    def test_webhooks_create_update_and_delete(self):
        self.sync()
        Queue = self.env["freshbooks.queue"]
        client = self.sandbox.clients()[0]
        invoice = self.sandbox.add_invoice(client["id"], amount={"amount": "50.00", "code": "USD"},
                                           outstanding={"amount": "50.00", "code": "USD"})
        payment = self.sandbox.add_payment(invoice["id"], amount="20.00")
        estimate = self.sandbox.add_estimate(client["id"])
        for kind, ref in (("invoice", invoice["id"]), ("payment", payment["id"]),
                          ("estimate", estimate["id"])):
            Queue._enqueue(self.account, kind, ref, "webhook")
        self.Sync._cron_work()
        self.assertEqual(self.Payment.search([("payment_ref", "=", str(payment["id"]))]).amount,
                         20.0)
        self.assertTrue(self.Estimate.search([("estimate_ref", "=", str(estimate["id"]))]))
        self.sandbox.update_payment(payment["id"], amount="25.00")
        self.sandbox.delete_estimate(estimate["id"])
        Queue._enqueue(self.account, "payment", payment["id"], "webhook")
        Queue._enqueue(self.account, "estimate", estimate["id"], "webhook")
        self.Sync._cron_work()
        self.assertEqual(self.Payment.search([("payment_ref", "=", str(payment["id"]))]).amount,
                         25.0)
        self.assertFalse(self.Estimate.search([("estimate_ref", "=", str(estimate["id"]))]))
        # Gone for good at FreshBooks (404): the copy goes too.
        Queue._enqueue(self.account, "payment", "987654321", "webhook")
        self.Sync._cron_work()
        self.assertFalse(Queue.search([]))

    def test_the_contact_refresh_button_reads_payments_and_estimates_too(self):
        self.sync()
        partner = self.Payment.search([], limit=1).partner_id
        client_ref = partner.freshbooks_client_id
        estimate = self.sandbox.add_estimate(int(client_ref))
        partner.action_freshbooks_refresh_invoices()
        self.assertIn(str(estimate["id"]), partner.freshbooks_estimate_ids.mapped("estimate_ref"))

    def test_who_may_read_them(self):
        self.sync()
        payments, estimates = self.Payment.search([]), self.Estimate.search([])
        internal = new_test_user(self.env, login="fb_internal", groups="base.group_user")
        self.assertEqual(self.Payment.with_user(internal).search([]), payments)
        self.assertEqual(self.Estimate.with_user(internal).search([]), estimates)
        portal = new_test_user(self.env, login="fb_portal", groups="base.group_portal")
        public = self.env.ref("base.public_user")
        for user in (portal, public):
            for model in (self.Payment, self.Estimate):
                with self.assertRaises(AccessError, msg=f"{user.login} {model._name}"):
                    model.with_user(user).search([])
        company = self.env["res.company"].create({"name": "Other Co"})
        other = new_test_user(self.env, login="fb_other", groups="base.group_user",
                              company_id=company.id, company_ids=[company.id])
        self.assertFalse(self.Payment.with_user(other).search([]))
        self.assertFalse(self.Estimate.with_user(other).search([]))
        with self.assertRaises(AccessError):
            payments[0].with_user(other).read(["amount"])

    def test_overdue_filter_on_contacts(self):
        client = self.sandbox.add_client(organization="Late Payer")
        self.sandbox.add_invoice(client["id"], v3_status="overdue", due_date="2020-01-31",
                                 outstanding={"amount": "10.00", "code": "USD"})
        on_time = self.sandbox.add_client(organization="On Time")
        self.sandbox.add_invoice(on_time["id"], v3_status="paid",
                                 outstanding={"amount": "0.00", "code": "USD"})
        self.sync()
        overdue = self.Partner.search([("freshbooks_invoice_ids.is_overdue", "=", True)])
        self.assertIn(self.linked(client["id"]), overdue)
        self.assertNotIn(self.linked(on_time["id"]), overdue)


@tagged("post_install", "-at_install")
class TestSecondCompanyDocuments(FreshbooksCase):
    sandbox_options = {"businesses": 2}

    def test_each_company_gets_its_own_business_documents(self):
        company = self.env["res.company"].create({"name": "Second Co"})
        account_b = connect_account(self.env, self.sandbox, company=company,
                                    account_id=self.sandbox.account_ids[1])
        mark_webhooks_registered(self.env, account_b)
        client = self.sandbox.add_client(account_id=self.sandbox.account_ids[1],
                                         organization="B Only")
        self.sandbox.add_estimate(client["id"])
        self.Sync._sync_account(account_b)
        self.sync()
        estimates = self.env["freshbooks.estimate"].search([])
        self.assertEqual(estimates.account_id, account_b)
        self.assertEqual(estimates.company_id, company)

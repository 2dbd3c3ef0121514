from odoo.exceptions import AccessError
from odoo.tests import new_test_user, tagged

from .common import FreshbooksCase


@tagged("post_install", "-at_install")
class TestInvoices(FreshbooksCase):

    def invoice_requests(self):
        return self.sandbox.request_count(
            method="GET", prefix=f"/accounting/account/{self.fb_account}/invoices")

    def test_sync_of_many_clients_takes_few_requests(self):
        clients = [self.sandbox.add_client(organization=f"Billed {i:02d}") for i in range(30)]
        for client in clients:
            for n in range(5):
                self.sandbox.add_invoice(client["id"], amount={"amount": f"{100 + n}.50",
                                                               "code": "USD"})
        self.sandbox.reset_counters()
        self.sync()
        Invoice = self.env["freshbooks.invoice"]
        self.assertEqual(Invoice.search_count([("account_id", "=", self.account.id)]), 150)
        self.assertEqual(self.invoice_requests(), 3,
                         "150 invoices: two pages, account-wide, and one of deleted invoices")
        partner = self.linked(clients[0]["id"])
        self.assertEqual(partner.freshbooks_invoice_count, 5)
        self.assertEqual(sorted(partner.freshbooks_invoice_ids.mapped("amount")),
                         [100.5, 101.5, 102.5, 103.5, 104.5])
        self.assertEqual(partner.freshbooks_invoice_ids.currency_id, self.env.ref("base.USD"))
        invoice = partner.freshbooks_invoice_ids[0]
        self.assertIn(f"/#/invoice/{self.fb_account}-{invoice.invoice_ref}", invoice.url)

    def test_outstanding_total_per_currency_and_overdue(self):
        client = self.sandbox.add_client(organization="Two Currencies")
        self.sandbox.add_invoice(client["id"], currency_code="USD",
                                 amount={"amount": "80.00", "code": "USD"},
                                 outstanding={"amount": "80.00", "code": "USD"},
                                 v3_status="overdue", due_date="2020-01-31")
        self.sandbox.add_invoice(client["id"], currency_code="EUR",
                                 amount={"amount": "20.00", "code": "EUR"},
                                 outstanding={"amount": "20.00", "code": "EUR"}, v3_status="sent")
        self.sandbox.add_invoice(client["id"], currency_code="USD",
                                 amount={"amount": "5.00", "code": "USD"},
                                 outstanding={"amount": "0.00", "code": "USD"}, v3_status="paid")
        self.sync()
        partner = self.linked(client["id"])
        self.assertIn("80.00", partner.freshbooks_outstanding)
        self.assertIn("20.00", partner.freshbooks_outstanding)
        overdue = partner.freshbooks_invoice_ids.filtered("is_overdue")
        self.assertEqual(overdue.mapped("status"), ["overdue"])

    def test_refresh_from_the_contact(self):
        client = self.sandbox.add_client(organization="Refreshing")
        self.sync()
        partner = self.linked(client["id"])
        self.assertFalse(partner.freshbooks_invoice_ids)
        invoice = self.sandbox.add_invoice(client["id"])
        partner.action_freshbooks_refresh_invoices()
        self.assertEqual(partner.freshbooks_invoice_ids.invoice_ref, str(invoice["id"]))
        self.sandbox.delete_invoice(invoice["id"])
        partner.action_freshbooks_refresh_invoices()
        self.assertFalse(partner.freshbooks_invoice_ids)

    def test_deleted_and_updated_invoices(self):
        client = self.sandbox.add_client(organization="Changing")
        keep = self.sandbox.add_invoice(client["id"], v3_status="sent")
        drop = self.sandbox.add_invoice(client["id"])
        self.sync()
        partner = self.linked(client["id"])
        self.assertEqual(len(partner.freshbooks_invoice_ids), 2)
        self.sandbox.update_invoice(keep["id"], v3_status="paid",
                                    outstanding={"amount": "0.00", "code": "USD"})
        self.sync()
        self.assertEqual(partner.freshbooks_invoice_ids.filtered(
            lambda i: i.invoice_ref == str(keep["id"])).status, "paid")
        self.sandbox.delete_invoice(drop["id"])
        self.sync(full=True)
        self.assertEqual(partner.freshbooks_invoice_ids.mapped("invoice_ref"), [str(keep["id"])])

    def test_invoice_of_a_client_linked_later_finds_its_contact(self):
        twins = self.Partner.create([{"name": "Later", "is_company": True}] * 2)
        client = self.sandbox.add_client(organization="Later")
        self.sandbox.add_invoice(client["id"])
        self.sync()
        invoice = self.env["freshbooks.invoice"].search([("client_ref", "=", str(client["id"]))])
        self.assertFalse(invoice.partner_id, "held for review: no contact yet")
        review = self.env["freshbooks.review"].search([("client_ref", "=", str(client["id"]))])
        review.partner_id = twins[1]
        review.action_link()
        self.assertEqual(invoice.partner_id, twins[1])

    def test_access_rights(self):
        client = self.sandbox.add_client(organization="Secretive")
        self.sandbox.add_invoice(client["id"])
        self.sync()
        invoice = self.env["freshbooks.invoice"].search([("client_ref", "=", str(client["id"]))])
        internal = new_test_user(self.env, login="internal", groups="base.group_user")
        portal = new_test_user(self.env, login="portal", groups="base.group_portal")
        public = self.env.ref("base.public_user")
        self.assertEqual(invoice.with_user(internal).read(["number"])[0]["number"], invoice.number)
        # What the contact form shows a sales user, the link included.
        partner = self.linked(client["id"]).with_user(internal)
        self.assertIn("/#/invoice/", partner.freshbooks_invoice_ids.url)
        partner.read(["freshbooks_invoice_count", "freshbooks_outstanding", "freshbooks_url",
                      "freshbooks_held", "freshbooks_can_add", "freshbooks_state"])
        for operation in (lambda i: i.write({"number": "X"}), lambda i: i.unlink(),
                          lambda i: i.create({"account_id": self.account.id, "invoice_ref": "1"})):
            with self.assertRaises(AccessError):
                operation(invoice.with_user(internal))
        for outsider in (portal, public):
            with self.assertRaises(AccessError):
                invoice.with_user(outsider).read(["number"])

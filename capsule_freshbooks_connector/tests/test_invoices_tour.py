from odoo.tests import HttpCase, new_test_user, tagged

from .common import OneTransaction, connect_account, mark_webhooks_registered, start_sandbox


@tagged("post_install", "-at_install")
class TestInvoicesTour(OneTransaction, HttpCase):

    def test_contact_form_shows_freshbooks_invoices(self):
        sandbox = start_sandbox(self)
        account = connect_account(self.env, sandbox)
        mark_webhooks_registered(self.env, account)
        client = sandbox.add_client(organization="Tour Client")
        sandbox.add_invoice(client["id"], invoice_number="TOUR-1", create_date="2026-01-10",
                            outstanding={"amount": "0.00", "code": "USD"}, v3_status="paid")
        second = sandbox.add_invoice(client["id"], invoice_number="TOUR-2",
                                     create_date="2026-02-10", due_date="2026-03-12",
                                     amount={"amount": "350.00", "code": "USD"},
                                     outstanding={"amount": "350.00", "code": "USD"},
                                     v3_status="sent")
        sandbox.add_payment(second["id"], amount="100.00", type="Cash", date="2026-02-20")
        sandbox.add_estimate(client["id"], estimate_number="EST-7", ui_status="accepted")
        self.env["freshbooks.sync"]._sync_account(account)
        partner = self.env["res.partner"].search([("freshbooks_client_id", "=", str(client["id"]))])
        self.assertIn("250.00", partner.freshbooks_outstanding)
        # Anyone on the team, not only admins, sees them.
        new_test_user(self.env, login="seller", password="seller", groups="base.group_user")
        self.start_tour(f"/odoo/contacts/{partner.id}", "freshbooks_invoices_tour", login="seller")

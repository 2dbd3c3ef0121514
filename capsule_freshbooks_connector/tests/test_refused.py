"""One object Odoo, another module or PostgreSQL refuses is one line in the sync log: the rest of
its page and of the run goes on, and it is tried again at the next full sync."""

from unittest.mock import patch

from odoo.exceptions import ValidationError
from odoo.tests import tagged

from ..models.freshbooks_synced import FreshbooksSynced
from .common import FreshbooksCase

BAD_VAT = "XX-NOT-A-VAT"


def refuse_bad_vat(write):
    """res.partner's write as a module that validates VAT numbers (base_vat) has it."""

    def checked(partners, vals):
        if vals.get("vat") == BAD_VAT:
            raise ValidationError(f"The VAT number {BAD_VAT} does not seem to be valid.")
        return write(partners, vals)

    return checked


@tagged("post_install", "-at_install")
class TestRefusedRecords(FreshbooksCase):

    def errors(self, log):
        return log.line_ids.filtered(lambda line: line.level == "error")

    def test_a_contact_another_module_refuses_is_one_line_and_the_rest_arrive(self):
        # Linked by name, its empty VAT would be filled with one the VAT module refuses.
        refused = self.Partner.create({"name": "Strict Vat Ltd", "is_company": True})
        clients = [self.sandbox.add_client(organization=f"Fine {n}") for n in range(3)]
        bad = self.sandbox.add_client(organization="Strict Vat Ltd", vat_number=BAD_VAT)
        clients += [self.sandbox.add_client(organization=f"Later {n}") for n in range(3)]
        Partner = type(self.Partner)
        with patch.object(Partner, "write", refuse_bad_vat(Partner.write)):
            log = self.sync()
        self.assertEqual(log.state, "partial", log.message)
        for client in clients:
            self.assertTrue(self.linked(client["id"]), client["organization"])
        self.assertFalse(self.linked(bad["id"]))
        self.assertFalse(refused.freshbooks_client_id)
        line = self.errors(log)
        self.assertEqual(len(line), 1)
        self.assertEqual((line.client_ref, line.client_name), (str(bad["id"]), "Strict Vat Ltd"))
        self.assertIn(f"The VAT number {BAD_VAT} does not seem to be valid", line.reason)
        self.assertEqual((log.created, log.linked, log.failed), (6, 0, 1))

        # Fixed in FreshBooks, it is linked by the next full sync.
        self.sandbox.update_client(bad["id"], vat_number="BE0477472701")
        log = self.sync(full=True)
        self.assertEqual(self.linked(bad["id"]), refused)
        self.assertEqual((log.linked, log.failed), (1, 0))

    def test_hostile_documents_are_stored_or_reported_and_the_rest_arrive(self):
        client = self.sandbox.add_client(organization="Documents Co")
        fine = self.sandbox.add_invoice(client["id"], amount="10.00", invoice_number="FINE")
        string_amount = self.sandbox.add_invoice(client["id"], invoice_number="STR")
        self.sandbox.corrupt("invoice", string_amount["id"], amount="12.00", currency_code="",
                             outstanding="Infinity")
        list_status = self.sandbox.add_invoice(client["id"], invoice_number="LIST")
        self.sandbox.corrupt("invoice", list_status["id"], v3_status=["paid"], status=[4])
        not_a_number = self.sandbox.add_invoice(client["id"], invoice_number="NAN")
        self.sandbox.corrupt("invoice", not_a_number["id"], amount={"amount": "NaN",
                                                                     "code": ["USD"]})
        payment = self.sandbox.add_payment(fine["id"], amount="4.00")
        self.sandbox.corrupt("payment", payment["id"], note="nul\x00inside", type=["Cash"])
        estimate = self.sandbox.add_estimate(client["id"], estimate_number="E\x00 1")

        log = self.sync()

        self.assertEqual(log.state, "done", log.message)
        invoices = {i.number: i for i in self.env["freshbooks.invoice"].search([])}
        self.assertEqual(set(invoices), {"FINE", "STR", "LIST", "NAN"})
        self.assertEqual((invoices["STR"].amount, invoices["STR"].outstanding), (12.0, 0.0))
        self.assertFalse(invoices["STR"].currency_code, "a plain string says no currency")
        self.assertEqual(invoices["LIST"].status, "")
        self.assertEqual(invoices["NAN"].amount, 0.0)
        stored = self.env["freshbooks.payment"].search([("payment_ref", "=", str(payment["id"]))])
        self.assertEqual((stored.note, stored.payment_type, stored.amount),
                         ("nul inside", False, 4.0))
        self.assertEqual(self.env["freshbooks.estimate"].search(
            [("estimate_ref", "=", str(estimate["id"]))]).number, "E 1")
        self.assertEqual(self.linked(client["id"]).freshbooks_invoice_count, 4)

    def test_a_document_postgresql_refuses_is_one_line_and_its_page_goes_on(self):
        client = self.sandbox.add_client(organization="Pages Co")
        invoices = [self.sandbox.add_invoice(client["id"], invoice_number=f"INV-{n}")
                    for n in range(5)]
        # A date PostgreSQL refuses: the page's statement fails, the invoice alone is refused.
        self.sandbox.corrupt("invoice", invoices[2]["id"], due_date="2024-02-30")
        Invoice = type(self.env["freshbooks.invoice"])
        values = Invoice._fb_values

        def year_too_far(model, raw):
            result = values(model, raw)
            if raw.get("due_date") == "2024-02-30":
                result["due_date"] = raw["due_date"]  # past the parsing that drops it
            return result

        with patch.object(Invoice, "_fb_values", year_too_far):
            log = self.sync()
        self.assertEqual(log.state, "partial", log.message)
        numbers = set(self.env["freshbooks.invoice"].search([]).mapped("number"))
        self.assertEqual(numbers, {"INV-0", "INV-1", "INV-3", "INV-4"})
        line = self.errors(log)
        self.assertEqual((line.client_ref, line.client_name),
                         (str(invoices[2]["id"]), "INV-2"))
        self.assertIn("Odoo could not store FreshBooks invoice", line.reason)
        self.assertEqual(log.invoices_updated, 4, "counted once, when stored")

    def test_a_queue_row_that_raises_backs_off_and_the_pushes_behind_it_leave(self):
        first = self.sandbox.add_client(organization="Queued One")
        second = self.sandbox.add_client(organization="Queued Two")
        edited = self.sandbox.add_client(organization="Edited Co")
        self.sync()
        Queue = self.env["freshbooks.queue"]
        for client in (first, second):
            Queue._enqueue(self.account, "client", client["id"], "webhook")
        self.sandbox.archive_client(second["id"])
        partner = self.linked(edited["id"])
        partner.phone = "+1 555 0100"  # pushed by the work run, after the queue
        refresh = FreshbooksSynced._fb_refresh

        def broken_for_first(model, account, fb, ref, log):
            if model._fb_type == "client" and str(ref) == str(first["id"]):
                raise KeyError("no such column")
            return refresh(model, account, fb, ref, log)

        with patch.object(FreshbooksSynced, "_fb_refresh", broken_for_first):
            log = self.Sync._work_account(self.account)
        self.assertEqual(log.state, "partial", log.message)
        row = Queue.search([])
        self.assertEqual(row.object_ref, str(first["id"]))
        self.assertEqual(row.attempts, 1)
        self.assertTrue(row.next_try and "no such column" in row.last_error)
        self.assertIn("Odoo could not store FreshBooks client", self.errors(log).reason)
        self.assertEqual(self.linked(second["id"]).freshbooks_state, "archived",
                         "the row behind it was read")
        self.assertEqual(self.sandbox.get_client(edited["id"])["bus_phone"], "+1 555 0100")

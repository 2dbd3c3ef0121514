"""What the add-on's lists and forms say to a new user: words, not Odoo's labels made from field
names, and a message where a list is still empty."""

from lxml import etree

from odoo.tests import TransactionCase, tagged


@tagged("post_install", "-at_install")
class TestScreenLabels(TransactionCase):

    def labels(self, model):
        return {name: field.string for name, field in self.env[model]._fields.items()}

    def arch(self, model, view_type):
        return etree.fromstring(self.env[model].get_views([(False, view_type)])["views"][view_type]["arch"])

    def test_clients_to_review(self):
        labels = self.labels("freshbooks.review")
        self.assertEqual(labels["kind"], "Reason")
        self.assertEqual(labels["state"], "Status")
        self.assertEqual(labels["client_ref"], "FreshBooks client ID")
        form = self.arch("freshbooks.review", "form")
        # Two matching contacts share a name: the form tells them apart by address and email.
        candidates = form.xpath("//field[@name='candidate_ids']")[0]
        self.assertEqual(candidates.xpath("./list/field/@name"), ["name", "city", "email", "phone"])
        for name in ("partner_id", "link_client_ref"):
            self.assertTrue(form.xpath(f"//field[@name='{name}']/@placeholder"), name)

    def test_sync_log(self):
        labels = self.labels("freshbooks.sync.log")
        self.assertEqual(labels["kind"], "Type")
        self.assertEqual(labels["state"], "Status")
        self.assertEqual(labels["start"], "Started")
        self.assertEqual(labels["end"], "Finished")
        for kind in ("invoices", "payments", "estimates"):
            self.assertEqual(labels[f"{kind}_updated"], f"{kind.capitalize()} updated")
            self.assertEqual(labels[f"{kind}_removed"], f"{kind.capitalize()} removed")
        lines = self.labels("freshbooks.sync.log.line")
        self.assertEqual(lines["client_ref"], "FreshBooks client ID")
        self.assertEqual(lines["client_name"], "Client name")
        search = self.arch("freshbooks.sync.log", "search")
        self.assertTrue(search.xpath("//filter[@name='problems']"))

    def test_documents(self):
        for model in ("freshbooks.invoice", "freshbooks.payment", "freshbooks.estimate"):
            labels = self.labels(model)
            self.assertEqual(labels["currency_code"], "Currency", model)
            self.assertEqual(labels["url"], "FreshBooks link", model)
            form = self.arch(model, "form")
            # The link's text says what it does: no label repeats it.
            self.assertFalse(form.xpath("//group//field[@name='url']"), model)
            self.assertTrue(form.xpath("//field[@name='client_ref'][@invisible='partner_id']"), model)
        self.assertEqual(self.labels("freshbooks.invoice")["is_overdue"], "Overdue")
        self.assertTrue(self.arch("freshbooks.invoice", "search").xpath("//filter[@name='overdue']"))

    def test_empty_lists_say_what_comes_there(self):
        for xmlid in ("action_freshbooks_review", "action_freshbooks_sync_log",
                      "action_freshbooks_invoice", "action_freshbooks_payment",
                      "action_freshbooks_estimate"):
            action = self.env.ref(f"capsule_freshbooks_connector.{xmlid}")
            self.assertIn("o_view_nocontent_smiling_face", action.help or "", xmlid)

    def test_a_payment_has_a_title(self):
        payment = self.env["freshbooks.payment"].new(
            {"payment_ref": "700001", "date": "2026-01-26", "invoice_ref": False})
        self.assertEqual(payment.display_name, "Payment 700001")

    def test_the_invoices_button_opens_a_titled_list(self):
        partner = self.env["res.partner"].create({"name": "Button Test"})
        action = partner.action_freshbooks_open_invoices()
        self.assertEqual(action["name"], "FreshBooks Invoices")
        self.assertTrue(action["context"].get("freshbooks_one_contact"))
        button = self.arch("res.partner", "form").xpath(
            "//button[@name='action_freshbooks_open_invoices']")[0]
        labels = button.xpath(".//span[@class='o_stat_text']")
        self.assertEqual([" ".join(label.itertext()).split() for label in labels],
                         [["Due", "in", "FreshBooks"], ["FreshBooks", "Invoices"]])

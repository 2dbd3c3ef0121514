from odoo import api, fields, models
from odoo.tools import format_date

from .freshbooks_document import fb_date
from .freshbooks_mapping import clean_text

MAX_NOTE = 2000


class FreshbooksPayment(models.Model):
    """Read-only copy of a payment of a FreshBooks invoice."""

    _name = "freshbooks.payment"
    _inherit = "freshbooks.document"
    _description = "FreshBooks payment"
    _order = "date desc, id desc"
    _rec_name = "payment_ref"

    _fb_type = "payment"
    _fb_resource = "payments"
    _fb_sequence = 30
    _fb_counters = ("payments_updated", "payments_removed")
    _fb_ref_field = "payment_ref"
    _fb_client_key = "clientid"

    payment_ref = fields.Char("FreshBooks payment ID", required=True)
    date = fields.Date()
    payment_type = fields.Char("Type", help="How it was paid, as FreshBooks says it (Check, "
                                            "Credit Card, Cash, Bank Transfer...).")
    invoice_ref = fields.Char("FreshBooks invoice ID", index=True)
    invoice_id = fields.Many2one("freshbooks.invoice", compute="_compute_invoice_id")
    note = fields.Text()

    _sql_constraints = [("payment_uniq", "unique(account_id, payment_ref)",
                         "This FreshBooks payment is already here.")]

    @api.model
    def _fb_plural(self):
        return self.env._("Payments")

    @api.depends("payment_ref", "invoice_ref", "date")
    def _compute_display_name(self):
        # The form's title: not FreshBooks' bare payment id.
        for payment in self:
            if payment.invoice_id and payment.date:
                payment.display_name = self.env._(
                    "Payment of %(invoice)s, %(date)s", invoice=payment.invoice_id.number,
                    date=format_date(self.env, payment.date))
            else:
                payment.display_name = self.env._("Payment %s", payment.payment_ref or "")

    @api.depends("account_id", "invoice_ref")
    def _compute_invoice_id(self):
        invoices = {(i.account_id.id, i.invoice_ref): i for i in self.env["freshbooks.invoice"].search(
            [("account_id", "in", self.account_id.ids),
             ("invoice_ref", "in", [ref for ref in self.mapped("invoice_ref") if ref])])}
        for payment in self:
            payment.invoice_id = invoices.get((payment.account_id.id, payment.invoice_ref), False)

    @api.depends("account_id.fb_account_id", "invoice_ref")
    def _compute_url(self):
        # FreshBooks' web app has no page of a payment: it opens on the invoice it pays.
        Invoice = self.env["freshbooks.invoice"]
        for payment in self:
            payment.url = payment.invoice_ref and Invoice._fb_web_link(
                payment.account_id.sudo(), payment.invoice_ref)

    @api.model
    def _fb_values(self, raw):
        return {
            "date": fb_date(raw.get("date")),
            "payment_type": clean_text(raw.get("type")),
            "invoice_ref": clean_text(raw.get("invoiceid")),
            "note": clean_text(raw.get("note"), MAX_NOTE),
        }


class FreshbooksSyncLog(models.Model):
    _inherit = "freshbooks.sync.log"

    payments_updated = fields.Integer("Payments updated")
    payments_removed = fields.Integer("Payments removed")


class ResPartner(models.Model):
    _inherit = "res.partner"

    freshbooks_payment_ids = fields.One2many("freshbooks.payment", "partner_id",
                                             "FreshBooks payments")

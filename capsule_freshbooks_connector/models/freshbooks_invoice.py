from odoo import api, fields, models

from .freshbooks_document import fb_date, fb_money, fb_status
from .freshbooks_mapping import clean_text

# FreshBooks' numeric `status` when `v3_status` is missing.
STATUS_BY_CODE = {0: "disputed", 1: "draft", 2: "sent", 3: "viewed", 4: "paid", 5: "autopaid",
                  6: "retry", 7: "failed", 8: "partial"}
OPEN_STATUSES = ("sent", "viewed", "partial", "overdue", "retry", "failed", "disputed",
                 "pending", "deposit-partial")


class FreshbooksInvoice(models.Model):
    """Read-only copy of a FreshBooks invoice."""

    _name = "freshbooks.invoice"
    _inherit = "freshbooks.document"
    _description = "FreshBooks invoice"
    _order = "issue_date desc, id desc"
    _rec_name = "number"

    _fb_type = "invoice"
    _fb_resource = "invoices"
    _fb_sequence = 20
    _fb_web_path = "/#/invoice/{account}-{id}"
    _fb_counters = ("invoices_updated", "invoices_removed")
    _fb_ref_field = "invoice_ref"
    _fb_number_key = "invoice_number"

    invoice_ref = fields.Char("FreshBooks invoice ID", required=True)
    number = fields.Char()
    issue_date = fields.Date()
    due_date = fields.Date()
    outstanding = fields.Monetary(currency_field="currency_id")
    status = fields.Char(help="The status FreshBooks reports (draft, sent, viewed, paid, partial, "
                              "overdue, ...).")
    is_overdue = fields.Boolean("Overdue", compute="_compute_is_overdue", search="_search_is_overdue")

    _sql_constraints = [("invoice_uniq", "unique(account_id, invoice_ref)",
                         "This FreshBooks invoice is already here.")]

    @api.model
    def _fb_plural(self):
        return self.env._("Invoices")

    @api.depends("status", "due_date", "outstanding")
    def _compute_is_overdue(self):
        today = fields.Date.context_today(self)
        for invoice in self:
            invoice.is_overdue = invoice.status == "overdue" or bool(
                invoice.status in OPEN_STATUSES and invoice.outstanding
                and invoice.due_date and invoice.due_date < today)

    def _search_is_overdue(self, operator, value):
        if operator not in ("=", "!=") or not isinstance(value, bool):
            return NotImplemented
        overdue = ["|", ("status", "=", "overdue"), "&", "&", ("status", "in", OPEN_STATUSES),
                   ("outstanding", ">", 0), ("due_date", "<", fields.Date.context_today(self))]
        return overdue if (operator == "=") == value else ["!", *overdue]

    @api.model
    def _fb_values(self, raw):
        return {
            "number": clean_text(raw.get("invoice_number")) or str(raw.get("id")),
            "issue_date": fb_date(raw.get("create_date")),
            "due_date": fb_date(raw.get("due_date")),
            "outstanding": fb_money(raw.get("outstanding")),
            "status": fb_status(raw, "v3_status", STATUS_BY_CODE),
        }


class FreshbooksSyncLog(models.Model):
    _inherit = "freshbooks.sync.log"

    invoices_updated = fields.Integer("Invoices updated")
    invoices_removed = fields.Integer("Invoices removed")

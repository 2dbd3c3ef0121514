from odoo import api, fields, models

from .freshbooks_document import fb_date, fb_status
from .freshbooks_mapping import clean_text

# FreshBooks' numeric `status` when `ui_status` is missing.
STATUS_BY_CODE = {1: "draft", 2: "sent", 3: "viewed", 4: "replied", 5: "accepted", 6: "invoiced"}


class FreshbooksEstimate(models.Model):
    """Read-only copy of a FreshBooks estimate."""

    _name = "freshbooks.estimate"
    _inherit = "freshbooks.document"
    _description = "FreshBooks estimate"
    _order = "date desc, id desc"
    _rec_name = "number"

    _fb_type = "estimate"
    _fb_resource = "estimates"
    _fb_sequence = 40
    _fb_web_path = "/#/estimate/{id}"
    _fb_counters = ("estimates_updated", "estimates_removed")
    _fb_ref_field = "estimate_ref"
    _fb_number_key = "estimate_number"

    estimate_ref = fields.Char("FreshBooks estimate ID", required=True)
    number = fields.Char()
    date = fields.Date()
    status = fields.Char(help="The status FreshBooks shows (draft, sent, viewed, replied, "
                              "accepted, invoiced).")

    _sql_constraints = [("estimate_uniq", "unique(account_id, estimate_ref)",
                         "This FreshBooks estimate is already here.")]

    @api.model
    def _fb_plural(self):
        return self.env._("Estimates")

    @api.model
    def _fb_values(self, raw):
        return {
            "number": clean_text(raw.get("estimate_number")) or str(raw.get("id")),
            "date": fb_date(raw.get("create_date")),
            "status": fb_status(raw, "ui_status", STATUS_BY_CODE),
        }


class FreshbooksSyncLog(models.Model):
    _inherit = "freshbooks.sync.log"

    estimates_updated = fields.Integer("Estimates updated")
    estimates_removed = fields.Integer("Estimates removed")


class ResPartner(models.Model):
    _inherit = "res.partner"

    freshbooks_estimate_ids = fields.One2many("freshbooks.estimate", "partner_id",
                                              "FreshBooks estimates")

from odoo import api, fields, models
from odoo.exceptions import UserError


class FreshbooksReview(models.Model):
    """A FreshBooks client whose name matched several contacts: an admin decides, not the sync."""

    _name = "freshbooks.review"
    _description = "FreshBooks client held for review"
    _order = "id desc"

    account_id = fields.Many2one("freshbooks.account", required=True, ondelete="cascade", index=True)
    company_id = fields.Many2one(related="account_id.company_id", store=True)
    client_ref = fields.Char("FreshBooks client ID", required=True)
    name = fields.Char("FreshBooks name", required=True)
    client_data = fields.Json()
    candidate_ids = fields.Many2many("res.partner", string="Matching contacts")
    partner_id = fields.Many2one(
        "res.partner", "Link to",
        help="The contact to link. Pick one of the matching contacts or any other contact.")
    state = fields.Selection([("open", "To review"), ("done", "Resolved")], default="open",
                             required=True, index=True)
    resolution = fields.Char()

    _sql_constraints = [("client_uniq", "unique(account_id, client_ref)",
                         "This client is already held for review.")]

    @api.model
    def _hold(self, account, record, raw, candidates):
        review = self.search([("account_id", "=", account.id),
                              ("client_ref", "=", record.client_id)])
        values = {"name": record.name, "client_data": raw, "state": "open",
                  "candidate_ids": [(6, 0, candidates.ids)]}
        if review:
            review.write(values)
        else:
            review = self.create(dict(values, account_id=account.id, client_ref=record.client_id))
        return review

    def action_link(self):
        self.ensure_one()
        if not self.partner_id:
            raise UserError(self.env._("Choose the contact to link to this FreshBooks client."))
        if self.partner_id.freshbooks_client_id:
            raise UserError(self.env._("%s is already linked to a FreshBooks client.",
                                       self.partner_id.display_name))
        self.env["freshbooks.sync"]._resolve_review(self, self.partner_id)

    def action_create(self):
        self.ensure_one()
        self.env["freshbooks.sync"]._resolve_review(self, None)

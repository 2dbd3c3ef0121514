from odoo import fields, models


class FreshbooksToken(models.Model):
    """OAuth tokens of a FreshBooks connection; only the connection's code reads them (sudo)."""

    _name = "freshbooks.token"
    _description = "FreshBooks OAuth tokens"

    account_id = fields.Many2one("freshbooks.account", required=True, ondelete="cascade",
                                 index=True)
    access_token = fields.Char()
    refresh_token = fields.Char()
    expiry = fields.Datetime()

    _sql_constraints = [("account_uniq", "unique(account_id)", "One token pair per connection.")]

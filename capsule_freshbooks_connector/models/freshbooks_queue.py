from odoo import api, fields, models


class FreshbooksQueue(models.Model):
    """Objects to read again from FreshBooks: webhook hints and contacts deleted in Odoo.

    A row only says "look at this object"; the sync fetches it before changing anything, so
    repeated or out-of-order hints are harmless.
    """

    _name = "freshbooks.queue"
    _description = "FreshBooks objects to re-read"
    _order = "id"

    account_id = fields.Many2one("freshbooks.account", required=True, ondelete="cascade", index=True)
    object_type = fields.Selection([("client", "Client"), ("invoice", "Invoice")], required=True)
    object_ref = fields.Char("FreshBooks ID", required=True)
    reason = fields.Selection([("webhook", "Webhook"), ("odoo_delete", "Deleted in Odoo")],
                              required=True)

    _sql_constraints = [("object_uniq", "unique(account_id, object_type, object_ref)",
                         "This object is already waiting.")]

    @api.model
    def _enqueue(self, account, object_type, object_ref, reason):
        """Add a row unless the same object already waits (one query, flood-proof)."""
        self.env.cr.execute(
            "INSERT INTO freshbooks_queue (account_id, object_type, object_ref, reason, "
            "create_uid, create_date, write_uid, write_date) VALUES (%s, %s, %s, %s, %s, "
            "now() at time zone 'UTC', %s, now() at time zone 'UTC') ON CONFLICT DO NOTHING",
            [account.id, object_type, str(object_ref), reason, self.env.uid, self.env.uid])

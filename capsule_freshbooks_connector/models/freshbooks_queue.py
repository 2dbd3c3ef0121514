from datetime import timedelta

from odoo import api, fields, models

# A row that fails is tried again after 1, 4, 16 and 64 minutes, then given up with a log line
# (the daily full sync reads every object again anyway).
RETRY_BASE = timedelta(minutes=1)
MAX_TRIES = 5


class FreshbooksQueue(models.Model):
    """Objects to read again from FreshBooks: webhook hints and contacts deleted in Odoo.

    A row only says "look at this object"; the sync fetches it before changing anything, so
    repeated or out-of-order hints are harmless.
    """

    _name = "freshbooks.queue"
    _description = "FreshBooks objects to re-read"
    _order = "id"

    account_id = fields.Many2one("freshbooks.account", required=True, ondelete="cascade", index=True)
    object_type = fields.Selection(selection="_object_types", required=True)
    object_ref = fields.Char("FreshBooks ID", required=True)
    reason = fields.Selection([("webhook", "Webhook"), ("odoo_delete", "Deleted in Odoo")],
                              required=True)
    attempts = fields.Integer(default=0)
    next_try = fields.Datetime(index=True)
    last_error = fields.Char()

    _sql_constraints = [("object_uniq", "unique(account_id, object_type, object_ref)",
                         "This object is already waiting.")]

    @api.model
    def _object_types(self):
        return [(kind, model._description) for kind, model in
                self.env["freshbooks.synced"]._fb_types().items()]

    @api.model
    def _enqueue(self, account, object_type, object_ref, reason):
        """Add a row unless the same object already waits (one query, flood-proof)."""
        self.env.cr.execute(
            "INSERT INTO freshbooks_queue (account_id, object_type, object_ref, reason, "
            "create_uid, create_date, write_uid, write_date) VALUES (%s, %s, %s, %s, %s, "
            "now() at time zone 'UTC', %s, now() at time zone 'UTC') ON CONFLICT DO NOTHING",
            [account.id, object_type, str(object_ref), reason, self.env.uid, self.env.uid])

    def _failed(self, error, log):
        """This object could not be read: wait and try again, and after a few tries give up."""
        self.ensure_one()
        attempts = self.attempts + 1
        if attempts >= MAX_TRIES:
            log._add_line("error", self.env._(
                "FreshBooks %(type)s %(ref)s could not be read after %(tries)s tries (%(error)s); "
                "the next full sync reads it again.", type=self.object_type, ref=self.object_ref,
                tries=attempts, error=error), self.object_ref)
            self.unlink()
            return
        self.write({"attempts": attempts, "last_error": str(error)[:500],
                    "next_try": fields.Datetime.now() + RETRY_BASE * 4 ** (attempts - 1)})

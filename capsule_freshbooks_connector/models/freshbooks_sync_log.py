from odoo import fields, models


class FreshbooksSyncLog(models.Model):
    """One sync run: when, what it did, and each failure with its reason."""

    _name = "freshbooks.sync.log"
    _description = "FreshBooks sync log"
    _order = "id desc"

    account_id = fields.Many2one("freshbooks.account", required=True, ondelete="cascade", index=True)
    company_id = fields.Many2one(related="account_id.company_id", store=True)
    # The business the run worked on: a connection switched to another business starts over.
    fb_account_id = fields.Char("FreshBooks account ID", index=True)
    kind = fields.Selection([("full", "Full sync"), ("incremental", "Changes since last sync"),
                             ("work", "Webhooks and pending changes"),
                             ("review", "Clients to review")], required=True)
    start = fields.Datetime(required=True, default=fields.Datetime.now)
    end = fields.Datetime()
    state = fields.Selection([("running", "Running"), ("done", "Done"),
                              ("partial", "Done with errors"), ("failed", "Failed")],
                             default="running", required=True)
    message = fields.Char()
    requests = fields.Integer("FreshBooks requests")
    # Each synced type adds its own counters (freshbooks.synced._fb_counters).
    failed = fields.Integer()
    line_ids = fields.One2many("freshbooks.sync.log.line", "log_id", string="Details")
    webhook_note = fields.Char(
        "FreshBooks webhooks unavailable",
        help="Why this run gave up FreshBooks webhooks; Sync now tries them again.")

    def _count(self, key, n=1):
        self.ensure_one()
        self[key] += n

    def _add_line(self, level, reason, client_id=None, name=None):
        self.ensure_one()
        if level == "error":
            self.failed += 1
        self.env["freshbooks.sync.log.line"].sudo().create({
            "log_id": self.id, "level": level, "reason": reason,
            "client_ref": client_id and str(client_id), "client_name": name})

    def _finish(self, requests, message=None, failed=False):
        """End the run. The connection reads its status from here: the log has one writer,
        the run, while the connection row is shared with admins and other workers."""
        self.ensure_one()
        state = "failed" if failed else ("partial" if self.failed else "done")
        self.write({"end": fields.Datetime.now(), "state": state,
                    "requests": self.requests + requests, "message": message})

    def _summary(self):
        keys = [*self.env["freshbooks.synced"]._fb_counter_fields(), "failed"]
        parts = [f"{self[key]} {self._fields[key].string.lower()}" for key in keys if self[key]]
        return ", ".join(parts) or "nothing to do"


class FreshbooksSyncLogLine(models.Model):
    _name = "freshbooks.sync.log.line"
    _description = "FreshBooks sync log detail"
    _order = "id"

    log_id = fields.Many2one("freshbooks.sync.log", required=True, ondelete="cascade", index=True)
    level = fields.Selection([("info", "Info"), ("warning", "Warning"), ("error", "Error")],
                             required=True)
    client_ref = fields.Char("FreshBooks client")
    client_name = fields.Char("Name")
    reason = fields.Text(required=True)

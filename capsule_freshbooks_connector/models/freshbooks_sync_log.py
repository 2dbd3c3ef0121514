from odoo import api, fields, models
from odoo.tools.misc import format_datetime, formatLang

ADMIN_GROUP = "base.group_system"
# The bus notification the settings block and the log form listen to.
PROGRESS_NOTIFICATION = "freshbooks_progress"


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
                             ("review", "Clients to review")], "Type", required=True)
    start = fields.Datetime("Started", required=True, default=fields.Datetime.now)
    end = fields.Datetime("Finished")
    state = fields.Selection([("running", "Running"), ("done", "Done"),
                              ("partial", "Done with errors"), ("failed", "Failed")],
                             "Status", default="running", required=True)
    message = fields.Char()
    # What an incremental run reads: changes since then (a run taken up again reads the same).
    since = fields.Datetime("Changes since")
    # A long run works in several executions of its scheduled action, each well inside Odoo's
    # worker limits, going on from where the last one committed (freshbooks.sync.position).
    executions = fields.Integer(default=1)
    requests = fields.Integer("FreshBooks requests")
    # Each synced type adds its own counters (freshbooks.synced._fb_counters).
    failed = fields.Integer()
    line_ids = fields.One2many("freshbooks.sync.log.line", "log_id", string="Details")
    # {type: [read so far, FreshBooks' total or None]}, written by the run once per page.
    progress = fields.Json("Progress per type", copy=False)
    progress_text = fields.Char("Progress", compute="_compute_progress_text")
    webhook_note = fields.Char(
        "FreshBooks webhooks unavailable",
        help="Why this run gave up FreshBooks webhooks; Sync now tries them again.")

    @api.depends("kind", "start")
    def _compute_display_name(self):
        # The form's breadcrumb: which run, not "freshbooks.sync.log,1".
        kinds = dict(self._fields["kind"]._description_selection(self.env))
        for log in self:
            log.display_name = f"{kinds.get(log.kind, '')} {format_datetime(self.env, log.start)}"

    @api.depends("progress")
    def _compute_progress_text(self):
        types = self.env["freshbooks.synced"]._fb_types()
        for log in self:
            parts = []
            for kind, model in types.items():
                done, total = (log.progress or {}).get(kind) or (None, None)
                if done is None:
                    continue
                read = formatLang(self.env, done, digits=0)
                parts.append(f"{model._fb_plural()} {read}" if total is None else
                             f"{model._fb_plural()} {read} / {formatLang(self.env, total, digits=0)}")
            log.progress_text = " · ".join(parts)

    def _progress_many(self, progress):
        """{kind: [done, total]}: objects of each kind read so far, of FreshBooks' total, as a
        run's Tally collected them. Seen by the settings block and the log form at once (the
        bus, one notification), and by anyone after the commit."""
        self.ensure_one()
        self.progress = dict(self.progress or {}, **progress)
        self._notify_progress(self.progress_text)

    def _notify_progress(self, text):
        """Tell the Settings administrators of the company, on their own channel (their
        partner's), how the run goes; the bus sends it when the transaction commits."""
        if self.kind == "review":
            return  # not a sync: the settings block does not show it
        admins = self.env.ref(ADMIN_GROUP).sudo().users.filtered(
            lambda user: self.company_id in user.company_ids)
        payload = {"account_id": self.account_id.id, "log_id": self.id, "state": self.state,
                   "text": text}
        for partner in admins.partner_id:
            self.env["bus.bus"]._sendone(partner, PROGRESS_NOTIFICATION, payload)

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
        # Where an ended run was in its listings is of no more use (a run ends many times a day).
        self.env.cr.execute("DELETE FROM freshbooks_sync_position WHERE log_id = %s", [self.id])
        self._notify_progress(self._status_text())

    def _pause(self, requests):
        """This execution's time is up: the run goes on at the next one."""
        self.ensure_one()
        self.requests += requests
        self._notify_progress(self.progress_text)

    def _resume(self):
        self.ensure_one()
        self.executions += 1

    def _status_text(self):
        """How the run ended, as the settings block shows it live: its state and summary."""
        state = dict(self._fields["state"]._description_selection(self.env))[self.state]
        return self.env._("%(state)s: %(summary)s", state=state,
                          summary=self.message or self._summary())

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
    client_ref = fields.Char("FreshBooks client ID")
    client_name = fields.Char("Client name")
    reason = fields.Text(required=True)


class FreshbooksSyncPosition(models.Model):
    """Where a run is in one listing, committed with the pages it stored: a run cut short (its
    time is up, its worker killed) goes on from there at its next execution. Written with SQL by
    whichever thread lists it (freshbooks.sync), never by the ORM."""

    _name = "freshbooks.sync.position"
    _description = "FreshBooks sync position"
    _log_access = False

    log_id = fields.Many2one("freshbooks.sync.log", required=True, ondelete="cascade", index=True)
    listing = fields.Char(required=True)
    next_page = fields.Integer(default=1)
    done = fields.Integer()
    finished = fields.Boolean()

    _sql_constraints = [("listing_uniq", "unique(log_id, listing)",
                         "A run has one position per listing.")]

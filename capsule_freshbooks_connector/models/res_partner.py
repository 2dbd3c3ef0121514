from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import format_amount

from .after_commit import after_commit
from .freshbooks_mapping import PUSHED_FIELDS, name_key

FRESHBOOKS_RIGHT = "capsule_freshbooks_connector.group_freshbooks_user"
# More edits than this in one transaction go to the background job instead of the user's save.
INLINE_PUSH_LIMIT = 10


class ResPartner(models.Model):
    _inherit = "res.partner"

    # Odoo 18 community has no sales team on contacts; imports need one to be "Unassigned".
    team_id = fields.Many2one("crm.team", "Sales Team", index="btree_not_null", tracking=True,
                              help="Empty: Unassigned, visible to every internal user.")
    freshbooks_client_id = fields.Char(
        "FreshBooks client ID", copy=False, index="btree_not_null", readonly=True)
    # No index of its own: the unique (connection, client) index below serves lookups by
    # connection. With one, PostgreSQL found each stored document's contact through it while
    # its statistics still said no contact was linked (a first sync), reading every linked
    # contact per document.
    freshbooks_account_id = fields.Many2one(
        "freshbooks.account", "FreshBooks connection", copy=False, readonly=True,
        ondelete="set null")
    freshbooks_state = fields.Selection(
        [("active", "Active"), ("archived", "Archived in FreshBooks"),
         ("deleted", "Deleted in FreshBooks")], "FreshBooks status", copy=False, readonly=True)
    freshbooks_push_state = fields.Selection(
        [("synced", "Up to date"), ("pending", "Waiting to be sent"),
         ("error", "Rejected by FreshBooks")], "Sent to FreshBooks", copy=False, readonly=True)
    freshbooks_push_error = fields.Char("FreshBooks error", copy=False, readonly=True)
    # Tries FreshBooks failed for a passing reason (5xx, 429, network) since the last edit or
    # push: the next one waits the longer (freshbooks.client.push._schedule_retry).
    freshbooks_push_tries = fields.Integer("Failed tries to send", copy=False, readonly=True)
    # Incremented by every edit to push; a push only marks the contact up to date if it sent the
    # latest version (an edit made while a push was in flight is sent again).
    freshbooks_push_seq = fields.Integer(copy=False, readonly=True)
    # What FreshBooks holds of this contact's pushed fields, as Odoo last knew it (imported, or
    # sent): a push sends only what differs from it, so it never blanks what Odoo did not change.
    freshbooks_sent_values = fields.Json(copy=False, readonly=True)
    # When Add to FreshBooks first sent this contact without hearing back for sure, until it is
    # linked: the client may exist there, and is looked for before creating another.
    freshbooks_add_tried = fields.Datetime("Add to FreshBooks tried", copy=False, readonly=True)
    freshbooks_name_key = fields.Char(compute="_compute_freshbooks_name_key", store=True,
                                      index=True, copy=False)
    freshbooks_held = fields.Boolean(
        "Held for FreshBooks review", compute="_compute_freshbooks_held",
        search="_search_freshbooks_held")
    freshbooks_invoice_ids = fields.One2many("freshbooks.invoice", "partner_id",
                                             "FreshBooks invoices")
    freshbooks_invoice_count = fields.Integer(compute="_compute_freshbooks_invoice_stats")
    freshbooks_outstanding = fields.Char("Outstanding",
                                         compute="_compute_freshbooks_invoice_stats")
    freshbooks_url = fields.Char("Open in FreshBooks", compute="_compute_freshbooks_url")
    freshbooks_can_add = fields.Boolean(compute="_compute_freshbooks_can_add")

    _sql_constraints = [
        ("freshbooks_client_uniq", "unique(freshbooks_account_id, freshbooks_client_id)",
         "This FreshBooks client is already linked to another contact."),
    ]

    @api.depends("name")
    def _compute_freshbooks_name_key(self):
        for partner in self:
            partner.freshbooks_name_key = name_key(partner.name)

    def _compute_freshbooks_held(self):
        held = self._search_held_ids()
        for partner in self:
            partner.freshbooks_held = partner.id in held

    def _search_held_ids(self):
        reviews = self.env["freshbooks.review"].sudo().search([("state", "=", "open")])
        return set(reviews.candidate_ids.ids)

    def _search_freshbooks_held(self, operator, value):
        if operator not in ("=", "!=") or not isinstance(value, bool):
            raise UserError(self.env._("Unsupported search on the FreshBooks review flag."))
        positive = (operator == "=") == value
        return [("id", "in" if positive else "not in", list(self._search_held_ids()))]

    @api.depends("freshbooks_invoice_ids.outstanding", "freshbooks_invoice_ids.currency_id")
    def _compute_freshbooks_invoice_stats(self):
        for partner in self:
            invoices = partner.freshbooks_invoice_ids
            partner.freshbooks_invoice_count = len(invoices)
            totals = {}
            for invoice in invoices:
                totals[invoice.currency_id] = totals.get(invoice.currency_id, 0.0) + \
                    invoice.outstanding
            partner.freshbooks_outstanding = " · ".join(
                format_amount(self.env, amount, currency) if currency else f"{amount:.2f}"
                for currency, amount in totals.items() if amount) or False

    @api.depends("freshbooks_client_id", "freshbooks_account_id")
    def _compute_freshbooks_url(self):
        for partner in self:
            account = partner.freshbooks_account_id.sudo()
            partner.freshbooks_url = partner.freshbooks_client_id and self.env[
                "freshbooks.client.sync"]._fb_web_link(account, partner.freshbooks_client_id)

    def _freshbooks_add_account(self):
        """The connection this contact is added with, when connected (sudo): its company's; a
        contact shared between companies goes with the current company's."""
        self.ensure_one()
        return self.env["freshbooks.account"].sudo().search(
            [("company_id", "=", (self.company_id or self.env.company).id),
             ("state", "=", "connected")], limit=1)

    @api.depends_context("company", "allowed_company_ids")
    @api.depends("freshbooks_client_id", "parent_id", "freshbooks_push_state", "company_id")
    def _compute_freshbooks_can_add(self):
        allowed = self.env.user.has_group(FRESHBOOKS_RIGHT)
        for partner in self:
            account = allowed and partner._freshbooks_add_account()
            partner.freshbooks_can_add = bool(
                account and account.company_id in self.env.companies
                and not partner.freshbooks_client_id
                and not partner.parent_id and partner.freshbooks_push_state != "pending")

    # --- pushing Odoo edits ----------------------------------------------------------------------

    def write(self, vals):
        result = super().write(vals)
        if PUSHED_FIELDS.intersection(vals) and not self.env.context.get("freshbooks_no_push"):
            # A shared contact edited from another company is not sent with that company's
            # connection: the next edit made in its own company sends this change too.
            allowed = self.env.companies if not self.env.su else None
            # One deleted in FreshBooks keeps the change until it comes back (never sent before).
            linked = self.sudo().filtered(
                lambda p: p.freshbooks_client_id and p.freshbooks_account_id
                and (allowed is None or p.freshbooks_account_id.company_id in allowed))
            linked._freshbooks_mark_pending()
        return result

    def _freshbooks_check_access(self, operation):
        """Refuse what the ORM would refuse, before any sudo: the contacts themselves, and
        FreshBooks connections of companies the user is not working in."""
        self.check_access(operation)
        if not self.env.su and self.sudo().freshbooks_account_id.company_id - self.env.companies:
            raise AccessError(self.env._("This contact is linked to the FreshBooks business of "
                                         "a company you are not working in."))

    def unlink(self):
        # FreshBooks keeps the client: queue it so the next sync makes the contact again, unless
        # it is gone in FreshBooks too.
        Queue = self.env["freshbooks.queue"].sudo()
        for partner in self.sudo().filtered(lambda p: p.freshbooks_client_id
                                            and p.freshbooks_account_id):
            if partner.freshbooks_state == "active":
                Queue._enqueue(partner.freshbooks_account_id, "client",
                               partner.freshbooks_client_id, "odoo_delete")
        return super().unlink()

    def _freshbooks_mark_pending(self):
        """Mark for push and send after this transaction commits (never inside it)."""
        if not self:
            return
        # A push state written in the same write (a merge copies it) must not land after this.
        self.flush_recordset(["freshbooks_push_state", "freshbooks_push_seq"])
        self.env.cr.execute(
            "UPDATE res_partner SET freshbooks_push_state = 'pending', freshbooks_push_tries = 0, "
            "freshbooks_push_seq = COALESCE(freshbooks_push_seq, 0) + 1 WHERE id IN %s",
            [tuple(self.ids)])
        self.invalidate_recordset(["freshbooks_push_state", "freshbooks_push_seq",
                                   "freshbooks_push_tries"])
        after_commit(self.env["res.partner"], "_freshbooks_push_now", self.ids)

    @api.model
    def _freshbooks_push_now(self, ids):
        """Right after the user's save: a few contacts are sent at once, more by the job."""
        cron = self.env.ref("capsule_freshbooks_connector.ir_cron_freshbooks_work").sudo()
        if len(ids) > INLINE_PUSH_LIMIT:
            # Bulk edits: the background job sends them, politely paced.
            cron._trigger()
            return
        partners = self.sudo().browse(sorted(ids)).exists()
        # The user is waiting: short timeouts, no retries. What FreshBooks failed for a passing
        # reason is retried on its own schedule; anything else left goes to the job at once.
        left = self.env["freshbooks.client.push"]._push_partners(partners, inline=True)
        if left.filtered(lambda p: not p.freshbooks_push_tries):
            cron._trigger()

    def action_freshbooks_add(self):
        """Create these contacts as clients in FreshBooks (after commit) and link them, each
        with its own company's connection; the notification says which business."""
        if not self.env.user.has_group(FRESHBOOKS_RIGHT):
            raise AccessError(self.env._("You are not allowed to add contacts to FreshBooks."))
        self._freshbooks_check_access("write")
        by_account = {}
        for partner in self:
            if partner.parent_id:
                raise UserError(self.env._("%s belongs to a company: add the company to FreshBooks "
                                           "instead.", partner.display_name))
            company = partner.company_id or self.env.company
            if not self.env.su and company not in self.env.companies:
                raise AccessError(self.env._("%(contact)s belongs to %(company)s, a company you are "
                                             "not working in.", contact=partner.display_name,
                                             company=company.name))
            account = partner._freshbooks_add_account()
            if not account:
                raise UserError(self.env._("FreshBooks is not connected for %s.", company.name))
            by_account[account] = by_account.get(account, self.browse()) | partner
        for account, partners in by_account.items():
            partners._freshbooks_add(account)
        return {"type": "ir.actions.client", "tag": "display_notification", "params": {
            "type": "info", "message": " ".join(
                self.env._("Sending %(contacts)s to the FreshBooks business %(business)s.",
                           contacts=", ".join(partners.mapped("display_name")),
                           business=account.fb_business_name or account.fb_account_id)
                for account, partners in by_account.items()),
            # The form shows the contact as it is now (no Add button).
            "next": {"type": "ir.actions.client", "tag": "soft_reload"}}}

    def _freshbooks_add(self, account):
        """Link these contacts to the connection and send them after the commit, those not
        linked or on their way already (sudo; the caller checked access)."""
        # The row lock makes a second click, or a second user, wait and then see the first one.
        self.env.cr.execute("SELECT id FROM res_partner WHERE id IN %s FOR UPDATE",
                            [tuple(self.ids)])
        self.invalidate_recordset(["freshbooks_client_id", "freshbooks_push_state",
                                   "freshbooks_account_id"])
        todo = self.sudo().filtered(lambda p: not p.freshbooks_client_id
                                    and p.freshbooks_push_state != "pending")
        todo.with_context(freshbooks_no_push=True).write({"freshbooks_account_id": account.id})
        todo._freshbooks_mark_pending()

    def action_freshbooks_refresh_invoices(self):
        self.ensure_one()
        if not self.env.user.has_group(FRESHBOOKS_RIGHT):
            raise AccessError(self.env._("You are not allowed to refresh FreshBooks invoices."))
        self._freshbooks_check_access("read")
        self.env["freshbooks.sync"]._refresh_partner(self.sudo())
        return True

    def action_freshbooks_open_invoices(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("FreshBooks Invoices"),
            "res_model": "freshbooks.invoice",
            "view_mode": "list,form",
            "domain": [("partner_id", "=", self.id)],
            # The list then leaves out its Contact column: every row is this contact.
            "context": {"create": False, "freshbooks_one_contact": True},
        }

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

ADMIN_GROUP = "base.group_system"


class ResConfigSettings(models.TransientModel):
    """The FreshBooks block of Settings > Integrations; values live on freshbooks.account."""

    _inherit = "res.config.settings"

    freshbooks_url = fields.Char("FreshBooks URL", groups=ADMIN_GROUP)
    freshbooks_client_id = fields.Char("FreshBooks app client ID", groups=ADMIN_GROUP)
    freshbooks_client_secret = fields.Char("FreshBooks app client secret", groups=ADMIN_GROUP)
    freshbooks_import_team_id = fields.Many2one(
        "crm.team", "Sales team for FreshBooks imports", groups=ADMIN_GROUP)
    freshbooks_account_id = fields.Many2one(
        "freshbooks.account", compute="_compute_freshbooks_account", groups=ADMIN_GROUP)
    freshbooks_state = fields.Selection(related="freshbooks_account_id.state", groups=ADMIN_GROUP)
    freshbooks_business_name = fields.Char(
        related="freshbooks_account_id.fb_business_name", groups=ADMIN_GROUP)
    freshbooks_user_name = fields.Char(related="freshbooks_account_id.fb_user_name", groups=ADMIN_GROUP)
    freshbooks_status_message = fields.Char("FreshBooks connection message",
                                            compute="_compute_freshbooks_texts",
                                            groups=ADMIN_GROUP)
    freshbooks_last_sync_end = fields.Datetime(
        related="freshbooks_account_id.last_sync_end", groups=ADMIN_GROUP)
    # One line: what the running sync has read so far, then how it ended; replaced live.
    freshbooks_last_sync_text = fields.Char("Last FreshBooks sync",
                                            compute="_compute_freshbooks_texts",
                                            groups=ADMIN_GROUP)
    freshbooks_webhook_state = fields.Selection(
        related="freshbooks_account_id.webhook_state", groups=ADMIN_GROUP)
    freshbooks_webhook_message = fields.Char(
        related="freshbooks_account_id.webhook_message", groups=ADMIN_GROUP)
    freshbooks_is_classic = fields.Boolean(compute="_compute_freshbooks_is_classic",
                                           groups=ADMIN_GROUP)
    freshbooks_redirect_uri = fields.Char(compute="_compute_freshbooks_account",
                                          groups=ADMIN_GROUP)

    @api.depends("company_id")
    def _compute_freshbooks_account(self):
        for settings in self:
            settings.freshbooks_account_id = self.env["freshbooks.account"]._for_company(
                settings.company_id)
            settings.freshbooks_redirect_uri = self.env["freshbooks.account"]._redirect_uri()

    @api.depends("freshbooks_account_id")
    def _compute_freshbooks_texts(self):
        for settings in self:
            account = settings.freshbooks_account_id
            # Once a sync has run, Last sync says how it went: what the connection said when
            # connected ("the first sync runs") no longer holds.
            settings.freshbooks_status_message = not (
                account.state == "connected" and account.last_sync_state) and \
                account.status_message
            settings.freshbooks_last_sync_text = account.last_sync_progress or \
                account.last_sync_message

    @api.depends("freshbooks_url")
    def _compute_freshbooks_is_classic(self):
        # The same rules as saving: the Classic notice shows for an accepted Classic address.
        Account = self.env["freshbooks.account"]
        for settings in self:
            try:
                settings.freshbooks_is_classic = Account._normalize_url(settings.freshbooks_url)[1]
            except ValidationError:
                settings.freshbooks_is_classic = False

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        if self.env.user.has_group(ADMIN_GROUP):
            account = self.env["freshbooks.account"]._for_company(self.env.company)
            values.update({
                "freshbooks_url": account.freshbooks_url,
                "freshbooks_client_id": account.client_id,
                "freshbooks_client_secret": account.client_secret,
                "freshbooks_import_team_id": account.import_team_id.id,
            })
        return values

    def set_values(self):
        account = None
        if self.env.user.has_group(ADMIN_GROUP):
            account = self.env["freshbooks.account"]._for_company(self.company_id)
            values = {
                "client_id": (self.freshbooks_client_id or "").strip() or False,
                "client_secret": (self.freshbooks_client_secret or "").strip() or False,
                "import_team_id": self.freshbooks_import_team_id.id,
            }
            if self.freshbooks_url or account.state != "draft" or values["client_id"]:
                # Checked before anything is written: a bad URL saves nothing at all.
                values["freshbooks_url"] = account._normalize_url(self.freshbooks_url)[0]
        super().set_values()
        if account:
            account.write(values)

    def action_freshbooks_connect(self):
        self.ensure_one()
        self.set_values()
        account = self.env["freshbooks.account"]._for_company(self.company_id)
        if not account.freshbooks_url:
            raise UserError(self.env._("Enter your FreshBooks URL first."))
        return {"type": "ir.actions.act_url", "url": account._begin_oauth(), "target": "self"}

    def action_freshbooks_disconnect(self):
        self.freshbooks_account_id.action_disconnect()
        return {"type": "ir.actions.client", "tag": "reload"}

    def action_freshbooks_sync_now(self):
        self.freshbooks_account_id.action_sync_now()
        return {"type": "ir.actions.client", "tag": "display_notification", "params": {
            "type": "info", "title": self.env._("FreshBooks"),
            "message": self.env._("The sync runs in the background; the sync log shows its progress.")}}

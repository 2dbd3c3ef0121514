import ipaddress
import logging
from datetime import timedelta
from urllib.parse import urlsplit

from odoo import api, fields, models
from odoo.exceptions import AccessDenied, ValidationError

_logger = logging.getLogger(__name__)

PARAM_PREFIX = "capsule_freshbooks_connector."
DEFAULT_URLS = {
    "api_url": "https://api.freshbooks.com",
    "auth_url": "https://auth.freshbooks.com",
    "web_url": "https://my.freshbooks.com",
}
CALLBACK_PATH = "/freshbooks/oauth/callback"
WEBHOOK_PATH = "/freshbooks/webhook"
STATE_TTL = timedelta(minutes=15)

ADMIN_GROUP = "base.group_system"


def _is_loopback_or_private(host):
    if not host or host == "localhost" or host.endswith(".localhost") or "." not in host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


class FreshbooksAccount(models.Model):
    """The FreshBooks connection of one Odoo company: app credentials, tokens, chosen business."""

    _name = "freshbooks.account"
    _description = "FreshBooks connection"
    _inherit = ["mail.thread", "mail.activity.mixin"]
    _rec_name = "company_id"

    company_id = fields.Many2one("res.company", required=True, ondelete="cascade", index=True)
    freshbooks_url = fields.Char("FreshBooks URL", default="my.freshbooks.com")
    # The OAuth credentials of the FreshBooks app Odoo signs in as (not a FreshBooks client).
    client_id = fields.Char("App client ID", groups=ADMIN_GROUP)
    client_secret = fields.Char("App client secret", groups=ADMIN_GROUP)

    state = fields.Selection(
        [("draft", "Not connected"), ("choose", "Choose a business"),
         ("connected", "Connected"), ("reconnect", "Reconnect needed")],
        default="draft", required=True, tracking=True)
    fb_account_id = fields.Char("FreshBooks account ID", copy=False, index=True)
    fb_business_id = fields.Char("FreshBooks business ID", copy=False)
    fb_business_name = fields.Char("FreshBooks business", copy=False)
    fb_user_name = fields.Char("Connected FreshBooks user", copy=False)
    connected_uid = fields.Many2one("res.users", "Connected by", copy=False)
    connected_at = fields.Datetime(copy=False)
    status_message = fields.Char(copy=False)

    import_team_id = fields.Many2one(
        "crm.team", "Sales team for imports",
        help="Team given to contacts imported from FreshBooks. Empty: Unassigned.")
    # Read from the sync log, which only the run writes: a run never writes this shared row.
    last_sync_start = fields.Datetime(compute="_compute_sync_status")
    last_sync_end = fields.Datetime(compute="_compute_sync_status")
    last_sync_state = fields.Selection(
        [("running", "Running"), ("done", "Done"), ("partial", "Done with errors"),
         ("failed", "Failed")], compute="_compute_sync_status")
    last_sync_message = fields.Char(
        compute="_compute_sync_status",
        help="How the last sync ended: its state and summary (the text its end sends live).")
    last_sync_progress = fields.Char(
        compute="_compute_sync_status",
        help="What the running sync has read so far, of what FreshBooks has.")
    last_success_start = fields.Datetime(
        compute="_compute_sync_status",
        help="Start of the last complete sync: the next one asks for changes since then.")
    last_full_sync = fields.Datetime(compute="_compute_sync_status")
    # Read from the callbacks' rows and the sync log, never stored here: the handshakes run in
    # HTTP workers and must not write this row while the sync does.
    webhook_state = fields.Selection(
        [("none", "Not registered"), ("pending", "Waiting for FreshBooks' verification"),
         ("active", "Active"), ("unavailable", "Unavailable")], compute="_compute_webhook_state")
    webhook_message = fields.Char(compute="_compute_webhook_state")
    webhook_retry_at = fields.Datetime(
        "FreshBooks webhooks retried at", copy=False,
        help="When an admin last asked to try FreshBooks webhooks again (Sync now): what earlier "
        "syncs concluded about them no longer counts.")
    webhook_ids = fields.One2many("freshbooks.webhook", "account_id")
    sync_log_ids = fields.One2many("freshbooks.sync.log", "account_id")

    _sql_constraints = [
        ("company_uniq", "unique(company_id)", "A company has one FreshBooks connection."),
        ("fb_account_uniq", "unique(fb_account_id)",
         "This FreshBooks business is already connected to another Odoo company."),
    ]

    # --- configuration -------------------------------------------------------------------------

    def _compute_sync_status(self):
        Log = self.env["freshbooks.sync.log"].sudo()
        for account in self:
            # Runs of a business this connection no longer uses do not count.
            domain = [("account_id", "=", account.id), ("fb_account_id", "=", account.fb_account_id),
                      ("kind", "!=", "review")]
            last = Log.search(domain, limit=1)
            done = domain + [("state", "in", ("done", "partial"))]
            account.last_sync_start = last.start
            account.last_sync_end = last.end
            account.last_sync_state = last.state
            account.last_sync_message = last.state not in (False, "running") and \
                last._status_text()
            account.last_sync_progress = last.state == "running" and last.progress_text
            account.last_success_start = Log.search(
                done + [("kind", "in", ("full", "incremental"))], limit=1).start
            account.last_full_sync = Log.search(done + [("kind", "=", "full")], limit=1).start

    @api.model
    def _param(self, key):
        return (self.env["ir.config_parameter"].sudo().get_param(PARAM_PREFIX + key)
                or DEFAULT_URLS[key]).rstrip("/")

    @api.model
    def _base_url(self):
        return self.env["ir.config_parameter"].sudo().get_param("web.base.url", "").rstrip("/")

    @api.model
    def _redirect_uri(self):
        return self._base_url() + CALLBACK_PATH

    @api.model
    def _webhook_uri(self):
        return self._base_url() + WEBHOOK_PATH

    @api.model
    def _webhooks_reachable(self):
        """FreshBooks can only call an Odoo it can reach; a sandbox on this machine can reach us."""
        odoo_host = urlsplit(self._webhook_uri()).hostname
        api_host = urlsplit(self._param("api_url")).hostname
        return not _is_loopback_or_private(odoo_host) or _is_loopback_or_private(api_host)

    @api.model
    def _normalize_url(self, url):
        """Check the FreshBooks URL an admin typed; return (host, is_classic) or raise."""
        text = (url or "").strip()
        if not text:
            raise ValidationError(self.env._("Enter your FreshBooks URL: my.freshbooks.com, or the "
                                             "yourcompany.freshbooks.com address of a Classic account."))
        parts = urlsplit(text if "://" in text else "https://" + text)
        host = (parts.hostname or "").lower()
        if parts.path.strip("/") and not parts.path.startswith("/#"):
            host = ""
        allowed_local = {urlsplit(self._param(k)).hostname for k in ("auth_url", "web_url")}
        if host == "my.freshbooks.com" or (host in allowed_local and not host.endswith(
                ".freshbooks.com")):
            return host, False
        labels = host.split(".")
        if host.endswith(".freshbooks.com") and len(labels) == 3 and labels[0] not in (
                "api", "auth", "www") and labels[0].replace("-", "").isalnum():
            return host, True
        raise ValidationError(self.env._(
            "%(url)s is not a FreshBooks address. Use my.freshbooks.com, or the "
            "yourcompany.freshbooks.com address of a Classic account.", url=text))

    @api.model
    def _for_company(self, company=None):
        """The connection record of a company, created on first use (sudo: it holds secrets)."""
        company = company or self.env.company
        account = self.sudo().with_context(active_test=False).search(
            [("company_id", "=", company.id)], limit=1)
        return account or self.sudo().create({"company_id": company.id})

    def _schedule_sync(self):
        """Run the sync in a cron worker, never inside the browser's request."""
        self.env.ref("capsule_freshbooks_connector.ir_cron_freshbooks_sync").sudo()._trigger()

    def action_sync_now(self):
        self._check_admin()
        connected = self.filtered(lambda a: a.state == "connected")
        # An admin asking again is the moment to retry webhooks that could not be set up. The
        # transaction's time, as a log's create_date: a run that starts after this commit is later.
        connected.filtered(lambda a: a.webhook_state == "unavailable").webhook_retry_at = \
            self.env.cr.now()
        connected._schedule_sync()

    def action_disconnect(self):
        """Forget the tokens (revoked at FreshBooks after the commit); keep every contact link."""
        self._check_admin()
        for account in self.sudo():
            self.env["freshbooks.webhook"]._remove_all(account, revoke=True)
            account.write({
                "state": "draft", "access_token": False, "refresh_token": False,
                "token_expiry": False, "business_choices": False,
                "status_message": self.env._("Disconnected. Contacts keep their FreshBooks links."),
            })

    def _check_admin(self):
        """A Settings admin, acting on connections of the companies they work in."""
        if not self.env.su and not self.env.user.has_group("base.group_system"):
            raise AccessDenied()
        self.check_access("write")

    @api.depends("webhook_ids.verified", "sync_log_ids.webhook_note", "webhook_retry_at",
                 "connected_at")
    def _compute_webhook_state(self):
        for account in self:
            verdict = account._webhook_verdict()
            hooks = account.sudo().webhook_ids
            if verdict:
                account.webhook_state, account.webhook_message = "unavailable", verdict
            elif hooks and all(hooks.mapped("verified")):
                account.webhook_state = "active"
                account.webhook_message = self.env._(
                    "FreshBooks sends changes to Odoo as they happen.")
            elif hooks:
                account.webhook_state = "pending"
                account.webhook_message = self.env._(
                    "Waiting for FreshBooks to confirm the webhooks.")
            else:
                account.webhook_state, account.webhook_message = "none", False

    def _webhook_verdict(self):
        """Why a sync gave up webhooks, unless the business was connected or an admin asked
        again (Sync now) since that sync started."""
        self.ensure_one()
        if not self.id:
            return False
        log = self.env["freshbooks.sync.log"].sudo().search(
            [("account_id", "=", self.id), ("webhook_note", "!=", False)], order="id desc", limit=1)
        since = max(filter(None, [self.webhook_retry_at, self.connected_at]), default=None)
        if log and (not since or log.create_date > since):
            return log.webhook_note
        return False

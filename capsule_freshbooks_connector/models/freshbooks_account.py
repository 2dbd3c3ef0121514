import ipaddress
import logging
import secrets
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import AccessDenied, UserError, ValidationError
from odoo.tools import consteq

from ..freshbooks import AuthError, FreshBooksClient, FreshBooksError, TokenSet

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
    client_id = fields.Char("Client ID", groups=ADMIN_GROUP)
    client_secret = fields.Char("Client secret", groups=ADMIN_GROUP)
    # Tokens live in freshbooks.token: a refresh commits them from a cursor of its own, which
    # must never wait on a lock this record's own transaction holds.
    # One inverse each: writing one of them must not blank the others.
    access_token = fields.Char(compute="_compute_tokens", inverse="_inverse_access_token",
                               groups=ADMIN_GROUP)
    refresh_token = fields.Char(compute="_compute_tokens", inverse="_inverse_refresh_token",
                                groups=ADMIN_GROUP)
    token_expiry = fields.Datetime(compute="_compute_tokens", inverse="_inverse_token_expiry",
                                   groups=ADMIN_GROUP)
    oauth_state = fields.Char(groups=ADMIN_GROUP, copy=False)
    oauth_state_uid = fields.Many2one("res.users", groups=ADMIN_GROUP, copy=False)
    oauth_state_expiry = fields.Datetime(groups=ADMIN_GROUP, copy=False)
    business_choices = fields.Json(groups=ADMIN_GROUP, copy=False)

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
    last_sync_message = fields.Char(compute="_compute_sync_status")
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
            account.last_sync_message = last and (last.message or last._summary())
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

    # --- the API client and its tokens -----------------------------------------------------------

    def _get_client(self, *, allow_unconnected=False, refresh="locked", min_interval=0.0,
                    timeout=None, max_retries=None):
        """The FreshBooks API as this connection sees it.

        `refresh` says who renews an expired token (FreshBooks refresh tokens work once):
        "locked", the default, under the token row's lock, saving the new pair at once;
        "background" while a user waits with short timeouts: never here (an answer lost to the
        timeout would lose the connection), the call fails and the background job does it;
        "local" for tokens the database is forgetting: in memory only.
        `min_interval` paces requests (bulk pushes); `timeout` and `max_retries` default to the
        client's.
        """
        self.ensure_one()
        account = self.sudo()
        if account.state != "connected" and not allow_unconnected:
            raise UserError(self.env._("FreshBooks is not connected for %s.", account.company_id.name))
        tokens = None
        if account.access_token:
            expiry = account.token_expiry
            tokens = TokenSet(account.access_token, account.refresh_token or "",
                              expiry.replace(tzinfo=timezone.utc).timestamp() if expiry else 0.0)
        refreshers = {"locked": self._refresh_tokens_locked, "background": self._defer_refresh,
                      "local": None}
        limits = {key: value for key, value in (("timeout", timeout), ("max_retries", max_retries))
                  if value is not None}
        return FreshBooksClient(
            account.client_id or "", account.client_secret or "", self._redirect_uri(),
            api_url=self._param("api_url"), auth_url=self._param("auth_url"), tokens=tokens,
            token_refresher=refreshers[refresh], min_interval=min_interval, **limits)

    def _defer_refresh(self, client):
        raise FreshBooksError(self.env._("The FreshBooks token needs a refresh, which the "
                                         "background job does."))

    def _token_record(self):
        self.ensure_one()
        Token = self.env["freshbooks.token"].sudo()
        return Token.search([("account_id", "=", self.id)]) or Token.create(
            {"account_id": self.id})

    def _compute_tokens(self):
        tokens = {t.account_id.id: t for t in self.env["freshbooks.token"].sudo().search(
            [("account_id", "in", self.ids)])}
        for account in self:
            token = tokens.get(account.id)
            account.access_token = token.access_token if token else False
            account.refresh_token = token.refresh_token if token else False
            account.token_expiry = token.expiry if token else False

    def _inverse_access_token(self):
        for account in self:
            account._token_record().access_token = account.access_token

    def _inverse_refresh_token(self):
        for account in self:
            account._token_record().refresh_token = account.refresh_token

    def _inverse_token_expiry(self):
        for account in self:
            account._token_record().expiry = account.token_expiry

    def _refresh_tokens_locked(self, client):
        """Refresh once per connection at a time: FreshBooks refresh tokens work only once.

        The token row is locked in a cursor of its own, so the new pair is committed at once,
        whatever becomes of the caller's transaction. A worker that waited for the lock finds the
        pair the other one saved and uses it.
        """
        self.ensure_one()
        with self.pool.cursor() as cr:
            cr.execute("SET LOCAL lock_timeout = '30s'")
            cr.execute("SELECT access_token, refresh_token, expiry FROM freshbooks_token "
                       "WHERE account_id = %s FOR UPDATE", [self.id])
            row = cr.fetchone()
            if not row or not row[1]:
                raise AuthError(self.env._("FreshBooks needs to be connected again."),
                                grant_invalid=True)
            access, refresh, expiry = row
            expires_at = expiry.replace(tzinfo=timezone.utc).timestamp() if expiry else 0.0
            current = client.tokens
            if (current is None or access != current.access_token) and \
                    expires_at - datetime.now(timezone.utc).timestamp() > 60:
                return TokenSet(access, refresh, expires_at)
            client.tokens = TokenSet(access, refresh, expires_at)
            try:
                tokens = client.refresh()
            except AuthError as error:
                if error.grant_invalid:
                    # The grant is gone for good; the caller marks the connection.
                    self._write_tokens(cr, TokenSet("", "", 0.0))
                    cr.commit()  # pylint: disable=invalid-commit
                raise
            self._write_tokens(cr, tokens)
            return tokens

    def _write_tokens(self, cr, tokens):
        cr.execute(
            "UPDATE freshbooks_token SET access_token = %s, refresh_token = %s, expiry = %s, "
            "write_date = now() at time zone 'UTC' WHERE account_id = %s",
            [tokens.access_token or None, tokens.refresh_token or None,
             datetime.fromtimestamp(tokens.expires_at, timezone.utc).replace(tzinfo=None)
             if tokens.expires_at else None, self.id])
        self.env["freshbooks.token"].invalidate_model()
        self.invalidate_recordset(["access_token", "refresh_token", "token_expiry"])

    def _mark_reconnect(self, reason):
        """The grant is gone: stop syncing and tell the admins, once.

        Written and committed from a cursor of its own, whichever worker saw it first: the
        caller's transaction may be rolled back, and must not write the same rows after this one.
        """
        self.env.flush_all()
        for account_id in self.ids:
            try:
                with self.pool.cursor() as cr:
                    cr.execute("SET LOCAL lock_timeout = '10s'")
                    self.env(cr=cr, su=True)[self._name].browse(account_id)._set_reconnect(reason)
            except psycopg2.OperationalError as error:
                # Busy row: the next run that meets the dead grant marks it.
                _logger.warning("Could not mark FreshBooks connection %s for reconnection: %s",
                                account_id, error)
        self.env.invalidate_all()

    def _set_reconnect(self, reason):
        self.ensure_one()
        if self.state != "connected":
            return
        self.write({"state": "reconnect", "status_message": reason})
        self.env["freshbooks.token"].search([("account_id", "=", self.id)]).write(
            {"access_token": False, "refresh_token": False, "expiry": False})
        _logger.warning("FreshBooks connection of %s needs to be reconnected", self.company_id.name)
        user = self.connected_uid or self.env.ref("base.user_admin", False)
        if user and user.active:
            self.activity_schedule(
                "mail.mail_activity_data_todo", user_id=user.id,
                summary=self.env._("Reconnect FreshBooks"),
                note=self.env._("FreshBooks refused the connection of %(company)s (%(reason)s). "
                                "Open Settings > Integrations > FreshBooks and click Connect.",
                                company=self.company_id.name, reason=reason))

    # --- OAuth ---------------------------------------------------------------------------------

    def _begin_oauth(self):
        """A one-time state bound to this database, admin and company, and the consent URL."""
        self.ensure_one()
        if not self.env.user.has_group("base.group_system"):
            raise AccessDenied()
        account = self.sudo()
        if not account.client_id or not account.client_secret:
            raise UserError(self.env._("Enter the Client ID and Client secret of your FreshBooks app "
                                       "before connecting."))
        nonce = secrets.token_urlsafe(24)
        account.write({"oauth_state": nonce, "oauth_state_uid": self.env.uid,
                       "oauth_state_expiry": fields.Datetime.now() + STATE_TTL})
        state = f"{self.env.cr.dbname}:{account.id}:{nonce}"
        client = account._get_client(allow_unconnected=True)
        return client.authorization_url(state)

    @api.model
    def _consume_state(self, state):
        """The account a callback's state belongs to; the state is spent whatever happens next."""
        try:
            dbname, account_id, nonce = (state or "").rsplit(":", 2)
            account_id = int(account_id)
        except ValueError:
            raise AccessDenied(
                self.env._("The sign-in link is not valid. Start again from Settings.")) from None
        account = self.sudo().browse(account_id).exists()
        if (dbname != self.env.cr.dbname or not account or not account.oauth_state
                or not consteq(account.oauth_state, nonce)):
            raise AccessDenied(self.env._("This sign-in was already used or is not valid. "
                                          "Start again from Settings."))
        valid = (account.oauth_state_uid.id == self.env.uid
                 and account.oauth_state_expiry and account.oauth_state_expiry > fields.Datetime.now()
                 and account.company_id in self.env.user.company_ids)
        account.write({"oauth_state": False, "oauth_state_expiry": False})
        if not valid:
            raise AccessDenied(self.env._("This sign-in was started by another user, for another company, "
                                          "or too long ago. Start again from Settings."))
        return account

    def _finish_oauth(self, code):
        """Exchange the code; connect at once when the user has one business, else let them choose."""
        self.ensure_one()
        client = self._get_client(allow_unconnected=True)
        tokens = client.exchange_code(code)
        me = client.me()
        businesses = client.businesses()
        if not businesses:
            raise UserError(self.env._("This FreshBooks user has no business it can manage (only client "
                                       "access). Sign in with the owner or an admin of the business."))
        name = " ".join(filter(None, [me.get("first_name"), me.get("last_name")]))
        self.write({
            "access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
            "token_expiry": datetime.fromtimestamp(tokens.expires_at, timezone.utc).replace(
                tzinfo=None),
            "fb_user_name": f"{name} <{me.get('email')}>" if me.get("email") else name,
            "business_choices": [b.__dict__ for b in businesses],
            "connected_uid": self.env.uid,
        })
        # Moving to another business undoes links: the admin confirms that on the choice page.
        if len(businesses) == 1 and self.fb_account_id in (False, businesses[0].account_id):
            self._set_business(businesses[0].account_id)
        else:
            self.write({"state": "choose",
                        "status_message": self.env._("Choose the FreshBooks business of this company.")})

    def _switch_warning(self, fb_account_id):
        """What choosing this business would undo, in words; False when it is no switch."""
        self.ensure_one()
        if not self.fb_account_id or self.fb_account_id == fb_account_id:
            return False
        links = self.env["res.partner"].sudo().with_context(active_test=False).search_count(
            [("freshbooks_account_id", "=", self.id)])
        invoices = self.env["freshbooks.invoice"].sudo().search_count(
            [("account_id", "=", self.id)])
        return self.env._(
            "This company is connected to the FreshBooks business %(old)s. Switching to another "
            "business unlinks %(links)s contacts from their FreshBooks clients (the contacts "
            "stay) and removes %(invoices)s invoice copies; the first sync of the new business "
            "links contacts again by name.", old=self.fb_business_name or self.fb_account_id,
            links=links, invoices=invoices)

    def _set_business(self, fb_account_id, confirmed=False):
        self.ensure_one()
        choice = next((b for b in self.business_choices or []
                       if b["account_id"] == fb_account_id), None)
        if not choice:
            raise UserError(self.env._("That business is not one this FreshBooks user can manage."))
        other = self.search([("fb_account_id", "=", fb_account_id), ("id", "!=", self.id)])
        if other:
            raise UserError(self.env._("The FreshBooks business %(name)s is already connected to "
                                       "%(company)s. Each company connects its own business.",
                                       name=choice["name"], company=other.company_id.name))
        warning = self._switch_warning(fb_account_id)
        if warning and not confirmed:
            raise UserError(warning + " " + self.env._("Confirm the switch to go on."))
        if warning:
            self._forget_business()
        self.write({
            "state": "connected", "fb_account_id": fb_account_id,
            "fb_business_id": str(choice.get("business_id") or ""),
            "fb_business_name": choice.get("name"), "business_choices": False,
            "connected_at": fields.Datetime.now(),
            "status_message": self.env._("Connected. The first sync runs in the background."),
        })
        self.activity_unlink(["mail.mail_activity_data_todo"])
        self._schedule_sync()

    def _forget_business(self):
        """Everything that points at the old business's objects: links, copies, waiting work,
        webhooks. Its sync logs stay, but no longer count for the new business."""
        self.env["res.partner"].sudo().with_context(active_test=False).search(
            [("freshbooks_account_id", "=", self.id)]).with_context(
            freshbooks_no_push=True).write({
                "freshbooks_client_id": False, "freshbooks_account_id": False,
                "freshbooks_state": False, "freshbooks_push_state": False,
                "freshbooks_push_error": False, "freshbooks_sent_values": False})
        for model in ("freshbooks.invoice", "freshbooks.queue", "freshbooks.review"):
            self.env[model].sudo().search([("account_id", "=", self.id)]).unlink()
        self.env["freshbooks.webhook"]._remove_all(self)

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

"""A connection's OAuth tokens: the FreshBooks API connection built on them, and their locked
refresh."""

import logging
from contextlib import contextmanager
from datetime import datetime, timezone

import psycopg2

from odoo import fields, models
from odoo.exceptions import UserError

from ..freshbooks import AuthError, FreshBooksClient, FreshBooksError, TokenSet
from .freshbooks_account import ADMIN_GROUP

_logger = logging.getLogger(__name__)


class FreshbooksAccountTokens(models.Model):
    _inherit = "freshbooks.account"

    # Tokens live in freshbooks.token: a refresh commits them from a cursor of its own, which
    # must never wait on a lock this record's own transaction holds.
    # One inverse each: writing one of them must not blank the others.
    access_token = fields.Char(compute="_compute_tokens", inverse="_inverse_access_token",
                               groups=ADMIN_GROUP)
    refresh_token = fields.Char(compute="_compute_tokens", inverse="_inverse_refresh_token",
                                groups=ADMIN_GROUP)
    token_expiry = fields.Datetime(compute="_compute_tokens", inverse="_inverse_token_expiry",
                                   groups=ADMIN_GROUP)


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

    def _defer_refresh(self, fb):
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

    def _refresh_tokens_locked(self, fb):
        """Refresh once per connection at a time: FreshBooks refresh tokens work only once.

        The token row is locked in a cursor of its own, so the new pair is committed at once,
        whatever becomes of the caller's transaction. A worker that waited for the lock finds the
        pair the other one saved and uses it.
        """
        self.ensure_one()
        with self._waiting_cursor("30s") as cr:
            cr.execute("SELECT access_token, refresh_token, expiry FROM freshbooks_token "
                       "WHERE account_id = %s FOR UPDATE", [self.id])
            row = cr.fetchone()
            if not row or not row[1]:
                raise AuthError(self.env._("FreshBooks needs to be connected again."),
                                grant_invalid=True)
            access, refresh, expiry = row
            expires_at = expiry.replace(tzinfo=timezone.utc).timestamp() if expiry else 0.0
            current = fb.tokens
            if (current is None or access != current.access_token) and \
                    expires_at - datetime.now(timezone.utc).timestamp() > 60:
                return TokenSet(access, refresh, expires_at)
            fb.tokens = TokenSet(access, refresh, expires_at)
            try:
                tokens = fb.refresh()
            except AuthError as error:
                if error.grant_invalid:
                    # The grant is gone for good; the caller marks the connection.
                    self._write_tokens(cr, TokenSet("", "", 0.0))
                    cr.commit()  # pylint: disable=invalid-commit
                raise
            self._write_tokens(cr, tokens)
            return tokens

    @contextmanager
    def _waiting_cursor(self, lock_timeout):
        """A cursor of its own, committed at the end, in which waiting for a row's lock ends
        in reading what the other transaction committed. Odoo's cursors are REPEATABLE READ:
        there a worker that waited for the token row while another refreshed it fails with
        "could not serialize access due to concurrent update"."""
        with self.pool.cursor() as cr:
            if not self.pool.in_test_mode():
                # Test cursors share the test's transaction, already under way.
                cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cr.execute("SET LOCAL lock_timeout = %s", [lock_timeout])
            yield cr

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
                with self._waiting_cursor("10s") as cr:
                    # Whoever comes second waits here, then sees it marked: one activity.
                    cr.execute("SELECT id FROM freshbooks_account WHERE id = %s FOR UPDATE",
                               [account_id])
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

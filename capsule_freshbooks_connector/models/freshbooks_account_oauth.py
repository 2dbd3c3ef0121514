"""Connecting a company to FreshBooks: the OAuth sign-in and the choice of business."""

import secrets
from datetime import datetime, timezone

from odoo import api, fields, models
from odoo.exceptions import AccessDenied, UserError
from odoo.tools import consteq

from .freshbooks_account import ADMIN_GROUP, STATE_TTL


class FreshbooksAccountOAuth(models.Model):
    _inherit = "freshbooks.account"

    oauth_state = fields.Char(groups=ADMIN_GROUP, copy=False)
    oauth_state_uid = fields.Many2one("res.users", groups=ADMIN_GROUP, copy=False)
    oauth_state_expiry = fields.Datetime(groups=ADMIN_GROUP, copy=False)
    business_choices = fields.Json(groups=ADMIN_GROUP, copy=False)


    def _begin_oauth(self):
        """A one-time state bound to this database, admin and company, and the consent URL."""
        self.ensure_one()
        if not self.env.user.has_group("base.group_system"):
            raise AccessDenied()
        account = self.sudo()
        if not account.client_id or not account.client_secret:
            raise UserError(self.env._("Enter the app client ID and app client secret of your FreshBooks app "
                                       "before connecting."))
        nonce = secrets.token_urlsafe(24)
        account.write({"oauth_state": nonce, "oauth_state_uid": self.env.uid,
                       "oauth_state_expiry": fields.Datetime.now() + STATE_TTL})
        state = f"{self.env.cr.dbname}:{account.id}:{nonce}"
        return account._get_client(allow_unconnected=True).authorization_url(state)

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
        fb = self._get_client(allow_unconnected=True)
        tokens = fb.exchange_code(code)
        me = fb.me()
        businesses = fb.businesses()
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
                "freshbooks_push_error": False, "freshbooks_sent_values": False,
                "freshbooks_add_tried": False})
        for model in ("freshbooks.invoice", "freshbooks.queue", "freshbooks.review"):
            self.env[model].sudo().search([("account_id", "=", self.id)]).unlink()
        self.env["freshbooks.webhook"]._remove_all(self)

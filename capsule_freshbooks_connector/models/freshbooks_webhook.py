import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..freshbooks import FreshBooksError, NotFoundError, verify_webhook
from .after_commit import after_commit

_logger = logging.getLogger(__name__)

# How long FreshBooks may take to confirm a new callback before we stop waiting for it.
VERIFY_GRACE = timedelta(minutes=10)
# A handshake still missing this long after registration is asked for again.
RESEND_AFTER = timedelta(minutes=1)
# Handshakes are unsigned and each costs a request to FreshBooks: a callback takes this many.
MAX_VERIFY_ATTEMPTS = 3


class FreshbooksWebhook(models.Model):
    """A FreshBooks webhook callback of ours, and its verifier (the key of its signatures)."""

    _name = "freshbooks.webhook"
    _description = "FreshBooks webhook callback"

    account_id = fields.Many2one("freshbooks.account", required=True, ondelete="cascade", index=True)
    callback_ref = fields.Char("FreshBooks callback ID", required=True, index=True)
    event = fields.Char(required=True)
    verifier = fields.Char(groups="base.group_system", help="Confirmed by FreshBooks.")
    verified = fields.Boolean()
    # A handshake's verifier, kept apart until FreshBooks confirms it: anyone can post one.
    pending_verifier = fields.Char("Verifier awaiting FreshBooks' confirmation",
                                   groups="base.group_system", copy=False)
    verify_attempts = fields.Integer("Verification attempts", default=0, copy=False)
    # FreshBooks may post the handshake before this row is committed (it is refused then): the
    # next run asks FreshBooks once to send it again.
    resent_at = fields.Datetime("Verification asked again at", copy=False)

    @api.model
    def _ensure(self, account, fb, log):
        """Register the callbacks this account lacks; costs no request once settled. Why
        webhooks cannot work goes on the run's log: the account shows it from there."""
        if account.webhook_state in ("active", "unavailable") or \
                not self._webhooks_possible(account, log):
            return  # "Sync now" voids an "unavailable" verdict to try again
        hooks = self.sudo().search([("account_id", "=", account.id)])
        waiting = hooks.filtered(lambda h: not h.verified)
        if waiting:
            if self._resend_lost_handshakes(account, fb, waiting):
                return
            asked = [hook.resent_at or hook.create_date for hook in waiting]
            if min(asked) > fields.Datetime.now() - VERIFY_GRACE:
                return  # FreshBooks is still confirming
            self._remove_all(account)
            log.webhook_note = self.env._(
                "FreshBooks could not reach Odoo at %s to confirm instant updates. The "
                "scheduled sync keeps contacts and invoices up to date; Sync now tries again.",
                account._webhook_uri())
            return
        uri = account._webhook_uri()
        try:
            events = self.env["freshbooks.synced"]._fb_events()
            for event in sorted(set(events) - set(hooks.mapped("event"))):
                callback = fb.create_callback(account.fb_account_id, event, uri)
                self.sudo().create({"account_id": account.id, "event": event,
                                    "callback_ref": str(callback["callbackid"])})
                # FreshBooks posts the verifier to us at once: our row must be visible by then.
                self.env["freshbooks.sync"]._commit()
        except FreshBooksError as error:
            log.webhook_note = self.env._(
                "FreshBooks did not accept the webhooks (%s). The scheduled sync keeps "
                "contacts and invoices up to date.", error)

    @api.model
    def _resend_lost_handshakes(self, account, fb, waiting):
        """Ask FreshBooks again, once, for handshakes that never arrived; True when it did."""
        lost = waiting.filtered(lambda h: not h.resent_at and not h.pending_verifier
                                and h.create_date < fields.Datetime.now() - RESEND_AFTER)
        for hook in lost:
            try:
                fb.resend_callback_verification(account.fb_account_id, hook.callback_ref)
            except FreshBooksError as error:
                _logger.info("FreshBooks did not send webhook %s's verification again: %s",
                             hook.callback_ref, error)
            hook.resent_at = fields.Datetime.now()
        return bool(lost)

    @api.model
    def _webhooks_possible(self, account, log):
        if account._webhooks_reachable():
            return True
        log.webhook_note = self.env._(
            "Odoo's address (%s) cannot be reached from the internet, so FreshBooks cannot send "
            "instant updates. The scheduled sync keeps contacts and invoices up to date.",
            account._base_url() or self.env._("not set"))
        return False

    @api.model
    def _receive_verifier(self, callback_ref, verifier, fb_account_id=None):
        """FreshBooks' handshake: keep the candidate verifier and confirm it back after commit.

        Only a callback waiting for one takes it (not verified, no confirmation in flight, few
        tries so far, the business named matches): anything else is refused without asking
        FreshBooks, so forged handshakes cost no request."""
        domain = [("callback_ref", "=", str(callback_ref)), ("verified", "=", False),
                  ("pending_verifier", "=", False),
                  ("verify_attempts", "<", MAX_VERIFY_ATTEMPTS)]
        if fb_account_id:
            domain.append(("account_id.fb_account_id", "=", fb_account_id))
        hook = self.sudo().search(domain, limit=1)
        if not hook or not verifier:
            return False
        # Two handshakes at once both write this row: one of them fails and is retried, refused.
        hook.write({"pending_verifier": verifier, "verify_attempts": hook.verify_attempts + 1})
        after_commit(self, "_confirm_verifiers", [hook.id])
        return True

    @api.model
    def _confirm_verifiers(self, hook_ids):
        """Give FreshBooks the verifiers back. Writes the callbacks' rows only: the connection
        row is the sync's."""
        for hook in self.sudo().browse(hook_ids).exists():
            if hook.verified or not hook.pending_verifier:
                continue
            account = hook.account_id
            try:
                account._get_client(max_retries=1).verify_callback(
                    account.fb_account_id, hook.callback_ref, hook.pending_verifier)
            except (FreshBooksError, UserError) as error:
                _logger.warning("FreshBooks webhook verification failed: %s", error)
                hook.pending_verifier = False
                continue
            hook.write({"verifier": hook.pending_verifier, "pending_verifier": False,
                        "verified": True})

    @api.model
    def _account_for_delivery(self, fields_, raw_body, signature):
        """The account a signed delivery belongs to, or None when the signature does not match."""
        fb_account_id = dict(fields_).get("account_id")
        if not fb_account_id or not signature:
            return None
        account = self.env["freshbooks.account"].sudo().search(
            [("fb_account_id", "=", fb_account_id), ("state", "=", "connected")], limit=1)
        if not account:
            return None
        hooks = self.sudo().search([("account_id", "=", account.id), ("verified", "=", True),
                                    ("verifier", "!=", False)])
        # Any of the account's confirmed verifiers may have signed it: one per callback.
        valid = [verify_webhook(h.verifier, raw_body, signature) for h in hooks]
        return account if any(valid) else None

    @api.model
    def _remove_all(self, account, revoke=False):
        """Forget the account's callbacks now and tell FreshBooks after the commit, revoking the
        grant too when disconnecting. Unreachable, FreshBooks keeps callbacks that fail."""
        hooks = self.sudo().search([("account_id", "=", account.id)])
        refs, fb_account = hooks.mapped("callback_ref"), account.fb_account_id
        hooks.unlink()
        if not account.access_token or not (refs or revoke):
            return
        # Disconnecting, the database forgets the tokens in this transaction: a refresh stays
        # in memory. Otherwise it is saved (FreshBooks refresh tokens work once), after commit.
        fb = account._get_client(allow_unconnected=True, refresh="local" if revoke else "locked",
                                 max_retries=1)
        after_commit(self, "_tell_freshbooks", [(fb, fb_account, tuple(refs), revoke)])

    @api.model
    def _tell_freshbooks(self, jobs):
        """Delete callbacks and revoke grants at FreshBooks, best effort: unreachable, it keeps
        callbacks that fail, and a revocation that does not arrive harms nobody."""
        for fb, fb_account, refs, revoke in jobs:
            try:
                for ref in refs:
                    try:
                        fb.delete_callback(fb_account, ref)
                    except NotFoundError:
                        _logger.info("FreshBooks webhook %s was already gone", ref)
                if revoke:
                    fb.revoke()
            except FreshBooksError as error:
                _logger.info("FreshBooks was not told (webhooks, revocation): %s", error)

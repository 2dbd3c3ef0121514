"""Odoo contacts out to FreshBooks: edits of linked contacts, and "Add to FreshBooks"."""

import json
import logging
from datetime import timedelta

import psycopg2
from dateutil.relativedelta import relativedelta

from odoo import api, fields, models

from ..freshbooks import (
    AuthError,
    FreshBooksError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from .freshbooks_mapping import MappingError, changed_fields, parse_client

_logger = logging.getLogger(__name__)

# Seconds between two pushes of a bulk edit (20 a second); FreshBooks publishes no limit, and
# answers 429 with Retry-After, which the client honours on top of this.
PUSH_INTERVAL = 0.05
# Advisory lock namespace of a push of a contact: "FP" in ASCII.
PUSH_LOCK_NAMESPACE = 0x4650
# How long the link of a client just created waits for a user's save of the contact: lost, the
# next attempt would have to find the client again.
LINK_LOCK_TIMEOUT = "30s"
# FreshBooks failed for a reason that passes: the push is tried again soon, on its own schedule.
PASSING_ERRORS = (ServerError, RateLimitError, NetworkError)
# The first retry waits this long, each next one twice as long, up to the work job's interval.
FIRST_RETRY = timedelta(minutes=1)


class FreshbooksClientPush(models.AbstractModel):
    """Sends what changed in Odoo, and only that, after the commit; never another customer's
    record."""

    _name = "freshbooks.client.push"
    _description = "FreshBooks contact pushes"

    @api.model
    def _pending_partners(self, account):
        """Contacts with changes to send; those deleted in FreshBooks keep theirs until they
        come back."""
        return self.env["freshbooks.client.sync"]._partners().search(
            [("freshbooks_account_id", "=", account.id), ("freshbooks_push_state", "=", "pending"),
             ("freshbooks_state", "!=", "deleted")])

    @api.model
    def _push_partners(self, partners, log=None, inline=False):
        """Send pending contacts, each in a transaction of its own; returns those still pending.

        `inline`: right after a user's save, who waits: short timeouts, no retries, no token
        refresh. Several contacts go out paced, under FreshBooks' rate limit.
        """
        left = self.env["res.partner"]
        options = {"refresh": "background", "timeout": (3, 5), "max_retries": 0} if inline else {}
        for account in partners.mapped("freshbooks_account_id"):
            todo = partners.filtered(lambda p, a=account: p.freshbooks_account_id == a)
            if account.state != "connected":
                left |= todo
                continue
            fb = account._get_client(
                min_interval=self._push_interval() if len(todo) > 1 else 0.0, **options)
            for index, partner in enumerate(todo):
                if not self._push_one(account, fb, partner, log):
                    left |= partner
                if account.state != "connected":
                    left |= todo[index + 1:]
                    break
            if log:
                log._count("requests", fb.request_count)
        self._schedule_retry(left)
        return left

    @api.model
    def _schedule_retry(self, partners):
        """The work job runs again when the soonest of these contacts' retries is due: 1, 2, 4
        ... minutes after FreshBooks failed it for a passing reason, never later than the job's
        next run anyway."""
        tries = [n for n in partners.mapped("freshbooks_push_tries") if n]
        if not tries:
            return
        cron = self.env.ref("capsule_freshbooks_connector.ir_cron_freshbooks_work").sudo()
        now = fields.Datetime.now()
        # The cron's own unit (minutes, hours, days...) is a relativedelta keyword.
        interval = now + relativedelta(**{cron.interval_type: cron.interval_number})
        # The exponent is bounded: a long outage must not overflow the date.
        cron._trigger(min(now + FIRST_RETRY * 2 ** min(min(tries) - 1, 16), interval))

    @api.model
    def _push_interval(self):
        return float(self.env["ir.config_parameter"].sudo().get_param(
            "capsule_freshbooks_connector.push_interval", PUSH_INTERVAL))

    @api.model
    def _push_one(self, account, fb, partner, log):
        """Push one contact and commit; True when it needs nothing more (sent, or rejected).

        No row lock is held while FreshBooks answers: an advisory lock keeps two workers from
        sending the same contact, and the sequence number tells whether an edit came meanwhile.
        """
        with self.env["freshbooks.sync"]._try_lock(PUSH_LOCK_NAMESPACE, partner.id) as locked:
            if not locked:
                return False  # another worker is sending it right now
            try:
                done = self._send(account, fb, partner, log)
                self.env["freshbooks.sync"]._commit()
            except (psycopg2.errors.LockNotAvailable, psycopg2.errors.SerializationFailure) as error:
                # The user is saving this contact: their save wins, the job sends it later.
                _logger.info("FreshBooks push of contact %s postponed: %s", partner.id, error)
                self.env["freshbooks.sync"]._rollback()
                return False
            return done

    @api.model
    def _send(self, account, fb, partner, log):
        cr = self.env.cr
        self._wait_briefly()
        cr.execute("SELECT freshbooks_push_state, freshbooks_push_seq, freshbooks_state "
                   "FROM res_partner WHERE id = %s", [partner.id])
        row = cr.fetchone()
        if not row or row[0] != "pending" or row[2] == "deleted":
            return True  # nothing to send, or it waits for the client to come back
        seq = row[1]
        partner.invalidate_recordset()
        try:
            if partner.freshbooks_client_id:
                sent = self._update_client(account, fb, partner)
            else:
                sent = self._add_client(account, fb, partner)
                if sent is None:
                    return True  # held for review
        except ValidationError as error:
            self._set_push_result(partner, seq, "error", str(error))
            return True
        except NotFoundError:
            partner.with_context(freshbooks_no_push=True).write({"freshbooks_state": "deleted"})
            self._set_push_result(partner, seq, "pending", self.env._(
                "This client was deleted in FreshBooks: the change is sent if it comes back."))
            return True
        except FreshBooksError as error:
            if isinstance(error, AuthError) and error.grant_invalid:
                account._mark_reconnect(str(error))
            self._set_push_result(partner, seq, "pending", self.env._("Will retry: %s", error),
                                  failed=isinstance(error, PASSING_ERRORS))
            return False
        self._set_push_result(partner, seq, "synced", False, sent)
        if log:
            log._count("pushed")
        return True

    @api.model
    def _wait_briefly(self):
        # Our writes wait a little for a user's save, never the other way round.
        self.env.cr.execute("SET LOCAL lock_timeout = '5s'")

    @api.model
    def _update_client(self, account, fb, partner):
        """Send what changed in Odoo since FreshBooks last heard from it; returns what FreshBooks
        holds now."""
        ref = partner.freshbooks_client_id
        before = partner.freshbooks_sent_values
        if not before:
            # Linked before Odoo kept what it sent: what FreshBooks has now stands for it.
            before = self.env["freshbooks.client.sync"]._freshbooks_fields(
                fb.get_client(account.fb_account_id, ref))
        data = self.env["freshbooks.mapping"]._client_values(
            partner, self.env["freshbooks.client.sync"]._address_lookup(), before)
        changes = changed_fields(data, before)
        if changes:
            fb.update_client(account.fb_account_id, ref, changes)
        return dict(before, **changes)

    @api.model
    def _add_client(self, account, fb, partner):
        """Create the client, or link the one FreshBooks has for this very customer; returns
        what FreshBooks holds now, or None when FreshBooks refused and the contact is held."""
        Clients, Sync = self.env["freshbooks.client.sync"], self.env["freshbooks.sync"]
        existing = self._same_customer(account, fb, partner)
        if existing:
            # Made by hand in FreshBooks, or by an earlier attempt whose answer was lost.
            Clients._log_links({partner.id: Clients._link(account, partner, parse_client(existing))})
            Clients._attach_documents(account, partner)
            Sync._commit()  # the link is never lost
            self._wait_briefly()
            partner.freshbooks_sent_values = Clients._freshbooks_fields(existing)
            return self._update_client(account, fb, partner)
        data = self.env["freshbooks.mapping"]._client_values(
            partner, self.env["freshbooks.client.sync"]._address_lookup())
        # Known before the request leaves: a create is not retried, and one whose answer is
        # lost (a timeout, a killed worker) may still have made the client.
        self._commit_apart(account, partner, "5s", (
            "UPDATE res_partner SET freshbooks_add_tried = COALESCE(freshbooks_add_tried, "
            "now() at time zone 'UTC') WHERE id = %s"), [partner.id])
        try:
            created = fb.create_client(account.fb_account_id, {k: v for k, v in data.items() if v})
        except ValidationError as error:
            if self._hold_refused_add(account, fb, partner, error):
                return None
            raise
        # The client exists in FreshBooks now: its link outlives whatever becomes of this
        # transaction (a lock timeout, a serialization failure).
        self._commit_apart(account, partner, LINK_LOCK_TIMEOUT, (
            "UPDATE res_partner SET freshbooks_account_id = %s, freshbooks_client_id = %s, "
            "freshbooks_state = 'active', freshbooks_sent_values = %s::jsonb, "
            "freshbooks_add_tried = NULL WHERE id = %s"),
            [account.id, str(created["id"]), json.dumps(data), partner.id])
        Clients._attach_documents(account, partner)
        return data

    @api.model
    def _commit_apart(self, account, partner, lock_timeout, query, params):
        """Write the contact in a transaction of its own, committed at once, as the token
        refresh does. This transaction then starts again: its snapshot is older than that write,
        and writing the row under it would fail (serialization)."""
        with account._waiting_cursor(lock_timeout) as cr:
            cr.execute(query, params)
        self.env["freshbooks.sync"]._commit()
        self._wait_briefly()
        partner.invalidate_recordset()

    @api.model
    def _active_clients(self, account, fb, **search):
        return [raw for raw in fb.iter_clients(account.fb_account_id, **search)
                if isinstance(raw, dict) and str(raw.get("vis_state", 0)) == "0"]

    @api.model
    def _same_customer(self, account, fb, partner):
        """The one active FreshBooks client, linked to no contact, that is this very customer:
        same name (case and spacing aside) and same kind, company or person, with this contact's
        email. Without an email, a name alone could be another customer's: only after an
        attempt whose answer may be lost, the client it may have made."""
        if partner.email:
            raws = self._active_clients(account, fb, email=partner.email)
        elif partner.freshbooks_add_tried:
            # FreshBooks' search by name is unconfirmed (a filter it does not know may be
            # ignored, listing every client): list those changed since the day before the
            # attempt (FreshBooks' days are US/Eastern), the filter every sync relies on, and
            # compare the name key here.
            since = partner.freshbooks_add_tried.date() - timedelta(days=1)
            raws = [raw for raw in self._active_clients(account, fb, updated_since=since)
                    if not raw.get("email")]
        else:
            return None
        records = []
        for raw in raws:
            try:
                records.append((parse_client(raw), raw))
            except MappingError:
                continue
        linked = set(self.env["freshbooks.client.sync"]._partners().search([
            ("freshbooks_account_id", "=", account.id),
            ("freshbooks_client_id", "in", [r.client_id for r, _raw in records])]).mapped(
            "freshbooks_client_id"))
        matches = [raw for record, raw in records if record.key == partner.freshbooks_name_key
                   and record.is_company == partner.is_company and record.client_id not in linked]
        return matches[0] if len(matches) == 1 else None

    @api.model
    def _hold_refused_add(self, account, fb, partner, error):
        """FreshBooks refused a new client while others have its email (FreshBooks may take an
        email as a client's identity): an admin decides; never another customer's record."""
        if not partner.email:
            return False
        candidates = self._active_clients(account, fb, email=partner.email)
        if not candidates:
            return False
        self.env["freshbooks.review"].sudo()._hold_contact(account, partner, candidates, str(error))
        self.env.cr.execute(
            "UPDATE res_partner SET freshbooks_push_state = 'error', freshbooks_push_error = %s "
            "WHERE id = %s", [self.env._("Held in Clients to Review: %s", error), partner.id])
        partner.invalidate_recordset(["freshbooks_push_state", "freshbooks_push_error"])
        return True

    @api.model
    def _set_push_result(self, partner, seq, state, message, sent=None, failed=False):
        """`failed`: FreshBooks failed for a passing reason, one more try to count; any other
        end of a try starts the count again."""
        # Only the push that sent the latest edit may mark the contact up to date.
        self.env.cr.execute(
            "UPDATE res_partner SET freshbooks_push_state = %s, freshbooks_push_error = %s, "
            "freshbooks_push_tries = CASE WHEN %s THEN COALESCE(freshbooks_push_tries, 0) + 1 "
            "ELSE 0 END WHERE id = %s AND (freshbooks_push_seq = %s OR %s = 'pending')",
            [state, message or None, failed, partner.id, seq, state])
        partner.invalidate_recordset(["freshbooks_push_state", "freshbooks_push_error",
                                      "freshbooks_push_tries"])
        if sent is not None:
            # What FreshBooks holds now, whether or not an edit came meanwhile.
            partner.with_context(freshbooks_no_push=True).freshbooks_sent_values = sent

"""The sync engine: the one home of importing, matching, linking and pushing."""

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

import psycopg2
from markupsafe import Markup

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..freshbooks import (
    AuthError,
    FreshBooksError,
    NetworkError,
    NotFoundError,
    ValidationError,
)
from .freshbooks_mapping import (
    AddressLookup,
    ClientRecord,
    MappingError,
    changed_fields,
    clean_text,
    parse_client,
)

_logger = logging.getLogger(__name__)

# FreshBooks' accounting timestamps and `updated_min` days are US/Eastern.
EASTERN = ZoneInfo("America/New_York")
# A full pass now and then catches what incremental runs cannot see (deletions in FreshBooks).
FULL_SYNC_EVERY = timedelta(days=1)
# Odoo's and FreshBooks' clocks may differ a little: look back this much further.
CLOCK_MARGIN = timedelta(minutes=5)
PAGE_SIZE = 100
QUEUE_BATCH = 200
# Seconds between two pushes of a bulk edit (20 a second); FreshBooks publishes no limit, and
# answers 429 with Retry-After, which the client honours on top of this.
PUSH_INTERVAL = 0.05
VIS_STATES = {0: "active", 1: "deleted", 2: "archived"}
# Advisory lock namespaces: "FB" in ASCII for a run of an account, "FP" for a push of a contact.
LOCK_NAMESPACE = 0x4642
PUSH_LOCK_NAMESPACE = 0x4650


@dataclass
class Run:
    """A run in progress: its log, and the FreshBooks API connection it uses."""

    log: object
    api: object = None

    def requests(self):
        return self.api.request_count if self.api else 0


class FreshbooksSync(models.AbstractModel):
    _name = "freshbooks.sync"
    _description = "FreshBooks sync engine"

    # --- plumbing ------------------------------------------------------------------------------

    @api.model
    def _commit(self):
        """Commit between pages so a killed run keeps its work (tests replace it)."""
        self.env.cr.commit()  # pylint: disable=invalid-commit

    @api.model
    def _rollback(self):
        """Drop a failed transaction's half-done work; the log and each page were committed."""
        self.env.cr.rollback()

    @contextmanager
    def _try_lock(self, namespace, key):
        """A PostgreSQL advisory lock, or False when another worker holds it. Not a row lock:
        nobody's save waits for it, and a killed worker's lock dies with its connection."""
        cr = self.env.cr
        cr.execute("SELECT pg_try_advisory_lock(%s, %s)", [namespace, key])
        locked = cr.fetchone()[0]
        try:
            yield locked
        finally:
            if locked:
                self._unlock(namespace, key)

    @api.model
    def _unlock(self, namespace, key):
        cr = self.env.cr
        try:
            cr.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace, key])
        except psycopg2.errors.InFailedSqlTransaction:
            # An aborted transaction runs nothing, the unlock included: end it first, or the
            # pooled connection keeps the lock and every later run is skipped.
            cr.rollback()
            cr.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace, key])

    @api.model
    def _partners(self):
        return self.env["res.partner"].sudo().with_context(
            active_test=False, freshbooks_no_push=True, tracking_disable=True,
            mail_create_nolog=True, mail_notrack=True)

    @api.model
    def _address_lookup(self):
        """One country/state index per cursor, not one per client."""
        lookup = self.env.cr.cache.get("freshbooks.address_lookup")
        if lookup is None:
            lookup = self.env.cr.cache["freshbooks.address_lookup"] = AddressLookup(self.env)
        return lookup

    @api.model
    def _since(self, moment):
        """The `updated_min` day for changes since `moment`. FreshBooks filters by (US/Eastern)
        day only: the rest of that day is read again, which is harmless."""
        return self._eastern(moment - CLOCK_MARGIN).date()

    @api.model
    def _eastern(self, moment):
        return fields.Datetime.to_datetime(moment).replace(tzinfo=ZoneInfo("UTC")).astimezone(
            EASTERN)

    @api.model
    def _unseen(self, items, moment):
        """Items asked newest first, up to the first full page the previous run already saw.

        Sorting is undocumented at FreshBooks: a page is trusted only if it really comes newest
        first; otherwise everything is read, as without sorting. A partial page is the last
        one anyway and is read whole.
        """
        cutoff = self._eastern(moment - CLOCK_MARGIN).strftime("%Y-%m-%d %H:%M:%S")
        page = []
        for item in items:
            page.append(item)
            if len(page) < PAGE_SIZE:
                continue
            stamps = [str(i.get("updated") or "") if isinstance(i, dict) else "" for i in page]
            newest_first = all(stamps) and all(a >= b for a, b in zip(stamps, stamps[1:]))
            if newest_first and stamps[-1] < cutoff:
                yield from (i for i, stamp in zip(page, stamps) if stamp >= cutoff)
                return
            yield from page
            page = []
        yield from page

    # --- scheduled actions ---------------------------------------------------------------------

    @api.model
    def _cron_sync(self):
        for account in self._connected_accounts():
            self._sync_account(account)

    @api.model
    def _cron_work(self):
        for account in self._connected_accounts():
            self._work_account(account)

    @api.model
    def _connected_accounts(self):
        return self.env["freshbooks.account"].sudo().search([("state", "=", "connected")])

    # --- a sync run ----------------------------------------------------------------------------

    @contextmanager
    def _run(self, account, kind):
        """One run of one account: under the account's lock, logged, and ended in every case.

        Yields a Run (its log, and the API connection the block opens), or None when another
        run holds the lock. Whatever the block raises ends the log as failed with the reason.
        """
        with self._try_lock(LOCK_NAMESPACE, account.id) as locked:
            if not locked:
                _logger.info("FreshBooks %s run of %s skipped: another run is in progress", kind,
                             account.company_id.name)
                yield None
                return
            self._close_interrupted(account)
            run = Run(self.env["freshbooks.sync.log"].sudo().create(
                {"account_id": account.id, "fb_account_id": account.fb_account_id, "kind": kind}))
            self._commit()
            try:
                yield run
                run.log._finish(run.requests())
            except Exception as error:  # noqa: BLE001 - the admin must see every failure
                if not isinstance(error, (FreshBooksError, UserError)):
                    # A bug or a database error: the other accounts still sync.
                    _logger.exception("FreshBooks sync of %s crashed", account.company_id.name)
                self._rollback()
                self._fail(account, run, error)
            self._end(run)

    @api.model
    def _end(self, run):
        """Commit the run's end. If the commit itself fails (a serialization failure), the run's
        last steps are lost: say so rather than leave the log Running."""
        try:
            self._commit()
        except psycopg2.Error as error:
            _logger.warning("FreshBooks run %s could not be saved: %s", run.log.id, error)
            self._rollback()
            run.log._finish(run.requests(), failed=True, message=self.env._(
                "The run's last changes could not be saved (%s); the next run does them again.",
                error))
            self._commit()

    @api.model
    def _fail(self, account, run, error):
        if isinstance(error, AuthError) and error.grant_invalid:
            account._mark_reconnect(str(error))
        _logger.warning("FreshBooks sync of %s failed: %s", account.company_id.name, error)
        run.log._finish(run.requests(), message=str(error), failed=True)

    @api.model
    def _sync_account(self, account, full=None):
        """Import and update everything of one account; returns its log (None when skipped)."""
        now = fields.Datetime.now()
        last_success = account.last_success_start
        if full is None:
            full = not last_success or not account.last_full_sync or (
                now - account.last_full_sync > FULL_SYNC_EVERY)
        with self._run(account, "full" if full else "incremental") as run:
            if run is None:
                return None
            log = run.log
            api_client = run.api = account._get_client()
            since = None if full else self._since(last_success)
            clients = api_client.iter_clients(account.fb_account_id, updated_since=since,
                                              newest_first=not full)
            if not full:
                clients = self._unseen(clients, last_success)
            seen = self._import_clients(account, clients, log)
            if full:
                self._mark_missing_deleted(account, api_client, seen, log)
            self._process_queue(account, api_client, log)
            self._sync_invoices(account, api_client, None if full else last_success, log)
            self._push_partners(self._pending_partners(account), log=log)
            self.env["freshbooks.webhook"]._ensure(account, api_client, log)
        account.invalidate_recordset()
        return run and run.log

    @api.model
    def _work_account(self, account):
        """Webhook hints and pending pushes, between scheduled syncs. Silent when idle."""
        if not self._queue_due(account) and not self._pending_partners(account):
            return None
        with self._run(account, "work") as run:
            if run is None:
                return None  # the running sync does this work too
            run.api = account._get_client()
            self._process_queue(account, run.api, run.log)
            self._push_partners(self._pending_partners(account), log=run.log)
        account.invalidate_recordset()
        return run and run.log

    @api.model
    def _close_interrupted(self, account):
        """Logs still running while we hold the lock are of runs that died (a killed worker)."""
        self.env["freshbooks.sync.log"].sudo().search(
            [("account_id", "=", account.id), ("state", "=", "running")]).write({
                "state": "failed", "end": fields.Datetime.now(),
                "message": self.env._("Interrupted: the run stopped before its end (its worker "
                                      "was stopped or killed)."),
            })

    # --- clients -------------------------------------------------------------------------------

    @api.model
    def _import_clients(self, account, raws, log):
        """Import clients page by page, committing each page; returns the ids seen."""
        seen, page = set(), []
        for raw in raws:
            page.append(raw)
            if len(page) >= PAGE_SIZE:
                seen |= self._import_page(account, page, log)
                page = []
        if page:
            seen |= self._import_page(account, page, log)
        return seen

    @api.model
    def _import_page(self, account, raws, log):
        records, seen = [], set()
        for raw in raws:
            ref = raw.get("id") if isinstance(raw, dict) else None
            if ref is not None:
                seen.add(str(ref))
            try:
                records.append((parse_client(raw), raw))
            except MappingError as error:
                name = clean_text(raw.get("organization") or raw.get("email")) if isinstance(
                    raw, dict) else None
                log._add_line("error", str(error), ref, name)
        with self.env.cr.savepoint():
            self._apply_records(account, records, log)
        self._commit()
        return seen

    @api.model
    def _apply_records(self, account, records, log):
        """Update links of known clients; match, hold or create the others."""
        refs = [r.client_id for r, _raw in records]
        linked = {p.freshbooks_client_id: p for p in self._partners().search(
            [("freshbooks_account_id", "=", account.id), ("freshbooks_client_id", "in", refs)])}
        held = set(self.env["freshbooks.review"].sudo().search(
            [("account_id", "=", account.id), ("client_ref", "in", refs),
             ("state", "=", "open")]).mapped("client_ref"))
        new = []
        for record, raw in records:
            partner = linked.get(record.client_id)
            if partner:
                state = VIS_STATES.get(record.vis_state, "active")
                if partner.freshbooks_state != state:
                    partner.write({"freshbooks_state": state})
                    log._count("updated")
            elif record.vis_state != 0:
                log._count("skipped")  # archived or deleted in FreshBooks: not imported
            elif record.client_id in held:
                log._count("held")
            else:
                new.append((record, raw))
        if new:
            self._match_and_import(account, new, log)

    @api.model
    def _match_and_import(self, account, items, log):
        candidates = self._find_candidates(account, {r.key for r, _raw in items})
        used, to_create, notes = set(), [], {}
        Partner = self._partners()
        for record, raw in items:
            matches = candidates.get((record.key, record.is_company), Partner).filtered(
                lambda p, used=used: p.id not in used)
            if len(matches) == 1:
                notes[matches.id] = self._link(account, matches, record)
                used.add(matches.id)
                log._count("linked")
            elif matches:
                self.env["freshbooks.review"].sudo()._hold(account, record, raw, matches)
                log._count("held")
                reason = self.env._("Held for review: %s contacts have this name.", len(matches))
                log._add_line("warning", reason, record.client_id, record.name)
            else:
                to_create.append(record)
        self._attach_invoices(account, self._partners().browse(list(notes)))
        self._log_links(notes)
        self._create_partners(account, to_create, log)

    @api.model
    def _find_candidates(self, account, keys):
        """Unlinked top-level contacts by (name key, is company): companies match companies,
        people match people."""
        partners = self._partners().with_context(active_test=True).search([
            ("freshbooks_name_key", "in", list(keys)), ("freshbooks_client_id", "=", False),
            ("parent_id", "=", False), ("company_id", "in", [False, account.company_id.id])])
        result = {}
        for partner in partners:
            key = (partner.freshbooks_name_key, partner.is_company)
            result[key] = result.get(key, self._partners()) | partner
        return result

    @api.model
    def _link_values(self, account, client_id):
        return {"freshbooks_account_id": account.id, "freshbooks_client_id": client_id,
                "freshbooks_state": "active", "freshbooks_push_state": "synced",
                "freshbooks_push_error": False}

    @api.model
    def _link(self, account, partner, record):
        """Link an existing contact and fill only its empty fields; returns the chatter note."""
        partner = partner.with_context(freshbooks_no_push=True, tracking_disable=True)
        values = self.env["freshbooks.mapping"]._partner_values(record, self._address_lookup())
        filled = {k: v for k, v in values.items()
                  if k not in ("name", "is_company") and not partner[k]}
        partner.write(dict(filled, **self._link_values(account, record.client_id)))
        # Odoo's own values stay Odoo's: only a later edit sends them.
        partner.freshbooks_sent_values = self.env["freshbooks.mapping"]._client_values(partner)
        body = self.env._("Linked to FreshBooks client %(ref)s (same name).", ref=record.client_id)
        if filled:
            labels = ", ".join(partner._fields[k].string for k in filled)
            body += " " + self.env._("Filled from FreshBooks: %s.", labels)
        return body

    @api.model
    def _log_links(self, bodies):
        """The chatter notes of linked contacts, in one batch."""
        if bodies:
            self._partners().browse(list(bodies))._message_log_batch(
                {pid: Markup("<p>%s</p>") % body for pid, body in bodies.items()})

    @api.model
    def _create_partners(self, account, records, log):
        if not records:
            return
        Mapping = self.env["freshbooks.mapping"]
        lookup = self._address_lookup()
        vals_list = []
        for record in records:
            values = Mapping._partner_values(record, lookup)
            values.update(self._link_values(account, record.client_id),
                          team_id=account.import_team_id.id or False,
                          company_id=account.company_id.id,
                          freshbooks_sent_values=lookup.client_fields(values))
            vals_list.append(values)
            for problem in record.problems:
                log._add_line("warning", problem, record.client_id, record.name)
        try:
            with self.env.cr.savepoint():
                partners = self._partners().create(vals_list)
            log._count("created", len(partners))
        except Exception:  # noqa: BLE001 - find the bad record and keep the others
            for values in vals_list:
                try:
                    with self.env.cr.savepoint():
                        partners = self._partners().create([values])
                    log._count("created")
                except Exception as error:  # noqa: BLE001
                    log._add_line("error", self.env._("Could not create the contact: %s", error),
                                  values["freshbooks_client_id"], values.get("name"))
                    continue
                self._attach_invoices(account, partners)
            return
        self._attach_invoices(account, partners)

    @api.model
    def _attach_invoices(self, account, partners):
        """Invoices that arrived before their client was linked find their contact."""
        refs = {p.freshbooks_client_id: p.id for p in partners}
        if not refs:
            return
        invoices = self.env["freshbooks.invoice"].sudo().search(
            [("account_id", "=", account.id), ("client_ref", "in", list(refs)),
             ("partner_id", "=", False)])
        for invoice in invoices:
            invoice.partner_id = refs[invoice.client_ref]

    @api.model
    def _mark_missing_deleted(self, account, api, seen, log):
        """After a full listing: linked clients FreshBooks no longer lists were deleted there."""
        if not self._listed_whole(api, "clients", log):
            return
        Partner = self._partners()
        linked = Partner.search_read(
            [("freshbooks_account_id", "=", account.id), ("freshbooks_client_id", "!=", False),
             ("freshbooks_state", "!=", "deleted")], ["freshbooks_client_id"])
        gone = [p["id"] for p in linked if p["freshbooks_client_id"] not in seen]
        if gone:
            Partner.browse(gone).write({"freshbooks_state": "deleted"})
            log._count("updated", len(gone))
        self._commit()

    @api.model
    def _listed_whole(self, api, key, log):
        """False, with a line in the log, when FreshBooks' listing was cut short at the page cap:
        what it did not list is not taken as deleted."""
        if key not in api.truncated:
            return True
        log._add_line("error", self.env._(
            "FreshBooks kept sending pages of %(key)s past %(pages)s pages; the listing was "
            "stopped there and nothing missing from it is taken as deleted.",
            key=key, pages=api.max_pages))
        return False

    @api.model
    def _resolve_review(self, review, partner):
        review = review.sudo()
        account = review.account_id
        record = parse_client(review.client_data)
        if self._partners().search_count([("freshbooks_account_id", "=", account.id),
                                          ("freshbooks_client_id", "=", record.client_id)]):
            raise UserError(self.env._("This FreshBooks client is already linked to a contact."))
        if partner:
            self._log_links({partner.id: self._link(account, partner.sudo(), record)})
            self._attach_invoices(account, partner)
            resolution = self.env._("Linked to %s", partner.display_name)
        else:
            # A saved log of its own: what the client's data lacks is reported there.
            log = self.env["freshbooks.sync.log"].sudo().create({
                "account_id": account.id, "fb_account_id": account.fb_account_id,
                "kind": "review"})
            self._create_partners(account, [record], log)
            log._finish(0)
            resolution = self.env._("New contact created")
        review.write({"state": "done", "resolution": resolution})

    @api.model
    def _link_refused_contact(self, review, raw):
        """An admin says a contact FreshBooks refused to add is this existing client: link it;
        Odoo's details that differ go to FreshBooks, its empty fields are filled from there."""
        review = review.sudo()
        account, partner = review.account_id, review.contact_id
        record = parse_client(raw)
        if self._partners().search_count([("freshbooks_account_id", "=", account.id),
                                          ("freshbooks_client_id", "=", record.client_id)]):
            raise UserError(self.env._("This FreshBooks client is already linked to a contact."))
        self._log_links({partner.id: self._link(account, partner, record)})
        self._attach_invoices(account, partner)
        partner.freshbooks_sent_values = self._freshbooks_fields(raw)
        partner._freshbooks_mark_pending()
        review.write({"state": "done", "client_ref": record.client_id,
                      "resolution": self.env._("Linked to FreshBooks client %s", record.client_id)})

    # --- the queue: webhook hints and contacts deleted in Odoo ---------------------------------

    @api.model
    def _queue_due(self, account):
        return self.env["freshbooks.queue"].sudo().search(
            [("account_id", "=", account.id), "|", ("next_try", "=", False),
             ("next_try", "<=", fields.Datetime.now())])

    @api.model
    def _process_queue(self, account, client, log):
        """Each row on its own: one that fails waits and is tried again later, the rest go on."""
        rows = self._queue_due(account)
        for start in range(0, len(rows), QUEUE_BATCH):
            for row in rows[start:start + QUEUE_BATCH].exists():
                try:
                    with self.env.cr.savepoint():
                        if row.object_type == "client":
                            self._refresh_client(account, client, row.object_ref, log)
                        else:
                            self._refresh_invoice(account, client, row.object_ref, log)
                        row.unlink()
                except (AuthError, NetworkError) as error:
                    if isinstance(error, NetworkError) or error.grant_invalid:
                        raise  # FreshBooks is out of reach for every row: the run fails
                    row._failed(error, log)
                except FreshBooksError as error:
                    row._failed(error, log)
            self._commit()

    @api.model
    def _refresh_client(self, account, client, ref, log):
        try:
            raw = client.get_client(account.fb_account_id, ref)
            record = parse_client(raw)
        except NotFoundError:
            # Gone from FreshBooks: what is left to know is that it is deleted.
            raw, record = {}, ClientRecord(str(ref), 1, False, "", "")
        except MappingError as error:
            log._add_line("error", str(error), ref)
            return
        self._apply_records(account, [(record, raw)], log)

    @api.model
    def _refresh_invoice(self, account, client, ref, log):
        Invoice = self.env["freshbooks.invoice"].sudo()
        try:
            raw = client.get_invoice(account.fb_account_id, ref)
        except NotFoundError:
            raw = {"id": ref, "vis_state": 1}
        updated, removed = Invoice._store_page(account, [raw])
        log._count("invoices_updated", updated)
        log._count("invoices_removed", removed)

    # --- invoices ------------------------------------------------------------------------------

    @api.model
    def _sync_invoices(self, account, client, last_run, log):
        """Account-wide, page by page: everything on a full run (which also drops invoices
        FreshBooks no longer has), else what changed since `last_run`."""
        Invoice = self.env["freshbooks.invoice"].sudo()
        if last_run:
            invoices = self._unseen(client.iter_invoices(
                account.fb_account_id, updated_since=self._since(last_run), newest_first=True),
                last_run)
        else:
            invoices = client.iter_invoices(account.fb_account_id)
        seen, page = set(), []
        for raw in invoices:
            page.append(raw)
            if len(page) >= PAGE_SIZE:
                seen |= self._store_invoice_page(Invoice, account, page, log)
                page = []
        if page:
            seen |= self._store_invoice_page(Invoice, account, page, log)
        if not last_run and self._listed_whole(client, "invoices", log):
            stale = Invoice.search([("account_id", "=", account.id),
                                    ("invoice_ref", "not in", list(seen))])
            log._count("invoices_removed", len(stale))
            stale.unlink()
            self._commit()

    @api.model
    def _store_invoice_page(self, Invoice, account, page, log):
        with self.env.cr.savepoint():
            updated, removed = Invoice._store_page(account, page)
        log._count("invoices_updated", updated)
        log._count("invoices_removed", removed)
        self._commit()
        return {str(r.get("id")) for r in page if isinstance(r, dict)}

    @api.model
    def _refresh_partner_invoices(self, partner):
        """All invoices of one contact, now (the button on the contact form)."""
        account = partner.freshbooks_account_id
        if not partner.freshbooks_client_id or account.state != "connected":
            raise UserError(self.env._("This contact is not linked to a connected FreshBooks business."))
        client = account._get_client()
        Invoice = self.env["freshbooks.invoice"].sudo()
        raws = list(client.iter_invoices(account.fb_account_id,
                                         client_id=partner.freshbooks_client_id))
        Invoice._store_page(account, raws)
        refs = {str(r.get("id")) for r in raws if isinstance(r, dict)}
        Invoice.search([("account_id", "=", account.id),
                        ("client_ref", "=", partner.freshbooks_client_id),
                        ("invoice_ref", "not in", list(refs))]).unlink()

    # --- pushing Odoo edits --------------------------------------------------------------------

    @api.model
    def _pending_partners(self, account):
        return self._partners().search([("freshbooks_account_id", "=", account.id),
                                        ("freshbooks_push_state", "=", "pending")])

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
            api = account._get_client(
                min_interval=self._push_interval() if len(todo) > 1 else 0.0, **options)
            for index, partner in enumerate(todo):
                if not self._push_one(account, api, partner, log):
                    left |= partner
                if account.state != "connected":
                    left |= todo[index + 1:]
                    break
            if log:
                log._count("requests", api.request_count)
        return left

    @api.model
    def _push_interval(self):
        return float(self.env["ir.config_parameter"].sudo().get_param(
            "capsule_freshbooks_connector.push_interval", PUSH_INTERVAL))

    @api.model
    def _push_one(self, account, api, partner, log):
        """Push one contact and commit; True when it needs nothing more (sent, or rejected).

        No row lock is held while FreshBooks answers: an advisory lock keeps two workers from
        sending the same contact, and the sequence number tells whether an edit came meanwhile.
        """
        with self._try_lock(PUSH_LOCK_NAMESPACE, partner.id) as locked:
            if not locked:
                return False  # another worker is sending it right now
            try:
                done = self._send(account, api, partner, log)
                self._commit()
            except (psycopg2.errors.LockNotAvailable, psycopg2.errors.SerializationFailure) as error:
                # The user is saving this contact: their save wins, the job sends it later.
                _logger.info("FreshBooks push of contact %s postponed: %s", partner.id, error)
                self._rollback()
                return False
            return done

    @api.model
    def _send(self, account, api, partner, log):
        cr = self.env.cr
        # Our writes wait a little for a user's save, never the other way round.
        cr.execute("SET LOCAL lock_timeout = '5s'")
        cr.execute("SELECT freshbooks_push_state, freshbooks_push_seq FROM res_partner "
                   "WHERE id = %s", [partner.id])
        row = cr.fetchone()
        if not row or row[0] != "pending":
            return True
        seq = row[1]
        partner.invalidate_recordset()
        try:
            if partner.freshbooks_client_id:
                sent = self._update_client(account, api, partner)
            else:
                sent = self._add_client(account, api, partner)
                if sent is None:
                    return True  # held for review
        except ValidationError as error:
            self._set_push_result(partner, seq, "error", str(error))
            return True
        except NotFoundError:
            partner.with_context(freshbooks_no_push=True).write({"freshbooks_state": "deleted"})
            self._set_push_result(partner, seq, "error",
                                  self.env._("This client was deleted in FreshBooks."))
            return True
        except FreshBooksError as error:
            if isinstance(error, AuthError) and error.grant_invalid:
                account._mark_reconnect(str(error))
            self._set_push_result(partner, seq, "pending", self.env._("Will retry: %s", error))
            return False
        self._set_push_result(partner, seq, "synced", False, sent)
        if log:
            log._count("pushed")
        return True

    @api.model
    def _update_client(self, account, api, partner):
        """Send what changed in Odoo since FreshBooks last heard from it; returns what FreshBooks
        holds now."""
        ref = partner.freshbooks_client_id
        before = partner.freshbooks_sent_values
        if not before:
            # Linked before Odoo kept what it sent: what FreshBooks has now stands for it.
            before = self._freshbooks_fields(api.get_client(account.fb_account_id, ref))
        data = self.env["freshbooks.mapping"]._client_values(partner)
        changes = changed_fields(data, before)
        if changes:
            api.update_client(account.fb_account_id, ref, changes)
        return dict(before, **changes)

    @api.model
    def _freshbooks_fields(self, raw):
        try:
            return self.env["freshbooks.mapping"]._freshbooks_fields(raw, self._address_lookup())
        except MappingError:
            return {}

    @api.model
    def _add_client(self, account, api, partner):
        """Create the client, or link the one FreshBooks has for this very customer; returns
        what FreshBooks holds now, or None when FreshBooks refused and the contact is held."""
        existing = self._same_customer(account, api, partner)
        if existing:
            # Made by hand in FreshBooks, or by an earlier attempt whose answer was lost.
            self._log_links({partner.id: self._link(account, partner, parse_client(existing))})
            self._attach_invoices(account, partner)
            self._commit()  # the link is never lost
            partner.freshbooks_sent_values = self._freshbooks_fields(existing)
            return self._update_client(account, api, partner)
        data = self.env["freshbooks.mapping"]._client_values(partner)
        try:
            created = api.create_client(account.fb_account_id, {k: v for k, v in data.items() if v})
        except ValidationError as error:
            if self._hold_refused_add(account, api, partner, error):
                return None
            raise
        partner.with_context(freshbooks_no_push=True).write(
            self._link_values(account, str(created["id"])))
        self._attach_invoices(account, partner)
        self._commit()  # the client exists in FreshBooks now: never lose the link
        return data

    @api.model
    def _clients_with_email(self, account, api, email):
        return [raw for raw in api.iter_clients(account.fb_account_id, email=email)
                if isinstance(raw, dict) and str(raw.get("vis_state", 0)) == "0"]

    @api.model
    def _same_customer(self, account, api, partner):
        """The one active, unlinked FreshBooks client with this contact's email that is the same
        customer: same name (case and spacing aside) and same kind, company or person."""
        if not partner.email:
            return None
        matches = []
        for raw in self._clients_with_email(account, api, partner.email):
            try:
                record = parse_client(raw)
            except MappingError:
                continue
            if record.key == partner.freshbooks_name_key and record.is_company == \
                    partner.is_company:
                matches.append(raw)
        if len(matches) != 1 or self._partners().search_count([
                ("freshbooks_account_id", "=", account.id),
                ("freshbooks_client_id", "=", str(matches[0].get("id")))]):
            return None
        return matches[0]

    @api.model
    def _hold_refused_add(self, account, api, partner, error):
        """FreshBooks refused a new client while others have its email (FreshBooks may take an
        email as a client's identity): an admin decides; never another customer's record."""
        if not partner.email:
            return False
        candidates = self._clients_with_email(account, api, partner.email)
        if not candidates:
            return False
        self.env["freshbooks.review"].sudo()._hold_contact(account, partner, candidates, str(error))
        self.env.cr.execute(
            "UPDATE res_partner SET freshbooks_push_state = 'error', freshbooks_push_error = %s "
            "WHERE id = %s", [self.env._("Held in Clients to Review: %s", error), partner.id])
        partner.invalidate_recordset(["freshbooks_push_state", "freshbooks_push_error"])
        return True

    @api.model
    def _set_push_result(self, partner, seq, state, message, sent=None):
        # Only the push that sent the latest edit may mark the contact up to date.
        self.env.cr.execute(
            "UPDATE res_partner SET freshbooks_push_state = %s, freshbooks_push_error = %s "
            "WHERE id = %s AND (freshbooks_push_seq = %s OR %s = 'pending')",
            [state, message or None, partner.id, seq, state])
        partner.invalidate_recordset(["freshbooks_push_state", "freshbooks_push_error"])
        if sent is not None:
            # What FreshBooks holds now, whether or not an edit came meanwhile.
            partner.with_context(freshbooks_no_push=True).freshbooks_sent_values = sent

"""The sync engine: runs, their lock and log, paging, and the queue, over the registered types.

What each FreshBooks object type does with its pages lives with the type (freshbooks.synced).
"""

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from ..freshbooks import AuthError, FreshBooksError, NetworkError
from . import cron_budget

_logger = logging.getLogger(__name__)

# FreshBooks' accounting timestamps and `updated_min` days are US/Eastern.
EASTERN = ZoneInfo("America/New_York")
# A full pass now and then catches what incremental runs cannot see (deletions in FreshBooks).
FULL_SYNC_EVERY = timedelta(days=1)
SYNC_KINDS = ("full", "incremental")
# Odoo's and FreshBooks' clocks may differ a little: look back this much further.
CLOCK_MARGIN = timedelta(minutes=5)
PAGE_SIZE = 100
QUEUE_BATCH = 200
# Pages are committed together, at most this often (seconds): a commit per page made a first
# sync of 90,000 objects spend a third of its time committing. A killed run loses at most this
# much work, which the next run does again.
COMMIT_INTERVAL = 1.0
# A full listing asks this many pages at once: each waits on FreshBooks far longer than it takes
# to store. Few, since FreshBooks asks to throttle full syncs (and 4 types are listed at once).
PAGES_AHEAD = 3
# A sync skipped because another run held the lock runs again this much later.
RETRY_SKIPPED_SYNC = timedelta(minutes=1)
# Advisory lock namespace of a run of an account: "FB" in ASCII.
LOCK_NAMESPACE = 0x4642
# Database errors that say nothing of the record at hand (the connection, a lock, a
# serialization failure): they end the run, which the next one does again. Any other error
# while storing an object is that object's alone.
RUN_ENDERS = (psycopg2.OperationalError, psycopg2.InterfaceError)


def refusal(error):
    """Why Odoo or PostgreSQL refused an object, in a line."""
    if isinstance(error, (UserError, ValidationError)):
        text = error.args[0] if error.args else str(error)
    elif isinstance(error, psycopg2.Error):
        text = (error.pgerror or str(error)).strip().splitlines()[0].removeprefix("ERROR:")
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(str(text).split())[:500]


@dataclass
class Run:
    """A run in progress: its log, the FreshBooks API connection it uses, and how long this
    execution of it may work."""

    log: object
    fb: object = None
    budget: object = None
    # Requests made by the run's other threads (their own API connections).
    other_requests: int = 0
    # The execution's time was up before the run's end: the log stays running, to go on.
    paused: bool = False

    def requests(self):
        return (self.fb.request_count if self.fb else 0) + self.other_requests


class Tally:
    """What a run's listings report (counts, lines, progress), kept in memory until the run's
    own thread writes it to the log: the threads that list beside it must never write the log
    row the run's transaction holds. Stands in for the log in the types' hooks."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts, self._lines, self._progress_of = {}, [], {}
        # Objects read by every listing of this execution, for Odoo's cron progress.
        self.read = 0

    def _read(self, n):
        with self._lock:
            self.read += n

    def _count(self, key, n=1):
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def _add_line(self, level, reason, client_id=None, name=None):
        with self._lock:
            self._lines.append((level, reason, client_id, name))

    def _progress(self, kind, done, total=None):
        with self._lock:
            self._progress_of[kind] = [done, total]

    def _apply(self, log):
        """Write what was reported since the last time to the log (the run's thread only)."""
        with self._lock:
            counts, lines, progress = self._counts, self._lines, self._progress_of
            self._counts, self._lines, self._progress_of = {}, [], {}
        for key, n in counts.items():
            log._count(key, n)
        for line in lines:
            log._add_line(*line)
        if progress:
            log._progress_many(progress)


class Stopped(Exception):
    """A lister told to stop: its run failed, and says why."""


class Lister(threading.Thread):
    """One type listed in a thread of its own, with its own cursor and API connection; pages
    are committed as they come. Stops at its next commit when told to."""

    def __init__(self, sync, account, model, since, tally, run):
        super().__init__(name=f"freshbooks-{model._fb_type}", daemon=True)
        self.dbname, self.env = sync.env.cr.dbname, sync.env
        self.account_id, self.model_name, self.since, self.tally = (
            account.id, model._name, since, tally)
        self.log_id, self.budget = run.log.id, run.budget
        self.stopping = threading.Event()
        self.error, self.requests, self.finished = None, 0, False

    def run(self):
        try:
            with self.env.registry.cursor() as cr:
                env = self.env(cr=cr)
                account = env["freshbooks.account"].browse(self.account_id)
                fb = account._get_client()
                try:
                    self.finished = env["freshbooks.sync"]._sync_type(
                        account, fb, env[self.model_name], self.since, self.tally,
                        lambda: self._commit(cr), self.log_id, self.budget)
                finally:
                    self.requests = fb.request_count
        except Exception as error:  # noqa: BLE001 - the run's thread reports it
            self.error = error

    def _commit(self, cr):
        if self.stopping.is_set():
            raise Stopped()
        cr.commit()  # pylint: disable=invalid-commit


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
    def _since(self, moment):
        """The `updated_min` day for changes since `moment`. FreshBooks filters by (US/Eastern)
        day only: the rest of that day is read again, which is harmless."""
        return self._eastern(moment - CLOCK_MARGIN).date()

    @api.model
    def _eastern(self, moment):
        return fields.Datetime.to_datetime(moment).replace(tzinfo=ZoneInfo("UTC")).astimezone(
            EASTERN)

    @api.model
    def _unseen(self, pages, moment):
        """Pages asked newest first, up to the first full page the previous run already saw.

        Sorting is undocumented at FreshBooks: a page is trusted only if it really comes newest
        first; otherwise everything is read, as without sorting. A partial page is the last
        one anyway and is read whole.
        """
        cutoff = self._eastern(moment - CLOCK_MARGIN).strftime("%Y-%m-%d %H:%M:%S")
        for page in pages:
            stamps = [str(i.get("updated") or "") if isinstance(i, dict) else "" for i in page]
            newest_first = all(stamps) and all(a >= b for a, b in zip(stamps, stamps[1:]))
            if len(page) >= PAGE_SIZE and newest_first and stamps[-1] < cutoff:
                fresh = [i for i, stamp in zip(page, stamps) if stamp >= cutoff]
                if fresh:
                    yield fresh
                return
            yield page

    @api.model
    def _types(self):
        return self.env["freshbooks.synced"]._fb_types()

    # --- scheduled actions ---------------------------------------------------------------------

    @api.model
    def _cron_sync(self):
        """Each connection's run, for as long as this execution may work. A run whose time is
        up goes on at the next execution, at once: within Odoo's pass when it leaves time for
        one (Odoo's progress API), else in a pass of its own (a trigger)."""
        budget = cron_budget.for_cron()
        read, remaining = 0, 0
        for account in self._connected_accounts():
            if budget.spent():
                remaining += 1
                continue
            log = self._sync_account(account, budget=budget)
            read += log.env.context.get("freshbooks_read", 0) if log else 0
            if log and log.state == "running":
                remaining += self._remaining(log)
        self._cron_progress(read, remaining, budget)

    @api.model
    def _remaining(self, log):
        """Objects a paused run has still to read, as far as FreshBooks' totals tell (1 at
        least: it is not done)."""
        left = sum(max(total - done, 0) for done, total in (log.progress or {}).values()
                   if total is not None)
        return max(left, 1)

    @api.model
    def _cron_progress(self, read, remaining, budget):
        cron = self.env["ir.cron"]
        if remaining and (budget.left() or 0) < cron_budget.MIN_SECONDS:
            # Too little left of this pass for another execution: one of its own, at once.
            cron_budget.end_pass()
            self.env.ref("capsule_freshbooks_connector.ir_cron_freshbooks_sync").sudo()._trigger()
            remaining = 0
        cron._notify_progress(done=max(read, 1 if remaining else 0), remaining=remaining)

    @api.model
    def _cron_work(self):
        for account in self._connected_accounts():
            self._work_account(account)

    @api.model
    def _connected_accounts(self):
        return self.env["freshbooks.account"].sudo().search([("state", "=", "connected")])

    # --- a run ---------------------------------------------------------------------------------

    @contextmanager
    def _run(self, account, kind, since=None):
        """One execution of a run of one account: under the account's lock, logged, and ended
        in every case.

        Yields a Run (its log, and the API connection the block opens), or None when another
        run holds the lock. A sync goes on with a sync run that an earlier execution left
        running (its time was up, or its worker was killed): same log, same window. Whatever
        the block raises ends the log as failed with the reason; a block that sets
        `run.paused` leaves it running, for the next execution.
        """
        with self._try_lock(LOCK_NAMESPACE, account.id) as locked:
            if not locked:
                _logger.info("FreshBooks %s run of %s skipped: another run is in progress", kind,
                             account.company_id.name)
                if kind != "work":
                    # A sync asked for (Sync now, connect) is not lost behind a webhook run.
                    self.env.ref("capsule_freshbooks_connector.ir_cron_freshbooks_sync").sudo() \
                        ._trigger(fields.Datetime.now() + RETRY_SKIPPED_SYNC)
                yield None
                return
            # A new transaction: its snapshot must see the run that held the lock until now,
            # or closing that run's log fails with a serialization error.
            self._commit()
            self.env.invalidate_all()
            resumed = self._close_interrupted(account, resume=kind in SYNC_KINDS)
            if resumed:
                resumed._resume()
            run = Run(resumed or self.env["freshbooks.sync.log"].sudo().create(
                {"account_id": account.id, "fb_account_id": account.fb_account_id, "kind": kind,
                 "since": since}))
            self._commit()
            try:
                yield run
                if run.paused:
                    run.log._pause(run.requests())
                else:
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
    def _close_interrupted(self, account, resume=False):
        """Logs still running while we hold the lock are of executions that ended before
        their run did: their time was up, or their worker was stopped or killed. A sync run of
        the current business is returned to go on (when `resume`, else left for the next sync);
        the others are closed."""
        running = self.env["freshbooks.sync.log"].sudo().search(
            [("account_id", "=", account.id), ("state", "=", "running")], order="id")
        going_on = running.filtered(lambda log: log.kind in SYNC_KINDS
                                    and log.fb_account_id == account.fb_account_id)[-1:]
        (running - going_on).write({
            "state": "failed", "end": fields.Datetime.now(),
            "message": self.env._("Interrupted: the run stopped before its end (its worker "
                                  "was stopped or killed)."),
        })
        return going_on if resume else None

    @api.model
    def _sync_account(self, account, full=None, budget=None):
        """Import and update everything of one account, for as long as `budget` lasts (no
        limit by default); returns its log (None when skipped), still running when the run
        goes on at the next execution. The queue, the pushes and the webhook check get their
        turn at each execution, however long the run."""
        now = fields.Datetime.now()
        last_success = account.last_success_start
        if full is None:
            full = not last_success or not account.last_full_sync or (
                now - account.last_full_sync > FULL_SYNC_EVERY)
        read = 0
        with self._run(account, "full" if full else "incremental",
                       since=None if full else last_success) as run:
            if run is None:
                return None
            run.fb, run.budget = account._get_client(), budget or cron_budget.Budget()
            read = self._sync_types(account, run, run.log.since or None)
            self._process_queue(account, run.fb, run.log)
            self._export(account, run.log)
            self.env["freshbooks.webhook"]._ensure(account, run.fb, run.log)
        account.invalidate_recordset()
        return run and run.log.with_context(freshbooks_read=read)

    @api.model
    def _work_account(self, account):
        """Webhook hints and pending pushes, between scheduled syncs. Silent when idle."""
        if not self._queue_due(account) and not any(
                model._fb_has_export(account) for model in self._types().values()):
            return None
        with self._run(account, "work") as run:
            if run is None:
                return None  # the running sync does this work too
            run.fb = account._get_client()
            self._process_queue(account, run.fb, run.log)
            self._export(account, run.log)
        account.invalidate_recordset()
        return run and run.log

    @api.model
    def _export(self, account, log):
        for model in self._types().values():
            model._fb_export(account, log)

    @api.model
    def _sync_types(self, account, run, since):
        """Every type's listings, as far as the run's budget goes; sets `run.paused` when time
        was up first, and returns how many objects this execution read. Those listed beside
        the contacts have threads of their own (the run waits on FreshBooks and PostgreSQL far
        more than it computes); their objects are attached to the contacts at the end. Tests
        share one transaction: no threads there."""
        tally, types = Tally(), list(self._types().values())
        beside = [] if self.env.registry.in_test_mode() else [
            Lister(self, account, model, since, tally, run) for model in types
            if model._fb_beside]

        def commit():
            tally._apply(run.log)
            self._commit()

        for lister in beside:
            lister.start()
        finished = True
        try:
            later = tuple(lister.model_name for lister in beside)
            for model in types:
                if model._name not in later and finished:
                    finished = self._sync_type(account, run.fb, model.with_context(
                        freshbooks_attach_later=later), since, tally, commit, run.log.id,
                        run.budget)
            for lister in beside:
                while lister.is_alive():
                    lister.join(COMMIT_INTERVAL)
                    commit()
        finally:
            # A run that failed stops its listers before it ends (and releases its lock).
            for lister in beside:
                lister.stopping.set()
                lister.join()
                run.other_requests += lister.requests
        commit()
        errors = [lister.error for lister in beside if lister.error]
        if errors:
            raise errors[0]
        if finished and all(lister.finished for lister in beside):
            for lister in beside:
                self.env[lister.model_name]._fb_attach(account, analyze=not since)
            self._commit()
        else:
            run.paused = True
        return tally.read

    @api.model
    def _sync_type(self, account, fb, model, since, log, commit, log_id, budget):
        """One type's listings (`_listings`), each from where the run left it; True once all
        are read, False when `budget` was spent first. `log` is the run's Tally: it takes the
        counts, lines and progress, and `commit` writes them to the log."""
        return all(self._list(account, fb, model, since, log, commit, log_id, budget, *listing)
                   for listing in self._listings(model, since))

    @api.model
    def _listings(self, model, since):
        """(name, search filters) of a type's listings in a run: what FreshBooks lists (active
        and archived objects), all of it or what changed since `since`; and in a full run its
        deleted objects, which FreshBooks lists only when asked. A deletion is what FreshBooks
        says (this listing, a 404, a webhook), never a guess from what a page did not show:
        paged by number, a listing shifts when an object before the page is deleted."""
        listings = [(model._fb_type, None)]
        if not since:
            listings.append((f"{model._fb_type}.deleted", {"vis_state": 1}))
        return listings

    @api.model
    def _list(self, account, fb, model, since, log, commit, log_id, budget, listing, search):
        """One listing, page by page, stored and committed together with the run's position
        in it at most once a second; True once read to its end, False when the budget was
        spent first (the next execution goes on from the last committed page). Listings of
        changes start over: they stop at what the previous run saw."""
        next_page, done, finished = self._position(log_id, listing)
        if finished:
            return True
        if since:
            next_page = 1
        pages = fb.iter_pages(account.fb_account_id, model._fb_resource,
                               updated_since=since and self._since(since),
                               newest_first=bool(since), search=search,
                               ahead=1 if since else PAGES_AHEAD, start_page=next_page)
        if since:
            pages = self._unseen(pages, since)

        reported = None

        def save(finished=False):
            nonlocal reported
            if search is None and reported != done:  # the type's own listing is its progress
                log._progress(model._fb_type, done, fb.totals.get(model._fb_resource))
                reported = done
            self._save_position(log_id, listing, next_page, done, finished)
            commit()

        committed = time.monotonic()
        for page in pages:
            self._store_page(account, model, page, log)
            next_page, done = next_page + 1, done + len(page)
            log._read(len(page))
            if time.monotonic() - committed >= COMMIT_INTERVAL:
                save()
                committed = time.monotonic()
                if budget.spent():
                    return False
        self._note_truncated(fb, model._fb_resource, log)
        save(finished=True)
        return True

    @api.model
    def _position(self, log_id, listing):
        """(next page, objects read, finished) of a run in a listing."""
        self.env.cr.execute("SELECT next_page, done, finished FROM freshbooks_sync_position "
                            "WHERE log_id = %s AND listing = %s", [log_id, listing])
        return self.env.cr.fetchone() or (1, 0, False)

    @api.model
    def _save_position(self, log_id, listing, next_page, done, finished):
        # SQL in the caller's cursor: the threads listing beside the run write theirs too.
        self.env.cr.execute(
            "INSERT INTO freshbooks_sync_position (log_id, listing, next_page, done, finished) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (log_id, listing) DO UPDATE SET "
            "next_page = EXCLUDED.next_page, done = EXCLUDED.done, finished = EXCLUDED.finished",
            [log_id, listing, next_page, done, bool(finished)])

    @api.model
    def _store_page(self, account, model, raws, log):
        """A page in one savepoint; when anything in it is refused, each object in a savepoint
        of its own, so that a bad object is one line in the log and the others are stored (it
        is read again at the next full sync). Its counts reach the log only once stored."""
        page_log = Tally()
        try:
            with self.env.cr.savepoint():
                model._fb_store_page(account, raws, page_log)
        except RUN_ENDERS:
            raise
        except Exception as error:  # noqa: BLE001 - one object's problem, not the run's
            if len(raws) > 1:
                for raw in raws:
                    self._store_page(account, model, [raw], log)
                return
            raw = raws[0] if isinstance(raws[0], dict) else {}
            ref = str(raw.get("id") or "") or None
            _logger.warning("FreshBooks %s %s was not stored: %s", model._fb_type, ref,
                            refusal(error))
            log._add_line("error", self.env._(
                "Odoo could not store FreshBooks %(type)s %(ref)s: %(reason)s",
                type=model._fb_type, ref=ref or "?", reason=refusal(error)),
                ref, model._fb_label(raw))
            return
        page_log._apply(log)

    @api.model
    def _note_truncated(self, fb, resource, log):
        """A line in the log when FreshBooks' listing was cut short at the page cap."""
        if resource in fb.truncated:
            fb.truncated.remove(resource)
            log._add_line("error", self.env._(
                "FreshBooks kept sending pages of %(key)s past %(pages)s pages; the listing was "
                "stopped there.", key=resource, pages=fb.max_pages))

    # --- the queue: webhook hints and contacts deleted in Odoo ---------------------------------

    @api.model
    def _queue_due(self, account):
        return self.env["freshbooks.queue"].sudo().search(
            [("account_id", "=", account.id), "|", ("next_try", "=", False),
             ("next_try", "<=", fields.Datetime.now())])

    @api.model
    def _process_queue(self, account, fb, log):
        """Each row on its own: one that fails waits and is tried again later, the rest go on."""
        types, rows = self._types(), self._queue_due(account)
        for start in range(0, len(rows), QUEUE_BATCH):
            for row in rows[start:start + QUEUE_BATCH].exists():
                try:
                    with self.env.cr.savepoint():
                        types[row.object_type]._fb_refresh(account, fb, row.object_ref, log)
                        row.unlink()
                except (AuthError, NetworkError) as error:
                    if isinstance(error, NetworkError) or error.grant_invalid:
                        raise  # FreshBooks is out of reach for every row: the run fails
                    row._failed(error, log)
                except FreshBooksError as error:
                    row._failed(error, log)
                except RUN_ENDERS:
                    raise
                except Exception as error:  # noqa: BLE001 - Odoo refused this object only
                    reason = refusal(error)
                    log._add_line("error", self.env._(
                        "Odoo could not store FreshBooks %(type)s %(ref)s: %(reason)s; it is "
                        "tried again later.", type=row.object_type, ref=row.object_ref,
                        reason=reason), row.object_ref)
                    row._failed(reason, log)
            self._commit()

    # --- one contact, now ----------------------------------------------------------------------

    @api.model
    def _refresh_partner(self, partner):
        """Everything FreshBooks has of one contact, now (the button on the contact form)."""
        account = partner.freshbooks_account_id
        if not partner.freshbooks_client_id or account.state != "connected":
            raise UserError(self.env._("This contact is not linked to a connected FreshBooks business."))
        fb = account._get_client()
        for model in self._types().values():
            model._fb_refresh_partner(account, fb, partner)

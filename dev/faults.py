"""Fault injection with real processes: killed and simultaneous syncs, a grant revoked while a
cron worker syncs, the whole story under Odoo's prefork server, a neutralized copy, and two
prefork servers on one database.

    python3 dev/faults.py --db NAME --addons-path PATH [--config FILE] [--data-dir DIR] [--keep]
    python3 dev/faults.py --db NAME --addons-path PATH [...] --soak SECONDS

dev/test runs it after the Odoo tests, on NAME: a copy of a database where the add-on was just
installed (without NAME, the script installs the add-on in a new database of that name). It
starts the FreshBooks sandbox as a subprocess, copies NAME to NAME_story and NAME_two (the fresh
install), connects the company to the sandbox, copies NAME to NAME_race, NAME_tokens and NAME_revoke
(connected, never synced), and runs:

a) on NAME, a full sync (an `odoo shell` process) is SIGKILLed once some contacts are linked,
   then run again: it goes on with the killed run (same log) from its last committed page;
b) on NAME_race, two full syncs (two `odoo shell` processes) start at the same moment;
t) on NAME_tokens, with a grant of its own whose access token has expired, a full sync (its four
   listings each need a new token) and 6 threads of another process (real cursors each) ask
   FreshBooks at the same moment: exactly one token request, every thread and the sync get the
   same new token, the connection stays connected. Then again with a refresh token another server
   already spent: "Reconnect needed", the sync's log failed with a reason, one activity, every
   thread told to connect again; no ERROR, traceback or serialization failure in either process;
c) on NAME_revoke, with 200 webhook hints queued, a real Odoo server's cron worker runs the
   scheduled sync; once every contact is linked (the run reads the hints again), the grant is
   revoked at the sandbox and the access tokens expire. Then the connection must say "Reconnect
   needed", the run's log "failed" with a reason, no log "running", an admin has a "Reconnect
   FreshBooks" activity, and the advisory lock is free while the cron worker lives on (a next
   sync in a new process is not skipped);
d) on NAME_story, Odoo's prefork server (--workers=2 --max-cron-threads=1, web.base.url on
   loopback) and a sandbox of its own, driven over HTTP as admin/admin: Settings > Connect, the
   consent page and the callback; the cron worker's first sync; the sandbox's webhook
   handshakes; a phone edited over JSON-RPC pushed to the sandbox; a client created in the
   sandbox arriving through its webhook; "Sync now". Every sync log must end done or partial, the
   account know its last successful start, the webhooks be active (every callback verified), the
   phone and the client arrive (once), and the server log hold no ERROR or traceback;
e) on NAME_neutral, a copy of NAME after a) (connected, synced, with tokens and verified webhook
   rows; a webhook hint queued and a contact's edit pending are added with SQL), Odoo's own
   `odoo neutralize -d NAME_neutral`: the copy must keep no access or refresh token, no webhook,
   no queued work and no pending push; each connection must be a draft saying it is a neutralized
   copy; the contacts keep their links; NAME itself is untouched;
f) on NAME_two, two prefork servers (each --workers=2 --max-cron-threads=1) and a sandbox of 300
   clients: connected over HTTP through server 1 (web.base.url, so the webhooks reach server 1),
   then 30 seconds of sandbox traffic (clients created and updated, each a signed webhook) while
   each server is asked for "Sync now" over JSON-RPC in turn and the cron workers are woken. Once
   quiet: no two sync runs of the business overlap in time, every log ended, each active client
   is one contact (the checks after a) and b)), no ERROR or traceback in either server's log.
   Prints `two servers: ...`: the syncs started (log rows), the runs skipped for the lock and the
   contacts per client (min/max, goal 1);
g) on NAME_limited, Odoo's prefork server with small worker limits (--limit-time-real=75
   --limit-time-cpu=8) and a sandbox of 20,000 clients with their documents: the cron worker's
   first sync must finish over several executions, each inside the limits. On the way the cron
   worker is SIGKILLed (its successor goes on from the last committed page), the access token
   expires (renewed once), and a contact is edited over JSON-RPC (it reaches FreshBooks). Every
   active client must be one contact, no run left running, no limit reached, no ERROR. Prints
   `limited server: ...`: the clients, executions, seconds and client pages asked;
h) on NAME_refused, with Odoo's base_vat installed and a sandbox with its hostile clients and
   documents: a contact named like the client whose VAT number base_vat refuses, and a webhook
   hint for that client queued. The full sync must end done with errors: that client one line
   with its id, name and reason, its hint waiting to be tried again, every other active client a
   contact, the documents of the wrong types stored on their contact, no ERROR.

After a), b) and f): one contact per active FreshBooks client, no client linked twice, no name
imported twice, and the sync log tells what happened. Prints one line per check and ends with
`faults: N passed, M failed`; exits 1 when a check failed. Drops the databases it made (unless
--keep, which also keeps the logs); NAME is the caller's to drop when it was given.

--soak SECONDS runs only d)'s setup on NAME_soak, then SECONDS of traffic: the sandbox creates
and updates clients and invoices (3 a second, each a signed webhook), "Sync now" every minute
and a contact's phone edited over JSON-RPC every 10 seconds; then it prints the syncs started,
ended running (goal 0), failed and done/partial, the pushes and webhook deliveries that reached
their side, and the ERROR lines of the server log. dev/test does not run it.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import psutil
import psycopg2
import requests

ROOT = Path(__file__).resolve().parents[1]
MODULE = "capsule_freshbooks_connector"
SANDBOX = ROOT / "dev" / "sandbox" / "freshbooks_sandbox.py"
CLIENTS, INVOICES, SEED, LATENCY_MS = 600, 1, 3, 15
KILL_LATENCY_MS = 400  # a full listing asks 3 pages at once: 6 pages then take over a second
LOCK_NAMESPACE = 0x4642  # freshbooks_sync.LOCK_NAMESPACE
# Callbacks the add-on registers: create, update and delete of clients, invoices, payments and
# estimates (freshbooks.synced._fb_events()).
EVENTS = 12
TIMEOUT = 120  # seconds any one process may take

# Connects the company to the sandbox as dev/bench.py does. Webhooks are left out (registered and
# verified in advance): nothing here listens for the sandbox's calls.
CONNECT = """
import json, urllib.request
from datetime import datetime
url = {url!r}
ICP = env["ir.config_parameter"].sudo()
for key in ("api_url", "auth_url", "web_url"):
    ICP.set_param("{module}." + key, url)
request = urllib.request.Request(url + "/_sandbox/grant", method="POST")
with urllib.request.urlopen(request, timeout=30) as response:
    grant = json.load(response)
account = env["freshbooks.account"]._for_company(env.company)
account.write({{
    "freshbooks_url": "my.freshbooks.com", "client_id": "sandbox-client-id",
    "client_secret": "sandbox-client-secret", "state": "connected",
    "access_token": grant["access_token"], "refresh_token": grant["refresh_token"],
    "token_expiry": datetime.utcfromtimestamp(grant["created_at"] + grant["expires_in"]),
    "fb_account_id": grant.get("account_id") or "SBX001", "fb_business_name": "Sandbox",
}})
# Webhooks count as registered and verified already (as tests/common.py mark_webhooks_registered
# has it): a sync asks FreshBooks for none, and the sandbox never calls this Odoo.
env["freshbooks.webhook"].create([
    {{"account_id": account.id, "event": event, "callback_ref": str(n), "verifier": "x",
      "verified": True}}
    for n, event in enumerate(("client.create", "client.update", "client.delete",
                               "invoice.create", "invoice.update", "invoice.delete"), 1)])
env.cr.commit()
print("FAULTS_CONNECTED", account.id, flush=True)
"""

# One full sync, as the cron runs it; waits for a "go" file first when given one.
SYNC = """
import os, time
ready, go = {ready!r}, {go!r}
if ready:
    open(ready, "w").close()
    deadline = time.time() + 60
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.002)
account = env["freshbooks.account"].search([("state", "=", "connected")])
log = env["freshbooks.sync"]._sync_account(account, full=True)
env.cr.commit()
print("FAULTS_SYNC", log.id if log else "skipped", log.state if log else "-", flush=True)
"""


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, text, detail=""):
        if ok:
            self.passed += 1
            print(f"ok: {text}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL: {text}" + (f" ({detail})" if detail else ""), flush=True)
        return ok


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Threads of one process, each with a real cursor of its own and an API connection built from
# the same expired token, all asking FreshBooks at the same moment (a "go" file).
TOKEN_THREADS = """
import json, os, threading, time
import odoo
from odoo import api
ready, go, count = {ready!r}, {go!r}, {threads}
account_id = env["freshbooks.account"].search([], limit=1).id
env.cr.commit()
results, started = [], threading.Barrier(count + 1)
def work():
    try:
        with env.registry.cursor() as cr:
            account = api.Environment(cr, odoo.SUPERUSER_ID, {{}})["freshbooks.account"].browse(
                account_id)
            fb = account._get_client()
            started.wait()
            while not os.path.exists(go):
                time.sleep(0.002)
            fb.businesses()
            results.append(["ok", fb.tokens.access_token[-8:]])
    except Exception as error:
        results.append(["error", type(error).__name__, str(error)[:200]])
threads = [threading.Thread(target=work) for _n in range(count)]
for thread in threads:
    thread.start()
started.wait()
open(ready, "w").close()
for thread in threads:
    thread.join(120)
print("FAULTS_TOKENS", json.dumps(results), flush=True)
"""


def run(command, **kwargs):
    return subprocess.run(command, check=True, timeout=TIMEOUT, **kwargs)  # noqa: S603


class Odoo:
    """Odoo commands against one addons path, config and data dir."""

    def __init__(self, args, work):
        self.args, self.work = args, work
        self.common = ["--addons-path", args.addons_path]
        if args.config:
            self.common += ["--config", args.config]
        if args.data_dir:
            self.common += ["--data-dir", args.data_dir]

    def filestore(self, db):
        return Path(self.args.data_dir) / "filestore" / db if self.args.data_dir else None

    def dropdb(self, db):
        subprocess.run(["dropdb", "--if-exists", "--force", db],  # noqa: S603,S607
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                       timeout=TIMEOUT)
        if self.filestore(db) and self.filestore(db).is_dir():
            shutil.rmtree(self.filestore(db))

    def copydb(self, template, db):
        """A copy of a database where the add-on is installed (and nothing connected to it)."""
        self.dropdb(db)
        for _attempt in range(50):
            # The template's last user may still be on its way out.
            copied = subprocess.run(["createdb", "-T", template, db],  # noqa: S603,S607
                                    capture_output=True, text=True, timeout=TIMEOUT)
            if copied.returncode == 0 or "being accessed" not in copied.stderr:
                break
            time.sleep(0.1)
        if copied.returncode:
            raise SystemExit(f"could not copy {template} to {db}: {copied.stderr.strip()}")
        source, target = self.filestore(template), self.filestore(db)
        if source and source.is_dir():
            shutil.copytree(source, target)

    def install(self, db, modules=MODULE, fresh=True):
        if fresh:
            self.dropdb(db)
        log = self.work / f"install-{db}.log"
        with log.open("w") as out:
            code = subprocess.call(  # noqa: S603
                [sys.executable, "-m", "odoo", *self.common, "-d", db, "-i", modules,
                 "--stop-after-init", "--without-demo=all", "--log-level=warn",
                 "--http-port", str(free_port())], stdout=out, stderr=subprocess.STDOUT,
                timeout=TIMEOUT * 3)
        if code:
            print(log.read_text()[-3000:])
            raise SystemExit(f"installing {modules} in {db} failed (exit code {code})")

    def neutralize(self, db):
        """Odoo's own `odoo neutralize -d db`; returns (exit code, its output)."""
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "odoo", "neutralize", *self.common, "-d", db,
             "--log-level=info"], capture_output=True, text=True, timeout=TIMEOUT, check=False)
        return done.returncode, done.stdout + done.stderr

    def shell(self, db, script, name):
        """Start `odoo shell` on db with script on stdin; returns (process, its log path)."""
        log = self.work / f"{name}.log"
        out = log.open("w")
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "odoo", "shell", *self.common, "-d", db, "--no-http",
             "--log-level=warn"], stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
            text=True)
        out.close()
        process.stdin.write(script)
        process.stdin.close()
        return process, log


def wait(process, log, timeout=TIMEOUT):
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        code = "timeout"
    output = log.read_text()
    if code != 0:
        print(f"--- {log.name} (exit code {code}) ---\n{output[-3000:]}", flush=True)
    return code, output


def marker(output, word):
    """The fields of the `word ...` line a shell script printed, or None."""
    for line in output.splitlines():
        if line.startswith(word + " "):
            return line.split()[1:]
    return None


def start_sandbox(clients=CLIENTS, invoices=INVOICES, latency_ms=LATENCY_MS, webhook_delay=0.2,
                  hostile=False):
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, str(SANDBOX), "--port", str(port), "--clients", str(clients),
         "--invoices", str(invoices), "--seed", str(SEED), "--latency-ms", str(latency_ms),
         "--webhook-delay", str(webhook_delay), *(["--hostile"] if hostile else [])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    if "http://127.0.0.1:" not in line:
        process.kill()
        raise SystemExit(f"the sandbox did not start: {line!r}")
    return process, f"http://127.0.0.1:{port}"


def stop_sandbox(process):
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def sandbox_call(url, path, data=None, method=None):
    """The sandbox's control API (/_sandbox/...): GET without data, else POST (or method)."""
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url + path, data=body, method=method or (  # noqa: S310
        "GET" if data is None else "POST"), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.load(response)


def sandbox_clients(url):
    return sandbox_call(url, "/_sandbox/clients")["clients"]


def client_name(client):
    person = " ".join(filter(None, [client.get("fname"), client.get("lname")]))
    return client.get("organization") or person or client.get("email")


def database_exists(name):
    with psycopg2.connect(dbname="postgres") as conn, conn.cursor() as cr:
        cr.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        found = bool(cr.fetchone())
    conn.close()
    return found


def module_state(name):
    db = Database(name)
    try:
        rows = db.rows("SELECT state FROM ir_module_module WHERE name = %s", [MODULE])
        return rows[0][0] if rows else None
    finally:
        db.close()


class Database:
    def __init__(self, name):
        self.name = name
        self.conn = psycopg2.connect(dbname=name)
        self.conn.autocommit = True

    def rows(self, query, params=()):
        with self.conn.cursor() as cr:
            cr.execute(query, params)
            return cr.fetchall()

    def value(self, query, params=()):
        return self.rows(query, params)[0][0]

    def linked(self):
        return self.value("SELECT count(*) FROM res_partner WHERE freshbooks_client_id IS NOT NULL")

    def schedule(self, cron, due):
        """The add-on's cron job `cron` is due in `due` (a PostgreSQL interval) from now."""
        self.rows("UPDATE ir_cron SET nextcall = now() at time zone 'UTC' + %s::interval "
                  "WHERE id = (SELECT res_id FROM ir_model_data WHERE module = %s AND name = %s) "
                  "RETURNING id", [due, MODULE, cron])

    def lock_holders(self):
        return self.value(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
            "AND objsubid = 2 AND database = (SELECT oid FROM pg_database WHERE datname = %s)",
            [LOCK_NAMESPACE, self.name])

    def close(self):
        self.conn.close()


def check_contacts(checks, db, clients, label):
    """The invariants after a sync: one contact per active client, nothing twice."""
    active = {str(c["id"]): client_name(c) for c in clients if str(c.get("vis_state")) == "0"}
    rows = db.rows("SELECT freshbooks_client_id, name FROM res_partner "
                   "WHERE freshbooks_client_id IS NOT NULL")
    refs = Counter(ref for ref, _name in rows)
    checks.check(len(rows) == len(active),
                 f"{label}: {len(rows)} linked contacts for {len(active)} active clients")
    checks.check(set(refs) == set(active), f"{label}: the linked clients are the active ones",
                 f"{len(set(refs) - set(active))} extra, {len(set(active) - set(refs))} missing")
    twice = [ref for ref, n in refs.items() if n > 1]
    checks.check(not twice, f"{label}: no client linked twice", f"{twice[:5]}")
    dup = db.rows("SELECT freshbooks_account_id, freshbooks_client_id FROM res_partner WHERE "
                  "freshbooks_client_id IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1")
    checks.check(not dup, f"{label}: no two contacts share a FreshBooks client id", f"{dup[:5]}")
    names = Counter(name for _ref, name in rows)
    expected = Counter(active.values())
    extra = {name: n for name, n in names.items() if n > expected.get(name, 0)}
    checks.check(not extra, f"{label}: no name imported twice", f"{list(extra.items())[:5]}")
    orphans = db.value("SELECT count(*) FROM res_partner WHERE freshbooks_client_id IS NULL "
                       "AND name = ANY(%s)", [sorted(set(active.values()))])
    checks.check(orphans == 0, f"{label}: no unlinked contact carries an imported name",
                 f"{orphans}")
    # Documents are listed by threads of their own, beside the contacts, and attached at the end.
    for table, kind in (("freshbooks_invoice", "invoices"), ("freshbooks_payment", "payments"),
                        ("freshbooks_estimate", "estimates")):
        total, stray = db.rows(
            f"SELECT count(*), count(*) FILTER (WHERE d.partner_id IS DISTINCT FROM p.id) "  # noqa: S608
            f"FROM {table} d JOIN res_partner p ON p.freshbooks_account_id = d.account_id "
            "AND p.freshbooks_client_id = d.client_ref")[0]
        checks.check(stray == 0, f"{label}: the {kind} of linked clients are on their contacts "
                     f"({total})", f"{stray} not")
    return len(active)


def killed_in_the_middle(checks, odoo, db_name, clients, url):
    print("-- a) a sync killed in the middle, then run again", flush=True)
    expected = sum(1 for c in clients if str(c.get("vis_state")) == "0")
    db = Database(db_name)
    try:
        # A slow FreshBooks, so that the first commit (a second in) comes before the last page;
        # the other scenarios (and the rerun) get the usual one back, whatever happens.
        sandbox_call(url, "/_sandbox/faults", {"latency_ms": KILL_LATENCY_MS})
        try:
            process, log = odoo.shell(db_name, SYNC.format(ready="", go=""), "killed")
            seen, deadline = 0, time.time() + TIMEOUT
            while process.poll() is None and time.time() < deadline:
                seen = db.linked()
                if seen > 0:
                    break
                time.sleep(0.01)
            alive = process.poll() is None
            if alive:
                process.send_signal(signal.SIGKILL)
            process.wait()
        finally:
            sandbox_call(url, "/_sandbox/faults", {"latency_ms": LATENCY_MS})
        checks.check(alive and 0 < seen < expected,
                     f"the sync was killed in the middle ({seen} of {expected} contacts linked)",
                     "" if alive else f"it ended first, exit code {process.returncode}: "
                     f"{log.read_text()[-500:]}")
        # The killed run's connection goes, and its advisory lock with it.
        deadline = time.time() + 10
        while db.lock_holders() and time.time() < deadline:
            time.sleep(0.05)
        checks.check(db.lock_holders() == 0, "the killed run's lock is released")
        after_kill = db.linked()
        checks.check(after_kill < expected, f"the killed run kept its committed pages ({after_kill})")
        running = db.value("SELECT count(*) FROM freshbooks_sync_log WHERE state = 'running'")
        checks.check(running == 1, "the killed run's log was left running", f"{running}")

        process, log = odoo.shell(db_name, SYNC.format(ready="", go=""), "rerun")
        code, output = wait(process, log)
        result = marker(output, "FAULTS_SYNC")
        checks.check(code == 0 and result and result[1] == "done",
                     "the sync run again ends done", f"exit code {code}, result {result}")
        check_contacts(checks, db, clients, "after kill + rerun")
        if result and result[0].isdigit():
            created, linked, executions = db.rows(
                "SELECT COALESCE(created, 0), COALESCE(linked, 0), executions FROM "
                "freshbooks_sync_log WHERE id = %s", [int(result[0])])[0]
            checks.check(created + linked == expected and executions == 2,
                         f"the rerun went on with the killed run, from its last committed page "
                         f"({created} created, {linked} linked in {executions} executions)")
        states = dict(db.rows("SELECT state, count(*) FROM freshbooks_sync_log GROUP BY state"))
        checks.check(states == {"done": 1},
                     "one log for the run across both executions; none still claims to be "
                     "running", f"{states}")
        checks.check(db.lock_holders() == 0, "no lock left behind")
    finally:
        db.close()


def two_at_once(checks, odoo, db_name, clients, work):
    print("-- b) two syncs start at the same moment", flush=True)
    expected = sum(1 for c in clients if str(c.get("vis_state")) == "0")
    go = str(work / "go")
    runs = []
    for n in (1, 2):
        ready = str(work / f"ready{n}")
        runs.append((ready, *odoo.shell(db_name, SYNC.format(ready=ready, go=go), f"race{n}")))
    deadline = time.time() + TIMEOUT
    while not all(os.path.exists(r[0]) for r in runs) and time.time() < deadline:
        if any(r[1].poll() is not None for r in runs):
            break
        time.sleep(0.01)
    Path(go).touch()
    results = []
    for _ready, process, log in runs:
        code, output = wait(process, log)
        results.append((code, marker(output, "FAULTS_SYNC")))
    checks.check(all(code == 0 and result for code, result in results),
                 "both sync processes ended normally", f"{results}")
    ran = [result for _code, result in results if result and result[0] != "skipped"]
    skipped = [result for _code, result in results if result and result[0] == "skipped"]
    db = Database(db_name)
    try:
        check_contacts(checks, db, clients, "after two syncs at once")
        logs = db.rows("SELECT id, state, COALESCE(created, 0), COALESCE(linked, 0) "
                       "FROM freshbooks_sync_log ORDER BY id")
        if len(ran) == 1 and len(skipped) == 1:
            checks.check(len(logs) == 1 and logs[0][1] == "done" and logs[0][2] == expected,
                         "one run did the work, the other was skipped and wrote no log",
                         f"{logs}")
        else:
            # Not at the same moment after all: one after the other, the second had nothing to do.
            print(f"note: the two runs did not overlap ({results})", flush=True)
            checks.check(len(logs) == len(ran) and all(s == "done" for _i, s, _c, _l in logs)
                         and sum(c for _i, _s, c, _l in logs) == expected,
                         "the runs, one after the other, created each contact once", f"{logs}")
        checks.check(db.lock_holders() == 0, "no lock left behind")
    finally:
        db.close()


TOKEN_ROUTE = "POST /auth/oauth/token"
RACE_THREADS = 6


def token_race(checks, odoo, db_name, url, work):
    print("-- the token expires: a sync's threads and another process's threads all need a new "
          "one at once, then the same with a refresh token another server already spent",
          flush=True)
    db = Database(db_name)
    try:
        # A grant of this database's own: the others keep theirs.
        grant = sandbox_call(url, "/_sandbox/grant", {})
        db.rows("UPDATE freshbooks_token SET access_token = %s, refresh_token = %s, "
                "expiry = now() at time zone 'UTC' - interval '1 hour' RETURNING id",
                [grant["access_token"], grant["refresh_token"]])
        before = sandbox_call(url, "/_sandbox/state")["requests"].get(TOKEN_ROUTE, 0)
        (sync_code, sync_out), (threads_code, threads_out) = race_for_token(odoo, db_name, work,
                                                                            "tokens")
        asked = sandbox_call(url, "/_sandbox/state")["requests"].get(TOKEN_ROUTE, 0) - before
        result, answers = marker(sync_out, "FAULTS_SYNC"), thread_answers(threads_out)
        checks.check(sync_code == 0 and result and result[1] == "done",
                     "the sync whose four listings renewed the token at once ends done",
                     f"exit code {sync_code}, result {result}")
        tokens = {answer[1] for answer in answers if answer[0] == "ok"}
        checks.check(threads_code == 0 and len(answers) == RACE_THREADS and len(tokens) == 1
                     and all(answer[0] == "ok" for answer in answers),
                     f"{RACE_THREADS} threads of another process all got the same new token",
                     f"exit code {threads_code}, {answers}")
        checks.check(asked == 1, "exactly one of them asked FreshBooks for it",
                     f"{asked} token requests")
        stored = db.rows("SELECT a.state, t.access_token, t.expiry > now() at time zone 'UTC' "
                         "FROM freshbooks_account a JOIN freshbooks_token t ON t.account_id = "
                         "a.id")[0]
        checks.check(stored[0] == "connected" and stored[2] and stored[1][-8:] in tokens,
                     "the database holds that token and the connection stays connected",
                     f"{stored[0]}, fresh {stored[2]}")
        quiet(checks, sync_out + threads_out, "neither process logged an error")

        # Another server refreshed first and its answer was lost: this refresh token is spent.
        db.rows("UPDATE freshbooks_token SET refresh_token = 'spent-elsewhere', expiry = now() "
                "at time zone 'UTC' - interval '1 hour' RETURNING id")
        (sync_code, sync_out), (threads_code, threads_out) = race_for_token(odoo, db_name, work,
                                                                            "spent")
        result, answers = marker(sync_out, "FAULTS_SYNC"), thread_answers(threads_out)
        state = db.value("SELECT state FROM freshbooks_account")
        checks.check(state == "reconnect", 'the spent grant turns the connection to "Reconnect '
                     'needed"', f"state {state!r}")
        logs = db.rows("SELECT state, message FROM freshbooks_sync_log ORDER BY id")
        checks.check(sync_code == 0 and logs[-1][0] == "failed" and bool(logs[-1][1])
                     and not any(s == "running" for s, _m in logs),
                     "its sync ends failed with a reason, no log left running",
                     f"exit code {sync_code}, {result}, logs {logs}")
        checks.check(threads_code == 0 and len(answers) == RACE_THREADS
                     and all(answer[:2] == ["error", "AuthError"] for answer in answers),
                     "every thread is told to connect again (and nothing else)", f"{answers}")
        activities = db.value("SELECT count(*) FROM mail_activity WHERE res_model = "
                              "'freshbooks.account' AND summary = 'Reconnect FreshBooks'")
        checks.check(activities == 1, 'one "Reconnect FreshBooks" activity', f"{activities}")
        quiet(checks, sync_out + threads_out, "neither process logged an error")
    finally:
        db.close()


def race_for_token(odoo, db_name, work, name):
    """A full sync in one process and RACE_THREADS threads in another, started together."""
    go = work / f"{name}-go"
    ready = [work / f"{name}-ready{n}" for n in (1, 2)]
    processes = [
        odoo.shell(db_name, SYNC.format(ready=str(ready[0]), go=str(go)), f"{name}-sync"),
        odoo.shell(db_name, TOKEN_THREADS.format(ready=str(ready[1]), go=str(go),
                                                 threads=RACE_THREADS), f"{name}-threads")]
    deadline = time.time() + TIMEOUT
    while not all(path.exists() for path in ready) and time.time() < deadline and all(
            process.poll() is None for process, _log in processes):
        time.sleep(0.01)
    go.touch()
    return [wait(process, log) for process, log in processes]


def thread_answers(output):
    fields = marker(output, "FAULTS_TOKENS")
    return json.loads(" ".join(fields)) if fields else []


def quiet(checks, output, text):
    problems = [line for line in output.splitlines()
                if " ERROR " in line or "Traceback" in line or "could not serialize" in line]
    checks.check(not problems, text, "\n".join(problems[:5]))


NEUTRAL_MESSAGE = "neutralized copy"  # in the account's status message (data/neutralize.sql)


def copy_state(db):
    """What a copy must not keep of production's connection, as counts."""
    return {
        "tokens": db.value("SELECT count(*) FROM freshbooks_token WHERE access_token IS NOT NULL "
                           "OR refresh_token IS NOT NULL"),
        "webhooks": db.value("SELECT count(*) FROM freshbooks_webhook"),
        "verified webhooks": db.value("SELECT count(*) FROM freshbooks_webhook WHERE verified"),
        "queue rows": db.value("SELECT count(*) FROM freshbooks_queue"),
        "pending pushes": db.value("SELECT count(*) FROM res_partner "
                                   "WHERE freshbooks_push_state = 'pending'"),
        "connected accounts": db.value("SELECT count(*) FROM freshbooks_account "
                                       "WHERE state = 'connected'"),
    }


def neutralized_copy(checks, odoo, db_name, copy_name):
    print("-- e) a neutralized copy is disconnected (odoo neutralize)", flush=True)
    db = Database(db_name)
    try:
        # Production as it is between two runs: a webhook hint waits, an edit waits to be sent.
        account_id = db.value("SELECT min(id) FROM freshbooks_account WHERE state = 'connected'")
        ref = db.value("SELECT max(freshbooks_client_id) FROM res_partner "
                       "WHERE freshbooks_client_id IS NOT NULL")
        db.rows("INSERT INTO freshbooks_queue (account_id, object_type, object_ref, reason, "
                "create_uid, create_date, write_uid, write_date) VALUES (%s, 'client', %s, "
                "'webhook', 1, now() at time zone 'UTC', 1, now() at time zone 'UTC') "
                "ON CONFLICT DO NOTHING RETURNING id", [account_id, ref])
        db.rows("UPDATE res_partner SET freshbooks_push_state = 'pending' WHERE id = (SELECT "
                "min(id) FROM res_partner WHERE freshbooks_client_id IS NOT NULL) RETURNING id")
        before = copy_state(db)
    finally:
        db.close()
    if not checks.check(all(before.values()),
                        "the database to copy is connected, with tokens, verified webhooks, a "
                        "queued hint and a pending push", f"{before}"):
        return
    odoo.copydb(db_name, copy_name)
    code, output = odoo.neutralize(copy_name)
    checks.check(code == 0 and "Neutralization finished" in output,
                 f"`odoo neutralize -d {copy_name}` ran", f"exit code {code}: {output[-1500:]}")
    copy = Database(copy_name)
    original = Database(db_name)
    try:
        after = copy_state(copy)
        checks.check(after["tokens"] == 0, "the copy has no access or refresh token",
                     f"{after['tokens']} token rows keep one")
        accounts = copy.rows("SELECT state, COALESCE(status_message, '') FROM freshbooks_account")
        checks.check(accounts and all(state == "draft" and NEUTRAL_MESSAGE in message.lower()
                                      for state, message in accounts),
                     "every connection of the copy is a draft that says it is a neutralized copy",
                     f"{accounts}")
        checks.check(after["webhooks"] == 0, "the copy has no webhook", f"{after['webhooks']}")
        checks.check(after["queue rows"] == 0, "the copy has no queued work",
                     f"{after['queue rows']}")
        checks.check(after["pending pushes"] == 0, "the copy has no contact waiting to be sent",
                     f"{after['pending pushes']}")
        linked = copy.linked(), original.linked()
        checks.check(linked[0] == linked[1], "the copy's contacts keep their FreshBooks links",
                     f"{linked[0]} in the copy, {linked[1]} in the original")
        kept = copy_state(original)
        checks.check(kept == before, "the original is untouched (its tokens, webhooks, queue "
                     "and pending push are there)", f"before {before}, after {kept}")
    finally:
        copy.close()
        original.close()


# -- real Odoo servers -------------------------------------------------------------------------

SYNC_CRON = "FreshBooks: sync contacts and invoices"
WORK_CRON = "FreshBooks: apply webhooks and send pending changes"
STORY_CLIENTS, STORY_INVOICES, STORY_LATENCY_MS = 40, 1, 25
HINTS = 200  # webhook hints queued before the revoked run (freshbooks_sync.QUEUE_BATCH)
SOAK_RATE = 3  # sandbox changes a second during --soak
# f): the sandbox's clients, the seconds and rate of its traffic, how often each server is asked
# for a sync
TWO_CLIENTS, TWO_SECONDS, TWO_RATE, TWO_ASK_EVERY = 300, 30, 4, 3
# g): a first sync that needs several executions of the cron under small worker limits
LIMITED_CLIENTS, LIMITED_TIMEOUT, LIMITED_PHONE = 20000, 600, "+1 555 0199"
# CPU is what the sync spends; 8 s a pass makes it take many executions. Not a smaller real-time
# limit: Odoo 18's cron worker waits up to 69 s between two polls without telling the master it
# lives, and below 70 s the master kills idle cron workers (every 16 s with 15 s, measured).
LIMITS = ("--limit-time-real=75", "--limit-time-cpu=8")
CLIENT_PAGES_ROUTE = "GET /accounting/account/{account_id}/users/clients"
PAGES_AHEAD = 3  # freshbooks_sync.PAGES_AHEAD
SKIPPED = "skipped: another run is in progress"  # freshbooks_sync._run, when the lock is taken
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \d+ (\w+) ")

# Odoo started with `python -m odoo` cannot spawn its gevent process (it runs sys.argv[0],
# odoo/__main__.py, as a script): a launcher file of our own can be run either way.
LAUNCHER = "import sys\nfrom odoo.cli.command import main\nsys.exit(main())\n"

# The next sync after the revoked one, in a process of its own: is it kept out by a lock?
NEXT = """
import logging
messages = []
class Catch(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logger = logging.getLogger("odoo.addons.{module}")
logger.setLevel(logging.INFO)
logger.addHandler(Catch())
account = env["freshbooks.account"].sudo().browse({account_id})
env.cr.execute("SELECT pg_try_advisory_lock(%s, %s)", [{namespace}, account.id])
free = env.cr.fetchone()[0]
if free:
    env.cr.execute("SELECT pg_advisory_unlock(%s, %s)", [{namespace}, account.id])
env.cr.commit()
log = env["freshbooks.sync"]._sync_account(account, full=True)
env.cr.commit()
skipped = not free or any("another run" in m for m in messages)
print("FAULTS_NEXT", int(free), int(skipped), log.id if log else "none",
      log.state if log else "-", flush=True)
"""


class Server:
    """A real Odoo server on one database: prefork, HTTP workers and one cron worker."""

    def __init__(self, odoo, db, name):
        self.odoo, self.db = odoo, db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = odoo.work / f"{name}.log"
        self.process = None

    def start(self, workers=2, options=()):
        launcher = self.odoo.work / "odoo-server"
        launcher.write_text(LAUNCHER)
        with self.log.open("w") as out:
            self.process = subprocess.Popen(  # noqa: S603
                [sys.executable, str(launcher), *self.odoo.common, "-d", self.db,
                 f"--db-filter=^{re.escape(self.db)}$", f"--workers={workers}",
                 "--max-cron-threads=1", "--http-interface=127.0.0.1",
                 f"--http-port={self.port}", f"--gevent-port={free_port()}", "--log-level=info",
                 *options],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline and self.alive():
            try:
                with urllib.request.urlopen(self.url + "/web/health", timeout=5):  # noqa: S310
                    return True
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the Odoo server did not answer on {self.url} "
                           f"({'running' if self.alive() else 'exited'}): {self.text()[-1500:]}")

    def stop(self):
        """SIGTERM to the server, then SIGKILL to what is left of its process group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # its workers and gevent process
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()

    def cron_worker(self):
        """The worker running the sync: of the server's workers, the busy one (the HTTP
        workers wait for requests; the websocket worker is left out)."""
        workers = [child for child in psutil.Process(self.process.pid).children()
                   if "gevent" not in child.cmdline()]  # `odoo gevent ...`: the websocket one
        return max(workers, key=lambda child: sum(child.cpu_times()[:2]))

    def text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def errors(self):
        """ERROR/CRITICAL lines and the last line of each traceback (the websocket worker's
        included: dev/test's environment can run it)."""
        found, block = [], None

        def close(block):
            if block and block[-1]:
                found.append(block[-1])

        for line in self.text().splitlines():
            header = LOG_LINE.match(line)
            if header:
                close(block)
                block = None
                if header.group(1) in ("ERROR", "CRITICAL"):
                    found.append(line)
            elif line.startswith("Traceback"):
                close(block)
                block = [""]
            elif block is not None and line.strip() and not line.startswith(
                    ("During handling", "The above exception")):
                block.append(line)
            elif block is None and line.startswith("ERROR: "):
                found.append(line)  # PostgreSQL's reason under Odoo's "bad query" line
        close(block)
        return found

    def job_ends(self, cron_name):
        """How many runs of a cron job have ended (done or failed) so far."""
        return sum(1 for line in self.text().splitlines() if f"Job '{cron_name}' (" in line
                   and (" done in " in line or " failed" in line or " timed out" in line))


def limited_server(checks, odoo, db_name):
    print(f"-- g) a first sync of {LIMITED_CLIENTS:,} clients by a prefork server with worker "
          f"limits of {' '.join(LIMITS)}: the cron worker SIGKILLed and the token expired on "
          "the way, a contact edited", flush=True)
    sandbox, url = start_sandbox(LIMITED_CLIENTS, invoices=1)
    server = Server(odoo, db_name, "limited-server")
    db = Database(db_name)
    try:
        process, log = odoo.shell(db_name, CONNECT.format(url=url, module=MODULE),
                                  "limited-connect")
        code, output = wait(process, log)
        if not checks.check(code == 0 and marker(output, "FAULTS_CONNECTED"),
                            "g) the company is connected to the sandbox", f"exit code {code}"):
            return
        clients = sandbox_clients(url)
        expected = sum(1 for c in clients if str(c.get("vis_state")) == "0")
        listed = sum(1 for c in clients if str(c.get("vis_state")) != "1")
        # The pages a run that never starts over asks: every listed page and the deleted ones'.
        pages = -(-listed // 100) + max(1, -(-(len(clients) - listed) // 100))
        db.schedule("ir_cron_freshbooks_sync", "0")
        server.start(options=LIMITS)
        server.wait_ready()
        rpc = Rpc(server.url, db_name, "admin", "admin")
        start, woken = time.time(), 0
        edited = killed = tokens_before = None
        while time.time() - start < LIMITED_TIMEOUT and server.alive():
            first = db.rows("SELECT state FROM freshbooks_sync_log ORDER BY id LIMIT 1")
            if first and first[0][0] != "running":
                break
            if time.time() - woken > 2:
                # Until the worker listens, a notification is lost; a worker started again after
                # the kill would otherwise wait for its next poll (up to 69 s).
                notify_cron(db_name)
                woken = time.time()
            linked = db.linked()
            if edited is None and linked:
                edited = db.rows("SELECT id, freshbooks_client_id FROM res_partner WHERE "
                                 "freshbooks_client_id IS NOT NULL ORDER BY id LIMIT 1")[0]
                rpc("res.partner", "write", [edited[0]], {"phone": LIMITED_PHONE})
            if tokens_before is None and linked > expected // 4:
                tokens_before = sandbox_call(url, "/_sandbox/state")["requests"].get(TOKEN_ROUTE, 0)
                sandbox_call(url, "/_sandbox/expire_tokens", {})
            if killed is None and linked > expected // 2:
                server.cron_worker().send_signal(signal.SIGKILL)
                killed = linked
            time.sleep(0.2)
        seconds = time.time() - start
        time.sleep(2)  # what the worker does after the run's last execution
        runs = db.rows("SELECT state, executions, COALESCE(created, 0) + COALESCE(linked, 0) "
                       "FROM freshbooks_sync_log WHERE kind = 'full' ORDER BY id")
        state, executions, imported = runs[0] if runs else (None, 0, 0)
        checks.check(state in ("done", "partial") and len(runs) == 1 and executions >= 3,
                     f"g) the first sync of {LIMITED_CLIENTS:,} clients finished, one run over "
                     f"{executions} executions, in {seconds:.0f}s",
                     f"runs {runs}, server {'running' if server.alive() else 'exited'}")
        check_contacts(checks, db, clients, "g)")
        checks.check(imported == expected, "g) its log counts each active client once",
                     f"{imported} of {expected}")
        checks.check(killed and 0 < killed < expected,
                     "g) the cron worker was SIGKILLed in the middle of the run",
                     f"at {killed} of {expected} contacts")
        asked = sandbox_call(url, "/_sandbox/state")["requests"].get(CLIENT_PAGES_ROUTE, 0)
        slack = PAGES_AHEAD * (executions + 1)
        checks.check(asked <= pages + slack, "g) each execution, the killed one's successor "
                     "included, went on from the last committed page",
                     f"{asked} client pages asked for {pages} (slack {slack})")
        phone = sandbox_call(url, f"/_sandbox/clients/{edited[1]}")["client"].get("bus_phone") \
            if edited else None
        checks.check(phone == LIMITED_PHONE, "g) the contact edited during the sync reached "
                     "FreshBooks", f"{phone!r}")
        renewed = sandbox_call(url, "/_sandbox/state")["requests"].get(TOKEN_ROUTE, 0) - (
            tokens_before or 0)
        account_state = db.value("SELECT state FROM freshbooks_account")
        checks.check(tokens_before is not None and renewed == 1 and account_state == "connected",
                     "g) the token that expired on the way was renewed once, and stays "
                     "connected", f"{renewed} token requests, {account_state}")
        running = db.value("SELECT count(*) FROM freshbooks_sync_log WHERE state = 'running'")
        checks.check(running == 0, "g) no run left running", f"{running}")
        limits = [line for line in server.text().splitlines()
                  if "CPU time limit" in line or "timeout after" in line]
        checks.check(not limits, "g) no worker reached Odoo's limits", "\n".join(limits[:3]))
        errors = server.errors()
        checks.check(not errors, "g) no ERROR or traceback in the server log",
                     f"{len(errors)} lines")
        show_errors(errors)
        print(f"limited server: {LIMITED_CLIENTS} clients, {expected} active, {executions} "
              f"executions, {seconds:.0f}s, killed at {killed}, {asked} client pages for "
              f"{pages}", flush=True)
    finally:
        server.stop()
        stop_sandbox(sandbox)
        db.close()


# h): a contact named like the client whose VAT number base_vat refuses, and a webhook hint for
# that client waiting in the queue.
REFUSED = """
env["res.partner"].create({{"name": {name!r}, "is_company": True}})
account = env["freshbooks.account"].search([("state", "=", "connected")])
env["freshbooks.queue"]._enqueue(account, "client", {ref!r}, "webhook")
env.cr.commit()
print("FAULTS_REFUSED", flush=True)
"""


def refused_records(checks, odoo, db_name):
    print("-- h) records Odoo refuses: with base_vat installed, a client whose VAT number it "
          "refuses (linked by name, and in the queue), the sandbox's hostile clients and "
          "documents", flush=True)
    odoo.install(db_name, "base_vat", fresh=False)
    sandbox, url = start_sandbox(clients=200, invoices=2, hostile=True)
    db = Database(db_name)
    try:
        clients = sandbox_clients(url)
        hostile = {c["username"][len("hostile_"):]: c for c in clients
                   if str(c.get("username") or "").startswith("hostile_")}
        refused = hostile["invalid_vat"]
        outputs = []
        for name, script in (("refused-connect", CONNECT.format(url=url, module=MODULE)),
                             ("refused-setup", REFUSED.format(name=refused["organization"],
                                                              ref=str(refused["id"]))),
                             ("refused-sync", SYNC.format(ready="", go=""))):
            code, output = wait(*odoo.shell(db_name, script, name))
            outputs.append(output)
            if not checks.check(code == 0, f"h) {name} ran", f"exit code {code}"):
                return
        result = marker(outputs[-1], "FAULTS_SYNC")
        log_id = int(result[0]) if result and result[0].isdigit() else 0
        checks.check(result and result[1] == "partial",
                     "h) the sync ends done with errors, not failed", f"{result}")
        lines = db.rows("SELECT client_ref, client_name, reason FROM freshbooks_sync_log_line "
                        "WHERE log_id = %s AND level = 'error'", [log_id])
        vat_lines = [line for line in lines if line[0] == str(refused["id"])]
        checks.check(len(vat_lines) >= 1 and all("VAT" in reason for _r, _n, reason in vat_lines)
                     and vat_lines[0][1] == refused["organization"],
                     "h) the client base_vat refuses is a line with its id, name and reason",
                     f"{vat_lines}")
        linked = {ref for (ref,) in db.rows("SELECT freshbooks_client_id FROM res_partner "
                                            "WHERE freshbooks_client_id IS NOT NULL")}
        reported = {line[0] for line in lines}
        active = {str(c["id"]) for c in clients if str(c.get("vis_state")) == "0"}
        checks.check(active - reported <= linked and str(refused["id"]) not in linked,
                     "h) every other active client is a contact",
                     f"{len(active - reported - linked)} missing")
        row = db.rows("SELECT attempts, next_try IS NOT NULL, last_error FROM freshbooks_queue "
                      "WHERE object_ref = %s", [str(refused["id"])])
        checks.check(row and row[0][0] == 1 and row[0][1] and "VAT" in (row[0][2] or ""),
                     "h) its webhook hint waits to be tried again, with the reason", f"{row}")
        documents = db.rows(
            "SELECT (SELECT count(*) FROM freshbooks_invoice i WHERE i.partner_id = p.id), "
            "(SELECT count(*) FROM freshbooks_payment y WHERE y.partner_id = p.id), "
            "(SELECT count(*) FROM freshbooks_estimate e WHERE e.partner_id = p.id) "
            "FROM res_partner p WHERE p.freshbooks_client_id = %s",
            [str(hostile["documents"]["id"])])
        checks.check(documents == [(4, 1, 1)],
                     "h) the documents of the wrong types are on their contact", f"{documents}")
        quiet(checks, "\n".join(outputs), "h) no ERROR or traceback")
    finally:
        stop_sandbox(sandbox)
        db.close()


def show_errors(lines, limit=20):
    for line in lines[:limit]:
        print(f"    {line[:300]}", flush=True)
    if len(lines) > limit:
        print(f"    ... and {len(lines) - limit} more", flush=True)


def notify_cron(db_name):
    """Wake the cron workers up (what ir.cron._trigger does after its commit)."""
    conn = psycopg2.connect(dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cr:
            cr.execute("NOTIFY cron_trigger, %s", [db_name])
    finally:
        conn.close()


class Rpc:
    """Odoo's JSON-RPC as the web client uses it: a session cookie and call_kw."""

    def __init__(self, url, db, login, password):
        self.url, self.session, self.ids = url, requests.Session(), 0
        self.call("/web/session/authenticate", {"db": db, "login": login, "password": password})

    def call(self, path, params):
        self.ids += 1
        response = self.session.post(self.url + path, timeout=60, json={
            "jsonrpc": "2.0", "method": "call", "id": self.ids, "params": params})
        response.raise_for_status()
        data = response.json()
        if data.get("error"):
            error = data["error"].get("data", {})
            raise RuntimeError(f"{path}: {error.get('name')}: {error.get('message')}")
        return data.get("result")  # absent when the method returned None

    def __call__(self, model, method, *args, **kwargs):
        return self.call("/web/dataset/call_kw", {"model": model, "method": method,
                                                  "args": list(args), "kwargs": kwargs})


def poll(condition, timeout, interval=0.25):
    """condition() until it is true or timeout seconds passed; returns its last value."""
    deadline = time.time() + timeout
    while True:
        value = condition()
        if value or time.time() >= deadline:
            return value
        time.sleep(interval)


def revoked_during_sync(checks, odoo, db_name, clients, url, account_id):
    print("-- c) the grant is revoked while a cron worker runs the scheduled sync", flush=True)
    active = [str(c["id"]) for c in clients if str(c.get("vis_state")) == "0"]
    expected = len(active)
    db = Database(db_name)
    server = Server(odoo, db_name, "revoke-server")
    try:
        # Webhook hints wait in the queue, as they do between two syncs: the run reads those
        # clients again after its listing, one request each, in one transaction.
        db.rows("INSERT INTO freshbooks_queue (account_id, object_type, object_ref, reason, "
                "create_uid, create_date, write_uid, write_date) SELECT %s, 'client', ref, "
                "'webhook', 1, now() at time zone 'UTC', 1, now() at time zone 'UTC' "
                "FROM unnest(%s::varchar[]) AS ref RETURNING id", [account_id, active[:HINTS]])
        # The scheduled sync is due: the cron worker runs it as soon as it wakes up. The webhook
        # job is not (it would apply the hints first).
        db.schedule("ir_cron_freshbooks_sync", "0")
        db.schedule("ir_cron_freshbooks_work", "1 day")
        server.start()
        deadline, log_id, seen, woken = time.time() + TIMEOUT, None, 0, 0
        while time.time() < deadline and server.alive():
            if log_id is None:
                if time.time() - woken > 1:
                    notify_cron(db_name)  # until the worker listens, a notification is lost
                    woken = time.time()
                rows = db.rows("SELECT min(id) FROM freshbooks_sync_log")
                log_id = rows[0][0]
            elif db.linked() >= expected:
                # Every contact is linked: the run reads the queued hints now.
                seen = db.linked()
                break
            time.sleep(0.02 if log_id else 0.2)
        sandbox_call(url, "/_sandbox/revoke_all", {})
        sandbox_call(url, "/_sandbox/expire_tokens", {})
        still = db.rows("SELECT state FROM freshbooks_sync_log WHERE id = %s", [log_id or 0])
        hints = db.value("SELECT count(*) FROM freshbooks_queue")
        if not checks.check(still == [("running",)] and seen,
                            f"the grant was revoked while the cron worker's sync ran ({seen} of "
                            f"{expected} contacts linked, {hints} webhook hints queued)",
                            f"sync log {log_id}: {still}, server "
                            f"{'running' if server.alive() else 'exited'}"):
            show_errors(server.errors())
            return

        def settled():
            state = db.value("SELECT state FROM freshbooks_account WHERE id = %s", [account_id])
            running = db.value("SELECT count(*) FROM freshbooks_sync_log WHERE state = 'running'")
            return (state != "connected" and not running) or server.job_ends(SYNC_CRON)

        poll(settled, 30, 0.1)
        time.sleep(1)  # what the worker does after its job (post-commit hooks, the log line)
        state, reason = db.rows("SELECT state, status_message FROM freshbooks_account "
                                "WHERE id = %s", [account_id])[0]
        checks.check(state == "reconnect", 'the connection says "Reconnect needed"',
                     f"state {state!r}, {reason!r}")
        running = db.value("SELECT count(*) FROM freshbooks_sync_log WHERE state = 'running'")
        checks.check(running == 0, "no sync log is left running", f"{running} running")
        log_state, log_message = db.rows("SELECT state, message FROM freshbooks_sync_log "
                                         "WHERE id = %s", [log_id])[0]
        checks.check(log_state == "failed" and bool(log_message),
                     "the revoked run's log says it failed, with a reason",
                     f"{log_state!r}: {log_message!r}")
        activities = db.value(
            "SELECT count(*) FROM mail_activity WHERE res_model = 'freshbooks.account' "
            "AND res_id = %s AND summary = 'Reconnect FreshBooks'", [account_id])
        checks.check(activities >= 1, 'an admin has a "Reconnect FreshBooks" activity',
                     f"{activities}")
        holders = db.lock_holders()
        checks.check(holders == 0, "the run's advisory lock is free (the cron worker lives on)",
                     f"{holders} held")
        process, log = odoo.shell(db_name, NEXT.format(
            module=MODULE, account_id=account_id, namespace=LOCK_NAMESPACE), "revoke-next")
        code, output = wait(process, log)
        result = marker(output, "FAULTS_NEXT")
        checks.check(code == 0 and result and result[1] == "0",
                     "a next sync, in a new process, is not skipped by a lock",
                     f"exit code {code}, lock free/skipped/log/state: {result}")
        errors = server.errors()
        if errors:
            print("note: the cron worker's server logged:", flush=True)
            show_errors(errors)
    finally:
        server.stop()
        db.close()


class Story:
    """The prefork server and a sandbox of its own, the company connected over HTTP."""

    def __init__(self, odoo, db_name, clients=STORY_CLIENTS, name="story-server", webhook_delay=0):
        self.odoo, self.db_name, self.clients = odoo, db_name, clients
        self.webhook_delay = webhook_delay
        self.server = Server(odoo, db_name, name)
        self.sandbox = self.url = self.rpc = None
        self.account_id = None

    def close(self):
        self.server.stop()
        if self.sandbox:
            stop_sandbox(self.sandbox)

    def start(self):
        # FreshBooks posts a new callback's verifier at once (no delay), while the sync that
        # registered it is still at work.
        self.sandbox, self.url = start_sandbox(self.clients, STORY_INVOICES, STORY_LATENCY_MS,
                                               webhook_delay=self.webhook_delay)
        db = Database(self.db_name)
        try:
            # FreshBooks (the sandbox) calls Odoo back at this address; logging in keeps it.
            for key, value in (("web.base.url", self.server.url), ("web.base.url.freeze", "True")):
                db.rows("INSERT INTO ir_config_parameter (key, value, create_uid, write_uid, "
                        "create_date, write_date) VALUES (%s, %s, 1, 1, now() at time zone "
                        "'UTC', now() at time zone 'UTC') ON CONFLICT (key) DO UPDATE SET "
                        "value = EXCLUDED.value RETURNING id", [key, value])
        finally:
            db.close()
        self.server.start()
        self.server.wait_ready()
        self.rpc = Rpc(self.server.url, self.db_name, "admin", "admin")

    def connect(self):
        """Settings > FreshBooks > Connect, the consent page, and the way back to Odoo."""
        rpc = self.rpc
        for key in ("api_url", "auth_url", "web_url"):
            rpc("ir.config_parameter", "set_param", f"{MODULE}.{key}", self.url)
        state = sandbox_call(self.url, "/_sandbox/state")
        settings = rpc("res.config.settings", "create", {
            "freshbooks_url": "my.freshbooks.com", "freshbooks_client_id": state["client_id"],
            "freshbooks_client_secret": "sandbox-client-secret"})
        action = rpc("res.config.settings", "action_freshbooks_connect", [settings])
        consent = urllib.parse.urlsplit(action["url"])
        page = requests.get(action["url"], timeout=30)
        page.raise_for_status()
        form = {k: v[0] for k, v in urllib.parse.parse_qs(consent.query).items()}
        form["decision"] = "allow"
        answer = requests.post(f"{consent.scheme}://{consent.netloc}{consent.path}", data=form,
                               allow_redirects=False, timeout=30)
        if answer.status_code not in (302, 303):
            raise RuntimeError(f"the consent page answered {answer.status_code}")
        back = rpc.session.get(answer.headers["Location"], allow_redirects=False, timeout=60)
        accounts = rpc("freshbooks.account", "search_read", [], fields=["state"])
        self.account_id = accounts[0]["id"] if accounts else None
        return back, accounts

    def account(self, *fields):
        return self.rpc("freshbooks.account", "read", [self.account_id], list(fields))[0]

    def logs(self):
        return self.rpc("freshbooks.sync.log", "search_read", [],
                        fields=["kind", "state", "message"], order="id")

    def wait_job(self, cron_name, before, timeout=90):
        """Until a run of the job ends after `before` runs had ended; True when one did."""
        return poll(lambda: self.server.job_ends(cron_name) > before or not self.server.alive(),
                    timeout) and self.server.job_ends(cron_name) > before

    def webhooks(self):
        """(sandbox callbacks verified, Odoo webhooks verified, Odoo's webhook status)."""
        callbacks = sandbox_call(self.url, "/_sandbox/callbacks")["callbacks"]
        verified = self.rpc("freshbooks.webhook", "search_count", [("verified", "=", True)])
        return (sum(1 for c in callbacks if c.get("verified")), verified,
                self.account("webhook_state")["webhook_state"])

    def linked(self, limit=1):
        return self.rpc("res.partner", "search_read", [("freshbooks_client_id", "!=", False)],
                        fields=["freshbooks_client_id"], limit=limit, order="id")

    def edit_phone(self, partner):
        phone = f"+1 555 {random.randint(1000000, 9999999)}"  # noqa: S311
        self.rpc("res.partner", "write", [partner["id"]], {"phone": phone})
        return partner["freshbooks_client_id"], phone

    def sandbox_has_phone(self, ref, phone):
        client = sandbox_call(self.url, f"/_sandbox/clients/{ref}")["client"]
        return client.get("bus_phone") == phone

    def contacts_of(self, ref):
        return self.rpc("res.partner", "search_count", [("freshbooks_client_id", "=", ref)],
                        context={"active_test": False})


def prefork_story(checks, odoo, db_name):
    print("-- d) the whole story under Odoo's prefork server (2 HTTP workers, a cron worker)",
          flush=True)
    story = Story(odoo, db_name)
    try:
        story.start()
        checks.check(True, f"the prefork server answers at {story.server.url} and admin logs in")
        before = story.server.job_ends(SYNC_CRON)
        back, accounts = story.connect()
        if not checks.check(back.status_code in (302, 303) and "/odoo/settings" in back.headers.get(
                "Location", "") and accounts and accounts[0]["state"] == "connected",
                "Settings > Connect, the consent page and the callback connect the company",
                f"callback answered {back.status_code}, accounts {accounts}"):
            return
        checks.check(story.wait_job(SYNC_CRON, before), "the cron worker ran the first sync")
        webhooks = poll(lambda: story.webhooks() == (EVENTS, EVENTS, "active") and story.webhooks(), 20)
        webhooks = webhooks or story.webhooks()

        partner = story.linked()
        ref, phone = story.edit_phone(partner[0]) if partner else (None, None)
        pushed = bool(ref) and poll(lambda: story.sandbox_has_phone(ref, phone), 15)

        name = f"Webhook Story {random.randint(100000, 999999)}"  # noqa: S311
        created = sandbox_call(story.url, "/_sandbox/clients",
                               {"organization": name, "email": "webhook.story@example.com"})
        new_ref = str(created["client"]["id"])
        arrived = poll(lambda: story.contacts_of(new_ref), 20)

        before = story.server.job_ends(SYNC_CRON)
        story.rpc("freshbooks.account", "action_sync_now", [story.account_id])
        sync_now = story.wait_job(SYNC_CRON, before, timeout=60)
        # The cron worker may still apply a webhook or send an edit: let it finish.
        poll(lambda: not any(log["state"] == "running" for log in story.logs()), 10)

        checks.check(sync_now, '"Sync now" ran in the cron worker')
        logs = story.logs()
        states = Counter(log["state"] for log in logs)
        checks.check(logs and set(states) <= {"done", "partial"},
                     f"every sync log ended done or partial ({len(logs)} runs)",
                     f"{dict(states)}; " + "; ".join(
                         f"{log['kind']} {log['state']}: {log['message']}" for log in logs
                         if log["state"] not in ("done", "partial"))[:500])
        account = story.account("last_success_start", "last_sync_state", "webhook_state")
        checks.check(bool(account["last_success_start"]),
                     "the account has the start of its last successful sync", f"{account}")
        answers = Counter(str(v.get("status") or v.get("error")) for v in sandbox_call(
            story.url, "/_sandbox/state")["verifications"])
        checks.check(webhooks == (EVENTS, EVENTS, "active"),
                     "the webhooks are active (every callback verified in the sandbox and in Odoo)",
                     f"sandbox verified, Odoo verified, status: {webhooks}; Odoo's answers to "
                     f"the sandbox's verifier posts: {dict(answers)}")
        checks.check(pushed, "the phone edited over JSON-RPC reached the sandbox",
                     f"client {ref}, phone {phone!r}")
        count = story.contacts_of(new_ref)
        checks.check(arrived and count == 1,
                     "the client created in the sandbox became one contact, through its webhook",
                     f"{count} contacts after Sync now; "
                     f"{'arrived' if arrived else 'not there 20s after the webhook'}")
        errors = story.server.errors()
        if not checks.check(not errors, "no ERROR or traceback in the server log",
                            f"{len(errors)} lines, in {story.server.log}, kept with --keep"):
            show_errors(errors)
    finally:
        story.close()


def overlapping(logs):
    """Pairs of sync logs (id, start, end) whose runs overlap; a run without an end never ends.
    Odoo keeps whole seconds, which can hide an overlap within one second but never make one:
    a run starts after the previous one wrote its end and let the lock go."""
    pairs, latest = [], None
    for log in sorted(logs, key=lambda log: (log[1], log[0])):
        if latest and (latest[2] is None or log[1] < latest[2]):
            pairs.append((latest[0], log[0]))
        if latest is None or latest[2] is not None and (log[2] is None or log[2] > latest[2]):
            latest = log
    return pairs


def two_servers(checks, odoo, db_name):
    print("-- f) two Odoo prefork servers (a cron worker each) on one database, under webhook "
          "traffic and Sync now", flush=True)
    # The handshake that comes at once is d)'s subject: here it comes after 0.2s, as in a) to c).
    story = Story(odoo, db_name, TWO_CLIENTS, name="two-server-1", webhook_delay=0.2)
    second = Server(odoo, db_name, "two-server-2")
    servers = (story.server, second)
    db = None
    try:
        story.start()  # server 1, and web.base.url: the webhooks reach server 1
        second.start()
        back, accounts = story.connect()
        if not checks.check(accounts and accounts[0]["state"] == "connected",
                            "two servers: the company is connected through server 1",
                            f"callback answered {back.status_code}, accounts {accounts}"):
            return
        second.wait_ready()
        rpcs = (story.rpc, Rpc(second.url, db_name, "admin", "admin"))
        poll(lambda: sum(s.job_ends(SYNC_CRON) for s in servers) > 0, 120)
        webhooks = poll(lambda: story.webhooks() == (EVENTS, EVENTS, "active") and story.webhooks(), 30)
        webhooks = webhooks or story.webhooks()
        uris = {c["uri"].split("/", 3)[2] for c in sandbox_call(story.url, "/_sandbox/callbacks")[
            "callbacks"]}
        checks.check(webhooks == (EVENTS, EVENTS, "active") and uris == {story.server.url.split("/")[2]},
                     "two servers: the webhooks are verified and reach server 1",
                     f"sandbox verified, Odoo verified, status: {webhooks}; callbacks to {uris}")

        # Traffic: clients created and updated at the sandbox (each a signed webhook to server
        # 1), and both servers asked for a sync in turn, their cron workers woken too.
        clients = [str(c["id"]) for c in sandbox_clients(story.url)]
        changes, asks, refused, serial = Counter(), [0, 0], [], 0
        start = time.monotonic()
        end, next_ask = start + TWO_SECONDS, start
        while time.monotonic() < end:
            serial += 1
            try:
                if serial % 3 == 1:
                    client = sandbox_call(story.url, "/_sandbox/clients", {
                        "organization": f"Two Servers Client {serial}",
                        "email": f"two{serial}@example.com"})["client"]
                    clients.append(str(client["id"]))
                    changes["client.create"] += 1
                else:
                    sandbox_call(story.url, f"/_sandbox/clients/{random.choice(clients)}",  # noqa: S311
                                 {"fax": f"555-{serial:04d}"}, method="PUT")
                    changes["client.update"] += 1
            except OSError as error:
                refused.append(f"sandbox: {error}")
            now = time.monotonic()
            if now >= next_ask:
                which = sum(asks) % 2
                try:
                    rpcs[which]("freshbooks.account", "action_sync_now", [story.account_id])
                    asks[which] += 1
                except (OSError, RuntimeError, ValueError) as error:
                    refused.append(f"server {which + 1}: {error}")
                notify_cron(db_name)
                next_ask = now + TWO_ASK_EVERY / 2
            time.sleep(1 / TWO_RATE)
        checks.check(not refused, f"two servers: {sum(changes.values())} sandbox changes made "
                     f"and Sync now asked {asks[0]} + {asks[1]} times, none refused",
                     "; ".join(refused)[:500])

        # Quiet: every webhook delivered, no run at work, nothing queued. A hint that came while
        # a sync held the lock waits for the next run: ask for one.
        db = Database(db_name)
        made, settle, last_ask = sum(changes.values()), 0, time.monotonic()
        expected = made if webhooks == (EVENTS, EVENTS, "active") else 0  # one delivery for each change
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            delivered = len(sandbox_call(story.url, "/_sandbox/state")["deliveries"]) >= expected
            running = db.value("SELECT count(*) FROM freshbooks_sync_log WHERE state = 'running'")
            queued = db.value("SELECT count(*) FROM freshbooks_queue")
            if delivered and not running and not queued:
                break
            if delivered and not running and time.monotonic() - last_ask > 5:
                rpcs[1]("freshbooks.account", "action_sync_now", [story.account_id])
                settle, last_ask = settle + 1, time.monotonic()
            time.sleep(0.5)
        time.sleep(1)  # what a cron worker does after its job (post-commit hooks, the log line)
        quiet = time.monotonic() < deadline

        logs = db.rows('SELECT id, start, "end", state, kind FROM freshbooks_sync_log')
        overlaps = overlapping([log[:3] for log in logs])
        checks.check(logs and not overlaps,
                     f"two servers: no two sync runs of the business overlap ({len(logs)} runs)",
                     f"overlapping log ids: {overlaps[:10]}")
        states = Counter(log[3] for log in logs)
        checks.check(not states.get("running") and quiet,
                     "two servers: every sync log ended, nothing left queued",
                     f"{dict(states)}; {'quiet' if quiet else 'not quiet after 90s'}")
        sandbox = sandbox_clients(story.url)
        check_contacts(checks, db, sandbox, "two servers")
        counts = dict(db.rows("SELECT freshbooks_client_id, count(*) FROM res_partner WHERE "
                              "freshbooks_client_id IS NOT NULL GROUP BY 1"))
        per_client = [counts.get(str(c["id"]), 0) for c in sandbox
                      if str(c.get("vis_state")) == "0"]
        for server, name in zip(servers, ("server 1", "server 2")):
            errors = server.errors()
            if not checks.check(not errors, f"two servers: no ERROR or traceback in {name}'s log",
                                f"{len(errors)} lines, in {server.log}, kept with --keep"):
                show_errors(errors)
        skipped = sum(server.text().count(SKIPPED) for server in servers)
        deliveries = sandbox_call(story.url, "/_sandbox/state")["deliveries"]
        print(f"two servers: {len(logs)} syncs started (sync log rows), {skipped} runs skipped "
              f"for the lock, contacts per client min {min(per_client, default=0)} / max "
              f"{max(per_client, default=0)} (goal exactly 1)", flush=True)
        print(f"two servers, detail: runs {dict(Counter(log[4] for log in logs))} ended "
              f"{dict(states)}; cron jobs ended in server 1 / 2: sync "
              f"{servers[0].job_ends(SYNC_CRON)} / {servers[1].job_ends(SYNC_CRON)}, work "
              f"{servers[0].job_ends(WORK_CRON)} / {servers[1].job_ends(WORK_CRON)}; Sync now "
              f"asked {asks[0]} / {asks[1]} (+{settle} to settle); {made} sandbox changes "
              f"{dict(changes)}, {sum(1 for d in deliveries if d.get('status') == 200)} of "
              f"{len(deliveries)} webhooks answered 200; {len(per_client)} active clients",
              flush=True)
    finally:
        if db:
            db.close()
        second.stop()
        story.close()


def soak(odoo, db_name, seconds):
    """The story's setup, then `seconds` of webhook traffic, Sync now and edits; prints counts."""
    story = Story(odoo, db_name)
    start = time.monotonic()
    try:
        story.start()
        before = story.server.job_ends(SYNC_CRON)
        back, accounts = story.connect()
        if not (accounts and accounts[0]["state"] == "connected"):
            print(f"soak: the company could not be connected ({back.status_code}, {accounts})")
            return 1
        story.wait_job(SYNC_CRON, before)
        print(f"soak: connected and synced in {time.monotonic() - start:.0f}s; "
              f"{seconds}s of traffic", flush=True)
        clients = [str(c["id"]) for c in sandbox_clients(story.url)]
        invoices = [str(i["id"]) for i in sandbox_call(story.url, "/_sandbox/invoices")["invoices"]]
        changes, sync_now, edits, phones = Counter(), 0, 0, {}
        end = time.monotonic() + seconds
        next_sync = next_edit = time.monotonic()
        while time.monotonic() < end:
            kind = random.choice(("client.create", "client.update", "invoice.create",  # noqa: S311
                                  "invoice.update"))
            serial = sum(changes.values())
            try:
                if kind == "client.create":
                    client = sandbox_call(story.url, "/_sandbox/clients", {
                        "organization": f"Soak Client {serial}",
                        "email": f"soak{serial}@example.com"})["client"]
                    clients.append(str(client["id"]))
                elif kind == "client.update":
                    sandbox_call(story.url, f"/_sandbox/clients/{random.choice(clients)}",  # noqa: S311
                                 {"fax": f"555-{serial:04d}"}, method="PUT")
                elif kind == "invoice.create":
                    invoice = sandbox_call(story.url, "/_sandbox/invoices", {
                        "client_id": random.choice(clients), "amount": "12.50"})["invoice"]  # noqa: S311
                    invoices.append(str(invoice["id"]))
                else:
                    sandbox_call(story.url, f"/_sandbox/invoices/{random.choice(invoices)}",  # noqa: S311
                                 {"notes": f"soak {serial}"}, method="PUT")
                changes[kind] += 1
            except OSError as error:
                print(f"soak: the sandbox refused a {kind}: {error}", flush=True)
            now = time.monotonic()
            try:
                if now >= next_sync:
                    story.rpc("freshbooks.account", "action_sync_now", [story.account_id])
                    sync_now, next_sync = sync_now + 1, now + 60
                if now >= next_edit:
                    partners = story.linked(limit=50)
                    if partners:
                        ref, phone = story.edit_phone(random.choice(partners))  # noqa: S311
                        phones[ref] = phone  # a contact edited again: its last phone counts
                        edits += 1
                    next_edit = now + 10
            except (OSError, RuntimeError, ValueError) as error:
                print(f"soak: a JSON-RPC call failed: {error}", flush=True)
            time.sleep(1 / SOAK_RATE)
        print("soak: traffic over; waiting (up to 120s) for the runs to end", flush=True)
        poll(lambda: not any(log["state"] == "running" for log in story.logs()), 120, 1)
        time.sleep(5)
        logs = story.logs()
        state = sandbox_call(story.url, "/_sandbox/state")
        states = Counter(log["state"] for log in logs)
        kinds = Counter(log["kind"] for log in logs)
        writes = [w for w in state["client_writes"] if (w.get("status") or 500) < 400]
        delivered = Counter("ok" if d.get("status") == 200 else (d.get("error") or "?")
                            for d in state["deliveries"])
        reached = sum(1 for ref, phone in phones.items() if story.sandbox_has_phone(ref, phone))
        errors = story.server.errors()
        print(f"soak: sandbox changes made: {sum(changes.values())} {dict(changes)}")
        print(f"soak: Sync now asked {sync_now} times; contact edits over JSON-RPC: {edits}")
        print(f"soak: syncs started: {len(logs)} {dict(kinds)}")
        print(f"soak: syncs ended running: {states.get('running', 0)} (goal 0)")
        print(f"soak: syncs failed: {states.get('failed', 0)}")
        print(f"soak: syncs done/partial: {states.get('done', 0)}/{states.get('partial', 0)}")
        print(f"soak: pushes reaching the sandbox: {len(writes)} client writes; "
              f"the last phone of {reached} of the {len(phones)} contacts edited is there")
        print(f"soak: webhook deliveries: {len(state['deliveries'])} sent, "
              f"{delivered.get('ok', 0)} answered 200 {dict(delivered)}")
        print(f"soak: ERROR lines in the server log: {len(errors)} ({story.server.log})")
        show_errors(errors)
        print(f"soak took {time.monotonic() - start:.0f}s", flush=True)
        return 1 if errors or states.get("running") or states.get("failed") else 0
    finally:
        story.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True,
                        help="a database with the add-on freshly installed, or a new name")
    parser.add_argument("--addons-path", required=True)
    parser.add_argument("--config", help="Odoo configuration file")
    parser.add_argument("--data-dir", help="Odoo data directory")
    parser.add_argument("--keep", action="store_true",
                        help="keep the databases and the logs (their folder is printed)")
    parser.add_argument("--soak", type=int, metavar="SECONDS",
                        help="instead of the checks: the prefork server under traffic for SECONDS")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fbfaults."))
    odoo = Odoo(args, work)
    try:
        if args.soak:
            return soak_main(args, odoo)
        return checks_main(args, odoo, work)
    finally:
        if args.keep:
            print(f"logs kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def soak_main(args, odoo):
    db_soak = args.db + "_soak"
    made = [db_soak]
    try:
        if not database_exists(args.db):
            made.append(args.db)
            odoo.install(args.db)
        odoo.copydb(args.db, db_soak)
        return soak(odoo, db_soak, args.soak)
    finally:
        if not args.keep:
            for db in made:
                odoo.dropdb(db)


def checks_main(args, odoo, work):
    checks = Checks()
    db_kill, db_race, db_revoke, db_story = (args.db, args.db + "_race", args.db + "_revoke",
                                             args.db + "_story")
    db_neutral, db_two, db_tokens = args.db + "_neutral", args.db + "_two", args.db + "_tokens"
    db_limited, db_refused = args.db + "_limited", args.db + "_refused"
    made = [db_race, db_revoke, db_story, db_neutral, db_two, db_tokens, db_limited, db_refused]
    start = time.monotonic()
    sandbox, url = start_sandbox()
    try:
        if not database_exists(db_kill):
            made.append(db_kill)
            odoo.install(db_kill)
        checks.check(module_state(db_kill) == "installed", f"{MODULE} is installed in {db_kill}")
        odoo.copydb(db_kill, db_story)  # the fresh install, for the prefork story
        odoo.copydb(db_kill, db_two)  # and for the two servers
        odoo.copydb(db_kill, db_limited)  # and for the limited server
        odoo.copydb(db_kill, db_refused)  # and for base_vat
        process, log = odoo.shell(db_kill, CONNECT.format(url=url, module=MODULE), "connect")
        code, output = wait(process, log)
        connected = marker(output, "FAULTS_CONNECTED")
        if checks.check(code == 0 and connected, "the company is connected to the sandbox",
                        f"exit code {code}"):
            odoo.copydb(db_kill, db_race)  # connected, never synced
            odoo.copydb(db_kill, db_revoke)
            odoo.copydb(db_kill, db_tokens)
            clients = sandbox_clients(url)
            # The revocation goes last: it revokes the grant all three databases use.
            for scenario, *extra in ((killed_in_the_middle, db_kill, clients, url),
                                     (two_at_once, db_race, clients, work),
                                     (token_race, db_tokens, url, work),
                                     (revoked_during_sync, db_revoke, clients, url,
                                      int(connected[0]))):
                try:
                    scenario(checks, odoo, *extra)
                except Exception as error:  # noqa: BLE001 - report it as a failed check
                    checks.check(False, f"{scenario.__name__} ran to the end",
                                 f"{type(error).__name__}: {error}")
        stop_sandbox(sandbox)
        later = [(prefork_story, db_story)]
        if connected:
            later.append((neutralized_copy, db_kill, db_neutral))
        later.append((two_servers, db_two))
        later.append((limited_server, db_limited))
        later.append((refused_records, db_refused))
        for scenario, *extra in later:
            try:
                scenario(checks, odoo, *extra)
            except Exception as error:  # noqa: BLE001 - report it as a failed check
                checks.check(False, f"{scenario.__name__} ran to the end",
                             f"{type(error).__name__}: {error}")
    finally:
        stop_sandbox(sandbox)
        if not args.keep:
            for db in made:
                odoo.dropdb(db)
    print(f"fault injection took {time.monotonic() - start:.0f}s", flush=True)
    print(f"faults: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed or not checks.passed else 0

if __name__ == "__main__":
    sys.exit(main())

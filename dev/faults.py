"""Fault injection with real processes: a sync killed in the middle, and two syncs at once.

    python3 dev/faults.py --db NAME --addons-path PATH [--config FILE] [--data-dir DIR] [--keep]

dev/test runs it after the Odoo tests, on NAME: a copy of a database where the add-on was just
installed (without NAME, the script installs the add-on in a new database of that name). It
starts the FreshBooks sandbox as a subprocess, connects the company to it, copies NAME to
NAME_race (connected, never synced), and runs each sync in an `odoo shell` process of its own:

a) on NAME, a full sync is SIGKILLed once some contacts are linked, then run again to the end;
b) on NAME_race, two full syncs start at the same moment.

After each: one contact per active FreshBooks client, no client linked twice, no name imported
twice, and the sync log tells what happened. Prints one line per check and ends with
`faults: N passed, M failed`; exits 1 when a check failed. Drops the databases it made (unless
--keep); NAME is the caller's to drop when it was given.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
MODULE = "capsule_freshbooks_connector"
SANDBOX = ROOT / "dev" / "sandbox" / "freshbooks_sandbox.py"
CLIENTS, INVOICES, SEED, LATENCY_MS = 600, 1, 3, 15
LOCK_NAMESPACE = 0x4642  # freshbooks_sync.LOCK_NAMESPACE
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

    def install(self, db):
        self.dropdb(db)
        log = self.work / f"install-{db}.log"
        with log.open("w") as out:
            code = subprocess.call(  # noqa: S603
                [sys.executable, "-m", "odoo", *self.common, "-d", db, "-i", MODULE,
                 "--stop-after-init", "--without-demo=all", "--log-level=warn",
                 "--http-port", str(free_port())], stdout=out, stderr=subprocess.STDOUT,
                timeout=TIMEOUT * 3)
        if code:
            print(log.read_text()[-3000:])
            raise SystemExit(f"installing {MODULE} in {db} failed (exit code {code})")

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


def start_sandbox():
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, str(SANDBOX), "--port", str(port), "--clients", str(CLIENTS),
         "--invoices", str(INVOICES), "--seed", str(SEED), "--latency-ms", str(LATENCY_MS)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    if "http://127.0.0.1:" not in line:
        process.kill()
        raise SystemExit(f"the sandbox did not start: {line!r}")
    return process, f"http://127.0.0.1:{port}"


def sandbox_clients(url):
    with urllib.request.urlopen(url + "/_sandbox/clients", timeout=30) as response:  # noqa: S310
        return json.load(response)["clients"]


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
    return len(active)


def killed_in_the_middle(checks, odoo, db_name, clients):
    print("-- a) a sync killed in the middle, then run again", flush=True)
    expected = sum(1 for c in clients if str(c.get("vis_state")) == "0")
    db = Database(db_name)
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
            created, linked = db.rows("SELECT COALESCE(created, 0), COALESCE(linked, 0) FROM "
                                      "freshbooks_sync_log WHERE id = %s", [int(result[0])])[0]
            checks.check(created + linked == expected - after_kill,
                         f"the rerun imported only what the killed run had not "
                         f"({created} created, {linked} linked)")
        states = dict(db.rows("SELECT state, count(*) FROM freshbooks_sync_log GROUP BY state"))
        checks.check(states == {"failed": 1, "done": 1},
                     "the killed run's log says it failed; none still claims to be running",
                     f"{states}")
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


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True,
                        help="a database with the add-on freshly installed, or a new name")
    parser.add_argument("--addons-path", required=True)
    parser.add_argument("--config", help="Odoo configuration file")
    parser.add_argument("--data-dir", help="Odoo data directory")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()

    checks = Checks()
    work = Path(tempfile.mkdtemp(prefix="fbfaults."))
    odoo = Odoo(args, work)
    db_kill, db_race = args.db, args.db + "_race"
    made = [db_race]
    start = time.monotonic()
    sandbox, url = start_sandbox()
    try:
        if not database_exists(db_kill):
            made.append(db_kill)
            odoo.install(db_kill)
        checks.check(module_state(db_kill) == "installed", f"{MODULE} is installed in {db_kill}")
        process, log = odoo.shell(db_kill, CONNECT.format(url=url, module=MODULE), "connect")
        code, output = wait(process, log)
        if checks.check(code == 0 and marker(output, "FAULTS_CONNECTED"),
                        "the company is connected to the sandbox", f"exit code {code}"):
            odoo.copydb(db_kill, db_race)  # connected, never synced
            clients = sandbox_clients(url)
            for scenario, db_name, *extra in ((killed_in_the_middle, db_kill),
                                              (two_at_once, db_race, work)):
                try:
                    scenario(checks, odoo, db_name, clients, *extra)
                except Exception as error:  # noqa: BLE001 - report it as a failed check
                    checks.check(False, f"{scenario.__name__} ran to the end",
                                 f"{type(error).__name__}: {error}")
    finally:
        sandbox.terminate()
        sandbox.wait(10)
        if not args.keep:
            for db in made:
                odoo.dropdb(db)
        shutil.rmtree(work, ignore_errors=True)
    print(f"fault injection took {time.monotonic() - start:.0f}s", flush=True)
    print(f"faults: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed or not checks.passed else 0


if __name__ == "__main__":
    sys.exit(main())

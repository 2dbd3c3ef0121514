"""Benchmark: sync N FreshBooks clients into Odoo, against Odoo's own CSV import of them.

Run through dev/bench, which prepares PostgreSQL and Odoo. Prints one key=value per line.
The sandbox runs as a separate process, so peak_rss_mb is Odoo's side alone.
"""

import argparse
import cProfile
import csv
import io
import json
import os
import random
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE = "capsule_freshbooks_connector"


def log(message):
    print(f"# {message}", file=sys.stderr, flush=True)


def sandbox_get(url, path):
    with urllib.request.urlopen(url + path, timeout=60) as response:  # noqa: S310 - loopback
        return json.load(response)


def sandbox_requests(url):
    return sandbox_get(url, "/_sandbox/state")["total_requests"]


def start_sandbox(port, clients, invoices, seed, latency_ms):
    process = subprocess.Popen(  # noqa: S603 - our own script
        [sys.executable, str(ROOT / "dev/sandbox/freshbooks_sandbox.py"), "--port", str(port),
         "--clients", str(clients), "--invoices", str(invoices), "--seed", str(seed),
         "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if "http://" not in line:
        process.kill()
        raise SystemExit(f"the sandbox did not start: {line!r}")
    return process, f"http://127.0.0.1:{port}"


def odoo_env(dbname, addons_path):
    import odoo
    from odoo.tools import config

    if not getattr(odoo_env, "configured", False):
        config.parse_config(["--addons-path", addons_path, "--log-level", "warn"])
        odoo_env.configured = True
    registry = odoo.modules.registry.Registry(dbname)
    cr = registry.cursor()
    return odoo.api.Environment(cr, odoo.SUPERUSER_ID, {}), cr


def close(cr, dbname):
    """Close the cursor and every pooled connection, so the database can be copied."""
    import odoo

    cr.close()
    odoo.modules.registry.Registry.delete(dbname)
    odoo.sql_db.close_db(dbname)


def query_count():
    from odoo import sql_db

    return sql_db.sql_counter


def create_database(dbname, addons_path):
    subprocess.run(["dropdb", "--if-exists", dbname], check=True)  # noqa: S603,S607
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "odoo", "-d", dbname, "--addons-path", addons_path, "-i", MODULE,
         "--stop-after-init", "--without-demo=all", "--log-level=warn", "--http-port",
         str(free_port())], check=True)


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed_existing_contacts(env, clients, count, seed):
    """N/2 contacts, half of them named like a FreshBooks client."""
    rng = random.Random(seed)
    named = [c for c in clients if (c.get("organization") or c.get("fname"))]
    matching = rng.sample(named, min(count // 2, len(named)))
    values = []
    for client in matching:
        organization = client.get("organization") or ""
        name = organization or f"{client.get('fname', '')} {client.get('lname', '')}".strip()
        values.append({"name": name, "is_company": bool(organization)})
    values += [{"name": f"Existing Contact {i:06d}", "is_company": i % 2 == 0}
               for i in range(count - len(values))]
    Partner = env["res.partner"].with_context(tracking_disable=True, mail_create_nolog=True)
    for start in range(0, len(values), 1000):
        Partner.create(values[start:start + 1000])
    env.cr.commit()
    # A database in service has planner statistics (autovacuum gathers them), taken before the
    # sync links any contact. Clusters tuned for CI often run without autovacuum; the sync's
    # queries must be right with both, and this is the one real admins have.
    env.cr.execute("ANALYZE")
    env.cr.commit()
    return len(matching)


def connect(env, sandbox_url):
    ICP = env["ir.config_parameter"]
    for key in ("api_url", "auth_url", "web_url"):
        ICP.set_param(f"{MODULE}.{key}", sandbox_url)
    ICP.set_param("web.base.url", "http://127.0.0.1:8069")
    request = urllib.request.Request(sandbox_url + "/_sandbox/grant", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        grant = json.load(response)
    from datetime import datetime

    account = env["freshbooks.account"]._for_company(env.company)
    account.write({
        "freshbooks_url": "my.freshbooks.com", "client_id": "sandbox-client-id",
        "client_secret": "sandbox-client-secret", "state": "connected",
        "access_token": grant["access_token"], "refresh_token": grant["refresh_token"],
        "token_expiry": datetime.utcfromtimestamp(grant["created_at"] + grant["expires_in"]),
        "fb_account_id": grant.get("account_id") or "SBX001", "fb_business_name": "Sandbox",
    })
    env.cr.commit()
    return account


def timed_sync(env, account, sandbox_url, full, profile=None):
    requests_before, queries_before = sandbox_requests(sandbox_url), query_count()
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    sync_log = env["freshbooks.sync"]._sync_account(account, full=full)
    elapsed = time.perf_counter() - start
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
        log(f"profile of the initial sync written to {profile}")
    return (elapsed, sandbox_requests(sandbox_url) - requests_before,
            query_count() - queries_before, sync_log)


def push_edits(env, account, sandbox_url, count):
    partners = env["res.partner"].search(
        [("freshbooks_account_id", "=", account.id)], limit=count)
    requests_before = sandbox_requests(sandbox_url)
    start = time.perf_counter()
    partners.write({"phone": "+1 555 0142"})
    env.cr.commit()  # the post-commit hook hands bulk edits to the background job
    env["freshbooks.sync"]._cron_work()
    elapsed = time.perf_counter() - start
    pending = env["res.partner"].search_count([("id", "in", partners.ids),
                                               ("freshbooks_push_state", "!=", "synced")])
    if pending:
        log(f"{pending} edits were not sent")
    return elapsed, sandbox_requests(sandbox_url) - requests_before, len(partners)


def base_import(env, clients):
    """Odoo's own CSV import (base_import) of the same contacts."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = ["name", "is_company", "email", "phone", "street", "city", "zip", "country_id"]
    writer.writerow(columns)
    for client in clients:
        organization = client.get("organization") or ""
        name = organization or f"{client.get('fname', '')} {client.get('lname', '')}".strip()
        if not name:
            continue
        writer.writerow([name, "1" if organization else "0", client.get("email") or "",
                         client.get("bus_phone") or "", client.get("p_street") or "",
                         client.get("p_city") or "", client.get("p_code") or "",
                         client.get("p_country") or ""])
    importer = env["base_import.import"].create({
        "res_model": "res.partner", "file": buffer.getvalue().encode(),
        "file_type": "text/csv", "file_name": "clients.csv"})
    options = {"quoting": '"', "separator": ",", "has_headers": True, "encoding": "utf-8",
               "date_format": "", "datetime_format": "", "float_thousand_separator": ",",
               "float_decimal_separator": ".", "fields": [], "name_create_enabled_fields": {},
               "import_skip_records": [], "import_set_empty_fields": [], "skip": 0,
               "limit": len(clients) + 1}
    start = time.perf_counter()
    result = importer.execute_import(columns, columns, options)
    env.cr.commit()
    elapsed = time.perf_counter() - start
    errors = [m for m in result.get("messages", []) if m.get("type") == "error"]
    if errors:
        log(f"base_import reported {len(errors)} errors, first: {errors[0].get('message')}")
    return elapsed, len(result.get("ids") or [])


# What the sync writes of a contact, besides its connection.
FLOOR_FIELDS = ["name", "is_company", "email", "phone", "mobile", "street", "street2", "city",
                "zip", "state_id", "country_id", "vat", "comment", "team_id", "company_id",
                "freshbooks_client_id", "freshbooks_state", "freshbooks_push_state",
                "freshbooks_sent_values"]
FLOOR_PAGE = 100  # what the sync writes at once: a page of clients


def sync_writes(env, account, first_new_id):
    """What the initial sync wrote: the contacts it created, the values it wrote on the contacts
    it linked, and their chatter notes."""
    Partner = env["res.partner"].with_context(active_test=False)
    partners = Partner.search([("freshbooks_account_id", "=", account.id)], order="id")
    values = partners.read(FLOOR_FIELDS, load=None)
    created = [v for v in values if v["id"] >= first_new_id]
    linked = {v["id"]: v for v in values if v["id"] < first_new_id}
    notes = {m.res_id: m.body for m in env["mail.message"].search(
        [("model", "=", "res.partner"), ("res_id", "in", list(linked)),
         ("body", "ilike", "Linked to FreshBooks client")])}
    return created, linked, notes


def orm_floor(env, account, writes):
    """What Odoo itself costs for the same writes, on a copy of the database from before the
    sync: the ORM create of the new contacts, the link writes and their chatter notes, a page
    at a time, with the sync's context."""
    created, linked, notes = writes
    Partner = env["res.partner"].with_context(
        active_test=False, freshbooks_no_push=True, tracking_disable=True, mail_create_nolog=True,
        mail_notrack=True)
    link = {"freshbooks_account_id": account.id}
    before = {v["id"]: v for v in Partner.browse(list(linked)).read(FLOOR_FIELDS, load=None)}
    start = time.perf_counter()
    for page in range(0, len(created), FLOOR_PAGE):
        vals = [dict({k: v for k, v in row.items() if k != "id"}, **link)
                for row in created[page:page + FLOOR_PAGE]]
        Partner.create(vals)
        env.flush_all()
    ids = list(linked)
    for page in range(0, len(ids), FLOOR_PAGE):
        for pid in ids[page:page + FLOOR_PAGE]:
            # The values the link wrote: its own and the fields it filled.
            Partner.browse(pid).write(dict(link, **{k: v for k, v in linked[pid].items()
                                                    if k != "id" and v != before[pid][k]}))
        batch = {pid: notes[pid] for pid in ids[page:page + FLOOR_PAGE] if pid in notes}
        Partner.browse(list(batch))._message_log_batch(batch)
        env.flush_all()
    env.cr.commit()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--clients", type=int, default=10000)
    parser.add_argument("--invoices", type=int, default=5)
    parser.add_argument("--existing", type=int, help="Odoo contacts before the sync (default N/2)")
    parser.add_argument("--edits", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", default="freshbooks_bench")
    parser.add_argument("--addons-path", required=True)
    parser.add_argument("--profile", help="write a cProfile of the initial sync to this file")
    parser.add_argument("--commit-interval", type=float,
                        help="seconds between two commits of a run's pages (default: the "
                             "add-on's; 0 commits every page)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="the sandbox waits this long before each answer, as a remote "
                             "FreshBooks would (0: loopback speed)")
    args = parser.parse_args()

    n = args.clients
    sandbox, url = start_sandbox(free_port(), n, args.invoices, args.seed, args.latency_ms)
    try:
        clients = sandbox_get(url, "/_sandbox/clients")["clients"]
        log(f"sandbox ready: {len(clients)} clients")
        create_database(args.db, args.addons_path)
        env, cr = odoo_env(args.db, args.addons_path)
        existing = n // 2 if args.existing is None else args.existing
        matching = seed_existing_contacts(env, clients, existing, args.seed)
        log(f"{existing} existing contacts, {matching} named like a client")
        close(cr, args.db)
        import_db, floor_db = args.db + "_import", args.db + "_floor"
        for copy in (import_db, floor_db):
            subprocess.run(["dropdb", "--if-exists", copy], check=True)  # noqa: S603,S607
            subprocess.run(["createdb", "-T", args.db, copy], check=True)  # noqa: S603,S607

        env, cr = odoo_env(args.db, args.addons_path)
        if args.commit_interval is not None:
            from odoo.addons.capsule_freshbooks_connector.models import freshbooks_sync

            freshbooks_sync.COMMIT_INTERVAL = args.commit_interval
        env.cr.execute("SELECT COALESCE(max(id), 0) + 1 FROM res_partner")
        first_new_id = env.cr.fetchone()[0]
        account = connect(env, url)
        rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        initial = timed_sync(env, account, url, full=True, profile=args.profile)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        noop = timed_sync(env, account, url, full=False)
        push = push_edits(env, account, url, args.edits)
        linked = env["res.partner"].search_count([("freshbooks_account_id", "=", account.id)])
        active = sum(1 for c in clients if str(c.get("vis_state", 0)) == "0")
        env.cr.execute("SELECT count(*) FROM (SELECT freshbooks_client_id FROM res_partner WHERE "
                       "freshbooks_client_id IS NOT NULL GROUP BY freshbooks_account_id, "
                       "freshbooks_client_id HAVING count(*) > 1) AS twice")
        duplicates = env.cr.fetchone()[0]
        log(f"initial sync: {initial[3]._summary()}")
        log(f"second sync: {noop[3]._summary()}")
        writes = sync_writes(env, account, first_new_id)
        cr.close()

        env, cr = odoo_env(floor_db, args.addons_path)
        orm_floor_s = orm_floor(env, connect(env, url), writes)
        log(f"ORM floor: {len(writes[0])} created, {len(writes[1])} linked, "
            f"{len(writes[2])} notes")
        cr.close()

        env, cr = odoo_env(import_db, args.addons_path)
        base_import_s, imported = base_import(env, clients)
        log(f"base_import created {imported} contacts")
        cr.close()
    finally:
        sandbox.terminate()

    print(f"clients={n}")
    print(f"latency_ms={args.latency_ms:g}")
    print(f"active_clients={active}")
    print(f"linked_contacts={linked}")
    print(f"clients_linked_twice={duplicates}")
    print(f"initial_sync_s={initial[0]:.2f}")
    print(f"seconds_per_1000_clients={initial[0] / n * 1000:.2f}")
    print(f"initial_sync_requests={initial[1]}")
    print(f"initial_sync_queries={initial[2]}")
    print(f"peak_rss_mb={peak_rss_mb:.0f}")
    print(f"rss_growth_during_sync_mb={peak_rss_mb - rss_before_mb:.0f}")
    print(f"noop_sync_s={noop[0]:.3f}")
    print(f"noop_sync_requests={noop[1]}")
    print(f"push_{push[2]}_edits_s={push[0]:.2f}")
    print(f"push_{push[2]}_edits_requests={push[1]}")
    print(f"base_import_s={base_import_s:.2f}")
    print(f"ratio_initial_sync_vs_base_import={initial[0] / base_import_s:.2f}")
    print(f"orm_floor_s={orm_floor_s:.2f}")
    print(f"ratio_initial_sync_vs_orm_floor={initial[0] / orm_floor_s:.2f}")
    sys.stdout.flush()
    os._exit(0)  # Odoo's registries keep threads alive; nothing is left to clean


if __name__ == "__main__":
    main()

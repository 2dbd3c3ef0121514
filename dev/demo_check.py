"""Drive a running demo (dev/demo) like a newcomer and measure what the issues promise.

Connects from Settings through the sandbox's consent page, waits for the first sync, then
measures: a client created in FreshBooks -> contact in Odoo (webhook), and a phone edited in
Odoo -> FreshBooks (push after commit). Prints key=value lines.

    python3 dev/demo_check.py [--odoo URL] [--sandbox URL] [--db freshbooks_demo]
"""

import argparse
import time
from urllib.parse import parse_qs, urlsplit

import requests


class Odoo:
    def __init__(self, url, db, login, password):
        self.url = url
        self.session = requests.Session()
        self.rpc("/web/session/authenticate", {"db": db, "login": login, "password": password})

    def rpc(self, path, params):
        response = self.session.post(self.url + path, json={
            "jsonrpc": "2.0", "method": "call", "params": params}, timeout=60)
        body = response.json()
        if body.get("error"):
            raise RuntimeError(body["error"]["data"]["message"])
        return body["result"]

    def call(self, model, method, *args, **kwargs):
        return self.rpc(f"/web/dataset/call_kw/{model}/{method}", {
            "model": model, "method": method, "args": list(args), "kwargs": kwargs})


def wait_for(predicate, timeout, step=0.1):
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        value = predicate()
        if value:
            return time.perf_counter() - start, value
        time.sleep(step)
    raise TimeoutError(f"not reached within {timeout}s")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--odoo", default="http://127.0.0.1:8069")
    parser.add_argument("--sandbox", default="http://127.0.0.1:8099")
    parser.add_argument("--db", default="freshbooks_demo")
    args = parser.parse_args()
    odoo = Odoo(args.odoo, args.db, "admin", "admin")
    sandbox = requests.Session()

    # Settings > Integrations > FreshBooks > Connect, then Allow on the consent page.
    start = time.perf_counter()
    settings = odoo.call("res.config.settings", "create", {
        "freshbooks_url": "my.freshbooks.com", "freshbooks_client_id": "sandbox-client-id",
        "freshbooks_client_secret": "sandbox-client-secret"})
    action = odoo.call("res.config.settings", "action_freshbooks_connect", [settings])
    consent_url = action["url"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(consent_url).query).items()}
    consent = sandbox.post(f"{args.sandbox}/oauth/authorize", data=dict(params, decision="allow"),
                           allow_redirects=False, timeout=30)
    back = odoo.session.get(consent.headers["Location"], timeout=60)
    connect_s = time.perf_counter() - start
    print(f"connect_round_trip_s={connect_s:.2f}")
    print(f"connect_lands_on={urlsplit(back.url).path}")

    clients = sandbox.get(f"{args.sandbox}/_sandbox/clients", timeout=30).json()["clients"]
    active = sum(1 for c in clients if str(c.get("vis_state", 0)) == "0")
    count = lambda: odoo.call("res.partner", "search_count",  # noqa: E731
                              [("freshbooks_client_id", "!=", False)])
    first_sync_s, _n = wait_for(lambda: count() >= active, 120, 0.5)
    print(f"first_sync_contacts={count()} (active clients: {active})")
    print(f"first_sync_done_after_connect_s={first_sync_s:.1f}")
    account = odoo.call("freshbooks.account", "search_read", [], ["webhook_state"])[0]
    wait_for(lambda: odoo.call("freshbooks.account", "search_read", [],
                               ["webhook_state"])[0]["webhook_state"] == "active", 30, 0.2)
    print(f"webhooks={account['webhook_state']}->active")

    # A client created in FreshBooks appears in Odoo by webhook, without a scheduled run.
    name = f"Webhook Check {int(time.time())}"
    created = sandbox.post(f"{args.sandbox}/_sandbox/clients",
                           json={"organization": name, "email": "check@example.com"}, timeout=30)
    client_id = str(created.json().get("client", created.json()).get("id"))
    delay, _ids = wait_for(lambda: odoo.call("res.partner", "search", [
        ("freshbooks_client_id", "=", client_id)]), 30, 0.05)
    print(f"webhook_client_to_contact_s={delay:.2f}")

    # A phone edited in Odoo reaches FreshBooks after the commit.
    partner_id = odoo.call("res.partner", "search", [("freshbooks_client_id", "=", client_id)])[0]
    phone = "+1 555 %04d" % (int(time.time()) % 10000)
    start = time.perf_counter()
    odoo.call("res.partner", "write", [partner_id], {"phone": phone})
    save_s = time.perf_counter() - start

    def phone_in_freshbooks():
        answer = sandbox.get(f"{args.sandbox}/_sandbox/clients/{client_id}", timeout=30).json()
        return answer.get("client", {}).get("bus_phone") == phone

    delay, _c = wait_for(phone_in_freshbooks, 30, 0.05)
    print(f"save_with_push_s={save_s:.3f}")
    print(f"edit_to_freshbooks_s={save_s + delay:.2f}")


if __name__ == "__main__":
    main()

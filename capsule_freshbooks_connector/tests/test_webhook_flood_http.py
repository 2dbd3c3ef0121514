"""A webhook flood: many signed deliveries (repeats on purpose) mixed with many forged ones."""

import random
import time
from urllib.parse import urlencode

from odoo.tests import HttpCase, tagged

from ..freshbooks import sign_webhook
from .common import OneTransaction, connect_account, start_sandbox

SIGNATURE = "X-FreshBooks-Hmac-SHA256"
SIGNED = 1000
FORGED = 1000
TARGETS = 50  # distinct clients the signed deliveries name
FORGED_KINDS = ("wrong_verifier", "no_signature", "other_fields", "unknown_account", "not_base64",
                "repeated_field", "fake_handshake")


@tagged("post_install", "-at_install")
class TestWebhookFlood(OneTransaction, HttpCase):

    def setUp(self):
        super().setUp()
        self.sandbox = start_sandbox(self, clients=2 * TARGETS + 20, invoices=0, seed=11)
        self.account = connect_account(self.env, self.sandbox)
        # Registered and verified callbacks, each with its own verifier (as FreshBooks does).
        self.events = self.env["freshbooks.synced"]._fb_events()
        self.hooks = self.env["freshbooks.webhook"].create([
            {"account_id": self.account.id, "event": event, "callback_ref": str(7000 + n),
             "verifier": f"flood-verifier-{n}", "verified": True}
            for n, event in enumerate(self.events)])
        self.verifiers = [f"flood-verifier-{n}" for n in range(len(self.events))]
        self.env.flush_all()

    def delivery(self, object_id, event="client.update", account_id=None):
        business = self.sandbox.businesses[0]
        return [("name", event), ("object_id", str(object_id)), ("user_id", "1"),
                ("identity_id", str(self.sandbox.identity_id)), ("business_id", str(business["id"])),
                ("account_id", account_id or self.account.fb_account_id)]

    def post(self, fields, signature=None):
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature is not None:
            headers[SIGNATURE] = signature
        return self.url_open("/freshbooks/webhook", data=urlencode(fields), headers=headers)

    def forged(self, kind, target, decoy, rng):
        """(fields, signature) of a delivery FreshBooks did not send, naming client `target`."""
        fields = self.delivery(target, rng.choice(("client.create", "client.update")))
        verifier = rng.choice(self.verifiers)
        if kind == "wrong_verifier":
            return fields, sign_webhook("not-" + verifier, fields)
        if kind == "no_signature":
            return fields, None
        if kind == "other_fields":
            # A genuine signature, but of another delivery (a signed target's).
            return fields, sign_webhook(verifier, self.delivery(decoy))
        if kind == "unknown_account":
            fields = self.delivery(target, account_id="NOTOURS")
            return fields, sign_webhook(verifier, fields)
        if kind == "not_base64":
            return fields, "%%%not base64%%%"
        if kind == "repeated_field":
            fields = [*fields, ("object_id", str(decoy))]
            return fields, sign_webhook(verifier, fields)
        # A verification handshake for one of our (verified) callbacks, to swap its verifier.
        callback = rng.choice(self.hooks).callback_ref
        return [("name", "callback.verify"), ("object_id", callback), ("verifier", "attacker"),
                ("account_id", self.account.fb_account_id)], None

    def test_flood_of_signed_and_forged_deliveries(self):
        rng = random.Random(17)
        active = [c for c in self.sandbox.clients() if c["vis_state"] == 0]
        self.assertGreaterEqual(len(active), 2 * TARGETS)
        rng.shuffle(active)
        targets = [str(c["id"]) for c in active[:TARGETS]]
        forged_targets = [str(c["id"]) for c in active[TARGETS:2 * TARGETS]]

        calls = []
        for n in range(SIGNED):
            # Every target at least once, then repeats.
            target = targets[n] if n < TARGETS else rng.choice(targets)
            fields = self.delivery(target, rng.choice(("client.create", "client.update")))
            calls.append(("signed", fields, sign_webhook(rng.choice(self.verifiers), fields)))
        for n in range(FORGED):
            kind = FORGED_KINDS[n % len(FORGED_KINDS)]
            calls.append((kind, *self.forged(kind, rng.choice(forged_targets),
                                             rng.choice(targets), rng)))
        rng.shuffle(calls)

        start = time.monotonic()
        wrong = {}
        for kind, fields, signature in calls:
            status = self.post(fields, signature).status_code
            if (status != 200) if kind == "signed" else not 400 <= status < 500:
                wrong.setdefault(kind, []).append(status)
        elapsed = time.monotonic() - start
        self.assertEqual(wrong, {}, "signed deliveries get 200, forged ones a 4xx")
        self.assertLess(elapsed, 60, f"{len(calls)} deliveries took {elapsed:.0f} s")

        self.env.invalidate_all()
        queue = self.env["freshbooks.queue"].search([("account_id", "=", self.account.id)])
        self.assertEqual(sorted(zip(queue.mapped("object_type"), queue.mapped("object_ref"))),
                         sorted(("client", ref) for ref in targets),
                         "exactly the signed objects, each once")
        self.assertEqual(self.hooks.mapped("verifier"), self.verifiers, "no verifier was swapped")

        self.env["freshbooks.sync"]._cron_work()

        partners = self.env["res.partner"].with_context(active_test=False).search(
            [("freshbooks_client_id", "!=", False)])
        self.assertEqual(sorted(partners.mapped("freshbooks_client_id")), sorted(targets))
        self.assertFalse(self.env["freshbooks.queue"].search([]))
        names = {c["organization"] or f"{c['fname']} {c['lname']}" for c in active[TARGETS:2 * TARGETS]}
        self.assertFalse(self.env["res.partner"].with_context(active_test=False).search_count(
            [("name", "in", sorted(names))]), "nothing from the forged deliveries")

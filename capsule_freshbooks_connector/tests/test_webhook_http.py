from contextlib import contextmanager
from unittest.mock import patch
from urllib.parse import urlencode

from odoo.tests import HttpCase, tagged

from ..freshbooks import sign_webhook
from .common import OneTransaction, connect_account, start_sandbox

SIGNATURE = "X-FreshBooks-Hmac-SHA256"


@tagged("post_install", "-at_install")
class TestWebhooks(OneTransaction, HttpCase):

    def setUp(self):
        super().setUp()
        self.sandbox = start_sandbox(self)
        self.account = connect_account(self.env, self.sandbox)
        self.Sync = self.env["freshbooks.sync"]
        # Committed, as far as the HTTP worker can tell.
        self.env.flush_all()

    def new_log(self):
        return self.env["freshbooks.sync.log"].create(
            {"account_id": self.account.id, "kind": "incremental"})

    @contextmanager
    def account_writes(self):
        """Every write on freshbooks.account meanwhile, from any thread."""
        Account = self.registry["freshbooks.account"]
        write, writes = Account.write, []

        def spy(records, vals):
            writes.append(dict(vals))
            return write(records, vals)

        with patch.object(Account, "write", spy):
            yield writes

    def register(self):
        """Register the callbacks and complete FreshBooks' handshake, as connect does."""
        Webhook = self.env["freshbooks.webhook"]
        Webhook._ensure(self.account, self.account._get_client(), self.new_log())
        events = self.env["freshbooks.synced"]._fb_events()
        with self.account_writes() as writes:
            # Wait on the sandbox, not the database: the server thread shares this test's cursor,
            # and the sandbox's handshakes reach it while this thread would be querying.
            self.sandbox.wait_verifications(len(events), timeout=10)
            self.env.invalidate_all()
            hooks = Webhook.search([("account_id", "=", self.account.id)])
            self.assertEqual(len(hooks), len(events))
            self.assertEqual(self.account.webhook_state, "pending")
            self.assertTrue(all(hooks.sudo().mapped("pending_verifier")))
            self.assertFalse(any(hooks.sudo().mapped("verifier")), "not before FreshBooks confirms")
            # Post-commit work does not run under the test cursor: run it as the commit would.
            self.env.flush_all()
            for hook in hooks:
                Webhook._confirm_verifiers([hook.id])
            self.env.invalidate_all()
        self.handshake_account_writes = writes
        self.assertTrue(all(hooks.sudo().mapped("verifier")))
        self.assertFalse(any(hooks.sudo().mapped("pending_verifier")))
        self.assertTrue(all(hooks.mapped("verified")))
        self.assertEqual(self.account.webhook_state, "active")
        return hooks

    def post(self, fields, signature=None, verifier=None):
        body = urlencode(fields)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if verifier:
            signature = sign_webhook(verifier, list(fields))
        if signature is not None:
            headers[SIGNATURE] = signature
        return self.url_open("/freshbooks/webhook", data=body, headers=headers)

    def handshake(self, callback_ref, verifier, account_id=None):
        self.env.flush_all()
        fields = [("name", "callback.verify"), ("object_id", str(callback_ref)),
                  ("verifier", verifier), ("account_id", account_id or self.account.fb_account_id)]
        status = self.post(fields).status_code
        self.env.invalidate_all()
        return status

    def delivery(self, name, object_id, account_id=None):
        return [("name", name), ("object_id", str(object_id)), ("user_id", "1"),
                ("identity_id", "1"), ("business_id", "100001"),
                ("account_id", account_id or self.account.fb_account_id)]

    def linked(self, client_id):
        return self.env["res.partner"].with_context(active_test=False).search(
            [("freshbooks_client_id", "=", str(client_id))])

    def queue(self):
        return self.env["freshbooks.queue"].search([("account_id", "=", self.account.id)])

    def test_signed_deliveries_create_update_and_remove(self):
        self.register()
        client = self.sandbox.add_client(organization="Instant Co")
        self.sandbox.wait_deliveries(1)
        self.Sync._cron_work()
        partner = self.linked(client["id"])
        self.assertEqual(partner.name, "Instant Co")
        invoice = self.sandbox.add_invoice(client["id"])
        self.sandbox.wait_deliveries(2)
        self.Sync._cron_work()
        self.assertEqual(partner.freshbooks_invoice_ids.invoice_ref, str(invoice["id"]))
        self.sandbox.delete_invoice(invoice["id"])
        self.sandbox.delete_client(client["id"])
        self.sandbox.wait_deliveries(4)
        self.Sync._cron_work()
        self.assertFalse(partner.freshbooks_invoice_ids)
        self.assertEqual(partner.freshbooks_state, "deleted")

    def test_payment_and_estimate_deliveries(self):
        self.register()
        client = self.sandbox.add_client(organization="Paying Co")
        invoice = self.sandbox.add_invoice(client["id"], amount={"amount": "90.00", "code": "USD"},
                                           outstanding={"amount": "90.00", "code": "USD"})
        payment = self.sandbox.add_payment(invoice["id"], amount="40.00")
        estimate = self.sandbox.add_estimate(client["id"])
        # client, invoice, payment (and its invoice.update), estimate
        self.sandbox.wait_deliveries(5)
        self.assertEqual(set(self.queue().mapped("object_type")),
                         {"client", "invoice", "payment", "estimate"})
        self.Sync._cron_work()
        partner = self.linked(client["id"])
        self.assertEqual(partner.freshbooks_payment_ids.payment_ref, str(payment["id"]))
        self.assertEqual(partner.freshbooks_estimate_ids.estimate_ref, str(estimate["id"]))
        self.sandbox.delete_payment(payment["id"])
        self.sandbox.delete_estimate(estimate["id"])
        self.sandbox.wait_deliveries(8)
        self.Sync._cron_work()
        self.assertFalse(partner.freshbooks_payment_ids)
        self.assertFalse(partner.freshbooks_estimate_ids)

    def test_forged_or_unsigned_deliveries_change_nothing(self):
        hooks = self.register()
        client = self.sandbox.add_client(organization="Forged Target")
        self.sandbox.wait_deliveries(1)
        self.env["freshbooks.queue"].search([]).unlink()
        fields = self.delivery("client.create", client["id"])
        self.assertEqual(self.post(fields, signature="bm90IGEgc2lnbmF0dXJl").status_code, 403)
        self.assertEqual(self.post(fields).status_code, 403)
        self.assertEqual(self.post(fields, verifier="wrong-verifier").status_code, 403)
        tampered = self.delivery("client.create", client["id"] + 1)
        signature = sign_webhook(hooks[0].sudo().verifier, fields)
        self.assertEqual(self.post(tampered, signature=signature).status_code, 403)
        self.assertFalse(self.queue())
        self.Sync._cron_work()
        self.assertFalse(self.linked(client["id"]))

    def test_unknown_business_is_ignored(self):
        hooks = self.register()
        fields = self.delivery("client.create", 1, account_id="NOTOURS")
        response = self.post(fields, verifier=hooks[0].sudo().verifier)
        self.assertEqual(response.status_code, 403)
        self.assertFalse(self.env["freshbooks.queue"].search([]))

    def test_duplicate_delivery_is_harmless(self):
        hooks = self.register()
        client = self.sandbox.add_client(organization="Twice Told")
        self.sandbox.wait_deliveries(1)
        fields = self.delivery("client.update", client["id"])
        for _attempt in range(3):
            response = self.post(fields, verifier=hooks[0].sudo().verifier)
            self.assertEqual(response.status_code, 200)
        self.assertEqual(len(self.queue()), 1)
        self.Sync._cron_work()
        self.Sync._cron_work()
        self.assertEqual(len(self.linked(client["id"])), 1)

    def test_malformed_and_oversized_bodies_are_rejected(self):
        hooks = self.register()
        verifier = hooks[0].sudo().verifier
        bad_id = self.delivery("client.update", "12x")
        self.assertEqual(self.post(bad_id, verifier=verifier).status_code, 400)
        bad_event = self.delivery("expense.create", 5)
        self.assertEqual(self.post(bad_event, verifier=verifier).status_code, 400)
        huge = self.delivery("client.update", 5) + [("padding", "x" * 20000)]
        self.assertEqual(self.post(huge, verifier=verifier).status_code, 413)
        self.assertFalse(self.queue())

    def test_handshakes_make_webhooks_active_without_writing_the_account(self):
        self.register()
        self.assertEqual(self.account.webhook_state, "active")
        self.assertIn("as they happen", self.account.webhook_message)
        self.assertEqual(self.handshake_account_writes, [],
                         "the sync writes the connection row; the handshakes never do")

    def test_unreachable_odoo_says_so(self):
        self.env["ir.config_parameter"].set_param("capsule_freshbooks_connector.api_url",
                                                  "https://api.freshbooks.com")
        self.env["ir.config_parameter"].set_param("web.base.url", "http://localhost:8069")
        self.env["freshbooks.webhook"]._ensure(self.account, None, self.new_log())
        self.assertEqual(self.account.webhook_state, "unavailable")
        self.assertIn("cannot be reached", self.account.webhook_message)

    def test_sync_now_tries_an_unreachable_odoo_again(self):
        self.env["ir.config_parameter"].set_param("capsule_freshbooks_connector.api_url",
                                                  "https://api.freshbooks.com")
        self.env["ir.config_parameter"].set_param("web.base.url", "http://localhost:8069")
        Webhook = self.env["freshbooks.webhook"]
        first = self.new_log()
        Webhook._ensure(self.account, None, first)
        self.assertEqual(self.account.webhook_state, "unavailable")
        self.assertIn("cannot be reached", first.webhook_note)
        self.assertEqual(self.account.webhook_message, first.webhook_note)
        settled = self.new_log()
        Webhook._ensure(self.account, None, settled)
        self.assertFalse(settled.webhook_note, "settled: the next run does not look again")
        self.assertEqual(self.account.webhook_state, "unavailable")

        self.account.action_sync_now()
        self.assertEqual(self.account.webhook_state, "none")
        again = self.new_log()
        Webhook._ensure(self.account, None, again)
        self.assertIn("cannot be reached", again.webhook_note, "the next run looks again")

    def test_forged_handshakes_are_refused_without_asking_freshbooks(self):
        hooks = self.register()
        verifier = hooks[0].sudo().verifier
        self.sandbox.reset_counters()
        self.assertEqual(self.handshake(hooks[0].callback_ref, "attacker"), 404, "already verified")
        self.assertEqual(self.handshake("999999", "attacker"), 404, "not one of ours")
        self.assertEqual(self.sandbox.request_count(), 0)
        self.assertEqual(hooks[0].sudo().verifier, verifier)
        self.assertFalse(hooks[0].sudo().pending_verifier)

    def test_a_handshake_is_taken_only_by_a_callback_waiting_for_one(self):
        # A callback FreshBooks does not know: every confirmation of it fails.
        hook = self.env["freshbooks.webhook"].create(
            {"account_id": self.account.id, "event": "client.create", "callback_ref": "424242"})
        self.assertEqual(self.handshake(hook.callback_ref, "guess", account_id="NOTOURS"), 404,
                         "another business's callback")
        self.assertEqual(self.sandbox.request_count(), 0)
        for attempt in range(3):
            self.assertEqual(self.handshake(hook.callback_ref, f"guess-{attempt}"), 200)
            self.assertEqual(hook.sudo().pending_verifier, f"guess-{attempt}")
            self.assertEqual(self.handshake(hook.callback_ref, "another guess"), 404,
                             "a confirmation is in flight")
            self.assertEqual(self.sandbox.request_count(), attempt, "nothing asked yet")
            with self.assertLogs("odoo.addons.capsule_freshbooks_connector", "WARNING"):
                self.env["freshbooks.webhook"]._confirm_verifiers([hook.id])
            self.env.invalidate_all()
            self.assertEqual(self.sandbox.request_count(), attempt + 1)
            self.assertFalse(hook.sudo().pending_verifier, "FreshBooks refused it: cleared")
            self.assertFalse(hook.verified or hook.sudo().verifier)
        self.assertEqual(self.handshake(hook.callback_ref, "guess-4"), 404, "too many tries")
        self.assertEqual(self.sandbox.request_count(), 3)

    def test_delivery_signed_with_an_unconfirmed_verifier_is_refused(self):
        Webhook = self.env["freshbooks.webhook"]
        Webhook._ensure(self.account, self.account._get_client(), self.new_log())
        self.sandbox.wait_verifications(len(self.env["freshbooks.synced"]._fb_events()),
                                        timeout=10)
        self.env.invalidate_all()
        hooks = Webhook.search([("account_id", "=", self.account.id)])
        # The handshakes arrived; FreshBooks has not confirmed them (post-commit work).
        candidate = hooks[0].sudo().pending_verifier
        self.assertTrue(candidate)
        fields = self.delivery("client.create", 1)
        self.assertEqual(self.post(fields, verifier=candidate).status_code, 403)
        self.assertFalse(self.queue())

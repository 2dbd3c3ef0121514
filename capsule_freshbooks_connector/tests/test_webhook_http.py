from urllib.parse import urlencode

from odoo.tests import HttpCase, tagged

from ..freshbooks import sign_webhook
from .common import connect_account, start_sandbox

SIGNATURE = "X-FreshBooks-Hmac-SHA256"


@tagged("post_install", "-at_install")
class TestWebhooks(HttpCase):

    def setUp(self):
        super().setUp()
        self.sandbox = start_sandbox(self)
        self.account = connect_account(self.env, self.sandbox)
        self.Sync = self.env["freshbooks.sync"]

    def register(self):
        """Register the callbacks and complete FreshBooks' handshake, as connect does."""
        Webhook = self.env["freshbooks.webhook"]
        Webhook._ensure(self.account, self.account._get_client())
        hooks = Webhook.search([("account_id", "=", self.account.id)])
        self.assertEqual(len(hooks), 6)
        # Wait on the sandbox, not the database: the server thread shares this test's cursor.
        self.sandbox.wait_verifications(6, timeout=10)
        self.env.invalidate_all()
        self.assertTrue(all(hooks.sudo().mapped("verifier")))
        # Post-commit work does not run under the test cursor: run it as the commit would.
        self.env.flush_all()
        for hook in hooks:
            Webhook._confirm_after_commit(hook.id)
        self.env.invalidate_all()
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

    def test_unreachable_odoo_says_so(self):
        self.env["ir.config_parameter"].set_param("capsule_freshbooks_connector.api_url",
                                                  "https://api.freshbooks.com")
        self.env["ir.config_parameter"].set_param("web.base.url", "http://localhost:8069")
        self.env["freshbooks.webhook"]._ensure(self.account, None)
        self.assertEqual(self.account.webhook_state, "unavailable")
        self.assertIn("cannot be reached", self.account.webhook_message)

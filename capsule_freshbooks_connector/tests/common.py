"""Shared set-up: a FreshBooks sandbox on loopback and a connected account pointing at it."""

import importlib.util
import sys
from datetime import datetime
from pathlib import Path
from unittest.mock import patch

from odoo.tests import TransactionCase

from ..freshbooks import FreshBooksClient
from ..models import freshbooks_sync
from ..models.freshbooks_account_tokens import FreshbooksAccountTokens
from ..models.freshbooks_sync import FreshbooksSync

SANDBOX_FILE = Path(__file__).resolve().parents[2] / "dev" / "sandbox" / "freshbooks_sandbox.py"


def load_sandbox_module():
    """The sandbox lives in the repository's dev tooling, not in the add-on."""
    if "freshbooks_sandbox" in sys.modules:
        return sys.modules["freshbooks_sandbox"]
    if not SANDBOX_FILE.exists():
        raise ImportError(
            f"The FreshBooks sandbox is missing ({SANDBOX_FILE}); these tests run from a "
            "checkout of the capsule_freshbooks_connector repository.")
    spec = importlib.util.spec_from_file_location("freshbooks_sandbox", SANDBOX_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["freshbooks_sandbox"] = module
    spec.loader.exec_module(module)
    return module


def start_sandbox(case, **options):
    """A sandbox on loopback for one test, stopped when the test ends."""
    sandbox = load_sandbox_module().Sandbox(**dict({"webhook_delay": 0.05}, **options)).start()
    case.addCleanup(sandbox.stop)
    return sandbox


def point_at_sandbox(env, sandbox):
    ICP = env["ir.config_parameter"].sudo()
    for key in ("api_url", "auth_url", "web_url"):
        ICP.set_param(f"capsule_freshbooks_connector.{key}", sandbox.url)


def connect_account(env, sandbox, company=None, account_id=None):
    """A connected freshbooks.account with a fresh grant from the sandbox (no browser)."""
    point_at_sandbox(env, sandbox)
    grant = sandbox.issue_tokens(account_id)
    account = env["freshbooks.account"]._for_company(company or env.company)
    account.write({
        "freshbooks_url": "my.freshbooks.com",
        "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
        "access_token": grant["access_token"], "refresh_token": grant["refresh_token"],
        "token_expiry": datetime.utcfromtimestamp(grant["created_at"] + grant["expires_in"]),
        "state": "connected", "fb_account_id": account_id or sandbox.account_ids[0],
        "fb_business_name": "Sandbox business",
    })
    return account


def mark_webhooks_registered(env, account):
    """Webhooks have their own HTTP tests; elsewhere they count as registered already (and the
    sandbox does not call the test server while the test thread uses the database)."""
    env["freshbooks.webhook"].create([
        {"account_id": account.id, "event": event, "callback_ref": str(n),
         "verifier": "test-verifier", "verified": True}
        for n, event in enumerate(env["freshbooks.synced"]._fb_events())])


class OneTransaction:
    """For test classes: the whole test is one transaction that is rolled back, so the
    connector's own commits and rollbacks become no-ops, and the cursors it opens (token refresh,
    reconnect) share that transaction: they must see this test's pending writes, as they see
    committed data in production."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.startClassPatcher(patch.object(FreshbooksSync, "_commit", lambda self: None))
        cls.startClassPatcher(patch.object(FreshbooksSync, "_rollback", lambda self: None))
        # Every page "committed" on its own: what a failed run did stays (nothing is rolled
        # back here), so its counts must be in its log too.
        cls.startClassPatcher(patch.object(freshbooks_sync, "COMMIT_INTERVAL", 0))
        refresh = FreshbooksAccountTokens._refresh_tokens_locked

        def flush_then_refresh(account, client):
            account.env.flush_all()
            return refresh(account, client)

        cls.startClassPatcher(patch.object(FreshbooksAccountTokens, "_refresh_tokens_locked",
                                           flush_then_refresh))


class FreshbooksCase(OneTransaction, TransactionCase):
    """TransactionCase with a fresh sandbox per test and a connected account.

    The registry is put in test mode so that the connector's own cursors (token refresh,
    post-commit pushes) see this test's data, as they see committed data in production.
    """

    sandbox_options = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not cls.registry.in_test_mode():
            cls.registry.enter_test_mode(cls.cr)
            cls.addClassCleanup(cls.registry.leave_test_mode)
        cls.Partner = cls.env["res.partner"]
        cls.Sync = cls.env["freshbooks.sync"]

    def setUp(self):
        super().setUp()
        self.sandbox = start_sandbox(self, **self.sandbox_options)
        self.account = connect_account(self.env, self.sandbox)
        self.fb_account = self.account.fb_account_id
        mark_webhooks_registered(self.env, self.account)

    def fast_client(self, **forced):
        """Every FreshBooks client made from now on records its waits instead of sleeping."""
        sleeps = []
        original = FreshBooksClient.__init__

        def init(client, *args, **kwargs):
            kwargs.update(forced, sleep=sleeps.append)
            original(client, *args, **kwargs)

        self.patch(FreshBooksClient, "__init__", init)
        return sleeps

    def sync(self, full=None):
        return self.Sync._sync_account(self.account, full=full)

    def linked(self, client_id):
        return self.Partner.with_context(active_test=False).search(
            [("freshbooks_account_id", "=", self.account.id),
             ("freshbooks_client_id", "=", str(client_id))])

    def linked_counts(self):
        """{client id: number of contacts linked to it} for this account."""
        self.env.flush_all()
        self.env.cr.execute(
            "SELECT freshbooks_client_id, count(*) FROM res_partner WHERE freshbooks_account_id = %s "
            "AND freshbooks_client_id IS NOT NULL GROUP BY freshbooks_client_id", [self.account.id])
        return dict(self.env.cr.fetchall())

    def run_postcommit(self):
        """What the real commit would do: run the post-commit hooks (the pushes)."""
        self.env.flush_all()
        self.env.cr.postcommit.run()
        # They wrote through cursors of their own.
        self.env.invalidate_all()

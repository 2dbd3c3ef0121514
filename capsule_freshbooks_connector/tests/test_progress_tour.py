from unittest.mock import patch

from odoo.sql_db import TestCursor, db_connect
from odoo.tests import HttpCase, tagged

from odoo.addons.bus.models.bus import get_notify_payloads
from odoo.addons.bus.websocket import WebsocketConnectionHandler

from ..models.freshbooks_account import FreshbooksAccount
from .common import OneTransaction, connect_account, mark_webhooks_registered, start_sandbox


def commit_and_notify(commit):
    """A test cursor drops post-commit hooks, the bus's NOTIFY among them: send that one, so
    that the browser hears of the notifications as it does in production."""

    def wrapper(cr):
        channels = list(cr.postcommit.data.get("bus.bus.channels") or ())
        commit(cr)
        if channels:
            with db_connect("postgres").cursor() as notify_cr:
                for payload in get_notify_payloads(channels):
                    notify_cr.execute("SELECT pg_notify('imbus', %s)", [payload])
    return wrapper


@tagged("post_install", "-at_install")
class TestProgressBrowser(OneTransaction, HttpCase):

    def test_the_settings_block_shows_a_run_live(self):
        sandbox = start_sandbox(self)
        account = connect_account(self.env, sandbox)
        mark_webhooks_registered(self.env, account)
        for n in range(3):
            sandbox.add_client(organization=f"Live {n}")
        # Sync now runs the sync in the request (a cron worker does in production), and the
        # websocket, off in tests by default, carries the bus to the browser.
        def sync_now(account):
            account.env["freshbooks.sync"]._sync_account(account)

        # The browser hears of the run only through the bus: the block reloaded after the run
        # shows no progress (none is running), and "Done: ..." is only what the run sends.
        with patch.object(FreshbooksAccount, "action_sync_now", sync_now), \
                patch.object(TestCursor, "commit", commit_and_notify(TestCursor.commit)), \
                patch.object(WebsocketConnectionHandler, "websocket_allowed", return_value=True):
            self.start_tour("/odoo/settings", "freshbooks_progress_tour", login="admin",
                            timeout=120)
        self.assertEqual(account.sync_log_ids[:1].state, "done")

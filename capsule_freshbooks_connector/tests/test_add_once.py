"""Add to FreshBooks makes one client, whatever becomes of the create's answer or of the
transaction that heard it."""

import time
from unittest.mock import patch

import psycopg2

from odoo.tests import tagged

from ..freshbooks import FreshBooksClient
from .common import FreshbooksCase

# Longer than the read timeout of the push right after the save (5 s): the answer comes too late.
LATE_MS = 6000


@tagged("post_install", "-at_install")
class TestAddExactlyOnce(FreshbooksCase):

    def clients_named(self, name):
        return [c for c in self.sandbox.clients() if name in (
            c.get("organization"), " ".join(filter(None, (c.get("fname"), c.get("lname")))))]

    def add_with_a_late_answer(self, partner):
        """FreshBooks makes the client, but its answer arrives after Odoo stopped waiting."""
        create = FreshBooksClient.create_client

        def late_create(fb, *args, **kwargs):
            self.sandbox.set_faults(latency_ms=LATE_MS)
            try:
                return create(fb, *args, **kwargs)
            finally:
                self.sandbox.set_faults(latency_ms=0)

        partner.action_freshbooks_add()
        with patch.object(FreshBooksClient, "create_client", late_create):
            self.run_postcommit()
        self.assertEqual(partner.freshbooks_push_state, "pending")
        self.assertFalse(partner.freshbooks_client_id)
        deadline = time.monotonic() + 10
        while not self.clients_named(partner.name) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(len(self.clients_named(partner.name)), 1, "made, though unheard of")

    def assert_one_client_linked(self, partner):
        self.Sync._cron_work()  # the job tries again
        clients = self.clients_named(partner.name)
        self.assertEqual(len(clients), 1, "never created a second time")
        self.assertEqual(partner.freshbooks_client_id, str(clients[0]["id"]))
        self.assertEqual(partner.freshbooks_push_state, "synced")
        self.assertFalse(partner.freshbooks_add_tried, "linked: no attempt left in doubt")

    def test_a_late_answer_then_the_job_links_the_client_of_a_contact_without_email(self):
        partner = self.Partner.create({"name": "Nomail Person", "phone": "+1 555 0400"})
        self.add_with_a_late_answer(partner)
        self.assertTrue(partner.freshbooks_add_tried)
        self.assert_one_client_linked(partner)

    def test_a_late_answer_then_the_job_links_the_client_with_this_email(self):
        partner = self.Partner.create({"name": "Slow Answer SA", "is_company": True,
                                       "email": "slow@answer.test"})
        self.add_with_a_late_answer(partner)
        self.assert_one_client_linked(partner)

    def test_another_customer_of_the_same_name_is_not_taken_without_an_attempt(self):
        other = self.sandbox.add_client(fname="Twin", lname="Name")
        partner = self.Partner.create({"name": "Twin Name"})
        partner.action_freshbooks_add()
        self.run_postcommit()
        self.assertTrue(partner.freshbooks_client_id)
        self.assertNotEqual(partner.freshbooks_client_id, str(other["id"]))

    def test_a_lock_timeout_after_the_create_keeps_the_link(self):
        partner = self.Partner.create({"name": "Locked Out Ltd", "is_company": True})
        created, raised = [], []
        create, write = FreshBooksClient.create_client, type(self.Partner).write

        def spy_create(fb, *args, **kwargs):
            created.append(create(fb, *args, **kwargs))
            return created[-1]

        def busy_write(records, vals):
            # A user's save holds the row: the first write after the create times out.
            if created and not raised:
                raised.append(vals)
                raise psycopg2.errors.LockNotAvailable("canceling statement due to lock timeout")
            return write(records, vals)

        partner.action_freshbooks_add()
        with patch.object(FreshBooksClient, "create_client", spy_create), \
                patch.object(type(self.Partner), "write", busy_write):
            self.run_postcommit()
        self.assertTrue(raised, "a write after the create was refused")
        self.assertEqual(partner.freshbooks_client_id, str(created[0]["id"]), "the link is kept")
        self.Sync._cron_work()
        self.assertEqual(len(self.clients_named("Locked Out Ltd")), 1)
        self.assertEqual(partner.freshbooks_push_state, "synced")

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged

from ..models.res_partner import INLINE_PUSH_LIMIT
from .common import FreshbooksCase


class Boom(Exception):
    pass


@tagged("post_install", "-at_install")
class TestPush(FreshbooksCase):

    def setUp(self):
        super().setUp()
        self.client = self.sandbox.add_client(organization="Push Co", email="a@push.test")
        self.sync()
        self.partner = self.linked(self.client["id"])
        self.run_postcommit()
        self.sandbox.reset_counters()
        self.writes_before = len(self.sandbox.client_writes)

    def new_writes(self):
        return self.sandbox.client_writes[self.writes_before:]

    def fb_client(self, client_id):
        return next(c for c in self.sandbox.clients(include_deleted=True)
                    if str(c["id"]) == str(client_id))

    def test_edit_then_commit_sends_exactly_one_update(self):
        self.partner.phone = "+1 555 0100"
        self.partner.write({"email": "b@push.test", "comment": "not pushed"})
        self.assertEqual(self.partner.freshbooks_push_state, "pending")
        self.assertEqual(self.new_writes(), [], "nothing leaves before the commit")
        self.run_postcommit()
        self.assertEqual(len(self.new_writes()), 1)
        fb = self.fb_client(self.client["id"])
        self.assertEqual((fb["bus_phone"], fb["email"]), ("+1 555 0100", "b@push.test"))
        self.assertEqual(self.partner.freshbooks_push_state, "synced")

    def test_rolled_back_edit_sends_nothing(self):
        with self.assertRaises(Boom), self.env.cr.savepoint():
            self.partner.phone = "+1 555 0199"
            self.env.flush_all()
            raise Boom()
        self.partner.invalidate_recordset()
        self.run_postcommit()
        self.assertEqual(self.new_writes(), [])
        self.assertEqual(self.sandbox.request_count(), 0)

    def test_failed_push_is_retried_by_the_cron(self):
        self.sandbox.set_faults(fault_rate=1.0)
        self.partner.phone = "+1 555 0101"
        self.run_postcommit()
        self.assertEqual(self.partner.freshbooks_push_state, "pending")
        self.assertIn("retry", self.partner.freshbooks_push_error.lower())
        self.sandbox.set_faults(fault_rate=0.0)
        self.Sync._cron_work()
        self.assertEqual(self.partner.freshbooks_push_state, "synced")
        self.assertFalse(self.partner.freshbooks_push_error)
        self.assertEqual(self.fb_client(self.client["id"])["bus_phone"], "+1 555 0101")

    def work_triggers(self):
        cron = self.env.ref("capsule_freshbooks_connector.ir_cron_freshbooks_work")
        return self.env["ir.cron.trigger"].sudo().search([("cron_id", "=", cron.id)])

    def assert_retry_in(self, before, minutes):
        """One new trigger of the work job, about `minutes` from now; returns every trigger."""
        new = self.work_triggers() - before
        self.assertEqual(len(new), 1, "one retry is scheduled")
        wait = (new.call_at - fields.Datetime.now()).total_seconds()
        self.assertAlmostEqual(wait, minutes * 60, delta=10, msg="the retry's moment")
        return before | new

    def test_passing_failure_is_retried_soon_then_less_often(self):
        self.fast_client()  # the job's own retries are recorded, not slept
        triggers = self.work_triggers()
        self.sandbox.set_faults(fail_next=1)
        self.partner.phone = "+1 555 0102"
        self.run_postcommit()  # the user's save: one quick try, answered 503
        self.assertEqual(self.partner.freshbooks_push_state, "pending")
        triggers = self.assert_retry_in(triggers, 1)
        self.assertEqual(self.partner.freshbooks_push_tries, 1)

        # That retry (the job: a try and its 4 retries) meets FreshBooks still down.
        self.sandbox.set_faults(fail_next=5)
        self.Sync._cron_work()
        self.assertEqual(self.partner.freshbooks_push_state, "pending")
        triggers = self.assert_retry_in(triggers, 2)
        self.assertEqual(self.partner.freshbooks_push_tries, 2)

        self.sandbox.set_faults(fail_next=0)
        self.Sync._cron_work()
        self.assertEqual(self.partner.freshbooks_push_state, "synced")
        self.assertEqual(self.fb_client(self.client["id"])["bus_phone"], "+1 555 0102")
        self.assertEqual(self.work_triggers(), triggers, "nothing more to retry")
        self.assertEqual(self.partner.freshbooks_push_tries, 0)

    def test_retries_back_off_to_the_job_interval(self):
        triggers = self.work_triggers()
        self.partner.phone = "+1 555 0103"
        self.env.flush_all()
        self.env.cr.execute("UPDATE res_partner SET freshbooks_push_tries = 9 WHERE id = %s",
                            [self.partner.id])
        self.sandbox.set_faults(fail_next=1)
        self.run_postcommit()
        self.assertEqual(self.partner.freshbooks_push_tries, 10)
        self.assert_retry_in(triggers, 5)  # the job runs every 5 minutes anyway

    def test_validation_error_is_shown_and_not_retried(self):
        self.partner.email = "not-an-email"
        self.run_postcommit()
        self.assertEqual(self.partner.freshbooks_push_state, "error")
        self.assertIn("Invalid email", self.partner.freshbooks_push_error)
        requests = self.sandbox.request_count()
        self.Sync._cron_work()
        self.assertEqual(self.sandbox.request_count(), requests, "a rejected edit is not resent")
        self.partner.email = "fixed@push.test"
        self.run_postcommit()
        self.assertEqual(self.partner.freshbooks_push_state, "synced")

    def test_sync_writes_send_nothing(self):
        self.sandbox.add_client(organization="Another")
        self.sandbox.update_client(self.client["id"], email="changed@push.test")
        self.Partner.create({"name": "Linked Later", "is_company": True})
        self.sandbox.add_client(organization="Linked Later", email="ll@x.test")
        self.sync(full=True)
        self.run_postcommit()
        self.assertEqual(self.new_writes(), [])

    def test_add_to_freshbooks_twice_makes_one_client(self):
        partner = self.Partner.create({"name": "Fresh Start SA", "is_company": True,
                                       "email": "hello@fresh.test"})
        self.assertTrue(partner.freshbooks_can_add)
        partner.action_freshbooks_add()
        partner.action_freshbooks_add()
        self.run_postcommit()
        partner.action_freshbooks_add()
        self.run_postcommit()
        creates = [w for w in self.new_writes() if w["method"] == "POST"]
        self.assertEqual(len(creates), 1)
        self.assertTrue(partner.freshbooks_client_id)
        self.assertEqual(self.fb_client(partner.freshbooks_client_id)["organization"],
                         "Fresh Start SA")
        self.assertFalse(partner.freshbooks_can_add)

    def test_user_without_the_right_cannot_push(self):
        user = new_test_user(self.env, login="plain", groups="base.group_user,base.group_partner_manager")
        partner = self.Partner.create({"name": "Not Yours", "is_company": True})
        self.assertFalse(partner.with_user(user).freshbooks_can_add)
        with self.assertRaises(AccessError):
            partner.with_user(user).action_freshbooks_add()
        self.run_postcommit()
        self.assertEqual(self.new_writes(), [])

    def test_child_contacts_are_not_clients(self):
        child = self.Partner.create({"name": "Bob", "parent_id": self.partner.id})
        self.assertFalse(child.freshbooks_can_add)
        with self.assertRaises(UserError):
            child.action_freshbooks_add()

    def test_mass_edit_goes_to_the_background(self):
        for i in range(INLINE_PUSH_LIMIT + 5):
            self.sandbox.add_client(organization=f"Mass {i}")
        self.sync()
        self.run_postcommit()
        writes = len(self.sandbox.client_writes)
        partners = self.Partner.search([("name", "=like", "Mass %")])
        partners.write({"phone": "+1 555 0000"})
        self.run_postcommit()
        self.assertEqual(len(self.sandbox.client_writes), writes, "not in the user's request")
        self.Sync._cron_work()
        self.assertEqual(len(self.sandbox.client_writes), writes + len(partners))
        self.assertEqual(set(partners.mapped("freshbooks_push_state")), {"synced"})

    def test_add_links_the_client_freshbooks_already_has(self):
        # Made by hand in FreshBooks after the last sync, or by an attempt whose answer was lost:
        # the same customer (same name, case and spacing aside, and same kind) with this email.
        existing = self.sandbox.add_client(organization="Already There SA",
                                           email="same@there.test", p_city="Lyon")
        partner = self.Partner.create({"name": "already there  sa", "is_company": True,
                                       "email": "same@there.test", "phone": "+1 555 0177"})
        partner.action_freshbooks_add()
        self.run_postcommit()
        self.assertEqual(partner.freshbooks_client_id, str(existing["id"]))
        self.assertEqual([w["method"] for w in self.new_writes()], ["PUT"], "linked, not created")
        fb = self.fb_client(existing["id"])
        self.assertEqual((fb["bus_phone"], fb["p_city"]), ("+1 555 0177", "Lyon"))
        self.assertEqual(partner.city, "Lyon", "empty Odoo fields are filled from FreshBooks")

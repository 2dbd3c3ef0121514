"""Cleaning up duplicates in Odoo (merge, duplicate, archive, import) never loses a FreshBooks
link, never makes a second one, and never brings a merged-away contact back."""

from odoo.exceptions import UserError
from odoo.tests import new_test_user, tagged

from .common import FreshbooksCase


@tagged("post_install", "-at_install")
class TestMerge(FreshbooksCase):

    def setUp(self):
        super().setUp()
        # Merging is a contact manager's job, not only an administrator's.
        self.manager = new_test_user(
            self.env, login="fb_merger", groups="base.group_user,base.group_partner_manager")

    def merge(self, partners, destination):
        """Contacts > select > Actions > Merge, keeping `destination`."""
        wizard = self.env["base.partner.merge.automatic.wizard"].with_user(self.manager).with_context(
            active_model="res.partner", active_ids=partners.ids).create(
            {"dst_partner_id": destination.id})
        wizard.action_merge()
        self.env.invalidate_all()

    def contact_count(self):
        return self.Partner.with_context(active_test=False).search_count([])

    def queued(self):
        return self.env["freshbooks.queue"].search([("account_id", "=", self.account.id)])

    def fb_client(self, client_id):
        return next(c for c in self.sandbox.clients() if str(c["id"]) == str(client_id))

    def test_merging_the_imported_contact_into_the_older_one_keeps_the_link(self):
        older = self.Partner.create({"name": "Acme Incorporated", "is_company": True,
                                     "email": "ap@acme.test"})
        client = self.sandbox.add_client(organization="Acme Inc", email="ap@acme.test")
        invoice = self.sandbox.add_invoice(client["id"], v3_status="sent", amount="120.00",
                                           outstanding="120.00")
        self.sandbox.add_payment(invoice["id"], amount="20.00")
        self.sandbox.add_estimate(client["id"])
        self.sync()
        imported = self.linked(client["id"])
        self.assertTrue(imported and imported != older, "the names differ: a new contact")
        sent = imported.freshbooks_sent_values
        documents = [self.env[model].search([("client_ref", "=", str(client["id"]))])
                     for model in ("freshbooks.invoice", "freshbooks.payment",
                                   "freshbooks.estimate")]
        self.assertTrue(all(d.partner_id == imported for d in documents))

        self.merge(older | imported, older)

        self.assertFalse(imported.exists())
        self.assertEqual(self.linked(client["id"]), older, "one contact holds the link")
        self.assertEqual((older.freshbooks_account_id, older.freshbooks_state),
                         (self.account, "active"))
        self.assertEqual(older.freshbooks_sent_values, sent, "what FreshBooks holds is kept")
        self.assertEqual(older.name, "Acme Incorporated")
        for records in documents:
            self.assertTrue(records)
            self.assertEqual(records.partner_id, older)
        self.assertFalse(self.queued(), "the merged-away contact is not asked back")
        # The merged details are an edit of the linked contact: what differs goes to FreshBooks.
        self.assertEqual(older.freshbooks_push_state, "pending")

        count = self.contact_count()
        log = self.sync()
        self.assertEqual((log.created, self.contact_count()), (0, count))
        self.assertFalse(self.queued())
        self.assertEqual(self.linked(client["id"]), older)
        self.assertEqual(older.freshbooks_push_state, "synced")
        self.assertEqual(self.fb_client(client["id"])["organization"], "Acme Incorporated")

    def test_merging_an_older_contact_into_the_linked_one_keeps_its_link(self):
        client = self.sandbox.add_client(organization="Bright Ltd", email="hi@bright.test")
        self.sandbox.add_invoice(client["id"])
        self.sync()
        linked = self.linked(client["id"])
        sent = linked.freshbooks_sent_values
        # Someone had tried "Add to FreshBooks" on the old contact, and FreshBooks refused it.
        older = self.Partner.create({"name": "Bright Limited", "is_company": True,
                                     "email": "hi@bright.test", "phone": "+1 555 0142"})
        older.write({"freshbooks_account_id": self.account.id, "freshbooks_push_state": "error",
                     "freshbooks_push_error": "Held in Clients to Review: email in use"})

        self.merge(older | linked, linked)

        self.assertFalse(older.exists())
        self.assertEqual(self.linked(client["id"]), linked)
        self.assertEqual(linked.freshbooks_sent_values, sent)
        self.assertFalse(linked.freshbooks_push_error, "nothing of the other contact's attempt")
        self.assertEqual(linked.phone, "+1 555 0142", "filled from the merged contact")
        self.assertEqual(linked.freshbooks_invoice_count, 1)
        count = self.contact_count()
        log = self.sync()
        self.assertEqual((log.created, self.contact_count()), (0, count))
        self.assertFalse(self.queued())
        self.assertEqual(linked.freshbooks_push_state, "synced")
        self.assertEqual(self.fb_client(client["id"])["bus_phone"], "+1 555 0142")

    def test_contacts_of_two_clients_are_not_merged(self):
        north = self.sandbox.add_client(organization="North Co")
        other = self.sandbox.add_client(organization="North Company")
        self.sync()
        first, second = self.linked(north["id"]), self.linked(other["id"])
        with self.assertRaises(UserError) as caught:
            self.merge(first | second, first)
        message = str(caught.exception)
        self.assertIn(f"client {north['id']} in Sandbox business", message)
        self.assertIn(f"client {other['id']} in Sandbox business", message)
        self.assertIn("Merge the clients in FreshBooks first", message)
        self.assertEqual((self.linked(north["id"]), self.linked(other["id"])), (first, second))

        # The same client number of another company's FreshBooks business is another client.
        company = self.env["res.company"].create({"name": "North B"})
        account = self.env["freshbooks.account"]._for_company(company)
        twin = self.Partner.create({"name": "North Co"})
        twin.write(self.env["freshbooks.client.sync"]._link_values(account, str(north["id"])))
        with self.assertRaises(UserError) as caught:
            self.merge(first | twin, first)
        self.assertIn(f"client {north['id']} in North B", str(caught.exception))
        self.assertEqual(twin.freshbooks_account_id, account)
        self.assertEqual(self.linked(north["id"]), first)

    def test_a_client_deleted_in_freshbooks_gives_way_to_the_live_one(self):
        # What merging the two clients in FreshBooks first leaves behind.
        gone = self.sandbox.add_client(organization="Delta Old")
        live = self.sandbox.add_client(organization="Delta New")
        self.sandbox.add_invoice(live["id"])
        self.sync()
        self.sandbox.delete_client(gone["id"])
        self.sync(full=True)
        dead, alive = self.linked(gone["id"]), self.linked(live["id"])
        self.assertEqual(dead.freshbooks_state, "deleted")

        self.merge(dead | alive, dead)

        self.assertFalse(alive.exists())
        self.assertEqual(self.linked(live["id"]), dead)
        self.assertFalse(self.linked(gone["id"]))
        self.assertEqual(dead.freshbooks_state, "active")
        self.assertEqual(dead.freshbooks_invoice_count, 1)
        count = self.contact_count()
        log = self.sync()
        self.assertEqual((log.created, self.contact_count()), (0, count))
        self.assertFalse(self.queued())

    def test_duplicate_of_a_linked_contact_is_not_linked(self):
        client = self.sandbox.add_client(organization="Echo Co", email="echo@echo.test")
        self.sync()
        partner = self.linked(client["id"])
        copy = partner.copy()
        self.assertFalse(copy.freshbooks_account_id or copy.freshbooks_client_id
                         or copy.freshbooks_state or copy.freshbooks_push_state
                         or copy.freshbooks_sent_values)
        self.assertEqual(self.linked(client["id"]), partner)
        self.sync(full=True)
        self.assertEqual(self.linked(client["id"]), partner)
        self.assertFalse(copy.freshbooks_client_id)

    def test_archiving_a_linked_contact_keeps_the_link_and_freshbooks_client(self):
        client = self.sandbox.add_client(organization="Foxtrot Co")
        self.sync()
        partner = self.linked(client["id"])
        self.run_postcommit()
        self.sandbox.reset_counters()
        partner.action_archive()
        self.run_postcommit()
        self.assertEqual(self.linked(client["id"]), partner)
        self.assertEqual(partner.freshbooks_state, "active")
        self.assertFalse(self.queued())
        count = self.contact_count()
        self.sync(full=True)
        self.assertEqual(self.contact_count(), count, "not imported again")
        self.assertEqual(self.sandbox.client_writes, [], "nothing sent to FreshBooks")
        self.assertEqual(self.fb_client(client["id"])["vis_state"], 0)

    def test_importing_a_contact_of_the_same_name_does_not_link_it(self):
        client = self.sandbox.add_client(organization="Golf Co", email="golf@golf.test")
        self.sync()
        partner = self.linked(client["id"])
        importer = self.env["base_import.import"].create({
            "res_model": "res.partner", "file": b"name,email\nGolf Co,golf@golf.test\n",
            "file_type": "text/csv", "file_name": "contacts.csv"})
        result = importer.execute_import(["name", "email"], ["name", "email"],
                                         {"quoting": '"', "separator": ",", "has_headers": True})
        self.assertFalse(result["messages"])
        imported = self.Partner.browse(result["ids"])
        self.assertTrue(imported and imported != partner)
        self.assertFalse(imported.freshbooks_account_id or imported.freshbooks_client_id)
        self.sync(full=True)
        self.assertEqual(self.linked(client["id"]), partner)
        self.assertFalse(imported.freshbooks_client_id)

"""A person's one Odoo name and FreshBooks' first and last name: FreshBooks' own split is what
Odoo believes it holds, and a rename sends both parts, keeping FreshBooks' first name."""

from odoo.tests import tagged

from .common import FreshbooksCase


@tagged("post_install", "-at_install")
class TestPersonNames(FreshbooksCase):

    def setUp(self):
        super().setUp()
        self.writes_before = len(self.sandbox.client_writes)

    def bodies(self):
        return [w["body"]["client"] for w in self.sandbox.client_writes[self.writes_before:]]

    def imported(self, **fields):
        client = self.sandbox.add_client(**fields)
        self.sync()
        partner = self.linked(client["id"])
        self.run_postcommit()
        self.writes_before = len(self.sandbox.client_writes)
        return client, partner

    def fb_names(self, client):
        fb = self.sandbox.get_client(client["id"])
        return fb["fname"], fb["lname"]

    def assert_rename(self, client, partner, name, fname, lname):
        """Renamed in Odoo: both parts are sent, and FreshBooks holds them."""
        partner.name = name
        self.run_postcommit()
        self.assertEqual(self.bodies()[-1], {"fname": fname, "lname": lname})
        self.assertEqual(self.fb_names(client), (fname, lname))

    def test_a_rename_keeps_the_first_name_freshbooks_has(self):
        client, partner = self.imported(fname="Mary Ann", lname="Smith", email="mary@ann.test")
        self.assertEqual(partner.name, "Mary Ann Smith")
        sent = partner.freshbooks_sent_values
        self.assertEqual((sent["fname"], sent["lname"]), ("Mary Ann", "Smith"))
        self.assert_rename(client, partner, "Mary Ann Smith-Jones", "Mary Ann", "Smith-Jones")
        self.assertEqual(len(self.bodies()), 1)

    def test_a_client_with_only_a_last_name_keeps_it_whole(self):
        client, partner = self.imported(fname="", lname="Smith")
        self.assert_rename(client, partner, "Smith Jr", "", "Smith Jr")

    def test_a_new_first_name_sends_both_parts(self):
        client, partner = self.imported(fname="Mary Ann", lname="Smith")
        self.assert_rename(client, partner, "Marianne Smith", "Marianne", "Smith")

    def test_a_linked_contact_holds_freshbooks_split_and_an_edit_leaves_the_name(self):
        partner = self.Partner.create({"name": "mary ann  smith", "email": "m@linked.test"})
        client = self.sandbox.add_client(fname="Mary Ann", lname="Smith", email="m@linked.test")
        self.sync()
        self.assertEqual(self.linked(client["id"]), partner)
        sent = partner.freshbooks_sent_values
        self.assertEqual((sent["fname"], sent["lname"]), ("mary ann", "smith"),
                         "FreshBooks' split of Odoo's own name, which stays Odoo's")
        partner.phone = "+1 555 0300"
        self.run_postcommit()
        self.assertEqual(self.bodies(), [{"bus_phone": "+1 555 0300"}])
        self.assertEqual(self.fb_names(client), ("Mary Ann", "Smith"))
        self.assert_rename(client, partner, "Mary Ann Smith-Jones", "Mary Ann", "Smith-Jones")

    def test_a_company_rename_sends_the_organization_only(self):
        client, partner = self.imported(organization="Blue Sky Ltd", fname="Mary Ann",
                                        lname="Smith")
        partner.name = "Blue Sky Group"
        self.run_postcommit()
        self.assertEqual(self.bodies(), [{"organization": "Blue Sky Group"}])
        self.assertEqual(self.fb_names(client), ("Mary Ann", "Smith"))

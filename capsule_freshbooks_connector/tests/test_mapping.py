from odoo.tests import TransactionCase, tagged

from ..models.freshbooks_mapping import MappingError, name_key, parse_client, person_names


@tagged("post_install", "-at_install")
class TestMapping(TransactionCase):

    def test_name_key_folds_case_and_spaces_but_keeps_accents(self):
        self.assertEqual(name_key("  ACME   Widgets\tLtd "), "acme widgets ltd")
        self.assertEqual(name_key("José García"), name_key("JOSÉ  garcía"))
        # NFC: a decomposed é equals the composed one; but e is not é.
        self.assertEqual(name_key("Jose\u0301"), name_key("José"))
        self.assertNotEqual(name_key("Jose"), name_key("José"))
        self.assertEqual(name_key("Straße"), name_key("STRASSE"))

    def test_company_and_person(self):
        company = parse_client({"id": 1, "organization": "Hooli", "fname": "Gavin",
                                "lname": "Belson", "fax": "123"})
        self.assertTrue(company.is_company)
        self.assertEqual(company.name, "Hooli")
        self.assertIn("Contact person: Gavin Belson", company.extra_notes)
        self.assertIn("Fax: 123", company.extra_notes)
        person = parse_client({"id": 2, "organization": "", "fname": "Gavin", "lname": "Belson"})
        self.assertFalse(person.is_company)
        self.assertEqual(person.name, "Gavin Belson")

    def test_bad_records(self):
        with self.assertRaises(MappingError):
            parse_client({"id": 3, "organization": "", "fname": None, "lname": "", "email": ""})
        with self.assertRaises(MappingError):
            parse_client({"organization": "No id"})
        with self.assertRaises(MappingError):
            parse_client(["not", "a", "dict"])
        control = parse_client({"id": 4, "organization": "Bad\x00Name\x1b Inc\n"})
        self.assertEqual(control.name, "Bad Name Inc")
        typed = parse_client({"id": 5, "organization": 12345, "email": ["a@b.c"], "vis_state": "x"})
        self.assertEqual(typed.name, "12345")
        self.assertNotIn("email", typed.values)
        self.assertEqual(typed.vis_state, 0)
        self.assertTrue(any("email" in p for p in typed.problems))
        long = parse_client({"id": 6, "organization": "L" * 5000, "note": "n" * 50000})
        self.assertLessEqual(len(long.name), 256)
        self.assertLessEqual(max(len(n) for n in long.extra_notes), 20000)

    def test_country_and_state_resolution(self):
        Mapping = self.env["freshbooks.mapping"]
        record = parse_client({"id": 7, "organization": "Maple", "p_country": "Canada",
                               "p_province": "ON"})
        values = Mapping._partner_values(record)
        self.assertEqual(values["country_id"], self.env.ref("base.ca").id)
        self.assertEqual(values["state_id"], self.env.ref("base.state_ca_on").id)
        record = parse_client({"id": 8, "organization": "Sunny", "p_country": "United States",
                               "p_province": "California"})
        values = Mapping._partner_values(record)
        self.assertEqual(values["state_id"], self.env.ref("base.state_us_5").id)
        record = parse_client({"id": 9, "organization": "Lost", "p_country": "Atlantis",
                               "p_province": "Deep"})
        values = Mapping._partner_values(record)
        self.assertNotIn("country_id", values)
        self.assertIn("Atlantis", values["comment"])
        self.assertIn("Deep", values["comment"])

    def test_html_in_notes_is_escaped(self):
        record = parse_client({"id": 10, "organization": "<script>alert(1)</script> Ltd",
                               "note": "<b>hi</b>"})
        values = self.env["freshbooks.mapping"]._partner_values(record)
        self.assertEqual(values["name"], "<script>alert(1)</script> Ltd")
        self.assertNotIn("<b>", str(values["comment"]))
        self.assertIn("&lt;b&gt;", str(values["comment"]))

    def test_client_values_for_push(self):
        partner = self.env["res.partner"].create({
            "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 1",
            "country_id": self.env.ref("base.uk").id})
        data = self.env["freshbooks.mapping"]._client_values(partner)
        self.assertEqual((data["fname"], data["lname"]), ("Ada", "Lovelace"))
        self.assertEqual(data["p_country"], "United Kingdom")
        self.assertEqual(data["bus_phone"], "+44 1")
        self.assertNotIn("vis_state", data)

    def test_person_names_keep_the_split_freshbooks_holds(self):
        self.assertEqual(person_names("Ada Lovelace"), ("Ada", "Lovelace"))
        self.assertEqual(person_names("Ada"), ("Ada", ""))
        self.assertEqual(person_names(""), ("", ""))
        held = {"fname": "Mary Ann", "lname": "Smith"}
        self.assertEqual(person_names("Mary Ann Smith-Jones", held), ("Mary Ann", "Smith-Jones"))
        self.assertEqual(person_names("MARY ANN Smith", held), ("MARY ANN", "Smith"))
        self.assertEqual(person_names("Mary Anne Smith", held), ("Mary", "Anne Smith"))
        self.assertEqual(person_names("Mary Ann", held), ("Mary Ann", ""))
        self.assertEqual(person_names("Smith Jr", {"fname": "", "lname": "Smith"}),
                         ("", "Smith Jr"))

from odoo import api, fields, models
from odoo.exceptions import UserError


class FreshbooksReview(models.Model):
    """A FreshBooks client whose name matched several contacts: an admin decides, not the sync."""

    _name = "freshbooks.review"
    _description = "FreshBooks client held for review"
    _order = "id desc"

    account_id = fields.Many2one("freshbooks.account", required=True, ondelete="cascade", index=True)
    company_id = fields.Many2one(related="account_id.company_id", store=True)
    kind = fields.Selection(
        [("match", "Name matches several contacts"), ("add", "FreshBooks refused a new client")],
        "Reason", default="match", required=True)
    client_ref = fields.Char("FreshBooks client ID")
    name = fields.Char(required=True)
    client_data = fields.Json()
    # "add": the contact FreshBooks refused, FreshBooks' reason, and its clients with that email.
    contact_id = fields.Many2one("res.partner", "Odoo contact", ondelete="cascade", index=True)
    message = fields.Char("FreshBooks said")
    client_choices = fields.Json()
    client_choices_text = fields.Text("FreshBooks clients with this email",
                                      compute="_compute_client_choices_text")
    link_client_ref = fields.Char(
        "FreshBooks client to link",
        help="The ID of the FreshBooks client that is this same customer (one of those listed).")
    candidate_ids = fields.Many2many("res.partner", string="Matching contacts")
    partner_id = fields.Many2one(
        "res.partner", "Link to",
        help="The contact to link. Pick one of the matching contacts or any other contact.")
    state = fields.Selection([("open", "To review"), ("done", "Resolved")], "Status", default="open",
                             required=True, index=True)
    resolution = fields.Char()

    _sql_constraints = [("client_uniq", "unique(account_id, client_ref)",
                         "This client is already held for review.")]

    @api.model
    def _hold(self, account, record, raw, candidates):
        review = self.search([("account_id", "=", account.id),
                              ("client_ref", "=", record.client_id)])
        values = {"name": record.name, "client_data": raw, "state": "open",
                  "candidate_ids": [(6, 0, candidates.ids)]}
        if review:
            review.write(values)
        else:
            review = self.create(dict(values, account_id=account.id, client_ref=record.client_id))
        return review

    @api.depends("client_choices")
    def _compute_client_choices_text(self):
        for review in self:
            review.client_choices_text = "\n".join(
                f"{c['id']}: {c['name']}" + (f" ({c['person']})" if c.get("person") else "")
                for c in review.client_choices or []) or False

    @api.model
    def _hold_contact(self, account, partner, clients, message):
        """Hold a contact FreshBooks refused to add while other clients have its email."""
        choices = []
        for raw in clients:
            person = " ".join(filter(None, [raw.get("fname"), raw.get("lname")]))
            choices.append({"id": str(raw.get("id")), "data": raw,
                            "name": raw.get("organization") or person or raw.get("email"),
                            "person": person if raw.get("organization") else ""})
        values = {"kind": "add", "account_id": account.id, "contact_id": partner.id,
                  "name": partner.display_name, "message": message, "state": "open",
                  "client_choices": choices, "resolution": False,
                  "link_client_ref": choices[0]["id"] if len(choices) == 1 else False}
        review = self.search([("kind", "=", "add"), ("contact_id", "=", partner.id)], limit=1)
        if review:
            review.write(values)
        else:
            review = self.create(values)
        return review

    def _check_open(self):
        """A review is decided once, by someone working in its company: a form left open must
        not decide it again, nor move a contact linked meanwhile. Returns it (sudo)."""
        self.ensure_one()
        review = self.sudo()
        if not self.env.su and review.company_id not in self.env.companies:
            raise UserError(self.env._("This review belongs to %s, a company you are not working "
                                       "in: switch to it first.", review.company_id.name))
        self.check_access("write")
        if review.state != "open":
            raise UserError(self.env._("This review is already resolved (%s): reload the page.",
                                       review.resolution))
        return review

    def _check_contact(self, partner):
        """The contact a decision links or sends: of this review's company (or shared), and
        neither linked to a FreshBooks client nor on its way to one already."""
        partner = partner.sudo()
        if partner.company_id and partner.company_id != self.company_id:
            raise UserError(self.env._("%(contact)s belongs to %(company)s, not to the company "
                                       "of this review.", contact=partner.display_name,
                                       company=partner.company_id.name))
        if partner.freshbooks_client_id:
            raise UserError(self.env._(
                "%(contact)s is already linked to FreshBooks client %(ref)s of %(business)s.",
                contact=partner.display_name, ref=partner.freshbooks_client_id,
                business=partner.freshbooks_account_id.fb_business_name
                or partner.freshbooks_account_id.company_id.name))
        if partner.freshbooks_push_state == "pending":
            raise UserError(self.env._("%s is being sent to FreshBooks already.",
                                       partner.display_name))

    def action_link(self):
        review = self._check_open()
        if review.kind == "add":
            choice = next((c for c in review.client_choices or []
                           if c["id"] == (review.link_client_ref or "").strip()), None)
            if not choice:
                raise UserError(self.env._("Enter the ID of one of the FreshBooks clients listed."))
            review._check_contact(review.contact_id)
            self.env["freshbooks.client.sync"]._link_refused_contact(review, choice["data"])
            return
        if not review.partner_id:
            raise UserError(self.env._("Choose the contact to link to this FreshBooks client."))
        review._check_contact(review.partner_id)
        self.env["freshbooks.client.sync"]._resolve_review(review, review.partner_id)

    def action_create(self):
        review = self._check_open()
        if review.kind == "add":
            review._check_contact(review.contact_id)
            if review.account_id.state != "connected":
                raise UserError(self.env._("FreshBooks is not connected for %s.",
                                           review.company_id.name))
            # Asked again, as the contact is now (its email may have been corrected), of the
            # business that refused it.
            review.contact_id._freshbooks_add(review.account_id)
            review.write({"state": "done", "resolution": self.env._("Sent to FreshBooks again")})
            return
        self.env["freshbooks.client.sync"]._resolve_review(review, None)

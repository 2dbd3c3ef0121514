"""FreshBooks clients into Odoo contacts: import, match by name, link, hold, mark deleted."""

from markupsafe import Markup

from odoo import api, fields, models
from odoo.exceptions import UserError

from .freshbooks_mapping import AddressLookup, ClientRecord, MappingError, clean_text, parse_client

VIS_STATES = {0: "active", 1: "deleted", 2: "archived"}
# A contact's link to its FreshBooks client, and what Odoo knows of that client through it.
LINK_FIELDS = ("freshbooks_account_id", "freshbooks_client_id", "freshbooks_state",
               "freshbooks_push_state", "freshbooks_push_error", "freshbooks_sent_values",
               "freshbooks_add_tried")


class FreshbooksClientSync(models.AbstractModel):
    """The client type: a FreshBooks client is an Odoo contact (res.partner), linked by
    `freshbooks_client_id`. Contacts are matched by name, never guessed: an ambiguous name is
    held for review."""

    _name = "freshbooks.client.sync"
    _inherit = "freshbooks.synced"
    _description = "FreshBooks clients"

    _fb_type = "client"
    _fb_resource = "clients"
    _fb_sequence = 10
    _fb_web_path = "/#/client/{id}"
    _fb_counters = ("created", "linked", "held", "skipped", "updated", "pushed")

    @api.model
    def _fb_plural(self):
        return self.env._("Clients")

    @api.model
    def _partners(self):
        return self.env["res.partner"].sudo().with_context(
            active_test=False, freshbooks_no_push=True, tracking_disable=True,
            mail_create_nolog=True, mail_notrack=True)

    @api.model
    def _address_lookup(self):
        """One country/state index per cursor, not one per client."""
        lookup = self.env.cr.cache.get("freshbooks.address_lookup")
        if lookup is None:
            lookup = self.env.cr.cache["freshbooks.address_lookup"] = AddressLookup(self.env)
        return lookup

    @api.model
    def _freshbooks_fields(self, raw):
        """A FreshBooks client's fields as Odoo holds them after importing it (empty when it
        cannot be read)."""
        try:
            return self.env["freshbooks.mapping"]._freshbooks_fields(raw, self._address_lookup())
        except MappingError:
            return {}

    @api.model
    def _fb_label(self, raw):
        return clean_text(raw.get("organization") or raw.get("email"))

    @api.model
    def _fb_store_page(self, account, raws, log):
        records = []
        for raw in raws:
            ref = raw.get("id") if isinstance(raw, dict) else None
            try:
                records.append((parse_client(raw), raw))
            except MappingError as error:
                log._add_line("error", str(error), ref,
                              self._fb_label(raw) if isinstance(raw, dict) else None)
        self._apply_records(account, records, log)

    @api.model
    def _apply_records(self, account, records, log):
        """Update links of known clients; match, hold or create the others."""
        refs = [r.client_id for r, _raw in records]
        linked = {p.freshbooks_client_id: p for p in self._partners().search(
            [("freshbooks_account_id", "=", account.id), ("freshbooks_client_id", "in", refs)])}
        held = set(self.env["freshbooks.review"].sudo().search(
            [("account_id", "=", account.id), ("client_ref", "in", refs),
             ("state", "=", "open")]).mapped("client_ref"))
        new = []
        for record, raw in records:
            partner = linked.get(record.client_id)
            if partner:
                state = VIS_STATES.get(record.vis_state, "active")
                if partner.freshbooks_state != state:
                    partner.write({"freshbooks_state": state})
                    log._count("updated")
            elif record.vis_state == 1:
                continue  # deleted in FreshBooks, and never a contact: nothing to do
            elif record.vis_state != 0:
                log._count("skipped")  # archived in FreshBooks: not imported
            elif record.client_id in held:
                log._count("held")
            else:
                new.append((record, raw))
        if new:
            self._match_and_import(account, new, log)

    @api.model
    def _match_and_import(self, account, items, log):
        candidates = self._find_candidates(account, {r.key for r, _raw in items})
        used, to_create, notes = set(), [], {}
        Partner = self._partners()
        for record, raw in items:
            matches = candidates.get((record.key, record.is_company), Partner).filtered(
                lambda p, used=used: p.id not in used)
            if len(matches) == 1:
                notes[matches.id] = self._link(account, matches, record)
                used.add(matches.id)
                log._count("linked")
            elif matches:
                self.env["freshbooks.review"].sudo()._hold(account, record, raw, matches)
                log._count("held")
                reason = self.env._("Held for review: %s contacts have this name.", len(matches))
                log._add_line("warning", reason, record.client_id, record.name)
            else:
                to_create.append(record)
        self._attach_documents(account, self._partners().browse(list(notes)))
        self._log_links(notes)
        self._create_partners(account, to_create, log)

    @api.model
    def _find_candidates(self, account, keys):
        """Unlinked top-level contacts by (name key, is company): companies match companies,
        people match people."""
        partners = self._partners().with_context(active_test=True).search([
            ("freshbooks_name_key", "in", list(keys)), ("freshbooks_client_id", "=", False),
            ("parent_id", "=", False), ("company_id", "in", [False, account.company_id.id])])
        # Read once for the page: linking writes each contact alone, and res.partner's write
        # reads its children and users (a query each per contact otherwise).
        partners.mapped("child_ids")
        partners.mapped("user_ids")
        result = {}
        for partner in partners:
            key = (partner.freshbooks_name_key, partner.is_company)
            result[key] = result.get(key, self._partners()) | partner
        return result

    @api.model
    def _link_values(self, account, client_id):
        return {"freshbooks_account_id": account.id, "freshbooks_client_id": client_id,
                "freshbooks_state": "active", "freshbooks_push_state": "synced",
                "freshbooks_push_error": False, "freshbooks_add_tried": False}

    @api.model
    def _link(self, account, partner, record):
        """Link an existing contact and fill only its empty fields; returns the chatter note."""
        partner = partner.with_context(freshbooks_no_push=True, tracking_disable=True)
        Mapping, lookup = self.env["freshbooks.mapping"], self._address_lookup()
        values = Mapping._partner_values(record, lookup)
        filled = {k: v for k, v in values.items()
                  if k not in ("name", "is_company") and not partner[k]}
        # Odoo's own values stay Odoo's: only a later edit sends them.
        sent = lookup.client_fields(dict(Mapping._pushed_values(partner), **filled),
                                    record.names)
        partner.write(dict(filled, freshbooks_sent_values=sent,
                           **self._link_values(account, record.client_id)))
        body = self.env._("Linked to FreshBooks client %(ref)s (same name).", ref=record.client_id)
        if filled:
            labels = ", ".join(partner._fields[k].string for k in filled)
            body += " " + self.env._("Filled from FreshBooks: %s.", labels)
        return body

    @api.model
    def _log_links(self, bodies):
        """The chatter notes of linked contacts, in one batch."""
        if bodies:
            self._partners().browse(list(bodies))._message_log_batch(
                {pid: Markup("<p>%s</p>") % body for pid, body in bodies.items()})

    @api.model
    def _create_partners(self, account, records, log):
        if not records:
            return
        Mapping = self.env["freshbooks.mapping"]
        lookup = self._address_lookup()
        vals_list = []
        for record in records:
            values = Mapping._partner_values(record, lookup)
            values.update(self._link_values(account, record.client_id),
                          team_id=account.import_team_id.id or False,
                          company_id=account.company_id.id,
                          freshbooks_sent_values=lookup.client_fields(values, record.names))
            vals_list.append(values)
            for problem in record.problems:
                log._add_line("warning", problem, record.client_id, record.name)
        # A contact Odoo refuses fails the page, which the sync then stores client by client.
        partners = self._partners().create(vals_list)
        log._count("created", len(partners))
        self._attach_documents(account, partners)

    @api.model
    def _attach_documents(self, account, partners):
        # Types listed beside a run's contacts are attached all at once at its end.
        later = self.env.context.get("freshbooks_attach_later") or ()
        for model in self._fb_types().values():
            if model._name not in later:
                model._fb_attach(account, partners)

    @api.model
    def _fb_gone(self, account, ref, log):
        # What is left to know of it is that it is deleted.
        self._apply_records(account, [(ClientRecord(ref, 1, False, "", ""), {})], log)

    @api.model
    def _fb_export(self, account, log):
        Push = self.env["freshbooks.client.push"]
        Push._push_partners(Push._pending_partners(account), log=log)

    @api.model
    def _fb_has_export(self, account):
        return bool(self.env["freshbooks.client.push"]._pending_partners(account))

    @api.model
    def _fb_forget(self, account):
        # The contacts stay, unlinked: the new business's first sync links them again by name.
        self._partners().search([("freshbooks_account_id", "=", account.id)]).write(
            dict.fromkeys(LINK_FIELDS, False))

    @api.model
    def _resolve_review(self, review, partner):
        review = review.sudo()
        account = review.account_id
        record = parse_client(review.client_data)
        if self._partners().search_count([("freshbooks_account_id", "=", account.id),
                                          ("freshbooks_client_id", "=", record.client_id)]):
            raise UserError(self.env._("This FreshBooks client is already linked to a contact."))
        if partner:
            self._log_links({partner.id: self._link(account, partner.sudo(), record)})
            self._attach_documents(account, partner)
            resolution = self.env._("Linked to %s", partner.display_name)
        else:
            # A saved log of its own: what the client's data lacks is reported there.
            log = self.env["freshbooks.sync.log"].sudo().create({
                "account_id": account.id, "fb_account_id": account.fb_account_id,
                "kind": "review"})
            self._create_partners(account, [record], log)
            log._finish(0)
            resolution = self.env._("New contact created")
        review.write({"state": "done", "resolution": resolution})

    @api.model
    def _link_refused_contact(self, review, raw):
        """An admin says a contact FreshBooks refused to add is this existing client: link it;
        Odoo's details that differ go to FreshBooks, its empty fields are filled from there."""
        review = review.sudo()
        account, partner = review.account_id, review.contact_id
        record = parse_client(raw)
        if self._partners().search_count([("freshbooks_account_id", "=", account.id),
                                          ("freshbooks_client_id", "=", record.client_id)]):
            raise UserError(self.env._("This FreshBooks client is already linked to a contact."))
        self._log_links({partner.id: self._link(account, partner, record)})
        self._attach_documents(account, partner)
        partner.freshbooks_sent_values = self._freshbooks_fields(raw)
        partner._freshbooks_mark_pending()
        review.write({"state": "done", "client_ref": record.client_id,
                      "resolution": self.env._("Linked to FreshBooks client %s", record.client_id)})



class FreshbooksSyncLog(models.Model):
    _inherit = "freshbooks.sync.log"

    created = fields.Integer()
    linked = fields.Integer()
    held = fields.Integer("Held for review")
    skipped = fields.Integer()
    updated = fields.Integer()
    pushed = fields.Integer("Sent to FreshBooks")

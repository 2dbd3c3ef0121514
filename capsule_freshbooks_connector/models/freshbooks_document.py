"""Read-only copies of a client's FreshBooks documents (invoices, payments, estimates)."""

import json
import math
from datetime import date
from decimal import Decimal, InvalidOperation

from psycopg2 import sql

from odoo import api, fields, models

from .freshbooks_mapping import clean_text


def fb_money(value):
    """FreshBooks money: {"amount": "12.00", "code": "USD"}; amounts are strings. Anything
    that is not a finite number (NaN, Infinity, 1e400, a list) counts as 0."""
    if isinstance(value, dict):
        value = value.get("amount")
    try:
        amount = float(Decimal(str(value)))
    except (InvalidOperation, ValueError, TypeError):
        return 0.0
    return amount if math.isfinite(amount) else 0.0


def fb_date(value):
    """FreshBooks dates are YYYY-MM-DD (or a datetime starting with one)."""
    try:
        # fromisoformat: the same dates as strptime("%Y-%m-%d"), several times faster.
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def fb_status(raw, text_key, by_code):
    """A document's status: its text, else the name of its numeric code ("" when neither
    is there, or of the wrong type)."""
    code = raw.get("status")
    return clean_text(raw.get(text_key)) or (
        by_code.get(code, "") if isinstance(code, int) else "")


def fb_currency_code(raw):
    amount = raw.get("amount")
    code = raw.get("currency_code") or (amount.get("code") if isinstance(amount, dict) else "")
    return (clean_text(code) or "").upper()[:3]


class FreshbooksDocument(models.AbstractModel):
    """What a read-only copy of a FreshBooks document has and does: its connection, its client
    and contact, its currency; stored a page at a time in one statement, removed when FreshBooks
    deletes it. FreshBooks stays the only place to change it.

    A document type sets `_fb_ref_field` (its id field, unique per connection), `_fb_client_key`
    (the key of its client's id in FreshBooks' object), the synced-type attributes, and
    implements `_fb_values(raw)`.
    """

    _name = "freshbooks.document"
    _inherit = "freshbooks.synced"
    _description = "FreshBooks document copy"

    _fb_ref_field = None
    _fb_client_key = "customerid"
    # The key of its number in FreshBooks' object, which names it in the sync log.
    _fb_number_key = None
    # Copies: who stored them and when says nothing (FreshBooks' own dates are kept), and those
    # columns' foreign keys cost a first sync of 80,000 documents seconds of checks.
    _log_access = False
    # Documents only point at contacts: they are listed beside them (freshbooks.sync).
    _fb_beside = True

    account_id = fields.Many2one("freshbooks.account", required=True, ondelete="cascade", index=True)
    company_id = fields.Many2one(related="account_id.company_id", store=True)
    client_ref = fields.Char("FreshBooks client ID", index=True)
    partner_id = fields.Many2one("res.partner", "Contact", index=True, ondelete="set null")
    currency_code = fields.Char("Currency")
    currency_id = fields.Many2one("res.currency", "Odoo currency")
    amount = fields.Monetary(currency_field="currency_id")
    url = fields.Char("FreshBooks link", compute="_compute_url")

    @api.depends("account_id.fb_account_id")
    def _compute_url(self):
        for document in self:
            # The connection is admin-only; its account id is not a secret.
            document.url = document._fb_web_link(document.account_id.sudo(),
                                                 document[self._fb_ref_field])

    @api.model
    def _fb_values(self, raw):
        """The columns of one FreshBooks object, other than its connection, id and contact."""
        raise NotImplementedError

    @api.model
    def _fb_label(self, raw):
        return clean_text(raw.get(self._fb_number_key)) if self._fb_number_key else None

    @api.model
    def _fb_currency_id(self, code):
        """Currency ids by code, read once per cursor rather than once per document."""
        currencies = self.env.cr.cache.setdefault("freshbooks.currency_ids", {})
        if code not in currencies:
            currencies[code] = self.env["res.currency"].with_context(active_test=False).search(
                [("name", "=", code)], limit=1).id or None
        return currencies[code]

    @api.model
    def _fb_common_values(self, raw):
        code = fb_currency_code(raw)
        return {"client_ref": clean_text(raw.get(self._fb_client_key)) or "", "currency_code": code,
                "currency_id": self._fb_currency_id(code), "amount": fb_money(raw.get("amount"))}

    @api.model
    def _fb_store_page(self, account, raws, log):
        stored, removed = self._fb_upsert(account, raws)
        log._count(self._fb_counters[0], stored)
        log._count(self._fb_counters[1], removed)

    @api.model
    def _fb_upsert(self, account, raws):
        """Insert, update or remove a page of FreshBooks objects; returns (stored, removed).

        Plain SQL: these are read-only copies with no stored computed fields, and a first sync
        stores tens of thousands of rows.
        """
        rows, removed = {}, []
        for raw in raws:
            if not isinstance(raw, dict) or not raw.get("id"):
                continue
            ref = str(raw["id"])
            if str(raw.get("vis_state", 0)) == "1":
                removed.append(ref)
            else:
                rows[ref] = dict(self._fb_common_values(raw), **self._fb_values(raw))
        self.flush_model()
        cr = self.env.cr
        if rows:
            names = list(next(iter(rows.values())))
            columns = ["account_id", "company_id", self._fb_ref_field, *names]
            # Read once, not per row (each is an ORM field read).
            fixed = {"account_id": account.id, "company_id": account.company_id.id}
            # One JSON value per page, read back by PostgreSQL as rows of this table: far less
            # work per row than a placeholder per value. The contact is found in the same
            # statement (linked clients, active or not).
            query = sql.SQL(
                "INSERT INTO {table} ({columns}, partner_id) SELECT {values}, p.id "
                "FROM json_populate_recordset(NULL::{table}, %s) AS v LEFT JOIN res_partner p "
                "ON p.freshbooks_account_id = v.account_id AND p.freshbooks_client_id = v.client_ref "
                "ON CONFLICT (account_id, {ref}) DO UPDATE SET {updates}").format(
                table=sql.Identifier(self._table),
                columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                values=sql.SQL(", ").join(sql.SQL("v.{}").format(sql.Identifier(c)) for c in columns),
                ref=sql.Identifier(self._fb_ref_field),
                updates=sql.SQL(", ").join(
                    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
                    for name in ["partner_id", *names]))
            payload = json.dumps([dict(row, **fixed, **{self._fb_ref_field: ref})
                                  for ref, row in rows.items()], default=str)
            self.env["res.partner"].flush_model(["freshbooks_account_id", "freshbooks_client_id"])
            # A page PostgreSQL refuses is stored again object by object (freshbooks.sync),
            # which says which one and why: no "bad query" in the server log.
            cr.execute(query.as_string(cr._obj), [payload], log_exceptions=False)
        count = 0
        if removed:
            cr.execute(sql.SQL("DELETE FROM {} WHERE account_id = %s AND {} IN %s").format(
                sql.Identifier(self._table), sql.Identifier(self._fb_ref_field)).as_string(cr._obj),
                [account.id, tuple(removed)])
            count = cr.rowcount
        if rows or count:
            self.invalidate_model()
            self.env["res.partner"].invalidate_model()
        return len(rows), count

    @api.model
    def _fb_gone(self, account, ref, log):
        self._fb_store_page(account, [{"id": ref, "vis_state": 1}], log)

    @api.model
    def _fb_attach(self, account, partners=None, analyze=False):
        """Documents of these contacts' clients (of any linked contact by default) that were
        stored before their contact was linked. `analyze` after a full listing, which may have
        filled the table from empty."""
        self.flush_model()
        self.env["res.partner"].flush_model(["freshbooks_account_id", "freshbooks_client_id"])
        query = sql.SQL(
            "UPDATE {table} AS d SET partner_id = p.id FROM res_partner p "
            "WHERE d.account_id = %s AND d.partner_id IS NULL AND p.freshbooks_account_id = "
            "d.account_id AND p.freshbooks_client_id = d.client_ref").format(
            table=sql.Identifier(self._table))
        params = [account.id]
        cr = self.env.cr
        if analyze:
            # After a first sync's bulk load, the table's statistics still say it is empty:
            # PostgreSQL would then read every linked contact for each document to attach.
            # Not after every run: an idle one would spend most of its time here.
            cr.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(self._table)).as_string(cr._obj))
        if partners is not None:
            refs = tuple(ref for ref in partners.mapped("freshbooks_client_id") if ref)
            if not refs:
                return
            # By the documents' client (indexed): not a scan of every unattached document.
            query += sql.SQL(" AND d.client_ref IN %s")
            params.append(refs)
        cr.execute(query.as_string(cr._obj), params)
        if cr.rowcount:
            self.invalidate_model(["partner_id"])
            self.env["res.partner"].invalidate_model()

    @api.model
    def _fb_copy_count(self, account):
        return self.search_count([("account_id", "=", account.id)])

    @api.model
    def _fb_forget(self, account):
        # One statement: a business may have tens of thousands of copies, and they have
        # nothing the ORM would clean up after them.
        self.flush_model()
        cr = self.env.cr
        cr.execute(sql.SQL("DELETE FROM {} WHERE account_id = %s").format(
            sql.Identifier(self._table)).as_string(cr._obj), [account.id])
        self.invalidate_model()
        self.env["res.partner"].invalidate_model()

    @api.model
    def _fb_refresh_partner(self, account, fb, partner):
        client_ref = partner.freshbooks_client_id
        raws = [raw for page in fb.iter_pages(account.fb_account_id, self._fb_resource,
                                               search={self._fb_client_key: client_ref})
                for raw in page]
        self._fb_upsert(account, raws)
        refs = [str(raw.get("id")) for raw in raws if isinstance(raw, dict)]
        self.search([("account_id", "=", account.id), ("client_ref", "=", client_ref),
                     (self._fb_ref_field, "not in", refs)]).unlink()

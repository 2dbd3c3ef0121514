from decimal import Decimal, InvalidOperation

from psycopg2.extras import execute_values

from odoo import api, fields, models

# FreshBooks' numeric `status` when `v3_status` is missing.
STATUS_BY_CODE = {0: "disputed", 1: "draft", 2: "sent", 3: "viewed", 4: "paid", 5: "autopaid",
                  6: "retry", 7: "failed", 8: "partial"}
OPEN_STATUSES = {"sent", "viewed", "partial", "overdue", "retry", "failed", "disputed",
                 "pending", "deposit-partial"}


def _money(value):
    """FreshBooks money: {"amount": "12.00", "code": "USD"}; amounts are strings."""
    if isinstance(value, dict):
        value = value.get("amount")
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError, TypeError):
        return 0.0


def _date(value):
    try:
        return fields.Date.to_date(str(value)[:10]) if value else False
    except ValueError:
        return False


class FreshbooksInvoice(models.Model):
    """Read-only copy of a FreshBooks invoice; FreshBooks stays the only place to change it."""

    _name = "freshbooks.invoice"
    _description = "FreshBooks invoice"
    _order = "issue_date desc, id desc"
    _rec_name = "number"

    account_id = fields.Many2one("freshbooks.account", required=True, ondelete="cascade", index=True)
    company_id = fields.Many2one(related="account_id.company_id", store=True)
    invoice_ref = fields.Char("FreshBooks invoice ID", required=True)
    client_ref = fields.Char("FreshBooks client ID", index=True)
    partner_id = fields.Many2one("res.partner", "Contact", index=True, ondelete="set null")
    number = fields.Char()
    issue_date = fields.Date()
    due_date = fields.Date()
    currency_code = fields.Char()
    currency_id = fields.Many2one("res.currency")
    amount = fields.Monetary(currency_field="currency_id")
    outstanding = fields.Monetary(currency_field="currency_id")
    status = fields.Char(help="The status FreshBooks reports (draft, sent, viewed, paid, partial, "
                              "overdue, ...).")
    is_overdue = fields.Boolean(compute="_compute_is_overdue")
    url = fields.Char("Open in FreshBooks", compute="_compute_url")

    _sql_constraints = [("invoice_uniq", "unique(account_id, invoice_ref)",
                         "This FreshBooks invoice is already here.")]

    @api.depends("status", "due_date", "outstanding")
    def _compute_is_overdue(self):
        today = fields.Date.context_today(self)
        for invoice in self:
            invoice.is_overdue = invoice.status == "overdue" or bool(
                invoice.status in OPEN_STATUSES and invoice.outstanding
                and invoice.due_date and invoice.due_date < today)

    @api.depends("account_id.fb_account_id", "invoice_ref")
    def _compute_url(self):
        for invoice in self:
            # The connection is admin-only; its account id is not a secret.
            invoice.url = invoice.account_id.sudo()._web_link("invoice", invoice.invoice_ref)

    @api.model
    def _values_from_freshbooks(self, raw):
        """Values for one invoice dict."""
        code = raw.get("currency_code") or (raw.get("amount") or {}).get("code") or ""
        code = str(code).upper()[:3]
        # Currency ids by code, read once per cursor rather than once per invoice.
        currencies = self.env.cr.cache.setdefault("freshbooks.currency_ids", {})
        if code not in currencies:
            currency = self.env["res.currency"].with_context(active_test=False).search(
                [("name", "=", code)], limit=1)
            currencies[code] = currency.id or False
        status = raw.get("v3_status") or STATUS_BY_CODE.get(raw.get("status"), "")
        return {
            "client_ref": str(raw.get("customerid") or ""),
            "number": str(raw.get("invoice_number") or raw.get("id")),
            "issue_date": _date(raw.get("create_date")),
            "due_date": _date(raw.get("due_date")),
            "currency_code": code,
            "currency_id": currencies[code],
            "amount": _money(raw.get("amount")),
            "outstanding": _money(raw.get("outstanding")),
            "status": str(status),
        }

    @api.model
    def _store_page(self, account, raws):
        """Insert, update or remove one page of FreshBooks invoices; return (stored, removed).

        Plain SQL: this is a read-only copy with no computed stored fields, and an initial sync
        stores tens of thousands of rows.
        """
        client_refs = {str(r.get("customerid")) for r in raws if isinstance(r, dict)}
        partners = {p["freshbooks_client_id"]: p["id"] for p in self.env["res.partner"].sudo()
                    .with_context(active_test=False).search_read(
                        [("freshbooks_account_id", "=", account.id),
                         ("freshbooks_client_id", "in", list(client_refs))],
                        ["freshbooks_client_id"])}
        rows, removed = {}, []
        for raw in raws:
            if not isinstance(raw, dict) or not raw.get("id"):
                continue
            ref = str(raw["id"])
            if str(raw.get("vis_state", 0)) == "1":
                removed.append(ref)
                continue
            v = self._values_from_freshbooks(raw)
            rows[ref] = (account.id, account.company_id.id, ref, v["client_ref"],
                         partners.get(v["client_ref"]), v["number"], v["issue_date"] or None,
                         v["due_date"] or None, v["currency_code"], v["currency_id"] or None,
                         v["amount"], v["outstanding"], v["status"], self.env.uid, self.env.uid)
        cr = self.env.cr
        self.flush_model()
        if rows:
            execute_values(cr._obj, """
                INSERT INTO freshbooks_invoice (account_id, company_id, invoice_ref, client_ref,
                    partner_id, number, issue_date, due_date, currency_code, currency_id, amount,
                    outstanding, status, create_uid, write_uid, create_date, write_date)
                VALUES %s
                ON CONFLICT (account_id, invoice_ref) DO UPDATE SET
                    client_ref = EXCLUDED.client_ref, partner_id = EXCLUDED.partner_id,
                    number = EXCLUDED.number, issue_date = EXCLUDED.issue_date,
                    due_date = EXCLUDED.due_date, currency_code = EXCLUDED.currency_code,
                    currency_id = EXCLUDED.currency_id, amount = EXCLUDED.amount,
                    outstanding = EXCLUDED.outstanding, status = EXCLUDED.status,
                    write_uid = EXCLUDED.write_uid, write_date = EXCLUDED.write_date
            """, list(rows.values()), template="(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, now() at time zone 'UTC', now() at time zone 'UTC')")
        count = 0
        if removed:
            cr.execute("DELETE FROM freshbooks_invoice WHERE account_id = %s AND invoice_ref IN %s",
                       [account.id, tuple(removed)])
            count = cr.rowcount
        if rows or count:
            self.invalidate_model()
            self.env["res.partner"].invalidate_model(["freshbooks_invoice_ids"])
        return len(rows), count

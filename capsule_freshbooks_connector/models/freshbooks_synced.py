"""The one registry of FreshBooks object types synced into Odoo, and the hooks each implements."""

from odoo import api, models, tools

from ..freshbooks import NotFoundError

VERBS = ("create", "update", "delete")


class FreshbooksSynced(models.AbstractModel):
    """A FreshBooks object type synced into Odoo: clients, invoices, payments, estimates.

    A type is a model that inherits this one and sets `_fb_type`. The sync engine, the queue,
    the webhook controller and registration, web links and the sync log's summary all find the
    types here: adding one touches none of them.
    """

    _name = "freshbooks.synced"
    _description = "FreshBooks object type"

    # FreshBooks' name of the object: webhooks say "<type>.create", "<type>.update"...
    _fb_type = None
    # The API resource that lists it (freshbooks.ACCOUNTING_RESOURCES).
    _fb_resource = None
    # Order in a run: clients first, then what points at them.
    _fb_sequence = 10
    # Where one opens in FreshBooks' web app, after the base address: {account}, {id}.
    _fb_web_path = None
    # The sync log's counters of this type, in the order its summary says them.
    _fb_counters = ()
    # Listed by a thread of its own, beside the contacts, in a run's listings: what only points
    # at contacts, and is attached to them when both are stored.
    _fb_beside = False

    @tools.ormcache()
    def _fb_type_models(self):
        names = [name for name, model in self.env.registry.items()
                 if getattr(model, "_fb_type", None)]
        return tuple(sorted(names, key=lambda name: self.env.registry[name]._fb_sequence))

    @api.model
    def _fb_types(self):
        """{type: model (sudo)} of every synced type, in run order."""
        return {self.env[name]._fb_type: self.env[name].sudo() for name in self._fb_type_models()}

    @api.model
    def _fb_events(self):
        """The webhook events Odoo subscribes to: each verb of each type."""
        return [f"{kind}.{verb}" for kind in self._fb_types() for verb in VERBS]

    @api.model
    def _fb_plural(self):
        """The type's name in the sync log's progress ("Clients 1,200 / 9,774")."""
        return self._fb_resource.capitalize()

    @api.model
    def _fb_counter_fields(self):
        return [name for model in self._fb_types().values() for name in model._fb_counters]

    # --- what each type implements -------------------------------------------------------------

    @api.model
    def _fb_label(self, raw):
        """How the sync log names one FreshBooks object of this type (its id aside)."""
        return None

    @api.model
    def _fb_store_page(self, account, raws, log):
        """Store one page of FreshBooks objects (a listing page, or one object re-read)."""
        raise NotImplementedError

    @api.model
    def _fb_gone(self, account, ref, log):
        """FreshBooks answers that this object does not exist (any more)."""

    @api.model
    def _fb_export(self, account, log):
        """Send what Odoo has for FreshBooks (only contacts have anything)."""

    @api.model
    def _fb_has_export(self, account):
        return False

    @api.model
    def _fb_attach(self, account, partners=None):
        """Copies that arrived before their client was linked find their contact (these
        contacts', or every linked contact's)."""

    @api.model
    def _fb_refresh_partner(self, account, fb, partner):
        """Everything of one contact, now (its form's refresh button)."""

    @api.model
    def _fb_copy_count(self, account):
        """How many copies of the business's objects this type stores (what a switch to
        another business removes)."""
        return 0

    @api.model
    def _fb_forget(self, account):
        """The connection moves to another business: nothing of this type may point at the
        old one's objects any more."""

    # --- shared behaviour ------------------------------------------------------------------------

    @api.model
    def _fb_refresh(self, account, fb, ref, log):
        """Read one object again (a webhook said it changed) and store it."""
        try:
            raw = fb.get(account.fb_account_id, self._fb_resource, ref)
        except NotFoundError:
            self._fb_gone(account, str(ref), log)
            return
        self._fb_store_page(account, [raw], log)

    @api.model
    def _fb_web_link(self, account, object_id):
        return account._param("web_url") + self._fb_web_path.format(
            account=account.fb_account_id, id=object_id)

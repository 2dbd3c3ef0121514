"""Contacts > Actions > Merge keeps the FreshBooks link: the merged contact is the client's."""

from odoo import api, models
from odoo.exceptions import UserError
from odoo.tools import format_list

from .freshbooks_client_sync import LINK_FIELDS

# A contact's link moves whole, never mixed with another contact's: its push sequence too.
MERGED_FIELDS = (*LINK_FIELDS, "freshbooks_push_seq")


class MergePartnerAutomatic(models.TransientModel):
    _inherit = "base.partner.merge.automatic.wizard"

    def _merge(self, partner_ids, dst_partner=None, extra_checks=True):
        # Refused before the wizard changes anything.
        self._freshbooks_linked(self.env["res.partner"].browse(partner_ids).exists())
        return super()._merge(partner_ids, dst_partner, extra_checks)

    @api.model
    def _freshbooks_linked(self, partners):
        """The contacts linked to a FreshBooks client, as (live, linked): live ones' clients are
        not deleted in FreshBooks. Two live clients are never made one contact here; a client
        merged away or deleted in FreshBooks no longer counts."""
        linked = partners.filtered(lambda p: p.freshbooks_client_id and p.freshbooks_account_id)
        live = linked.filtered(lambda p: p.freshbooks_state != "deleted")
        if len(live) > 1:
            clients = format_list(self.env, [self._freshbooks_client_label(p) for p in live])
            raise UserError(self.env._(
                "These contacts are linked to different FreshBooks clients: %(clients)s. Merge "
                "the clients in FreshBooks first (or delete one there); once Odoo has synced "
                "that, merge the contacts.", clients=clients))
        return live, linked

    @api.model
    def _freshbooks_client_label(self, partner):
        account = partner.sudo().freshbooks_account_id  # connections are admin-only
        return self.env._("%(contact)s (client %(ref)s in %(business)s)",
                          contact=partner.display_name, ref=partner.freshbooks_client_id,
                          business=account.fb_business_name or account.company_id.name)

    @api.model
    def _update_values(self, src_partners, dst_partner):
        # Before the wizard copies the sources' fields onto the destination, the kept link moves
        # whole: off the sources first (a client has one contact), so the deleted source is not
        # queued to come back, and the destination's FreshBooks fields are not a mix of two.
        live, linked = self._freshbooks_linked(src_partners | dst_partner)
        keep = live or (linked & dst_partner) or linked[:1]  # else a dead link: the destination's
        if keep:
            link = keep.read(MERGED_FIELDS, load=None)[0]
            del link["id"]
            src_partners.write(dict.fromkeys(MERGED_FIELDS, False))
            src_partners.flush_recordset(MERGED_FIELDS)
            dst_partner.write(link)
        super()._update_values(src_partners, dst_partner)

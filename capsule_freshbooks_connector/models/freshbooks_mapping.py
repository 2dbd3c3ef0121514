"""The one home of FreshBooks client <-> Odoo contact mapping.

Pure helpers at module level (testable without a database) and a small
AbstractModel for what needs the database: countries and states.
"""

import re
import unicodedata
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from odoo import api, models

# Fields of res.partner that, when edited in Odoo, are pushed to FreshBooks.
PUSHED_FIELDS = frozenset({
    "name", "is_company", "email", "phone", "mobile", "street", "street2", "city", "zip",
    "state_id", "country_id", "vat",
})

# Control characters (C0 and C1, DEL) have no place in a contact; tab and newlines become spaces.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# FreshBooks caps most text fields at a few hundred characters; Odoo has no cap, we keep a sane one.
MAX_FIELD = 256
MAX_NOTE = 20000


class MappingError(ValueError):
    """A FreshBooks client that cannot become a contact; the message says why."""


def name_key(name):
    """Key two names compare equal on: case folded, NFC-normalised (accents kept), spaces collapsed."""
    if not name:
        return ""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def clean_text(value, limit=MAX_FIELD):
    """A FreshBooks scalar as one clean line of text; None for empties and non-scalars."""
    if value is None or isinstance(value, (bool, list, dict)):
        return None
    text = _CONTROL.sub(" ", str(value))
    text = " ".join(text.split())
    return text[:limit] or None


def _clean_note(value):
    if value is None or isinstance(value, (bool, list, dict)):
        return None
    # Keep line breaks in notes, drop the other control characters.
    text = _CONTROL.sub(lambda m: "\n" if m.group() in "\n\r" else " ", str(value)).strip()
    return text[:MAX_NOTE] or None


@dataclass
class ClientRecord:
    """A FreshBooks client parsed and checked, ready to match or import."""

    client_id: str
    vis_state: int
    is_company: bool
    name: str
    key: str
    values: dict = field(default_factory=dict)  # res.partner values, without country/state
    country: str | None = None
    province: str | None = None
    extra_notes: list = field(default_factory=list)  # what has no field in Odoo
    problems: list = field(default_factory=list)  # what was malformed and left out


def parse_client(raw):
    """Turn a FreshBooks client dict into a ClientRecord, or raise MappingError."""
    if not isinstance(raw, dict):
        raise MappingError("not a client object")
    client_id = raw.get("id", raw.get("userid"))
    if isinstance(client_id, bool) or not str(client_id or "").strip().isdigit():
        raise MappingError("client without a valid id")
    client_id = str(client_id).strip()
    try:
        vis_state = int(raw.get("vis_state") or 0)
    except (TypeError, ValueError):
        vis_state = 0
    problems = []

    def text(key, limit=MAX_FIELD):
        value = raw.get(key)
        result = clean_text(value, limit)
        if result is None and value not in (None, "") and not isinstance(value, bool):
            problems.append(f"{key}: unreadable value left out")
        return result

    organization = text("organization")
    fname, lname = text("fname"), text("lname")
    person = " ".join(filter(None, [fname, lname])) or None
    email = text("email")
    if email and "@" not in str(email):
        problems.append(f"email: {email!r} is not an email address, left out")
        email = None
    name = organization or person or email
    if not name:
        raise MappingError("client has no organization, name or email")
    values = {
        "name": name,
        "is_company": bool(organization),
        "email": email,
        "phone": text("bus_phone"),
        "mobile": text("mob_phone"),
        "street": text("p_street"),
        "street2": text("p_street2"),
        "city": text("p_city"),
        "zip": text("p_code"),
        "vat": text("vat_number"),
    }
    extra = []
    if organization and person:
        extra.append(f"Contact person: {person}")
    for key, label in (("home_phone", "Home phone"), ("fax", "Fax")):
        value = text(key)
        if value:
            extra.append(f"{label}: {value}")
    shipping = ", ".join(filter(None, (text(k) for k in (
        "s_street", "s_street2", "s_city", "s_province", "s_code", "s_country"))))
    if shipping:
        extra.append(f"Shipping address: {shipping}")
    note = _clean_note(raw.get("note"))
    if note:
        extra.append(note)
    return ClientRecord(
        client_id=client_id, vis_state=vis_state, is_company=bool(organization), name=name,
        key=name_key(name), values={k: v for k, v in values.items() if v},
        country=text("p_country"), province=text("p_province"), extra_notes=extra,
        problems=problems)


def notes_html(lines):
    """Plain text lines as safe HTML for res.partner.comment."""
    return Markup("<br/>").join(escape(line).replace("\n", Markup("<br/>")) for line in lines)


def split_person_name(name):
    """FreshBooks keeps first and last name apart; Odoo has one name."""
    parts = (name or "").split(None, 1)
    return (parts[0] if parts else "", parts[1] if len(parts) > 1 else "")


class FreshbooksMapping(models.AbstractModel):
    _name = "freshbooks.mapping"
    _description = "FreshBooks client and contact mapping"

    @api.model
    def _resolve_address(self, record):
        """Country and state ids for a parsed client; unknown ones become a note line."""
        values = {}
        country = self._find_country(record.country) if record.country else None
        if record.country and not country:
            record.extra_notes.append(f"Country (not found in Odoo): {record.country}")
        if country:
            values["country_id"] = country.id
        if record.province:
            state = self._find_state(country, record.province) if country else None
            if state:
                values["state_id"] = state.id
            else:
                record.extra_notes.append(f"Province/state: {record.province}")
        return values

    @api.model
    def _find_country(self, text):
        Country = self.env["res.country"].sudo()
        value = text.strip()
        if len(value) == 2:
            country = Country.search([("code", "=ilike", value)], limit=1)
            if country:
                return country
        cache = self.env.context.get("freshbooks_country_cache")
        if cache is None:
            # Country names are compared in English and case-insensitively; one query per run.
            cache = {name_key(c.with_context(lang="en_US").name): c.id for c in Country.search([])}
        country_id = cache.get(name_key(value)) or {
            "usa": "us", "united states of america": "us", "uk": "gb", "great britain": "gb",
        }.get(name_key(value))
        if isinstance(country_id, str):
            return Country.search([("code", "=ilike", country_id)], limit=1)
        return Country.browse(country_id) if country_id else None

    @api.model
    def _find_state(self, country, text):
        State = self.env["res.country.state"].sudo()
        for op in ("code", "name"):
            state = State.search([("country_id", "=", country.id), (op, "=ilike", text.strip())],
                                 limit=1)
            if state:
                return state
        return None

    @api.model
    def _partner_values(self, record):
        """Full res.partner values for a new contact made from a FreshBooks client."""
        values = dict(record.values)
        values.update(self._resolve_address(record))
        if record.extra_notes:
            values["comment"] = notes_html(record.extra_notes)
        return values

    @api.model
    def _client_values(self, partner):
        """FreshBooks client fields for an Odoo contact (what the push sends)."""
        data = {
            "email": partner.email or "",
            "bus_phone": partner.phone or "",
            "mob_phone": partner.mobile or "",
            "p_street": partner.street or "",
            "p_street2": partner.street2 or "",
            "p_city": partner.city or "",
            "p_code": partner.zip or "",
            "p_province": partner.state_id.name or "",
            "p_country": partner.country_id.with_context(lang="en_US").name or "",
            "vat_number": partner.vat or "",
        }
        if partner.is_company:
            data["organization"] = partner.name or ""
        else:
            data["fname"], data["lname"] = split_person_name(partner.name)
            data["organization"] = ""
        return data

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
# Invisible characters that only hide or reorder text: zero-width space, word joiner, byte order
# mark, and the bidi embeddings, overrides and isolates (a name that displays as something else).
_INVISIBLE = re.compile("[\u200b\u2060\ufeff\u202a-\u202e\u2066-\u2069]")
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
    text = _INVISIBLE.sub("", _CONTROL.sub(" ", str(value)))
    text = " ".join(text.split())
    # Nothing visible left (only joiners, marks of direction...): no text at all.
    if not any(unicodedata.category(char) not in ("Cf", "Mn", "Me") for char in text):
        return None
    return text[:limit]


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
    names: dict = field(default_factory=dict)  # FreshBooks' own fname and lname


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
        problems=problems, names={"fname": fname or "", "lname": lname or ""})


def notes_html(lines):
    """Plain text lines as safe HTML for res.partner.comment."""
    return Markup("<br/>").join(escape(line).replace("\n", Markup("<br/>")) for line in lines)


def client_fields(values, country="", province="", held=None):
    """FreshBooks client fields for res.partner values (with the country's English name and the
    province's name): what a push compares and sends. Fields FreshBooks has and Odoo does not
    (a company's contact person, fax, shipping address...) are never among them. `held`: what
    FreshBooks holds (its fname and lname), which says where a person's name splits."""
    data = {
        "email": values.get("email") or "",
        "bus_phone": values.get("phone") or "",
        "mob_phone": values.get("mobile") or "",
        "p_street": values.get("street") or "",
        "p_street2": values.get("street2") or "",
        "p_city": values.get("city") or "",
        "p_code": values.get("zip") or "",
        "p_province": province or "",
        "p_country": country or "",
        "vat_number": values.get("vat") or "",
    }
    if values.get("is_company"):
        data["organization"] = values.get("name") or ""
    else:
        data["fname"], data["lname"] = person_names(values.get("name"), held)
        data["organization"] = ""
    return data


# A person's name is one in Odoo, two in FreshBooks: sent together, never half of it.
NAME_PARTS = ("fname", "lname")


def changed_fields(data, sent):
    """What an edit in Odoo changed since `sent` (what FreshBooks holds, as Odoo last knew it).
    A field cleared in Odoo is sent empty; a field Odoo did not change is not sent at all."""
    changes = {key: value for key, value in data.items() if sent.get(key, "") != value}
    if changes.keys() & set(NAME_PARTS):
        changes.update({key: data[key] for key in NAME_PARTS if key in data})
    return changes


def person_names(name, held=None):
    """FreshBooks' first and last name for a person's one Odoo name. Where FreshBooks holds a
    first name (`held`) that the name still begins with (case and spacing aside), it stays the
    first name; a client with only a last name keeps the whole name as its last name; else the
    name splits at its first space."""
    words = (name or "").split()
    held = held or {}
    first = (held.get("fname") or "").split()
    if first and name_key(" ".join(words[:len(first)])) == name_key(" ".join(first)):
        return " ".join(words[:len(first)]), " ".join(words[len(first):])
    if not first and held.get("lname"):
        return "", " ".join(words)
    return (words[0] if words else "", " ".join(words[1:]))


# Names FreshBooks users type that are not Odoo's English country names.
COUNTRY_ALIASES = {"usa": "us", "united states of america": "us", "uk": "gb",
                   "great britain": "gb", "england": "gb"}


class AddressLookup:
    """Countries and states by code or English name, read once per sync run, not per client."""

    def __init__(self, env):
        self.env = env
        self.countries = {}
        self.country_names = {}
        for country in env["res.country"].sudo().with_context(lang="en_US").search_read(
                [], ["code", "name"]):
            self.countries[name_key(country["name"])] = country["id"]
            self.countries[country["code"].lower()] = country["id"]
            self.country_names[country["id"]] = country["name"]
        for alias, code in COUNTRY_ALIASES.items():
            if code in self.countries:
                self.countries.setdefault(alias, self.countries[code])
        self.states = {}
        self.state_names = {}

    def country(self, text):
        return self.countries.get(name_key(text))

    def state(self, country_id, text):
        if country_id not in self.states:
            self.states[country_id] = states = {}
            for state in self.env["res.country.state"].sudo().with_context(
                    lang="en_US").search_read([("country_id", "=", country_id)], ["code", "name"]):
                states.setdefault(name_key(state["code"]), state["id"])
                states.setdefault(name_key(state["name"]), state["id"])
                self.state_names[state["id"]] = state["name"]
        return self.states[country_id].get(name_key(text))

    def client_fields(self, values, held=None):
        """client_fields() of res.partner values, with the names of their country and state."""
        state_id = values.get("state_id")
        if state_id and state_id not in self.state_names:
            self.state_names[state_id] = self.env["res.country.state"].sudo().with_context(
                lang="en_US").browse(state_id).name
        return client_fields(values, self.country_names.get(values.get("country_id")),
                             self.state_names.get(state_id), held)


class FreshbooksMapping(models.AbstractModel):
    _name = "freshbooks.mapping"
    _description = "FreshBooks client and contact mapping"

    @api.model
    def _partner_values(self, record, lookup=None):
        """Full res.partner values for a contact made from a FreshBooks client.

        Unknown countries and provinces go to the notes, never silently away.
        """
        lookup = lookup or AddressLookup(self.env)
        values = dict(record.values)
        notes = list(record.extra_notes)
        country_id = lookup.country(record.country) if record.country else None
        if country_id:
            values["country_id"] = country_id
        elif record.country:
            notes.append(f"Country (not found in Odoo): {record.country}")
        if record.province:
            state_id = lookup.state(country_id, record.province) if country_id else None
            if state_id:
                values["state_id"] = state_id
            else:
                notes.append(f"Province/state: {record.province}")
        if notes:
            values["comment"] = notes_html(notes)
        return values

    @api.model
    def _client_values(self, partner, lookup=None, held=None):
        """FreshBooks client fields for an Odoo contact, as they are now; a person's name split
        as FreshBooks holds it (`held`)."""
        return (lookup or AddressLookup(self.env)).client_fields(self._pushed_values(partner),
                                                                 held)

    @api.model
    def _pushed_values(self, partner):
        """The contact's values that make its FreshBooks fields (client_fields)."""
        values = {name: partner[name] for name in PUSHED_FIELDS - {"state_id", "country_id"}}
        return dict(values, state_id=partner.state_id.id, country_id=partner.country_id.id)

    @api.model
    def _freshbooks_fields(self, raw, lookup=None):
        """A FreshBooks client's fields as Odoo would hold them after importing it: what a push
        compares with when nothing was sent yet. What Odoo cannot hold (an unknown country)
        reads as empty, so a push never blanks it."""
        lookup = lookup or AddressLookup(self.env)
        record = parse_client(raw)
        return lookup.client_fields(self._partner_values(record, lookup), record.names)

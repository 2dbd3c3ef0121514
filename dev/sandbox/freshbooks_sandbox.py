#!/usr/bin/env python3
"""A FreshBooks-compatible sandbox server, for the demo, the end-to-end tests and the benchmark.

Development tooling only: it is not part of the add-on. Standard library only, loopback only.

One base URL serves what FreshBooks splits over auth.freshbooks.com and api.freshbooks.com:
the OAuth consent page and token endpoint, /auth/api/v1/users/me, clients, invoices, payments,
estimates and webhook callbacks, in FreshBooks' URLs and JSON shapes (see dev/sandbox/README.md).
It keeps its state in memory, seeds it reproducibly from a seed, delivers signed webhooks, injects
faults on demand and exposes everything to tests, through the `Sandbox` object or the HTTP control
API under /_sandbox/.

    python3 dev/sandbox/freshbooks_sandbox.py --port 8099 --clients 50 --invoices 3 --seed 1

    with Sandbox(clients=10, invoices=2).start() as sandbox:
        tokens = sandbox.issue_tokens()
        ...
"""

import argparse
import base64
import copy
import datetime
import email.parser
import email.policy
import functools
import hashlib
import heapq
import hmac
import html
import http.client
import ipaddress
import json
import random
import re
import secrets
import signal
import sys
import threading
import time
import traceback
import unicodedata
import urllib.parse
import uuid
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_CLIENT_ID = "sandbox-client-id"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"
DEFAULT_APP_NAME = "Odoo Connector (sandbox app)"
DEFAULT_SCOPES = ("user:profile:read user:clients:read user:clients:write user:invoices:read "
                  "user:payments:read user:estimates:read")
SCOPE_OBJECTS = (
    "bill_payments", "bill_vendors", "billable_items", "bills", "business", "clients",
    "credit_notes", "estimates", "expenses", "invoices", "journal_entries", "notifications",
    "online_payments", "other_income", "payments", "profile", "projects", "reports", "retainers",
    "taxes", "teams", "time_entries")
SCOPE_RE = re.compile(r"^user:(%s):(read|write)$" % "|".join(SCOPE_OBJECTS))
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
CODE_TTL = 300  # an authorization code lives 5 minutes
EASTERN_OFFSET = 5 * 3600  # US/Eastern faked as UTC-5
DEFAULT_PER_PAGE = 15
MAX_PER_PAGE = 100
MAX_BODY = 10 * 1024 * 1024
DELIVERY_TIMEOUT = 10
API_PREFIXES = ("/auth/", "/accounting/", "/events/")
CALLBACK_EVENTS = tuple(f"{kind}{action}" for kind in ("client", "invoice", "payment", "estimate")
                        for action in ("", ".create", ".update", ".delete"))
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
DAY_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})")
IDENTITY_ID = 7000001
USER_ID = 1
FIRST_CLIENT_ID = 10001
FIRST_INVOICE_ID = 500001
FIRST_CALLBACK_ID = 2001
FIRST_PAYMENT_ID = 700001
FIRST_ESTIMATE_ID = 300001
FIRST_BUSINESS_ID = 100001
UUID_NAMESPACE = uuid.UUID("6f1c2a52-3d4e-4b8a-9c0d-5e6f7a8b9c0d")

ACCOUNTING_401_MESSAGE = ("The server could not verify that you are authorized to access the URL "
                          "requested.")
ACCOUNTING_401 = {"response": {"errors": [{"errno": 1003, "message": ACCOUNTING_401_MESSAGE}]}}
AUTH_401 = {"error": "unauthenticated",
            "error_description": "This action requires authentication to continue."}
EVENTS_401 = {"errno": 401,
              "message": "invalid_token: The request token failed to authenticate or validate."}
EVENTS_404 = {"errno": 404, "message": "Requested resource could not be found."}
EVENTS_422_MESSAGE = ("The request was well-formed but was unable to be followed due to semantic "
                      "errors.")

# Every client carries FreshBooks' full field set, in the order of its fixtures.
CLIENT_DEFAULTS = {
    "accounting_systemid": "", "allow_email_include_pdf": False, "allow_late_fees": True,
    "allow_late_notifications": True, "bus_phone": "", "company_industry": None,
    "company_size": None, "currency_code": "USD", "direct_link_token": None, "email": "",
    "fax": "", "fname": "", "has_retainer": None, "home_phone": None, "id": 0, "language": "en",
    "last_activity": None, "last_login": None, "level": 0, "lname": "", "mob_phone": "",
    "note": None, "notified": False, "num_logins": 0, "organization": "", "p_city": "",
    "p_code": "", "p_country": "", "p_province": "", "p_street": "", "p_street2": "",
    "pref_email": True, "pref_gmail": False, "retainer_id": None, "role": "client",
    "s_city": "", "s_code": "", "s_country": "", "s_province": "", "s_street": "",
    "s_street2": "", "signup_date": "", "statement_token": None, "subdomain": None,
    "updated": "", "userid": 0, "username": "", "uuid": "", "vat_name": None,
    "vat_number": None, "vis_state": 0,
}
CLIENT_STRING_FIELDS = frozenset((
    "fname", "lname", "organization", "email", "bus_phone", "mob_phone", "home_phone", "fax",
    "p_street", "p_street2", "p_city", "p_province", "p_code", "p_country",
    "s_street", "s_street2", "s_city", "s_province", "s_code", "s_country",
    "currency_code", "language", "vat_name", "vat_number", "note", "username",
    "company_industry", "company_size"))
CLIENT_BOOL_FIELDS = frozenset((
    "allow_email_include_pdf", "allow_late_fees", "allow_late_notifications", "pref_email",
    "pref_gmail", "notified"))
CLIENT_SERVER_FIELDS = frozenset((
    "id", "userid", "accounting_systemid", "uuid", "updated", "signup_date", "role", "level",
    "num_logins", "last_login", "last_activity", "has_retainer", "retainer_id",
    "statement_token", "direct_link_token", "subdomain"))
NAME_FIELDS = ("fname", "lname", "organization", "email")

# v3_status -> (status, payment_status, display_status)
INVOICE_STATUSES = {
    "draft": (1, "unpaid", "draft"),
    "sent": (2, "unpaid", "sent"),
    "viewed": (3, "unpaid", "viewed"),
    "paid": (4, "paid", "sent"),
    "autopaid": (5, "auto-paid", "sent"),
    "partial": (8, "partial", "viewed"),
    "overdue": (2, "unpaid", "outstanding"),
}
SEED_INVOICE_STATUSES = (("draft", 15), ("sent", 20), ("viewed", 10), ("paid", 35),
                         ("partial", 10), ("overdue", 10))
PAYMENT_TYPES = ("Check", "Credit Card", "Cash", "Bank Transfer")
# A payment's fields after its ids, in the order of FreshBooks' samples.
PAYMENT_DEFAULTS = {
    "amount": None, "date": "", "type": "Check", "note": "", "gateway": None, "from_credit": False,
    "creditid": None, "overpaymentid": None, "bulk_paymentid": None, "orderid": None,
    "transactionid": None, "send_client_notification": None, "updated": "", "vis_state": 0}
# An estimate's ui_status by its status code minus one; "replied" exists in FreshBooks Classic only.
ESTIMATE_STATUSES = ("draft", "sent", "viewed", "replied", "accepted", "invoiced")
SEED_ESTIMATE_STATUSES = (("draft", 25), ("sent", 25), ("viewed", 15), ("accepted", 20),
                          ("invoiced", 15))
SEED_ESTIMATE_SHARE = 1 / 3  # of clients that get one
# Payments and estimates live alike: per account, by id. kind -> the list's key, the id's other
# name, the id field of its client, the search[...] equality filters, the first id, and the
# page count of an empty listing (FreshBooks answers an empty payment listing with "pages": 0).
RECORD_KINDS = {
    "payment": {"plural": "payments", "id_alias": "logid", "client_field": "clientid",
                "fixed": ("invoiceid", "clientid"), "filters": ("clientid", "invoiceid"),
                "first_id": FIRST_PAYMENT_ID, "empty_pages": 0},
    "estimate": {"plural": "estimates", "id_alias": "estimateid", "client_field": "customerid",
                 "fixed": ("customerid",), "filters": ("customerid",),
                 "first_id": FIRST_ESTIMATE_ID, "empty_pages": 1},
}
# What the control API's add takes as the parent of each kind (its name, then FreshBooks' name).
CONTROL_PARENTS = {"invoice": ("client_id", "customerid"), "payment": ("invoice_id", "invoiceid"),
                   "estimate": ("client_id", "customerid")}
EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()

# ---------------------------------------------------------------------------------------------
# Seed data: 132 first names x 130 last names, companies from three patterns (10,000+ names).
FIRST_NAMES = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Margaret Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew "
    "Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy "
    "Stephanie Ronald Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Kathleen Jacob Amy "
    "Gary Angela Nicholas Shirley Eric Anna Jonathan Brenda Stephen Pamela Larry Emma Justin "
    "Nicole Scott Helen Brandon Samantha Benjamin Katherine Samuel Christine Gregory Debra "
    "Alexander Rachel Frank Carolyn Patrick Janet Raymond Catherine Jack Maria Dennis Heather "
    "Jerry Diane Jean Marie Pierre Camille Louis Chloé Hugo Léa Julien Manon Mathieu Élodie "
    "François Inès Sébastien Zoé Lukas Sophie Jonas Lena Felix Hannah Maximilian Leonie Tobias "
    "Jürgen Katharina Stefan Birgit Uwe Anja Jörg").split()
LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips "
    "Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook "
    "Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward "
    "Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez "
    "Castillo Sanders Patel Myers Long Ross Foster Tremblay Gagnon Roy Côté Bouchard Gauthier "
    "Morin Lavoie Fortin Gagné Dubois Lefèvre Moreau Laurent Girard Bonnet Müller Schmidt "
    "Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann O'Brien MacDonald Singh Chen "
    "Wong").split()
COMPANY_PREFIXES = (
    "Northern Southern Eastern Western Maple Cedar Pine Oak Birch Willow Summit Peak Ridge Valley "
    "River Harbour Lakeside Coastal Prairie Granite Silver Golden Blue Red Green Crimson Azure "
    "Emerald Evergreen Pioneer Frontier Heritage Liberty Royal Crown Empire Atlas Apex Vertex "
    "Zenith Nova Stellar Orbit Quantum Vector Bright Clear True Swift Rapid Prime First Keystone "
    "Cornerstone Bluewater Highland Meadow Sunrise Sunset Horizon Beacon Lighthouse Anchor "
    "Compass Falcon Eagle Bear Wolf Fox").split()
COMPANY_NOUNS = (
    "Logistics", "Consulting", "Construction", "Bakery", "Design", "Analytics", "Dental",
    "Clinic", "Software", "Systems", "Solutions", "Trading", "Imports", "Foods", "Farms",
    "Realty", "Properties", "Media", "Studios", "Architects", "Engineering", "Plumbing",
    "Electric", "Landscaping", "Roofing", "Motors", "Auto Repair", "Printing", "Publishing",
    "Catering", "Brewing", "Coffee Roasters", "Outfitters", "Apparel", "Textiles", "Furniture",
    "Hardware", "Marine", "Aviation", "Pharmacy", "Veterinary", "Fitness", "Travel",
    "Insurance", "Accounting", "Robotics", "Labs", "Energy", "Solar", "Telecom", "Security",
    "Cleaning")
PARTNER_NOUNS = ("Partners", "Associates", "Legal", "Advisors", "Architects")
STREETS_NA = ("Main", "King", "Queen", "Yonge", "Bay", "Elm", "Maple", "Oak", "Park", "Lake",
              "Hill", "Church", "Wellington", "Victoria", "Broadway", "Washington", "Lincoln",
              "Jefferson", "Madison", "Cedar", "Pine", "Spruce", "River", "Sunset")
STREET_TYPES_NA = ("St", "Ave", "Rd", "Blvd", "Dr", "Lane", "Way", "Crescent")
STREETS_UK = ("High Street", "Station Road", "Church Lane", "Victoria Road", "Green Lane",
              "Manor Road", "Park Road", "Queen Street", "Mill Lane", "Kings Road")
STREETS_FR = ("rue de la Paix", "avenue Jean Jaurès", "boulevard Saint-Germain",
              "rue Victor Hugo", "place Bellecour", "rue de la République",
              "rue du Faubourg Saint-Honoré", "quai des Chartrons")
STREETS_DE = ("Hauptstraße", "Bahnhofstraße", "Schillerstraße", "Goethestraße", "Gartenstraße",
              "Lindenallee", "Friedrichstraße", "Berliner Straße")
CA_LETTERS = "ABCEGHJKLMNPRSTVXY"
UK_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
# country name -> (weight, currency, legal suffixes, cities: (city, province code, province
# name, phone prefix, postal prefix))
COUNTRIES = {
    "Canada": (35, "CAD", ("Inc.", "Ltd", "Corp.", ""), (
        ("Toronto", "ON", "Ontario", "+1 416", "M"), ("Ottawa", "ON", "Ontario", "+1 613", "K"),
        ("Montréal", "QC", "Quebec", "+1 514", "H"), ("Québec", "QC", "Quebec", "+1 418", "G"),
        ("Vancouver", "BC", "British Columbia", "+1 604", "V"),
        ("Calgary", "AB", "Alberta", "+1 403", "T"), ("Edmonton", "AB", "Alberta", "+1 780", "T"),
        ("Winnipeg", "MB", "Manitoba", "+1 204", "R"),
        ("Halifax", "NS", "Nova Scotia", "+1 902", "B"))),
    "United States": (35, "USD", ("LLC", "Inc.", "Co.", ""), (
        ("New York", "NY", "New York", "+1 212", "100"),
        ("Chicago", "IL", "Illinois", "+1 312", "606"), ("Austin", "TX", "Texas", "+1 512", "787"),
        ("Seattle", "WA", "Washington", "+1 206", "981"),
        ("Denver", "CO", "Colorado", "+1 303", "802"),
        ("Boston", "MA", "Massachusetts", "+1 617", "021"),
        ("San Francisco", "CA", "California", "+1 415", "941"),
        ("Atlanta", "GA", "Georgia", "+1 404", "303"),
        ("Miami", "FL", "Florida", "+1 305", "331"))),
    "United Kingdom": (12, "GBP", ("Ltd", "PLC", "LLP", ""), (
        ("London", "", "Greater London", "+44 20", "SW"),
        ("Manchester", "", "Greater Manchester", "+44 161", "M"),
        ("Birmingham", "", "West Midlands", "+44 121", "B"),
        ("Edinburgh", "", "Scotland", "+44 131", "EH"),
        ("Bristol", "", "Bristol", "+44 117", "BS"))),
    "France": (9, "EUR", ("SARL", "SAS", "SA", ""), (
        ("Paris", "IDF", "Île-de-France", "+33 1", "75"),
        ("Lyon", "ARA", "Auvergne-Rhône-Alpes", "+33 4", "69"),
        ("Marseille", "PAC", "Provence-Alpes-Côte d'Azur", "+33 4", "13"),
        ("Toulouse", "OCC", "Occitanie", "+33 5", "31"),
        ("Bordeaux", "NAQ", "Nouvelle-Aquitaine", "+33 5", "33"),
        ("Lille", "HDF", "Hauts-de-France", "+33 3", "59"))),
    "Germany": (9, "EUR", ("GmbH", "AG", "KG", ""), (
        ("Berlin", "BE", "Berlin", "+49 30", "10"), ("München", "BY", "Bayern", "+49 89", "80"),
        ("Hamburg", "HH", "Hamburg", "+49 40", "20"),
        ("Köln", "NW", "Nordrhein-Westfalen", "+49 221", "50"),
        ("Frankfurt am Main", "HE", "Hessen", "+49 69", "60"),
        ("Stuttgart", "BW", "Baden-Württemberg", "+49 711", "70"))),
}
COUNTRY_NAMES = tuple(COUNTRIES)
COUNTRY_WEIGHTS = tuple(COUNTRIES[name][0] for name in COUNTRY_NAMES)
VAT = {"United Kingdom": ("VAT", "GB"), "France": ("TVA", "FR"), "Germany": ("USt-IdNr.", "DE")}
PERSON_DOMAINS = ("example.com", "example.net", "example.org", "mail.example")
BUSINESS_NAMES = ("Sandbox Trading Co.", "Sandbox Consulting Ltd", "Sandbox Studio Inc.",
                  "Sandbox Logistics LLC", "Sandbox Bakery SARL", "Sandbox Werkstatt GmbH")
# (currency, street, city, province, country, postal code), by business position
BUSINESS_PLACES = (
    ("USD", "350 Fifth Ave", "New York", "NY", "United States", "10118"),
    ("CAD", "123 Somewhere", "Toronto", "Ontario", "Canada", "M6P 2T6"),
    ("GBP", "10 Downing Lane", "London", "", "United Kingdom", "SW1A 2AB"),
    ("EUR", "12 rue de la Paix", "Paris", "Île-de-France", "France", "75002"),
)


# ---------------------------------------------------------------------------------------------
# Small helpers

def _eastern(ts=None):
    """FreshBooks' accounting wall time: US/Eastern, faked as UTC-5."""
    return time.strftime("%Y-%m-%d %H:%M:%S",
                         time.gmtime((time.time() if ts is None else ts) - EASTERN_OFFSET))


def _utc(ts=None):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() if ts is None else ts))


def _iso_utc(ts=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


def _day(ts):
    return time.strftime("%Y-%m-%d", time.gmtime(ts - EASTERN_OFFSET))


# A Belgian VAT number whose check digits are wrong: Odoo's base_vat refuses it.
INVALID_VAT = "BE0477472702"


def _money(cents, code):
    sign = "-" if cents < 0 else ""
    cents = abs(int(cents))
    return {"amount": f"{sign}{cents // 100}.{cents % 100:02d}", "code": code}


def _cents(value):
    """A money value (1.5, "1.50", Decimal or {"amount": "1.50", "code": ...}) in cents."""
    if isinstance(value, dict):
        value = value.get("amount")
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not an amount: {value!r}") from exc
    return int(amount * 100)


def _counted(payment):
    """The cents a payment adds to its invoice's paid amount: none once deleted."""
    return 0 if payment["vis_state"] == 1 else _cents(payment["amount"])


def _money_code(value):
    return value.get("code") if isinstance(value, dict) else None


def _ascii(text):
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def _present(value):
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    return True


def _q(query, name, default=None):
    values = query.get(name)
    return values[-1] if values else default


class _HttpError(Exception):
    """Short-circuits a route with a prepared response."""

    def __init__(self, status, payload, headers=()):
        super().__init__(status)
        self.status, self.payload, self.headers = status, payload, list(headers)


def _accounting_error(status, errno, message, field=None, obj=None, value=None):
    error = {"errno": errno}
    if field is not None:
        error["field"] = field
    error["message"] = message
    if obj is not None:
        error["object"] = obj
    if value is not None:
        error["value"] = value if isinstance(value, str) else json.dumps(value)
    return _HttpError(status, {"response": {"errors": [error]}})


def _events_error(status, message, details=None):
    payload = {"errno": status, "message": message}
    if details is not None:
        payload["details"] = details
    return _HttpError(status, payload)


def _json_response(status, payload, headers=()):
    return (status, [("Content-Type", "application/json; charset=utf-8"), *headers],
            json.dumps(payload).encode())


def _html_response(status, text, headers=()):
    return status, [("Content-Type", "text/html; charset=utf-8"), *headers], text.encode()


def _redirect(location):
    return 302, [("Location", location), ("Content-Type", "text/plain")], b""


class _Request:
    __slots__ = ("method", "path", "query", "headers", "body", "params")

    def __init__(self, method, path, query, headers, body, params):
        self.method, self.path, self.query = method, path, query
        self.headers, self.body, self.params = headers, body, params

    def header(self, name, default=""):
        value = self.headers.get(name) if self.headers is not None else None
        return default if value is None else value

    def json(self):
        """The body as JSON; ValueError when it is not."""
        if not self.body:
            return {}
        return json.loads(self.body.decode("utf-8"))

    def form(self):
        """JSON, url-encoded or multipart body as a flat dict of strings (last value wins)."""
        ctype = self.header("Content-Type").lower()
        if "json" in ctype:
            data = self.json()
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return data
        if ctype.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + self.header("Content-Type").encode() + b"\r\n\r\n"
                + self.body)
            data = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name:
                    data[name] = part.get_content().strip() if part.get_content_maintype() \
                        == "text" else part.get_payload(decode=True).decode()
            return data
        if self.body[:1] == b"{":  # JSON without a JSON content type
            data = self.json()
            if isinstance(data, dict):
                return data
        return {k: v[-1] for k, v in urllib.parse.parse_qs(
            self.body.decode("utf-8"), keep_blank_values=True).items()}


# ---------------------------------------------------------------------------------------------
# Routes: (method, pattern, handler name[, kind]). {name} matches one path segment; a kind
# (invoice, payment, estimate) is given to the handler before the request.
ROUTES = (
    ("GET", "/", "_page_index"),
    ("GET", "/favicon.ico", "_page_favicon"),
    ("GET", "/oauth/authorize", "_oauth_authorize_page"),
    ("POST", "/oauth/authorize", "_oauth_authorize_submit"),
    ("POST", "/auth/oauth/token", "_oauth_token"),
    ("POST", "/auth/oauth/revoke", "_oauth_revoke"),
    ("GET", "/auth/api/v1/users/me", "_api_me"),
    ("GET", "/accounting/account/{account_id}/users/clients", "_api_list_clients"),
    ("POST", "/accounting/account/{account_id}/users/clients", "_api_create_client"),
    ("GET", "/accounting/account/{account_id}/users/clients/{client_id}", "_api_get_client"),
    ("PUT", "/accounting/account/{account_id}/users/clients/{client_id}", "_api_update_client"),
    ("GET", "/accounting/account/{account_id}/invoices/invoices", "_api_list_invoices"),
    ("GET", "/accounting/account/{account_id}/invoices/invoices/{invoice_id}",
     "_api_get_invoice"),
    ("GET", "/accounting/account/{account_id}/payments/payments", "_api_list_records", "payment"),
    ("GET", "/accounting/account/{account_id}/payments/payments/{payment_id}", "_api_get_record",
     "payment"),
    ("GET", "/accounting/account/{account_id}/estimates/estimates", "_api_list_records",
     "estimate"),
    ("GET", "/accounting/account/{account_id}/estimates/estimates/{estimate_id}",
     "_api_get_record", "estimate"),
    ("GET", "/events/account/{account_id}/events/callbacks", "_api_list_callbacks"),
    ("POST", "/events/account/{account_id}/events/callbacks", "_api_create_callback"),
    ("GET", "/events/account/{account_id}/events/callbacks/{callback_id}", "_api_get_callback"),
    ("PUT", "/events/account/{account_id}/events/callbacks/{callback_id}",
     "_api_update_callback"),
    ("DELETE", "/events/account/{account_id}/events/callbacks/{callback_id}",
     "_api_delete_callback"),
    ("GET", "/_sandbox/state", "_ctl_state"),
    ("GET", "/_sandbox/clients", "_ctl_list_clients"),
    ("POST", "/_sandbox/clients", "_ctl_add_client"),
    ("GET", "/_sandbox/clients/{client_id}", "_ctl_get_client"),
    ("PUT", "/_sandbox/clients/{client_id}", "_ctl_update_client"),
    ("POST", "/_sandbox/clients/{client_id}/delete", "_ctl_delete_client"),
    ("POST", "/_sandbox/clients/{client_id}/archive", "_ctl_archive_client"),
    ("POST", "/_sandbox/clients/{client_id}/restore", "_ctl_restore_client"),
    *(route for kind in CONTROL_PARENTS for route in (
        ("GET", f"/_sandbox/{kind}s", "_ctl_list", kind),
        ("POST", f"/_sandbox/{kind}s", "_ctl_add", kind),
        ("GET", f"/_sandbox/{kind}s/{{{kind}_id}}", "_ctl_get", kind),
        ("PUT", f"/_sandbox/{kind}s/{{{kind}_id}}", "_ctl_update", kind),
        ("POST", f"/_sandbox/{kind}s/{{{kind}_id}}/delete", "_ctl_delete", kind))),
    ("GET", "/_sandbox/callbacks", "_ctl_callbacks"),
    ("POST", "/_sandbox/faults", "_ctl_faults"),
    ("POST", "/_sandbox/expire_tokens", "_ctl_expire_tokens"),
    ("POST", "/_sandbox/revoke_all", "_ctl_revoke_all"),
    ("POST", "/_sandbox/reset_counters", "_ctl_reset_counters"),
    ("POST", "/_sandbox/grant", "_ctl_grant"),
    ("POST", "/_sandbox/tokens", "_ctl_grant"),
)
_COMPILED_ROUTES = tuple(
    (method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/"))
                        + "/?$"), pattern, name, kind[0] if kind else None)
    for method, pattern, name, *kind in ROUTES)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FreshBooksSandbox/1.0"
    timeout = 120  # an idle keep-alive connection frees its thread after this
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def _handle(self):
        sandbox = self.server.sandbox
        try:
            loopback = ipaddress.ip_address(self.client_address[0]).is_loopback
        except ValueError:
            loopback = False
        length = self.headers.get("Content-Length")
        try:
            length = int(length or 0)
        except ValueError:
            length = -1
        if not loopback or length < 0 or length > MAX_BODY:
            self.close_connection = True
            status = 403 if not loopback else 413
            self._send(status, [("Content-Type", "text/plain")], b"refused\n")
            return
        body = self.rfile.read(length) if length else b""
        status, headers, payload = sandbox._dispatch(self.command, self.path, self.headers, body)
        try:
            self._send(status, headers, payload)
        except (BrokenPipeError, ConnectionResetError):
            # The caller stopped waiting (a read timeout): the request was done all the same, as
            # FreshBooks does, and only its answer is lost.
            self.close_connection = True

    def _send(self, status, headers, payload):
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        if self.server.sandbox.verbose:
            super().log_message(format, *args)


# ---------------------------------------------------------------------------------------------

class Sandbox:
    """A stateful FreshBooks look-alike on 127.0.0.1. Thread-safe: one lock guards all state."""

    def __init__(self, clients=0, invoices=0, seed=1, businesses=1, port=0,
                 client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
                 token_ttl=43200, fault_rate=0.0, latency_ms=0, webhook_delay=0.2,
                 hostile=False, host="127.0.0.1", app_name=DEFAULT_APP_NAME,
                 consent_autoclick_ms=None, verbose=False, unique_emails=False):
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the sandbox binds to loopback only (127.0.0.1), not {host!r}")
        if businesses < 1:
            raise ValueError("businesses must be at least 1")
        self.host = "127.0.0.1"
        self.port = int(port)
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_name = app_name
        self.token_ttl = int(token_ttl)
        self.fault_rate = float(fault_rate)
        # The next this many API requests are answered 503, whatever the fault rate.
        self.fail_next = 0
        self.latency_ms = float(latency_ms)
        self.webhook_delay = float(webhook_delay)
        # FreshBooks may take an email as a client's identity (unconfirmed): refuse a new client
        # whose email an active client has, like such a FreshBooks would.
        self.unique_emails = unique_emails
        self.consent_autoclick_ms = consent_autoclick_ms
        self.verbose = verbose
        self.seed = seed
        self.email = "owner@sandbox.test"
        self.identity_id = IDENTITY_ID

        self.lock = threading.RLock()
        self._cond = threading.Condition(self.lock)
        self._fault_rng = random.Random(f"faults-{seed}")
        self._server = None
        self._thread = None
        self._worker = None
        self._jobs = []  # heap of (due, seq, job)
        self._job_seq = 0
        self._stopping = False

        # identity and businesses
        self._businesses = []  # dicts: id, business_uuid, name, account_id, currency_code, role
        for index in range(businesses):
            number = index + 1
            name = BUSINESS_NAMES[index] if index < len(BUSINESS_NAMES) else \
                f"Sandbox Business {number}"
            self._businesses.append({
                "id": FIRST_BUSINESS_ID + index, "name": name,
                "business_uuid": str(uuid.uuid5(UUID_NAMESPACE, f"business-{number}")),
                "account_id": f"SBX{number:03d}",
                "currency_code": BUSINESS_PLACES[index % len(BUSINESS_PLACES)][0],
                "place": BUSINESS_PLACES[index % len(BUSINESS_PLACES)],
                "role": "owner" if index == 0 else "admin"})
        self._foreign_business = {
            "id": 900001, "name": "Foreign Supplies Ltd", "account_id": "FRN001",
            "business_uuid": str(uuid.uuid5(UUID_NAMESPACE, "business-foreign")),
            "currency_code": "USD", "role": "client", "place": BUSINESS_PLACES[0]}
        self._business_by_account = {b["account_id"]: b for b in self._businesses}

        # objects: per account, dicts keyed by id in id order (ids only grow)
        self._clients = {b["account_id"]: {} for b in self._businesses}
        self._client_index = {}
        self._client_account = {}
        self._invoices = {b["account_id"]: {} for b in self._businesses}
        self._invoice_index = {}
        self._invoices_by_client = {}
        self._invoice_numbers = Counter()
        self._records = {kind: {b["account_id"]: {} for b in self._businesses}
                         for kind in RECORD_KINDS}
        self._record_index = {kind: {} for kind in RECORD_KINDS}
        self._next_record_id = {kind: spec["first_id"] for kind, spec in RECORD_KINDS.items()}
        self._estimate_numbers = Counter()
        self._callbacks = {b["account_id"]: {} for b in self._businesses}
        self._callback_index = {}
        self._next_client_id = FIRST_CLIENT_ID
        self._next_invoice_id = FIRST_INVOICE_ID
        self._next_callback_id = FIRST_CALLBACK_ID
        # Filtered, id-ordered lists per (kind, account, search params), valid while no object
        # changes: paging through 50,000 invoices filters them once, not per page.
        self._version = 0
        self._filter_cache = {}

        # OAuth
        self._codes = {}
        self._grants = {}
        self._access_tokens = {}
        self._refresh_tokens = {}

        # observations
        self._route_counts = Counter()
        self._path_counts = Counter()
        self._total_requests = 0
        self._client_writes = []
        self._deliveries = []
        self._verifications = []

        self._seed(clients, invoices, seed, hostile)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self):
        """Serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping = False
        self._server = _Server((self.host, self.port), _Handler)
        self._server.sandbox = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"freshbooks-sandbox-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(5)
        with self._cond:
            self._stopping = True
            self._jobs.clear()
            self._cond.notify_all()
        worker, self._worker = self._worker, None
        if worker is not None and worker is not threading.current_thread():
            worker.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        if self._server is None and not self.port:
            raise RuntimeError("the sandbox is not started: call start() first")
        return f"http://127.0.0.1:{self.port}"

    @property
    def account_ids(self):
        return [b["account_id"] for b in self._businesses]

    @property
    def businesses(self):
        return [{k: v for k, v in b.items() if k != "place"} for b in self._businesses]

    # -- seeding ------------------------------------------------------------------------------

    def _seed(self, clients, invoices, seed, hostile):
        rng = random.Random(seed)
        account = self._businesses[0]["account_id"]
        now = time.time()
        # "Today" starts at the last Eastern midnight, so a seed gives the same data all day.
        anchor = int((now - EASTERN_OFFSET) // 86400 * 86400 + EASTERN_OFFSET)
        used = set()
        status_names = [name for name, _w in SEED_INVOICE_STATUSES]
        status_weights = [w for _n, w in SEED_INVOICE_STATUSES]
        # Payments and estimates draw from a stream of their own: a seed gives the same clients
        # and invoices as before they existed.
        records_rng = random.Random(f"records-{seed}")
        yesterday = datetime.date.fromisoformat(_day(anchor - 1)).toordinal()
        with self.lock:
            for _index in range(clients):
                fields = self._seed_client_fields(rng, used, anchor)
                client = self._new_client(account, fields)
                for _n in range(invoices):
                    invoice = self._new_invoice(client, self._seed_invoice_fields(
                        rng, client, anchor, status_names, status_weights))
                    if invoice["paid"]:
                        self._seed_payments(records_rng, invoice, yesterday)
                if records_rng.random() < SEED_ESTIMATE_SHARE:
                    self._new_estimate(client, self._seed_estimate_fields(records_rng, client,
                                                                          anchor))
            if hostile:
                for fields in self._hostile_fields(rng, anchor):
                    client = self._new_client(account, fields)
                    if fields["username"] == "hostile_documents":
                        self._hostile_documents(client)

    def _pick_name(self, rng, used, company, country):
        for attempt in range(60):
            if company:
                pattern = rng.random()
                if pattern < 0.5:
                    base = f"{rng.choice(COMPANY_PREFIXES)} {rng.choice(COMPANY_NOUNS)}"
                elif pattern < 0.8:
                    base = f"{rng.choice(LAST_NAMES)} {rng.choice(COMPANY_NOUNS)}"
                else:
                    first, second = rng.sample(LAST_NAMES, 2)
                    base = f"{first} & {second} {rng.choice(PARTNER_NOUNS)}"
                if attempt >= 40:
                    base = f"{base} {rng.choice(COUNTRIES[country][3])[0]} {attempt}"
                key = base.lower()
            else:
                fname, lname = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                if attempt >= 20:
                    fname = f"{fname} {rng.choice('ABCDEFGHJKLMNPRSTW')}."
                if attempt >= 40:
                    lname = f"{lname}-{rng.choice(LAST_NAMES)}"
                base = (fname, lname)
                key = f"{fname} {lname}".lower()
            if key not in used:
                used.add(key)
                return base
        raise RuntimeError("could not find a distinct name")  # pragma: no cover

    def _seed_client_fields(self, rng, used, anchor):
        country = rng.choices(COUNTRY_NAMES, COUNTRY_WEIGHTS)[0]
        _weight, currency, suffixes, cities = COUNTRIES[country]
        city, prov_code, prov_name, phone_prefix, postal = rng.choice(cities)
        company = rng.random() < 0.6
        fname, lname = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        if company:
            base = self._pick_name(rng, used, True, country)
            suffix = rng.choice(suffixes)
            organization = f"{base} {suffix}" if suffix else base
            domain = _ascii(base)[:30] + ".example"
            email = f"{_ascii(fname)}.{_ascii(lname)}@{domain}" if rng.random() < 0.7 else \
                f"{rng.choice(('info', 'billing', 'accounts', 'office'))}@{domain}"
            if rng.random() < 0.15:
                fname = lname = ""  # a company without a contact person
        else:
            fname, lname = self._pick_name(rng, used, False, country)
            organization = ""
            email = f"{_ascii(fname)}.{_ascii(lname)}{rng.randint(1, 99)}@" \
                    f"{rng.choice(PERSON_DOMAINS)}"
        if rng.random() < 0.05:
            email = ""
        fields = {
            "fname": fname, "lname": lname, "organization": organization, "email": email,
            "bus_phone": self._phone(rng, phone_prefix) if company or rng.random() < 0.3 else "",
            "mob_phone": self._phone(rng, phone_prefix) if rng.random() < 0.5 else "",
            "home_phone": self._phone(rng, phone_prefix) if not company and rng.random() < 0.3
            else None,
            "fax": self._phone(rng, phone_prefix) if company and rng.random() < 0.05 else "",
            "currency_code": currency,
            "language": "fr" if country == "France" or prov_code == "QC" else
            "de" if country == "Germany" else "en",
        }
        fields.update(self._address(rng, "p_", country, city, prov_code, prov_name, postal))
        if rng.random() < 0.15:
            other = rng.choice(cities)
            fields.update(self._address(rng, "s_", country, *other[:3], other[4]))
        if company and country in VAT:
            name, prefix = VAT[country]
            fields["vat_name"] = name
            fields["vat_number"] = prefix + "".join(str(rng.randint(0, 9)) for _ in range(9))
        elif company and country == "Canada" and rng.random() < 0.4:
            fields["vat_name"] = "GST/HST"
            fields["vat_number"] = f"{rng.randint(100000000, 999999999)}RT0001"
        if rng.random() < 0.2:
            fields["note"] = rng.choice((
                "Prefers email.", "Net 30.", "Call before delivery.", "VIP customer.",
                "Send invoices to accounts payable.", "Pays by cheque."))
        if rng.random() < 0.02:
            fields["vis_state"] = 2
        updated = anchor - rng.randint(1, 90 * 86400)
        fields["updated"] = _eastern(updated)
        fields["signup_date"] = _utc(updated - rng.randint(0, 3 * 365 * 86400))
        fields["username"] = "".join(rng.choice("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
                                                "23456789") for _ in range(10))
        fields["uuid"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return fields

    @staticmethod
    def _phone(rng, prefix):
        if prefix.startswith("+1"):
            return f"{prefix}-555-{rng.randint(100, 9999):04d}"
        if prefix.startswith("+44"):
            return f"{prefix} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"
        if prefix.startswith("+33"):
            return prefix + "".join(f" {rng.randint(10, 99)}" for _ in range(4))
        return f"{prefix} {rng.randint(1000000, 9999999)}"

    @staticmethod
    def _address(rng, p, country, city, prov_code, prov_name, postal):
        number = rng.randint(1, 2999)
        if country in ("Canada", "United States"):
            street = f"{number} {rng.choice(STREETS_NA)} {rng.choice(STREET_TYPES_NA)}"
            street2 = f"Suite {rng.randint(100, 1999)}" if rng.random() < 0.15 else ""
            province = prov_code if rng.random() < 0.7 else prov_name
            if country == "Canada":
                code = (f"{postal}{rng.randint(0, 9)}{rng.choice(CA_LETTERS)} "
                        f"{rng.randint(0, 9)}{rng.choice(CA_LETTERS)}{rng.randint(0, 9)}")
            else:
                code = f"{postal}{rng.randint(0, 99):02d}"
        elif country == "United Kingdom":
            street = f"{number % 300 + 1} {rng.choice(STREETS_UK)}"
            street2 = f"Flat {rng.randint(1, 40)}" if rng.random() < 0.15 else ""
            province = prov_name if rng.random() < 0.5 else ""
            code = (f"{postal}{rng.randint(1, 20)} {rng.randint(1, 9)}"
                    f"{rng.choice(UK_LETTERS)}{rng.choice(UK_LETTERS)}")
        elif country == "France":
            street = f"{number % 200 + 1} {rng.choice(STREETS_FR)}"
            street2 = f"Bâtiment {rng.choice('ABCD')}" if rng.random() < 0.15 else ""
            province = prov_name if rng.random() < 0.6 else ""
            code = f"{postal}{rng.randint(0, 20):03d}"
        else:
            street = f"{rng.choice(STREETS_DE)} {number % 200 + 1}"
            street2 = f"{rng.randint(1, 5)}. OG" if rng.random() < 0.15 else ""
            roll = rng.random()
            province = prov_name if roll < 0.4 else prov_code if roll < 0.6 else ""
            code = f"{postal}{rng.randint(100, 999)}"
        return {p + "street": street, p + "street2": street2, p + "city": city,
                p + "province": province, p + "code": code, p + "country": country}

    def _seed_invoice_fields(self, rng, client, anchor, names, weights):
        v3_status = rng.choices(names, weights)[0]
        age_days = rng.randint(40, 400) if v3_status == "overdue" else rng.randint(0, 365)
        created = anchor - age_days * 86400 + rng.randint(0, 86399) - 86400
        amount = rng.randint(5000, 500000)
        fields = {"v3_status": v3_status, "amount_cents": amount, "created": created,
                  "updated": _eastern(rng.randint(created, max(created, anchor - 1)))}
        if v3_status == "partial":
            fields["paid_cents"] = amount * rng.randint(10, 90) // 100
        if v3_status in ("paid", "autopaid"):
            fields["date_paid"] = _day(min(anchor - 1, created + rng.randint(0, 30) * 86400))
        return fields

    def _seed_payments(self, rng, invoice, yesterday):
        """One or two payments adding up to what the invoice was paid, dated from its date to
        yesterday; a paid invoice's last payment is on its date_paid."""
        paid, date_paid = invoice["paid"], invoice["date_paid"]
        first = datetime.date.fromisoformat(invoice["create_date"]).toordinal()
        last = datetime.date.fromisoformat(date_paid).toordinal() if date_paid else yesterday
        if rng.random() < 0.3:
            part = paid * rng.randint(20, 80) // 100
            amounts = (part, paid - part)
        else:
            amounts = (paid,)
        days = sorted(rng.randint(first, last) for _cents in amounts)
        if date_paid:
            days[-1] = last
        for cents, day in zip(amounts, days):
            kind = rng.choice(PAYMENT_TYPES)
            card = kind == "Credit Card"
            date = datetime.date.fromordinal(day).isoformat()
            # Some time in the working day: every seeded day is over, so it is in the past.
            second = rng.randrange(28800, 72000)
            self._new_payment(invoice, {
                "amount": cents, "date": date, "type": kind,
                "note": f"Card ending {rng.randint(1000, 9999)}" if card else "",
                "gateway": "Stripe" if card else None,
                "updated": f"{date} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"})

    @staticmethod
    def _seed_estimate_fields(rng, client, anchor):
        created = anchor - rng.randint(1, 365 * 86400)
        names, weights = zip(*SEED_ESTIMATE_STATUSES)
        return {"ui_status": rng.choices(names, weights)[0],
                "amount": _money(rng.randint(5000, 500000), client["currency_code"]),
                "create_date": _day(created), "created_at": _eastern(created),
                "updated": _eastern(rng.randint(created, anchor - 1))}

    def _hostile_fields(self, rng, anchor):
        sentence = "This note goes on and on, with <b>markup</b>, 'quotes' & \"more\". "
        note = (sentence * (10000 // len(sentence) + 1))[:10000]
        long_org = ("Extremely Long Organization Name Incorporated International " * 6)[:300]
        rows = [
            ("empty_names", {"fname": "", "lname": "", "organization": "", "email": ""}),
            ("long_note", {"fname": "Noah", "lname": "Longnote", "note": note}),
            ("control_chars", {"fname": "Ctrl\x00Char\x07", "lname": "Tab\tNew\nLine\x1f",
                               "organization": "Control\x01\x02\x1b Corp\r\n"}),
            ("html_name", {"organization": "<script>alert(1)</script> Ltd",
                           "fname": "<b>Bold</b>", "lname": "O'Hara \"Quote\" & Sons"}),
            ("numeric_org", {"organization": 12345, "fname": "Numeric", "lname": "Organization",
                             "email": "not an email"}),
            ("list_email", {"fname": "List", "lname": "Email",
                            "email": ["a@hostile.example", "b@hostile.example"]}),
            ("string_vis_state", {"fname": "String", "lname": "Visstate", "vis_state": "0"}),
            ("unknown_country", {"organization": "Lost Continent Trading", "p_country": "Atlantis",
                                 "p_province": "Poseidonis", "p_city": "Atlantis City",
                                 "p_street": "1 Sunken Way"}),
            ("long_org", {"organization": long_org}),
            ("duplicate_org_1", {"organization": "Duplicate Holdings Inc.", "fname": "First",
                                 "lname": "Twin"}),
            ("duplicate_org_2", {"organization": "Duplicate Holdings Inc.", "fname": "Second",
                                 "lname": "Twin"}),
            ("blank_names", {"fname": "   ", "lname": "\u200b", "organization": " \t "}),
            ("unicode_name", {"fname": "Zoë", "lname": "Ünïcødé 😀",
                              "organization": "שלום Ltd \u202eRTL"}),
            ("null_names", {"fname": None, "lname": None, "organization": None,
                            "email": "only.email@hostile.example"}),
            # A VAT number that Odoo's VAT module (base_vat) refuses: a wrong check digit.
            ("invalid_vat", {"organization": "Refused Vat Holdings", "p_country": "Belgium",
                             "vat_number": INVALID_VAT}),
            ("documents", {"organization": "Hostile Documents Ltd"}),
        ]
        for kind, fields in rows:
            fields = dict(fields)
            fields.setdefault("currency_code", "USD")
            fields["username"] = f"hostile_{kind}"
            fields["updated"] = _eastern(anchor - rng.randint(1, 90 * 86400))
            fields["uuid"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            yield fields

    def _hostile_documents(self, client):
        """Documents whose values are of the wrong type, as real accounts hold them."""
        raw = [
            ("invoice", {"amount": "12.00", "currency_code": ""}),  # money as a plain string
            ("invoice", {"v3_status": ["paid"], "status": [4]}),  # lists for a status
            ("invoice", {"amount": {"amount": "NaN", "code": "USD"}, "outstanding": "Infinity"}),
            ("invoice", {"invoice_number": "NUL\x00 42", "due_date": ["2024-01-01"]}),
        ]
        for number, (_kind, fields) in enumerate(raw, 1):
            invoice = self._new_invoice(client, {"invoice_number": f"HOSTILE-{number}"})
            invoice["extra"].update(fields)
        payment = self.add_payment(invoice["id"], amount="1.00")
        self.corrupt("payment", payment["id"], note="nul\x00inside", type=["Cash"])
        estimate = self.add_estimate(client["id"], estimate_number="E-1")
        self.corrupt("estimate", estimate["id"], estimate_number="E\x00 1",
                     amount={"amount": "1e400", "code": "USD"})

    # -- object construction (lock held) ------------------------------------------------------

    def _resolve_account(self, account_id):
        if account_id is None:
            return self._businesses[0]["account_id"]
        if account_id not in self._business_by_account:
            raise KeyError(f"unknown account {account_id!r}")
        return account_id

    def _new_client(self, account, fields):
        client_id = self._next_client_id
        self._next_client_id += 1
        client = dict(CLIENT_DEFAULTS)
        client["currency_code"] = self._business_by_account[account]["currency_code"]
        client.update(fields)
        client["id"] = client["userid"] = client_id
        client["accounting_systemid"] = account
        client["role"] = "client"
        if not client.get("uuid"):
            client["uuid"] = str(uuid.uuid4())
        if not client.get("username"):
            client["username"] = secrets.token_urlsafe(8)[:10]
        if not _present(client.get("organization")) and not _present(client.get("fname")) \
                and not _present(client.get("lname")) and isinstance(client.get("email"), str) \
                and client["email"].strip():
            client["organization"] = client["email"]  # what FreshBooks does
        if not client.get("updated"):
            client["updated"] = _eastern()
        if not client.get("signup_date"):
            client["signup_date"] = _utc()
        self._clients[account][client_id] = client
        self._version += 1
        self._client_index[client_id] = client
        self._client_account[client_id] = account
        return client

    def _client_locked(self, client_id):
        try:
            return self._client_index[int(client_id)]
        except (KeyError, ValueError, TypeError):
            raise KeyError(f"unknown client {client_id!r}") from None

    def _invoice_locked(self, invoice_id):
        try:
            return self._invoice_index[int(invoice_id)]
        except (KeyError, ValueError, TypeError):
            raise KeyError(f"unknown invoice {invoice_id!r}") from None

    def _currency(self, client, fields):
        """The currency of a new invoice or estimate: given, of its amount, else the client's."""
        currency = fields.pop("currency_code", None) or _money_code(fields.get("amount"))
        if not currency:
            currency = client.get("currency_code")
            if not isinstance(currency, str) or not CURRENCY_RE.match(currency):
                currency = self._business_by_account[client["accounting_systemid"]][
                    "currency_code"]
        return currency

    def _new_invoice(self, client, fields):
        """fields: amount/outstanding/paid (money), v3_status, dates, texts; see add_invoice."""
        account = client["accounting_systemid"]
        invoice_id = self._next_invoice_id
        self._next_invoice_id += 1
        self._invoice_numbers[account] += 1
        created = fields.pop("created", None) or time.time()
        currency = self._currency(client, fields)
        due_date = _day(created + 30 * 86400)
        if fields.get("create_date") and "due_date" not in fields:
            try:
                due_date = (datetime.date.fromisoformat(fields["create_date"])
                            + datetime.timedelta(days=30)).isoformat()
            except (TypeError, ValueError):
                pass
        invoice = {
            "id": invoice_id, "invoice_number": f"INV-{self._invoice_numbers[account]:06d}",
            "customerid": client["id"], "accountid": account,
            "uuid": str(uuid.uuid5(UUID_NAMESPACE, f"invoice-{invoice_id}")),
            "create_date": _day(created), "due_date": due_date,
            "created_at": _eastern(created), "updated": _eastern(created),
            "currency_code": currency, "v3_status": "draft", "date_paid": None,
            "amount": 10000, "outstanding": None, "paid": None, "vis_state": 0,
            "notes": "", "terms": "", "po_number": None, "description": "", "extra": {},
            # the client as it was when the invoice was made
            "snapshot": {
                "fname": client.get("fname"), "lname": client.get("lname"),
                "organization": client.get("organization"), "email": client.get("email"),
                "street": client.get("p_street"), "street2": client.get("p_street2"),
                "city": client.get("p_city"), "province": client.get("p_province"),
                "code": client.get("p_code"), "country": client.get("p_country"),
                "vat_name": client.get("vat_name"), "vat_number": client.get("vat_number")},
        }
        if "updated" not in fields:
            fields["updated"] = invoice["updated"]
        self._apply_invoice_fields(invoice, fields, creating=True)
        self._invoices[account][invoice_id] = invoice
        self._version += 1
        self._invoice_index[invoice_id] = invoice
        self._invoices_by_client.setdefault(client["id"], []).append(invoice_id)
        return invoice

    def _apply_invoice_fields(self, invoice, fields, creating=False):
        fields = dict(fields)
        if "status" in fields and isinstance(fields["status"], str):
            fields.setdefault("v3_status", fields.pop("status"))
        status = fields.pop("v3_status", None)
        if status is not None:
            if status not in INVOICE_STATUSES:
                raise ValueError(f"unknown v3_status {status!r}; use one of "
                                 f"{', '.join(INVOICE_STATUSES)}")
            invoice["v3_status"] = status
        money_given = {key: _cents(fields.pop(key)) for key in ("amount", "outstanding", "paid")
                       if key in fields and fields[key] is not None}
        for key in ("amount", "outstanding", "paid"):  # already in cents (seeding)
            if f"{key}_cents" in fields:
                money_given[key] = int(fields.pop(f"{key}_cents"))
        if "currency_code" in fields:
            invoice["currency_code"] = fields.pop("currency_code")
        if "amount" in money_given:
            invoice["amount"] = money_given["amount"]
        if status is not None or money_given or creating:
            amount = invoice["amount"]
            state = invoice["v3_status"]
            if "outstanding" in money_given:
                outstanding = money_given["outstanding"]
            elif "paid" in money_given:
                outstanding = amount - money_given["paid"]
            elif state in ("paid", "autopaid"):
                outstanding = 0
            elif state == "partial":
                outstanding = amount - amount // 2
            else:
                outstanding = amount
            invoice["outstanding"] = outstanding
            invoice["paid"] = money_given.get("paid", amount - outstanding)
            if state in ("paid", "autopaid") and not invoice["date_paid"] and \
                    "date_paid" not in fields:
                invoice["date_paid"] = _day(time.time())
        for key in ("invoice_number", "create_date", "due_date", "date_paid", "created_at",
                    "updated", "vis_state", "notes", "terms", "po_number", "description"):
            if key in fields:
                invoice[key] = fields.pop(key)
        for key in ("id", "invoiceid", "customerid", "accountid", "accounting_systemid"):
            fields.pop(key, None)
        invoice["extra"].update(fields)

    def _new_record(self, kind, account, record):
        record_id = self._next_record_id[kind]
        self._next_record_id[kind] += 1
        record["id"] = record[RECORD_KINDS[kind]["id_alias"]] = record_id
        self._records[kind][account][record_id] = record
        self._record_index[kind][record_id] = record
        self._version += 1
        return record

    def _record_locked(self, kind, record_id):
        try:
            return self._record_index[kind][int(record_id)]
        except (KeyError, ValueError, TypeError):
            raise KeyError(f"unknown {kind} {record_id!r}") from None

    def _new_payment(self, invoice, fields):
        """fields: amount in cents, date, updated, and type, note, gateway, vis_state or any
        other field."""
        account = invoice["accountid"]
        payment = {"id": 0, "logid": 0, "invoiceid": invoice["id"],
                   "clientid": invoice["customerid"], "accounting_systemid": account,
                   **PAYMENT_DEFAULTS, **fields}
        payment["amount"] = _money(fields["amount"], invoice["currency_code"])
        return self._new_record("payment", account, payment)

    def _payment_amount(self, invoice, value):
        """A payment amount as a money object; it is always in its invoice's currency."""
        code = _money_code(value)
        if code and code != invoice["currency_code"]:
            raise ValueError(f"a payment is in its invoice's currency, "
                             f"{invoice['currency_code']}, not {code}")
        if _cents(value) <= 0:
            raise ValueError(f"a payment amount must be more than 0, not {value!r}")
        return _money(_cents(value), invoice["currency_code"])

    def _settle(self, invoice, change, day):
        """Move an invoice's paid and outstanding by `change` cents of payments, and its status
        with them. Refuses to pay more than the invoice's amount, or less than nothing."""
        if not change:
            return False
        paid = invoice["paid"] + change
        if not 0 <= paid <= invoice["amount"]:
            raise ValueError(f"the payments of invoice {invoice['id']} would add up to "
                             f"{_money(paid, '')['amount']}, out of "
                             f"{_money(invoice['amount'], '')['amount']}")
        invoice["paid"], invoice["outstanding"] = paid, invoice["amount"] - paid
        invoice["date_paid"] = day if paid == invoice["amount"] else None
        if paid == invoice["amount"]:
            invoice["v3_status"] = "paid"
        elif paid:
            invoice["v3_status"] = "partial"
        elif invoice["v3_status"] in ("paid", "autopaid", "partial"):
            overdue = invoice["due_date"] < _day(time.time())
            invoice["v3_status"] = "overdue" if overdue else "sent"
        invoice["updated"] = _eastern()
        self._version += 1
        return True

    def _new_estimate(self, client, fields):
        """fields: amount (money), currency_code, status or ui_status, create_date, updated,
        notes, terms, po_number, vis_state, any other; see add_estimate."""
        account = client["accounting_systemid"]
        self._estimate_numbers[account] += 1
        fields = dict(fields)
        currency = self._currency(client, fields)
        now = time.time()
        estimate = {
            "id": 0, "estimateid": 0,
            "estimate_number": f"{self._estimate_numbers[account]:07d}",
            "customerid": client["id"], "accounting_systemid": account,
            "create_date": _day(now), "created_at": _eastern(now), "updated": _eastern(now),
            "amount": _money(10000, currency), "currency_code": currency,
            "status": 1, "ui_status": "draft", "display_status": "draft", "accepted": False,
            "invoiced": False, "notes": "", "terms": None, "po_number": None, "vis_state": 0,
            # the client as it was when the estimate was made
            "fname": client.get("fname"), "lname": client.get("lname"),
            "organization": client.get("organization")}
        self._apply_estimate_fields(estimate, fields)
        return self._new_record("estimate", account, estimate)

    @staticmethod
    def _apply_estimate_fields(estimate, fields):
        status = fields.pop("ui_status", None)
        if status is None:
            status = fields.pop("status", None)
        if status is not None:
            if status in ESTIMATE_STATUSES:
                status = ESTIMATE_STATUSES.index(status) + 1
            if status not in range(1, len(ESTIMATE_STATUSES) + 1):
                raise ValueError(f"unknown estimate status {status!r}; use 1 to 6 or one of "
                                 f"{', '.join(ESTIMATE_STATUSES)}")
            name = ESTIMATE_STATUSES[status - 1]
            # FreshBooks' display_status values besides draft are undocumented: the name again.
            estimate.update(status=status, ui_status=name, display_status=name,
                            accepted=status >= 5, invoiced=status == 6)
        estimate["currency_code"] = fields.pop("currency_code", estimate["currency_code"])
        estimate["amount"] = _money(_cents(fields.pop("amount", estimate["amount"])),
                                    estimate["currency_code"])
        estimate.update(fields)

    # -- views --------------------------------------------------------------------------------

    @staticmethod
    def _view(obj):
        return {k: (copy.deepcopy(v) if isinstance(v, (list, dict)) else v)
                for k, v in obj.items()}

    def _record_view(self, kind, record):
        view = self._view(record)
        if kind == "estimate":
            client = self._client_index.get(record["customerid"], {})
            view["current_organization"] = client.get("organization", "")
        return view

    def _client_api_view(self, client, includes=()):
        view = dict(client)
        if "outstanding_balance" in includes:
            totals = Counter()
            for invoice_id in self._invoices_by_client.get(client["id"], ()):
                invoice = self._invoice_index[invoice_id]
                if invoice["vis_state"] != 1 and invoice["v3_status"] != "draft" and \
                        invoice["outstanding"]:
                    totals[invoice["currency_code"]] += invoice["outstanding"]
            view["outstanding_balance"] = [{"amount": _money(cents, code)}
                                           for code, cents in sorted(totals.items())]
        return view

    def _invoice_view(self, invoice, lines=False):
        code = invoice["currency_code"]
        status, payment_status, display_status = INVOICE_STATUSES[invoice["v3_status"]]
        client = self._client_index.get(invoice["customerid"], {})
        try:
            due_offset = (datetime.date.fromisoformat(invoice["due_date"])
                          - datetime.date.fromisoformat(invoice["create_date"])).days
        except (TypeError, ValueError):
            due_offset = 0
        view = {
            "id": invoice["id"], "invoiceid": invoice["id"],
            "invoice_number": invoice["invoice_number"], "customerid": invoice["customerid"],
            "accountid": invoice["accountid"], "accounting_systemid": invoice["accountid"],
            "ownerid": USER_ID, "uuid": invoice["uuid"],
            "create_date": invoice["create_date"], "due_date": invoice["due_date"],
            "due_offset_days": due_offset, "date_paid": invoice["date_paid"],
            "created_at": invoice["created_at"], "updated": invoice["updated"],
            "currency_code": code, "language": "en", "notes": invoice["notes"],
            "terms": invoice["terms"], "po_number": invoice["po_number"],
            "description": invoice["description"],
            "amount": _money(invoice["amount"], code),
            "outstanding": _money(invoice["outstanding"], code),
            "paid": _money(invoice["paid"], code),
            "discount_total": _money(0, code), "discount_value": "0",
            **invoice["snapshot"],
            "current_organization": client.get("organization", ""),
            "status": status, "v3_status": invoice["v3_status"],
            "payment_status": payment_status, "display_status": display_status,
            "autobill_status": None, "deposit_status": "none", "vis_state": invoice["vis_state"],
            "estimateid": 0, "parent": 0, "template": "clean-grouped", "version": 1,
        }
        view.update(copy.deepcopy(invoice["extra"]))
        if lines:
            view["lines"] = [{
                "lineid": 1, "name": "Services", "description": "", "qty": "1",
                "unit_cost": _money(invoice["amount"], code),
                "amount": _money(invoice["amount"], code), "taxName1": "", "taxAmount1": None}]
        return view

    @staticmethod
    def _callback_view(callback):
        return {k: callback[k] for k in ("callbackid", "event", "uri", "verified", "updated_at")}

    # -- webhooks -----------------------------------------------------------------------------

    def _emit(self, account, event, object_id):
        """Queue a signed delivery to every verified callback of `account` that wants `event`."""
        parent = event.split(".", 1)[0]
        business = self._business_by_account[account]
        for callback in self._callbacks[account].values():
            if not callback["verified"] or callback["event"] not in (event, parent):
                continue
            fields = [("name", event), ("object_id", str(object_id)), ("user_id", str(USER_ID)),
                      ("identity_id", str(self.identity_id)), ("business_id", str(business["id"])),
                      ("account_id", account)]
            self._enqueue({"kind": "delivery", "uri": callback["uri"], "event": event,
                           "object_id": object_id, "account_id": account,
                           "callbackid": callback["callbackid"], "fields": fields,
                           "verifier": callback["verifier"]})

    def _enqueue_verification(self, callback):
        business = self._business_by_account[callback["account_id"]]
        fields = [("name", "callback.verify"), ("object_id", str(callback["callbackid"])),
                  ("verifier", callback["verifier"]), ("account_id", callback["account_id"]),
                  ("business_id", str(business["id"]))]
        self._enqueue({"kind": "verification", "uri": callback["uri"], "event": "callback.verify",
                       "object_id": callback["callbackid"], "account_id": callback["account_id"],
                       "callbackid": callback["callbackid"], "fields": fields, "verifier": None})

    def _enqueue(self, job):
        with self._cond:
            if self._stopping:
                return
            self._job_seq += 1
            heapq.heappush(self._jobs, (time.monotonic() + self.webhook_delay, self._job_seq, job))
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._delivery_loop, daemon=True,
                                                name="freshbooks-sandbox-webhooks")
                self._worker.start()
            self._cond.notify_all()

    def _delivery_loop(self):
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    if self._jobs:
                        wait = self._jobs[0][0] - time.monotonic()
                        if wait <= 0:
                            job = heapq.heappop(self._jobs)[2]
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait(1)
            self._deliver(job)

    @staticmethod
    def sign(verifier, fields):
        """FreshBooks' signature: base64 HMAC-SHA256 of the JSON of the fields (values as str)."""
        message = json.dumps({k: str(v) for k, v in fields})
        digest = hmac.new(verifier.encode("utf-8"), message.encode("utf-8"),
                          hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def _deliver(self, job):
        body = urllib.parse.urlencode(job["fields"]).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "User-Agent": "FreshBooks-Sandbox-Webhooks/1.0"}
        signature = None
        if job["verifier"] is not None:
            signature = self.sign(job["verifier"], job["fields"])
            headers["X-FreshBooks-Hmac-SHA256"] = signature
        record = {"uri": job["uri"], "event": job["event"], "object_id": job["object_id"],
                  "account_id": job["account_id"], "callbackid": job["callbackid"],
                  "body": body.decode(), "signature": signature, "status": None, "error": None,
                  "at": _iso_utc()}
        # http.client rather than urllib: it keeps the header's exact case and uses no proxy.
        connection = None
        try:
            parts = urllib.parse.urlsplit(job["uri"])
            connection_class = http.client.HTTPSConnection if parts.scheme == "https" else \
                http.client.HTTPConnection
            connection = connection_class(parts.hostname, parts.port, timeout=DELIVERY_TIMEOUT)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            response.read(65536)
            record["status"] = response.status
            if response.status >= 400:
                record["error"] = f"HTTP {response.status}"
        except Exception as exc:  # noqa: BLE001 - a failing receiver never stops the sandbox
            record["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            if connection is not None:
                connection.close()
        with self._cond:
            (self._verifications if job["kind"] == "verification" else
             self._deliveries).append(record)
            self._cond.notify_all()

    # -- Python API: objects ------------------------------------------------------------------

    def add_client(self, account_id=None, **fields):
        """Create a client as a FreshBooks user would (no validation); fires client.create."""
        with self.lock:
            account = self._resolve_account(account_id)
            client = self._new_client(account, fields)
            self._emit(account, "client.create", client["id"])
            return self._view(client)

    def get_client(self, client_id):
        with self.lock:
            return self._view(self._client_locked(client_id))

    def update_client(self, client_id, **fields):
        """Change fields (vis_state included); fires client.update, or client.delete."""
        with self.lock:
            client = self._client_locked(client_id)
            for key in ("id", "userid", "accounting_systemid"):
                fields.pop(key, None)
            explicit_updated = fields.pop("updated", None)
            client.update(fields)
            self._version += 1
            client["updated"] = explicit_updated or _eastern()
            event = "client.delete" if fields.get("vis_state") == 1 else "client.update"
            self._emit(client["accounting_systemid"], event, client["id"])
            return self._view(client)

    def delete_client(self, client_id):
        return self.update_client(client_id, vis_state=1)

    def archive_client(self, client_id):
        return self.update_client(client_id, vis_state=2)

    def restore_client(self, client_id):
        return self.update_client(client_id, vis_state=0)

    def clients(self, account_id=None, include_deleted=True):
        with self.lock:
            account = self._resolve_account(account_id)
            return [self._view(c) for c in self._clients[account].values()
                    if include_deleted or c["vis_state"] != 1]

    def add_invoice(self, client_id, **fields):
        """Create an invoice for a client; fires invoice.create.

        Fields: amount / outstanding / paid (a number, "12.50" or {"amount", "code"}),
        v3_status (draft, sent, viewed, paid, autopaid, partial, overdue; default draft),
        currency_code (default: the client's), invoice_number, create_date, due_date, date_paid,
        updated, notes, terms, po_number, description, vis_state; anything else is added as is.
        """
        with self.lock:
            client = self._client_locked(client_id)
            invoice = self._new_invoice(client, dict(fields))
            self._emit(invoice["accountid"], "invoice.create", invoice["id"])
            return self._invoice_view(invoice)

    def get_invoice(self, invoice_id):
        with self.lock:
            return self._invoice_view(self._invoice_locked(invoice_id))

    def update_invoice(self, invoice_id, **fields):
        with self.lock:
            invoice = self._invoice_locked(invoice_id)
            explicit_updated = fields.pop("updated", None)
            self._version += 1
            self._apply_invoice_fields(invoice, fields)
            invoice["updated"] = explicit_updated or _eastern()
            event = "invoice.delete" if fields.get("vis_state") == 1 else "invoice.update"
            self._emit(invoice["accountid"], event, invoice["id"])
            return self._invoice_view(invoice)

    def delete_invoice(self, invoice_id):
        return self.update_invoice(invoice_id, vis_state=1)

    def invoices(self, account_id=None, client_id=None, include_deleted=True):
        with self.lock:
            if client_id is not None:
                self._client_locked(client_id)
                items = (self._invoice_index[i]
                         for i in self._invoices_by_client.get(int(client_id), ()))
            else:
                items = self._invoices[self._resolve_account(account_id)].values()
            return [self._invoice_view(i) for i in items
                    if include_deleted or i["vis_state"] != 1]

    def add_payment(self, invoice_id, **fields):
        """Record a payment of an invoice and move the invoice's paid, outstanding and status;
        fires payment.create, then invoice.update.

        Fields: amount (a number, "12.50" or {"amount", "code"}; default: what is outstanding;
        always in the invoice's currency), date (YYYY-MM-DD, default today), type (default
        "Check"), note, gateway, updated, vis_state; anything else is added as is.
        """
        with self.lock:
            invoice = self._invoice_locked(invoice_id)
            fields = dict(fields)
            amount = self._payment_amount(invoice, fields.pop("amount", _money(
                invoice["outstanding"], invoice["currency_code"])))
            for key in ("id", "logid", *RECORD_KINDS["payment"]["fixed"], "accounting_systemid"):
                fields.pop(key, None)
            fields.setdefault("date", _day(time.time()))
            fields.setdefault("updated", _eastern())
            counted = 0 if fields.get("vis_state") == 1 else _cents(amount)
            settled = self._settle(invoice, counted, fields["date"])
            payment = self._new_payment(invoice, {**fields, "amount": _cents(amount)})
            self._emit(invoice["accountid"], "payment.create", payment["id"])
            if settled:
                self._emit(invoice["accountid"], "invoice.update", invoice["id"])
            return self._view(payment)

    def get_payment(self, payment_id):
        return self._get_record("payment", payment_id)

    def update_payment(self, payment_id, **fields):
        """Change a payment (vis_state 1 deletes it, 0 restores it) and its invoice's paid
        amount; fires payment.update or payment.delete, then invoice.update."""
        with self.lock:
            payment = self._record_locked("payment", payment_id)
            invoice = self._invoice_index[payment["invoiceid"]]
            fields = dict(fields)
            if "amount" in fields:
                fields["amount"] = self._payment_amount(invoice, fields["amount"])
            after = {**payment, **fields}
            settled = self._settle(invoice, _counted(after) - _counted(payment), after["date"])
            view = self._update_record("payment", payment, fields, dict.update)
            if settled:
                self._emit(invoice["accountid"], "invoice.update", invoice["id"])
            return view

    def corrupt(self, kind, object_id, **fields):
        """Make the API show these raw values in a client, invoice, payment or estimate, as a
        real account may hold them (a string where money is expected, NaN, a list for a
        status, a NUL character): nothing is checked or converted, and no webhook fires."""
        with self.lock:
            if kind == "client":
                target = self._client_locked(object_id)
            elif kind == "invoice":
                target = self._invoice_locked(object_id)["extra"]
            else:
                target = self._record_locked(kind, object_id)
            target.update(fields)

    def delete_payment(self, payment_id):
        return self.update_payment(payment_id, vis_state=1)

    def payments(self, account_id=None, client_id=None, include_deleted=True):
        return self._list_records("payment", account_id, client_id, include_deleted)

    def add_estimate(self, client_id, **fields):
        """Create an estimate for a client; fires estimate.create.

        Fields: amount (a number, "12.50" or {"amount", "code"}; default 100.00), currency_code
        (default: the client's), ui_status (draft, sent, viewed, replied, accepted, invoiced) or
        status (1 to 6), estimate_number, create_date, created_at, updated, notes, terms,
        po_number, vis_state; anything else is added as is.
        """
        with self.lock:
            estimate = self._new_estimate(self._client_locked(client_id), fields)
            self._emit(estimate["accounting_systemid"], "estimate.create", estimate["id"])
            return self._record_view("estimate", estimate)

    def get_estimate(self, estimate_id):
        return self._get_record("estimate", estimate_id)

    def update_estimate(self, estimate_id, **fields):
        """Change an estimate (vis_state 1 deletes it); fires estimate.update or .delete."""
        with self.lock:
            estimate = self._record_locked("estimate", estimate_id)
            return self._update_record("estimate", estimate, dict(fields),
                                       self._apply_estimate_fields)

    def delete_estimate(self, estimate_id):
        return self.update_estimate(estimate_id, vis_state=1)

    def estimates(self, account_id=None, client_id=None, include_deleted=True):
        return self._list_records("estimate", account_id, client_id, include_deleted)

    def _get_record(self, kind, record_id):
        with self.lock:
            return self._record_view(kind, self._record_locked(kind, record_id))

    def _update_record(self, kind, record, fields, apply):
        """apply(record, fields) without the ids; bumps updated, fires <kind>.update/.delete."""
        for key in ("id", RECORD_KINDS[kind]["id_alias"], *RECORD_KINDS[kind]["fixed"],
                    "accounting_systemid"):
            fields.pop(key, None)
        explicit_updated = fields.pop("updated", None)
        deleting = fields.get("vis_state") == 1
        apply(record, fields)
        record["updated"] = explicit_updated or _eastern()
        self._version += 1
        self._emit(record["accounting_systemid"],
                   f"{kind}.delete" if deleting else f"{kind}.update", record["id"])
        return self._record_view(kind, record)

    def _list_records(self, kind, account_id, client_id, include_deleted):
        with self.lock:
            if client_id is not None:
                client = self._client_locked(client_id)
                account, field = client["accounting_systemid"], RECORD_KINDS[kind]["client_field"]
                items = (r for r in self._records[kind][account].values()
                         if r[field] == client["id"])
            else:
                items = self._records[kind][self._resolve_account(account_id)].values()
            return [self._record_view(kind, r) for r in items
                    if include_deleted or r["vis_state"] != 1]

    def callbacks(self, account_id=None):
        """Registered callbacks, with their verifiers."""
        with self.lock:
            if account_id is None:
                items = self._callback_index.values()
            else:
                items = self._callbacks[self._resolve_account(account_id)].values()
            return [dict(c) for c in items]

    # -- Python API: tokens, faults, observations ---------------------------------------------

    def _new_grant(self, scope):
        grant_id = secrets.token_hex(8)
        self._grants[grant_id] = {"id": grant_id, "client_id": self.client_id, "scope": scope,
                                  "revoked": False, "created_at": time.time()}
        return grant_id

    def _issue_pair(self, grant_id):
        now = time.time()
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        # created_at is whole seconds; the token lives a little longer than created_at + ttl.
        self._access_tokens[access] = {"grant": grant_id, "expires_at": now + self.token_ttl}
        self._refresh_tokens[refresh] = {"grant": grant_id, "used": False}
        return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                "expires_in": self.token_ttl, "scope": self._grants[grant_id]["scope"],
                "created_at": int(now)}

    def issue_tokens(self, account_id=None, scope=DEFAULT_SCOPES):
        """A fresh valid grant without the consent page (tokens cover every business)."""
        with self.lock:
            account = self._resolve_account(account_id)
            tokens = self._issue_pair(self._new_grant(scope))
            tokens["account_id"] = account
            return tokens

    def _token_valid(self, token):
        record = self._access_tokens.get(token)
        if record is None or record["expires_at"] <= time.time():
            return False
        return not self._grants[record["grant"]]["revoked"]

    def expire_tokens(self):
        """Every access token issued so far stops working (refresh tokens still do)."""
        with self.lock:
            for record in self._access_tokens.values():
                record["expires_at"] = 0

    def revoke_all(self):
        """Every grant is revoked: its access and refresh tokens stop working."""
        with self.lock:
            for grant in self._grants.values():
                grant["revoked"] = True

    def set_faults(self, fault_rate=None, latency_ms=None, fail_next=None):
        with self.lock:
            if fault_rate is not None:
                if not 0 <= float(fault_rate) <= 1:
                    raise ValueError("fault_rate is a share between 0 and 1")
                self.fault_rate = float(fault_rate)
            if latency_ms is not None:
                if float(latency_ms) < 0:
                    raise ValueError("latency_ms cannot be negative")
                self.latency_ms = float(latency_ms)
            if fail_next is not None:
                if int(fail_next) < 0:
                    raise ValueError("fail_next cannot be negative")
                self.fail_next = int(fail_next)
            return self._faults()

    def _faults(self):
        return {"fault_rate": self.fault_rate, "latency_ms": self.latency_ms,
                "fail_next": self.fail_next}

    def request_count(self, method=None, prefix=None):
        """Requests received (control routes excluded). prefix: a path ("/accounting/account/
        SBX001/invoices") or a route pattern ("/accounting/account/{account_id}/invoices")."""
        with self.lock:
            if prefix is not None and "{" in prefix:
                return sum(n for key, n in self._route_counts.items()
                           if (method is None or key.split(" ", 1)[0] == method)
                           and key.split(" ", 1)[1].startswith(prefix))
            return sum(n for (m, path), n in self._path_counts.items()
                       if (method is None or m == method)
                       and (prefix is None or path.startswith(prefix)))

    def requests_by_route(self):
        with self.lock:
            return dict(self._route_counts)

    def reset_counters(self):
        """Zero the request counters and empty client_writes, deliveries and verifications."""
        with self.lock:
            self._route_counts.clear()
            self._path_counts.clear()
            self._total_requests = 0
            self._client_writes.clear()
            self._deliveries.clear()
            self._verifications.clear()

    @property
    def client_writes(self):
        """Client POST/PUT received through the API: method, client_id, account_id, body, ..."""
        with self.lock:
            return copy.deepcopy(self._client_writes)

    @property
    def deliveries(self):
        """Webhook deliveries attempted: uri, event, object_id, status or error, body, ..."""
        with self.lock:
            return copy.deepcopy(self._deliveries)

    @property
    def verifications(self):
        """callback.verify POSTs attempted (kept apart from deliveries)."""
        with self.lock:
            return copy.deepcopy(self._verifications)

    def wait_deliveries(self, n, timeout=5):
        """Wait until at least n deliveries were attempted; returns them, or TimeoutError."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._deliveries) >= n, timeout):
                raise TimeoutError(f"{len(self._deliveries)} webhook deliveries after "
                                   f"{timeout}s, expected {n}")
            return copy.deepcopy(self._deliveries)

    def wait_verifications(self, n, timeout=5):
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._verifications) >= n, timeout):
                raise TimeoutError(f"{len(self._verifications)} verification POSTs after "
                                   f"{timeout}s, expected {n}")
            return copy.deepcopy(self._verifications)

    def state(self):
        with self.lock:
            accounts = {}
            for account in self.account_ids:
                clients = Counter(str(c["vis_state"]) for c in self._clients[account].values())
                invoices = self._invoices[account]
                callbacks = self._callbacks[account].values()
                accounts[account] = {
                    "clients": len(self._clients[account]),
                    "clients_active": clients.get("0", 0),
                    "clients_deleted": clients.get("1", 0),
                    "clients_archived": clients.get("2", 0),
                    "invoices": len(invoices),
                    "invoices_deleted": sum(1 for i in invoices.values() if i["vis_state"] == 1),
                    "callbacks": len(callbacks),
                    "callbacks_verified": sum(1 for c in callbacks if c["verified"])}
                for kind, spec in RECORD_KINDS.items():
                    records = self._records[kind][account].values()
                    accounts[account][spec["plural"]] = len(records)
                    accounts[account][f"{spec['plural']}_deleted"] = sum(
                        1 for r in records if r["vis_state"] == 1)
            return {
                "url": f"http://127.0.0.1:{self.port}" if self.port else None,
                "client_id": self.client_id,
                "identity": {"identity_id": self.identity_id, "email": self.email},
                "businesses": [{"account_id": b["account_id"], "business_id": b["id"],
                                "name": b["name"], "role": b["role"],
                                "currency_code": b["currency_code"]} for b in self._businesses],
                "accounts": accounts,
                "requests": dict(sorted(self._route_counts.items())),
                "total_requests": self._total_requests,
                "client_writes": copy.deepcopy(self._client_writes),
                "deliveries": copy.deepcopy(self._deliveries),
                "verifications": copy.deepcopy(self._verifications),
                "faults": self._faults(),
                "token_ttl": self.token_ttl, "webhook_delay": self.webhook_delay,
                "grants": {"active": sum(1 for g in self._grants.values() if not g["revoked"]),
                           "revoked": sum(1 for g in self._grants.values() if g["revoked"])},
            }

    # -- HTTP dispatch ------------------------------------------------------------------------

    def _dispatch(self, method, raw_path, headers, body):
        parts = urllib.parse.urlsplit(raw_path)
        path = parts.path or "/"
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        match, allowed = None, []
        wanted = "GET" if method == "HEAD" else method
        for route_method, regex, pattern, name, kind in _COMPILED_ROUTES:
            found = regex.match(path)
            if found:
                if route_method == wanted:
                    params = {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
                    match = (pattern, name, params, kind)
                    break
                allowed.append(route_method)
        control = path == "/_sandbox" or path.startswith("/_sandbox/")
        api = path.startswith(API_PREFIXES)
        if not control:
            key = f"{method} {match[0] if match else path}"
            with self.lock:
                self._route_counts[key] += 1
                self._path_counts[(method, path.rstrip("/") or "/")] += 1
                self._total_requests += 1
        if api:
            latency = self.latency_ms
            if latency > 0:
                time.sleep(latency / 1000.0)
            with self.lock:
                if self.fail_next:
                    self.fail_next -= 1
                    fault, kind, retry_after = True, 503, None
                else:
                    fault = self._fault_rng.random() < self.fault_rate
                    kind = self._fault_rng.choice((429, 500, 502, 503)) if fault else None
                    retry_after = self._fault_rng.choice(("0", "1")) if fault else None
            if fault:
                return self._fault_response(kind, path, retry_after)
        if match is None:
            return self._not_found(path, bool(allowed))
        request = _Request(method, path, query, headers, body, match[2])
        handler = getattr(self, match[1])
        if match[3]:
            handler = functools.partial(handler, match[3])
        try:
            return handler(request)
        except _HttpError as exc:
            return _json_response(exc.status, exc.payload, exc.headers)
        except Exception:  # noqa: BLE001 - report, answer 500, keep serving
            traceback.print_exc()
            return _json_response(500, {"response": {"errors": [
                {"errno": 500, "message": "Sandbox internal error (see its stderr)."}]}})

    @staticmethod
    def _family(path):
        if path.startswith("/accounting/"):
            return "accounting"
        if path.startswith("/events/"):
            return "events"
        if path.startswith("/auth/"):
            return "auth"
        return "other"

    def _fault_response(self, kind, path, retry_after):
        family = self._family(path)
        if kind == 502:
            return _html_response(502, "<html><head><title>502 Bad Gateway</title></head><body>"
                                       "<center><h1>502 Bad Gateway</h1></center></body></html>")
        messages = {429: "Too many requests.", 500: "An unexpected error occurred.",
                    503: "Service temporarily unavailable."}
        if family == "accounting":
            payload = {"response": {"errors": [{"errno": kind if kind != 500 else 500,
                                                "message": messages[kind]}]}}
        elif family == "events":
            payload = {"errno": kind, "message": messages[kind]}
        else:
            payload = {"error": "server_error" if kind != 429 else "rate_limited",
                       "error_description": messages[kind]}
        headers = [("Retry-After", retry_after)] if kind == 429 else []
        if kind == 503:
            headers = [("Retry-After", "1")]
        return _json_response(kind, payload, headers)

    def _not_found(self, path, method_not_allowed):
        status = 405 if method_not_allowed else 404
        family = self._family(path)
        if family == "accounting":
            return _json_response(status, {"response": {"errors": [
                {"errno": 1012 if status == 404 else 405,
                 "message": "Not found." if status == 404 else "Method not allowed."}]}})
        if family == "events":
            return _json_response(status, EVENTS_404 if status == 404 else
                                  {"errno": 405, "message": "Method not allowed."})
        if family == "other" and not path.startswith("/_sandbox"):
            return _html_response(status, self._html_page(
                "Not found", f"<p>No page at <code>{html.escape(path)}</code>.</p>"
                             '<p><a href="/">Sandbox home</a></p>'))
        return _json_response(status, {"error": "not_found" if status == 404 else
                                       "method_not_allowed", "path": path})

    # -- auth helpers -------------------------------------------------------------------------

    def _authorize(self, request, family):
        scheme, _sep, token = request.header("Authorization").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            with self.lock:
                if self._token_valid(token):
                    return
        payload = {"accounting": ACCOUNTING_401, "events": EVENTS_401}.get(family, AUTH_401)
        raise _HttpError(401, payload, [("WWW-Authenticate", 'Bearer realm="FreshBooks"')])

    def _account(self, request, family):
        self._authorize(request, family)
        account = request.params["account_id"]
        if account not in self._business_by_account:
            if family == "events":
                raise _events_error(403, "Forbidden: no access to this account.")
            raise _accounting_error(403, 1003, ACCOUNTING_401_MESSAGE, obj="account",
                                    value=account)
        return account

    # -- OAuth --------------------------------------------------------------------------------

    def _authorize_params(self, source):
        keys = ("client_id", "response_type", "redirect_uri", "scope", "state")
        return {k: source[k] for k in keys if source.get(k) is not None}

    def _check_authorize(self, params):
        """The authorize request's problem: an error page, or a redirect with an error."""
        if params.get("client_id") != self.client_id:
            return _html_response(400, self._html_page(
                "Unknown application", "<p>No application is registered with client_id "
                f"<code>{html.escape(params.get('client_id', ''))}</code>.</p>"))
        redirect_uri = params.get("redirect_uri", "")
        parts = urllib.parse.urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or \
                parts.fragment or "?" in redirect_uri or "#" in redirect_uri:
            return _html_response(400, self._html_page(
                "Invalid redirect_uri", "<p>The redirect URI "
                f"<code>{html.escape(redirect_uri)}</code> is not valid: it must be an absolute "
                "http(s) URL registered for the application, without a query string (use "
                "<code>state</code>).</p>"))
        if params.get("response_type") != "code":
            return self._oauth_redirect(params, error="unsupported_response_type",
                                        error_description="Only response_type=code is supported.")
        bad = [s for s in self._scopes(params) if not SCOPE_RE.match(s)]
        if bad:
            return self._oauth_redirect(params, error="invalid_scope",
                                        error_description="Unknown scope: " + " ".join(bad))
        return None

    @staticmethod
    def _scopes(params):
        return (params.get("scope") or DEFAULT_SCOPES).split()

    @staticmethod
    def _oauth_redirect(params, **values):
        if params.get("state") is not None:
            values["state"] = params["state"]
        return _redirect(params["redirect_uri"] + "?" + urllib.parse.urlencode(values))

    def _oauth_authorize_page(self, request):
        params = self._authorize_params({k: v[-1] for k, v in request.query.items()})
        problem = self._check_authorize(params)
        if problem:
            return problem
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items())
        scopes = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in self._scopes(params))
        host = urllib.parse.urlsplit(params["redirect_uri"]).netloc
        autoclick = ""
        if self.consent_autoclick_ms is not None:
            autoclick = ("<script>setTimeout(function () { "
                         "document.getElementById('fb-allow').click(); }, "
                         f"{int(self.consent_autoclick_ms)});</script>")
        content = f"""
<p><strong>{html.escape(self.app_name)}</strong>
(client_id <code>{html.escape(self.client_id)}</code>) would like to access your FreshBooks
account <strong>{html.escape(self.email)}</strong>.</p>
<p>It asks for these permissions:</p><ul class="scopes">{scopes}</ul>
<p>You will be sent back to <code>{html.escape(host)}</code>.</p>
<div class="buttons">
<form method="post" action="/oauth/authorize">{hidden}<input type="hidden" name="decision"
value="allow"><button id="fb-allow" type="submit" class="allow">Allow</button></form>
<form method="post" action="/oauth/authorize">{hidden}<input type="hidden" name="decision"
value="deny"><button id="fb-deny" type="submit" class="deny">Deny</button></form>
</div>{autoclick}"""
        return _html_response(200, self._html_page("Authorize " + self.app_name, content))

    def _oauth_authorize_submit(self, request):
        try:
            form = request.form()
        except ValueError:
            form = {}
        params = self._authorize_params({k: str(v) for k, v in form.items()})
        problem = self._check_authorize(params)
        if problem:
            return problem
        decision = form.get("decision") or ("allow" if "allow" in form else
                                            "deny" if "deny" in form else "")
        if decision == "deny":
            return self._oauth_redirect(params, error="access_denied",
                                        error_description="The user denied the request.")
        if decision != "allow":
            return _html_response(400, self._html_page(
                "No decision", "<p>Choose Allow or Deny.</p>"))
        code = secrets.token_hex(20)
        with self.lock:
            self._codes[code] = {"client_id": params["client_id"],
                                 "redirect_uri": params["redirect_uri"],
                                 "scope": " ".join(self._scopes(params)),
                                 "expires_at": time.time() + CODE_TTL, "used": False}
        return self._oauth_redirect(params, code=code)

    @staticmethod
    def _oauth_error(status, error, description):
        return _HttpError(status, {"error": error, "error_description": description})

    def _client_credentials(self, request, form):
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = request.header("Authorization")
        if auth.lower().startswith("basic ") and not client_id:
            try:
                client_id, _sep, client_secret = base64.b64decode(
                    auth[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                pass
        if client_id != self.client_id or not isinstance(client_secret, str) or \
                not hmac.compare_digest(client_secret.encode(), self.client_secret.encode()):
            raise self._oauth_error(401, "invalid_client",
                                    "Client authentication failed: unknown client_id or wrong "
                                    "client_secret.")

    def _oauth_token(self, request):
        try:
            form = request.form()
        except (ValueError, UnicodeDecodeError):
            raise self._oauth_error(400, "invalid_request", "Could not parse the body.") \
                from None
        grant_type = form.get("grant_type")
        if grant_type not in ("authorization_code", "refresh_token"):
            raise self._oauth_error(400, "unsupported_grant_type",
                                    "grant_type must be authorization_code or refresh_token.")
        self._client_credentials(request, form)
        with self.lock:
            if grant_type == "authorization_code":
                record = self._codes.get(str(form.get("code")))
                if record is None or record["used"]:
                    raise self._oauth_error(400, "invalid_grant", "The authorization code is "
                                            "invalid or has already been used.")
                if record["expires_at"] <= time.time():
                    raise self._oauth_error(400, "invalid_grant",
                                            "The authorization code has expired.")
                if record["client_id"] != form.get("client_id") or \
                        record["redirect_uri"] != form.get("redirect_uri"):
                    raise self._oauth_error(400, "invalid_grant", "The redirect_uri does not "
                                            "match the one used in the authorization request.")
                record["used"] = True
                return _json_response(200, self._issue_pair(self._new_grant(record["scope"])))
            record = self._refresh_tokens.get(str(form.get("refresh_token")))
            if record is None or record["used"] or self._grants[record["grant"]]["revoked"]:
                raise self._oauth_error(400, "invalid_grant", "The refresh token is invalid, "
                                        "revoked or has already been used.")
            record["used"] = True
            return _json_response(200, self._issue_pair(record["grant"]))

    def _oauth_revoke(self, request):
        try:
            form = request.form()
        except (ValueError, UnicodeDecodeError):
            raise self._oauth_error(400, "invalid_request", "Could not parse the body.") \
                from None
        self._client_credentials(request, form)
        token = str(form.get("token") or "")
        with self.lock:
            record = self._refresh_tokens.get(token) or self._access_tokens.get(token)
            if record is not None:
                self._grants[record["grant"]]["revoked"] = True
        return _json_response(200, {})

    # -- identity -----------------------------------------------------------------------------

    def _membership(self, index, business):
        _currency, street, city, province, country, postal_code = business["place"]
        return {
            "id": 140130 + index, "role": business["role"], "unacknowledged_change": False,
            "business": {
                "id": business["id"], "business_uuid": business["business_uuid"],
                "name": business["name"], "account_id": business["account_id"],
                "date_format": "mm/dd/yyyy", "currency_code": business["currency_code"],
                "address": {"id": 76433 + index, "street": street, "city": city,
                            "province": province, "country": country,
                            "postal_code": postal_code},
                "phone_number": {"id": 666111 + index, "phone_number": "416-555-0100"},
                "business_clients": []}}

    def me(self):
        businesses = self._businesses + [self._foreign_business]
        memberships = [self._membership(i, b) for i, b in enumerate(businesses)]
        return {
            "id": self.identity_id,
            "profile": {"setup_complete": True, "first_name": "Sam", "last_name": "Sandbox",
                        "phone_number": None, "address": None, "professions": [],
                        "has_password": True},
            "identity_id": self.identity_id,
            "identity_uuid": str(uuid.uuid5(UUID_NAMESPACE, f"identity-{self.identity_id}")),
            "first_name": "Sam", "last_name": "Sandbox", "email": self.email, "language": "en",
            "confirmed_at": "2020-01-02T15:04:05Z", "created_at": "2020-01-02T15:00:00Z",
            "unconfirmed_email": None, "setup_complete": True,
            "phone_numbers": [{"title": "", "phone_number": None}], "addresses": [None],
            "profession": None,
            "links": {"me": f"/service/auth/api/v1/users?id={self.identity_id}",
                      "roles": f"/service/auth/api/v1/users/role/{self.identity_id}"},
            "permissions": {b["account_id"]: {} for b in businesses},
            "groups": [{"id": 12345 + i, "group_id": 7654 + i, "role": b["role"],
                        "identity_id": self.identity_id, "business_id": b["id"], "active": True}
                       for i, b in enumerate(businesses)],
            "subscription_statuses": {b["account_id"]: "active" for b in businesses},
            "integrations": {},
            "business_memberships": memberships,
            "identity_origin": None,
            "roles": [{"id": 61270 + i, "role": b["role"] if b["role"] == "client" else "admin",
                       "systemid": 654654 + i, "userid": USER_ID,
                       "created_at": "2020-01-02T15:04:05Z",
                       "links": {"destroy": f"/service/auth/api/v1/users/role/{61270 + i}"},
                       "accountid": b["account_id"]} for i, b in enumerate(businesses)],
        }

    def _api_me(self, request):
        self._authorize(request, "auth")
        return _json_response(200, {"response": self.me()})

    # -- accounting: shared -------------------------------------------------------------------

    @staticmethod
    def _paging(query):
        try:
            page = int(_q(query, "page") or 1)
        except ValueError:
            raise _accounting_error(400, 1014, "Invalid page number.", field="page",
                                    value=_q(query, "page")) from None
        try:
            per_page = int(_q(query, "per_page") or DEFAULT_PER_PAGE)
        except ValueError:
            raise _accounting_error(400, 1013, "Invalid per_page value.", field="per_page",
                                    value=_q(query, "per_page")) from None
        if per_page < 1:
            per_page = DEFAULT_PER_PAGE
        return max(page, 1), min(per_page, MAX_PER_PAGE)

    @staticmethod
    def _page_result(key, items, page, per_page, render, empty_pages=1):
        total = len(items)
        pages = max(empty_pages, -(-total // per_page))
        chunk = items[(page - 1) * per_page:page * per_page]
        return {"response": {"result": {key: [render(item) for item in chunk], "page": page,
                                        "pages": pages, "per_page": per_page, "total": total}}}

    @staticmethod
    def _day_param(query, name):
        value = _q(query, name)
        if value is None or value == "":
            return None
        found = DAY_RE.match(value)
        if not found:
            raise _accounting_error(400, 1004, f"Invalid value for {name}: use YYYY-MM-DD.",
                                    field=name, value=value)
        return found.group(1)

    @staticmethod
    def _int_param(query, name):
        value = _q(query, name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise _accounting_error(400, 1004, f"Invalid value for {name}.", field=name,
                                    value=value) from None

    @staticmethod
    def _int_list(query, name):
        values = (query.get(f"search[{name}][]") or []) + [
            v for raw in query.get(f"search[{name}]", []) for v in raw.split(",")]
        try:
            return {int(v) for v in values if v.strip()} if values else None
        except ValueError:
            raise _accounting_error(400, 1004, f"Invalid value for {name}.", field=name,
                                    value=",".join(values)) from None

    def _common_filters(self, items, query):
        vis_state = self._int_param(query, "search[vis_state]")
        if vis_state is None:
            items = [o for o in items if o["vis_state"] != 1]
        else:
            items = [o for o in items if o["vis_state"] == vis_state]
        updated_min = self._day_param(query, "search[updated_min]")
        if updated_min:
            items = [o for o in items if str(o["updated"])[:10] >= updated_min]
        updated_max = self._day_param(query, "search[updated_max]")
        if updated_max:
            items = [o for o in items if str(o["updated"])[:10] < updated_max]
        # FreshBooks' sort=<field>_asc|_desc (which fields it accepts is undocumented: the
        # sandbox knows `updated` and `id`, and ignores others, as FreshBooks may).
        field, _sep, direction = (_q(query, "sort") or "").rpartition("_")
        if field in ("updated", "id") and direction in ("asc", "desc"):
            items = sorted(items, key=lambda o: (str(o[field]), o["id"]) if field == "updated"
                           else o["id"], reverse=direction == "desc")
        return items

    def _cached(self, kind, account, query, compute):
        """compute() (a filtered list), reused until a client or invoice changes."""
        key = (kind, account, tuple(sorted((k, tuple(v)) for k, v in query.items()
                                           if k.startswith("search[") or k == "sort")))
        hit = self._filter_cache.get(key)
        if hit is not None and hit[0] == self._version:
            return hit[1]
        items = compute()
        if len(self._filter_cache) >= 32:
            self._filter_cache.clear()
        self._filter_cache[key] = (self._version, items)
        return items

    # -- accounting: clients ------------------------------------------------------------------

    def _filter_clients(self, account, query):
        items = self._common_filters(self._clients[account].values(), query)
        userids = self._int_list(query, "userids")
        if userids is not None:
            items = [c for c in items if c["id"] in userids]
        userid = self._int_param(query, "search[userid]")
        if userid is not None:
            items = [c for c in items if c["id"] == userid]
        for name in ("email", "username"):
            value = _q(query, f"search[{name}]")
            if value:
                items = [c for c in items if isinstance(c[name], str)
                         and c[name].lower() == value.lower()]
        likes = {"fname_like": ("fname",), "lname_like": ("lname",),
                 "organization_like": ("organization",), "note_like": ("note",),
                 "user_like": ("fname", "lname", "organization"),
                 "phone_like": ("bus_phone", "mob_phone", "home_phone"),
                 "address_like": ("p_street", "p_street2", "p_city", "p_province", "p_code",
                                  "p_country")}
        for param, fields in likes.items():
            value = (_q(query, f"search[{param}]") or "").lower()
            if value:
                items = [c for c in items if any(value in str(c[f] or "").lower()
                                                 for f in fields)]
        return items

    def _api_list_clients(self, request):
        account = self._account(request, "accounting")
        page, per_page = self._paging(request.query)
        includes = set(request.query.get("include[]", []))
        with self.lock:
            items = self._cached("clients", account, request.query,
                                 lambda: self._filter_clients(account, request.query))
            payload = self._page_result("clients", items, page, per_page,
                                        lambda c: self._client_api_view(c, includes))
            body = json.dumps(payload).encode()
        return 200, [("Content-Type", "application/json; charset=utf-8")], body

    def _client_or_404(self, account, client_id):
        try:
            client = self._clients[account].get(int(client_id))
        except ValueError:
            client = None
        if client is None:
            raise _accounting_error(404, 1012, "Client not found.", field="userid",
                                    obj="client", value=str(client_id))
        return client

    def _api_get_client(self, request):
        account = self._account(request, "accounting")
        includes = set(request.query.get("include[]", []))
        with self.lock:
            client = self._client_or_404(account, request.params["client_id"])
            return _json_response(200, {"response": {"result": {
                "client": self._client_api_view(client, includes)}}})

    def _wrapped_body(self, request, key):
        try:
            data = request.json()
        except (ValueError, UnicodeDecodeError):
            raise _accounting_error(400, 1005, "Could not parse the request body as JSON.") \
                from None
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise _accounting_error(400, 1005, f'The body must be a JSON object like '
                                    f'{{"{key}": {{...}}}}.', field=key)
        return data, data[key]

    @staticmethod
    def _validate_client(data, existing=None):
        """The fields a create/update may set, or a 422; unknown keys are dropped."""
        clean, ignored = {}, []
        for key, value in data.items():
            if key in CLIENT_STRING_FIELDS:
                if value is not None and not isinstance(value, str):
                    raise _accounting_error(422, 1004, f"Invalid value for {key}.", field=key,
                                            obj="client", value=value)
                clean[key] = value
            elif key in CLIENT_BOOL_FIELDS:
                if not isinstance(value, bool):
                    raise _accounting_error(422, 1004, f"Invalid value for {key}.", field=key,
                                            obj="client", value=value)
                clean[key] = value
            elif key == "vis_state" and existing is None:
                if type(value) is not int or value not in (0, 1, 2):
                    raise _accounting_error(422, 1004, "Invalid value for vis_state.",
                                            field="vis_state", obj="client", value=value)
                clean[key] = value
            else:
                ignored.append(key)
        email_value = clean.get("email")
        if email_value is not None and email_value.strip() and \
                not EMAIL_RE.match(email_value.strip()):
            raise _accounting_error(422, 1004, "Invalid email address.", field="email",
                                    obj="client", value=email_value)
        currency = clean.get("currency_code")
        if currency and not CURRENCY_RE.match(currency):
            raise _accounting_error(422, 1004, "Invalid currency code.", field="currency_code",
                                    obj="client", value=currency)
        merged = dict(existing or {}, **clean)
        if not any(_present(merged.get(f)) for f in NAME_FIELDS):
            raise _accounting_error(422, 1001, "A client needs a first name, last name, "
                                    "organization or email.", field="organization",
                                    obj="client")
        return clean, ignored

    def _record_write(self, method, client_id, account, body, status, error=None,
                      ignored=None):
        self._client_writes.append({
            "method": method, "client_id": client_id, "account_id": account,
            "body": copy.deepcopy(body), "status": status, "error": error,
            "ignored_keys": ignored or [], "at": _iso_utc()})

    def _api_create_client(self, request):
        account = self._account(request, "accounting")
        try:
            body, data = self._wrapped_body(request, "client")
        except _HttpError as exc:
            with self.lock:
                self._record_write("POST", None, account, None, exc.status, exc.payload)
            raise
        with self.lock:
            try:
                clean, ignored = self._validate_client(data)
                self._check_email_free(account, clean.get("email"))
            except _HttpError as exc:
                self._record_write("POST", None, account, body, exc.status, exc.payload)
                raise
            client = self._new_client(account, clean)
            self._record_write("POST", client["id"], account, body, 200, ignored=ignored)
            self._emit(account, "client.create", client["id"])
            return _json_response(200, {"response": {"result": {
                "client": self._client_api_view(client)}}})

    def _check_email_free(self, account, email_value):
        email_value = (email_value or "").strip().lower()
        if not self.unique_emails or not email_value:
            return
        for client in self._clients[account].values():
            if client["vis_state"] == 0 and (client.get("email") or "").strip().lower() == \
                    email_value:
                raise _accounting_error(422, 1004, "A client with this email already exists.",
                                        field="email", obj="client", value=email_value)

    def _api_update_client(self, request):
        account = self._account(request, "accounting")
        client_id = request.params["client_id"]
        with self.lock:
            client = self._client_or_404(account, client_id)
        try:
            body, data = self._wrapped_body(request, "client")
        except _HttpError as exc:
            with self.lock:
                self._record_write("PUT", client["id"], account, None, exc.status, exc.payload)
            raise
        with self.lock:
            try:
                if "vis_state" in data:
                    # FreshBooks applies the vis_state phase and silently drops the rest.
                    value = data["vis_state"]
                    if type(value) is not int or value not in (0, 1, 2):
                        raise _accounting_error(422, 1004, "Invalid value for vis_state.",
                                                field="vis_state", obj="client", value=value)
                    clean = {"vis_state": value}
                    ignored = [k for k in data if k != "vis_state"]
                    event = "client.delete" if value == 1 else "client.update"
                else:
                    clean, ignored = self._validate_client(data, existing=client)
                    event = "client.update"
            except _HttpError as exc:
                self._record_write("PUT", client["id"], account, body, exc.status, exc.payload)
                raise
            client.update(clean)
            self._version += 1
            client["updated"] = _eastern()
            self._record_write("PUT", client["id"], account, body, 200, ignored=ignored)
            self._emit(account, event, client["id"])
            return _json_response(200, {"response": {"result": {
                "client": self._client_api_view(client)}}})

    # -- accounting: invoices -----------------------------------------------------------------

    def _filter_invoices(self, account, query):
        customer = self._int_param(query, "search[customerid]")
        customers = self._int_list(query, "customerids")
        if customer is not None:
            items = [self._invoice_index[i] for i in self._invoices_by_client.get(customer, ())
                     if self._invoice_index[i]["accountid"] == account]
        else:
            items = self._invoices[account].values()
        items = self._common_filters(items, query)
        if customers is not None:
            items = [i for i in items if i["customerid"] in customers]
        date_min = self._day_param(query, "search[date_min]")
        if date_min:
            items = [i for i in items if i["create_date"] >= date_min]
        date_max = self._day_param(query, "search[date_max]")
        if date_max:
            items = [i for i in items if i["create_date"] <= date_max]
        for name in ("v3_status", "invoice_number"):
            value = _q(query, f"search[{name}]")
            if value:
                items = [i for i in items if i[name] == value]
        return items

    def _api_list_invoices(self, request):
        account = self._account(request, "accounting")
        page, per_page = self._paging(request.query)
        query = request.query
        lines = "lines" in query.get("include[]", [])
        with self.lock:
            items = self._cached("invoices", account, query,
                                 lambda: self._filter_invoices(account, query))
            payload = self._page_result("invoices", items, page, per_page,
                                        lambda i: self._invoice_view(i, lines))
            body = json.dumps(payload).encode()
        return 200, [("Content-Type", "application/json; charset=utf-8")], body

    def _api_get_invoice(self, request):
        account = self._account(request, "accounting")
        lines = "lines" in request.query.get("include[]", [])
        with self.lock:
            try:
                invoice = self._invoices[account].get(int(request.params["invoice_id"]))
            except ValueError:
                invoice = None
            if invoice is None:
                raise _accounting_error(404, 1012, "Invoice not found.", field="invoiceid",
                                        obj="invoice", value=request.params["invoice_id"])
            return _json_response(200, {"response": {"result": {
                "invoice": self._invoice_view(invoice, lines)}}})

    # -- accounting: payments and estimates ---------------------------------------------------

    def _filter_records(self, kind, account, query):
        items = self._common_filters(self._records[kind][account].values(), query)
        for name in RECORD_KINDS[kind]["filters"]:
            value = self._int_param(query, f"search[{name}]")
            if value is not None:
                items = [r for r in items if r[name] == value]
        return items

    def _api_list_records(self, kind, request):
        account = self._account(request, "accounting")
        page, per_page = self._paging(request.query)
        spec = RECORD_KINDS[kind]
        with self.lock:
            items = self._cached(spec["plural"], account, request.query,
                                 lambda: self._filter_records(kind, account, request.query))
            return _json_response(200, self._page_result(
                spec["plural"], items, page, per_page, lambda r: self._record_view(kind, r),
                spec["empty_pages"]))

    def _api_get_record(self, kind, request):
        account = self._account(request, "accounting")
        given = request.params[f"{kind}_id"]
        with self.lock:
            try:
                record = self._records[kind][account].get(int(given))
            except ValueError:
                record = None
            if record is None:
                raise _accounting_error(404, 1012, f"{kind.capitalize()} not found.",
                                        field=RECORD_KINDS[kind]["id_alias"], obj=kind,
                                        value=given)
            return _json_response(200, {"response": {"result": {
                kind: self._record_view(kind, record)}}})

    # -- events: callbacks --------------------------------------------------------------------

    def _callback_body(self, request):
        try:
            data = request.json()
        except (ValueError, UnicodeDecodeError):
            raise _events_error(400, "The request body is not valid JSON.") from None
        if not isinstance(data, dict) or not isinstance(data.get("callback"), dict):
            raise _events_error(422, EVENTS_422_MESSAGE, ["callback: Field required"])
        return data["callback"]

    def _callback_or_404(self, account, callback_id):
        try:
            callback = self._callbacks[account].get(int(callback_id))
        except ValueError:
            callback = None
        if callback is None:
            raise _HttpError(404, EVENTS_404)
        return callback

    def _api_create_callback(self, request):
        account = self._account(request, "events")
        data = self._callback_body(request)
        event, uri = data.get("event"), data.get("uri")
        details = []
        if event not in CALLBACK_EVENTS:
            details.append("event: Value error, Unrecognized event.")
        parts = urllib.parse.urlsplit(uri) if isinstance(uri, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            details.append("uri: Input should be a valid URL, relative URL without a base")
        if details:
            raise _events_error(422, EVENTS_422_MESSAGE, details)
        with self.lock:
            callback_id = self._next_callback_id
            self._next_callback_id += 1
            callback = {"callbackid": callback_id, "event": event, "uri": uri,
                        "verified": False, "updated_at": _iso_utc(), "account_id": account,
                        "verifier": secrets.token_urlsafe(24)}
            self._callbacks[account][callback_id] = callback
            self._callback_index[callback_id] = callback
            self._enqueue_verification(callback)
            return _json_response(200, {"response": {"result": {
                "callback": self._callback_view(callback)}}})

    def _api_list_callbacks(self, request):
        account = self._account(request, "events")
        page, per_page = self._paging(request.query)
        wanted = _q(request.query, "search[event]")
        with self.lock:
            items = list(self._callbacks[account].values())
            if wanted:
                items = [c for c in items if wanted in (c["event"], c["event"].split(".")[0])
                         or c["event"] == wanted.split(".")[0]]
            return _json_response(200, self._page_result("callbacks", items, page, per_page,
                                                         self._callback_view))

    def _api_get_callback(self, request):
        account = self._account(request, "events")
        with self.lock:
            callback = self._callback_or_404(account, request.params["callback_id"])
            return _json_response(200, {"response": {"result": {
                "callback": self._callback_view(callback)}}})

    def _api_update_callback(self, request):
        account = self._account(request, "events")
        with self.lock:
            callback = self._callback_or_404(account, request.params["callback_id"])
        data = self._callback_body(request)
        with self.lock:
            if "verifier" in data:
                given = data["verifier"]
                if not isinstance(given, str) or not hmac.compare_digest(
                        given.encode(), callback["verifier"].encode()):
                    raise _events_error(422, EVENTS_422_MESSAGE,
                                        ["verifier: The verifier is not valid."])
                callback["verified"] = True
                callback["updated_at"] = _iso_utc()
            elif data.get("resend"):
                self._enqueue_verification(callback)
            else:
                raise _events_error(422, EVENTS_422_MESSAGE,
                                    ["callback: Send a verifier, or resend: true."])
            return _json_response(200, {"response": {"result": {
                "callback": self._callback_view(callback)}}})

    def _api_delete_callback(self, request):
        account = self._account(request, "events")
        with self.lock:
            callback = self._callback_or_404(account, request.params["callback_id"])
            del self._callbacks[account][callback["callbackid"]]
            del self._callback_index[callback["callbackid"]]
        return 204, [], b""

    # -- control API (/_sandbox/) -------------------------------------------------------------

    @staticmethod
    def _control_body(request):
        try:
            data = request.json()
        except (ValueError, UnicodeDecodeError):
            raise _HttpError(400, {"error": "the body is not valid JSON"}) from None
        if not isinstance(data, dict):
            raise _HttpError(400, {"error": "the body must be a JSON object"})
        return data

    @staticmethod
    def _control_call(function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except KeyError as exc:
            raise _HttpError(404, {"error": str(exc.args[0])}) from None
        except (ValueError, TypeError) as exc:
            raise _HttpError(400, {"error": str(exc)}) from None

    def _ctl_state(self, request):
        return _json_response(200, self.state())

    def _ctl_list_clients(self, request):
        include_deleted = _q(request.query, "include_deleted", "1") not in ("0", "false")
        clients = self._control_call(self.clients, _q(request.query, "account_id"),
                                     include_deleted)
        return _json_response(200, {"clients": clients})

    def _ctl_add_client(self, request):
        data = self._control_body(request)
        account = data.pop("account_id", None)
        client = self._control_call(self.add_client, account, **data)
        return _json_response(201, {"client": client})

    def _ctl_get_client(self, request):
        return _json_response(200, {"client": self._control_call(
            self.get_client, request.params["client_id"])})

    def _ctl_update_client(self, request):
        data = self._control_body(request)
        return _json_response(200, {"client": self._control_call(
            self.update_client, request.params["client_id"], **data)})

    def _ctl_delete_client(self, request):
        return _json_response(200, {"client": self._control_call(
            self.delete_client, request.params["client_id"])})

    def _ctl_archive_client(self, request):
        return _json_response(200, {"client": self._control_call(
            self.archive_client, request.params["client_id"])})

    def _ctl_restore_client(self, request):
        return _json_response(200, {"client": self._control_call(
            self.restore_client, request.params["client_id"])})

    # Invoices, payments and estimates: the kind comes from the route.

    def _ctl_list(self, kind, request):
        include_deleted = _q(request.query, "include_deleted", "1") not in ("0", "false")
        client_id = next((_q(request.query, name) for name in ("client_id", "customerid",
                                                                "clientid")
                          if _q(request.query, name)), None)
        items = self._control_call(getattr(self, f"{kind}s"), _q(request.query, "account_id"),
                                   client_id, include_deleted)
        return _json_response(200, {f"{kind}s": items})

    def _ctl_add(self, kind, request):
        data = self._control_body(request)
        given = [value for value in (data.pop(name, None) for name in CONTROL_PARENTS[kind])
                 if value is not None]
        if not given:
            raise _HttpError(400, {"error": f"{CONTROL_PARENTS[kind][0]} is required"})
        created = self._control_call(getattr(self, f"add_{kind}"), given[0], **data)
        return _json_response(201, {kind: created})

    def _ctl_get(self, kind, request):
        return _json_response(200, {kind: self._control_call(
            getattr(self, f"get_{kind}"), request.params[f"{kind}_id"])})

    def _ctl_update(self, kind, request):
        data = self._control_body(request)
        return _json_response(200, {kind: self._control_call(
            getattr(self, f"update_{kind}"), request.params[f"{kind}_id"], **data)})

    def _ctl_delete(self, kind, request):
        return _json_response(200, {kind: self._control_call(
            getattr(self, f"delete_{kind}"), request.params[f"{kind}_id"])})

    def _ctl_callbacks(self, request):
        return _json_response(200, {"callbacks": self.callbacks()})

    def _ctl_faults(self, request):
        data = self._control_body(request)
        return _json_response(200, self._control_call(
            self.set_faults, data.get("fault_rate"), data.get("latency_ms"),
            data.get("fail_next")))

    def _ctl_expire_tokens(self, request):
        self.expire_tokens()
        return _json_response(200, {"ok": True})

    def _ctl_revoke_all(self, request):
        self.revoke_all()
        return _json_response(200, {"ok": True})

    def _ctl_reset_counters(self, request):
        self.reset_counters()
        return _json_response(200, {"ok": True})

    def _ctl_grant(self, request):
        data = self._control_body(request) if request.body else {}
        return _json_response(200, self._control_call(self.issue_tokens,
                                                      data.get("account_id")))

    # -- HTML ---------------------------------------------------------------------------------

    @staticmethod
    def _html_page(title, content):
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} - Sandbox FreshBooks</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #1d2b36; }}
header {{ color: #0075dd; font-size: 1.4em; font-weight: bold; margin-bottom: 1em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccd; padding: .2em .5em; text-align: left; }}
.buttons form {{ display: inline-block; margin-right: 1em; }}
button {{ font-size: 1.1em; padding: .4em 1.4em; }}
button.allow {{ background: #0075dd; color: white; border: none; }}
pre {{ background: #f4f6f8; padding: 1em; }}
</style></head>
<body><header>Sandbox FreshBooks</header><h1>{html.escape(title)}</h1>{content}</body></html>
"""

    def _page_favicon(self, request):
        return 204, [], b""

    def _page_index(self, request):
        limit = 100
        parts = ["<p>A FreshBooks-compatible sandbox for development. Signed in as "
                 f"<strong>{html.escape(self.email)}</strong>.</p>",
                 '<pre id="focus" hidden></pre>']
        with self.lock:
            rows = "".join(
                f"<tr><td>{html.escape(b['account_id'])}</td><td>{b['id']}</td>"
                f"<td>{html.escape(b['name'])}</td><td>{b['role']}</td>"
                f"<td>{len(self._clients[b['account_id']])}</td>"
                f"<td>{len(self._invoices[b['account_id']])}</td>"
                f"<td>{len(self._records['payment'][b['account_id']])}</td>"
                f"<td>{len(self._records['estimate'][b['account_id']])}</td></tr>"
                for b in self._businesses)
            parts.append("<h2>Businesses</h2><table><tr><th>account_id</th><th>business id</th>"
                         "<th>name</th><th>role</th><th>clients</th><th>invoices</th>"
                         "<th>payments</th><th>estimates</th></tr>"
                         f"{rows}</table>")
            for business in self._businesses:
                account = business["account_id"]
                clients = list(self._clients[account].values())
                rows = "".join(
                    f'<tr id="client-{c["id"]}"><td>{c["id"]}</td>'
                    f"<td>{html.escape(str(c['organization'] or ''))}</td>"
                    f"<td>{html.escape(str(c['fname'] or ''))} "
                    f"{html.escape(str(c['lname'] or ''))}</td>"
                    f"<td>{html.escape(str(c['email'] or ''))}</td>"
                    f"<td>{html.escape(str(c['vis_state']))}</td>"
                    f"<td>{html.escape(str(c['updated']))}</td></tr>"
                    for c in clients[:limit])
                parts.append(f"<h2>Clients of {html.escape(account)} ({len(clients)}, first "
                             f"{min(limit, len(clients))} shown)</h2><table><tr><th>id</th>"
                             "<th>organization</th><th>name</th><th>email</th><th>vis_state</th>"
                             f"<th>updated</th></tr>{rows}</table>")
                invoices = list(self._invoices[account].values())
                rows = "".join(
                    f'<tr id="invoice-{account}-{i["id"]}"><td>{i["id"]}</td>'
                    f"<td>{html.escape(str(i['invoice_number']))}</td>"
                    f"<td>{i['customerid']}</td>"
                    f"<td>{_money(i['amount'], i['currency_code'])['amount']} "
                    f"{html.escape(str(i['currency_code']))}</td>"
                    f"<td>{html.escape(i['v3_status'])}</td><td>{i['vis_state']}</td></tr>"
                    for i in invoices[:limit])
                parts.append(f"<h2>Invoices of {html.escape(account)} ({len(invoices)}, first "
                             f"{min(limit, len(invoices))} shown)</h2><table><tr><th>id</th>"
                             "<th>number</th><th>client</th><th>amount</th><th>status</th>"
                             f"<th>vis_state</th></tr>{rows}</table>")
        # Web links (https://my.freshbooks.com/#/invoice/<account>-<id>, #/client/<id>) land here.
        parts.append("""<script>
function showFragment() {
  var m = location.hash.match(/^#\\/(invoice|client)s?\\/(?:([A-Za-z0-9]+)-)?(\\d+)/);
  var box = document.getElementById('focus');
  if (!m) { box.hidden = true; return; }
  fetch('/_sandbox/' + m[1] + 's/' + m[3]).then(function (r) { return r.json(); })
    .then(function (data) { box.hidden = false; box.textContent = JSON.stringify(data, null, 2); });
}
window.addEventListener('hashchange', showFragment);
showFragment();
</script>""")
        return _html_response(200, self._html_page("Sandbox FreshBooks", "".join(parts)))


# ---------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description="FreshBooks-compatible sandbox (loopback only).")
    parser.add_argument("--host", default="127.0.0.1", help="only 127.0.0.1 is accepted")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--clients", type=int, default=50, help="clients in the first business")
    parser.add_argument("--invoices", type=int, default=3, help="invoices per client")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--businesses", type=int, default=1)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--webhook-delay", type=float, default=0.2)
    parser.add_argument("--token-ttl", type=int, default=43200)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--hostile", action="store_true",
                        help="add 16 hostile clients (one with hostile documents)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK_HOSTS:
        parser.error("the sandbox binds to 127.0.0.1 only")
    if not 0 <= args.fault_rate <= 1:
        parser.error("--fault-rate is a share between 0 and 1")
    sandbox = Sandbox(
        clients=args.clients, invoices=args.invoices, seed=args.seed,
        businesses=args.businesses, port=args.port, client_id=args.client_id,
        client_secret=args.client_secret, token_ttl=args.token_ttl,
        fault_rate=args.fault_rate, latency_ms=args.latency_ms,
        webhook_delay=args.webhook_delay, hostile=args.hostile, verbose=args.verbose)
    stop = threading.Event()

    def _on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        sandbox.start()
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"FreshBooks sandbox on {sandbox.url} (client_id={sandbox.client_id}, "
          f"client_secret={sandbox.client_secret})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

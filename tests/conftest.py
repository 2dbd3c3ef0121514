"""Shared set-up of the pure-Python tests.

The FreshBooks client package imports nothing from Odoo, but the add-on package around it does:
the add-on folder goes on sys.path so that tests import the client as the top-level `freshbooks`.
"""

import json
import sys
import time
from pathlib import Path

import pytest
import responses

ADDON_DIR = Path(__file__).resolve().parent.parent / "capsule_freshbooks_connector"
FIXTURES_DIR = ADDON_DIR / "tests" / "fixtures"
sys.path.insert(0, str(ADDON_DIR))

from freshbooks import FreshBooksClient, TokenSet  # noqa: E402

API = "https://api.freshbooks.com"
AUTH = "https://auth.freshbooks.com"
CLIENT_ID, CLIENT_SECRET = "test-client-id", "test-client-secret-value"
REDIRECT_URI = "https://odoo.example.com/freshbooks/oauth/callback"
ACCESS_TOKEN, REFRESH_TOKEN = "access-token-one", "refresh-token-one"


def load_fixture(name):
    """A FreshBooks response sample from the add-on's tests/fixtures folder."""
    return json.loads((FIXTURES_DIR / name).read_text())


@pytest.fixture
def fixture():
    return load_fixture


@pytest.fixture
def sleeps():
    """Stands in for time.sleep: records the waits, so retry tests run at once."""
    return []


@pytest.fixture
def make_client(sleeps):
    def make(**options):
        options.setdefault("tokens", TokenSet(ACCESS_TOKEN, REFRESH_TOKEN, time.time() + 3600))
        options.setdefault("sleep", sleeps.append)
        return FreshBooksClient(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, api_url=API, auth_url=AUTH,
                                **options)
    return make


@pytest.fixture
def fb(make_client):
    """A connected client whose access token is good for an hour."""
    return make_client()


@pytest.fixture
def api():
    """Intercepts every request; a request nobody registered fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock

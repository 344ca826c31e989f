"""API keys are stored only as hashes: a key made through every path that makes one (the
service, the admin's add form, `manage.py create_api_key`, the embedded mode's demo) and then
used on the API leaves its secret in no column of any table, found by introspection (model
tables and the others: sessions, the task queue, the audit log)."""

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client

from notifications.models import ApiKey, Tenant
from notifications.services import api_key_create, hash_secret

from ..conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def rows_containing(needles: list[str]) -> list[tuple[str, str]]:
    """(table, column) of every text, JSON or bytes value in the database containing a needle."""
    encoded = [n.encode() for n in needles] + [n.encode().hex().encode() for n in needles]
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            columns = [c.name for c in connection.introspection.get_table_description(cursor,
                                                                                        table)]
            quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
            cursor.execute(f"SELECT {quoted} FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, memoryview):
                        value = value.tobytes()
                    if isinstance(value, dict | list):
                        value = str(value)
                    if isinstance(value, bytes):
                        hit = any(n in value for n in encoded)
                    else:
                        hit = isinstance(value, str) and any(n in value for n in needles)
                    if hit:
                        found.append((table, column))
    return found


def secret_parts(secret: str) -> list[str]:
    """The whole secret and its random part (after `ck_<8 hex>_`; the random part is URL-safe
    base64, which has underscores of its own)."""
    random_part = secret.split("_", 2)[2]
    assert len(random_part) >= 40, secret
    return [secret, random_part]


def use(secret: str) -> None:
    """Authenticate with `secret` on a few endpoints (reads and refusals)."""
    api = client_for(secret)
    assert api.get("/api/v1/workflows").status_code == 200
    assert api.get("/api/v1/workflows/nope").status_code == 404
    assert api.post("/api/v1/workflows/nope/trigger", {"recipients": ["x"]}).status_code == 404


def test_no_path_that_makes_an_api_key_stores_its_secret(tmp_path, settings):
    secrets = {}
    Tenant.objects.create(key="keyed", name="Keyed")

    # The service (what the API's callers and tests use).
    secrets["service"] = api_key_create(name="service")[1]

    # The admin's add form: the secret is shown once, in a message.
    staff = User.objects.create_superuser("keys-admin", "a@example.com", "pw-0123456789")
    browser = Client()
    browser.force_login(staff)
    response = browser.post("/admin/notifications/apikey/add/", {"name": "from admin",
                                                                 "tenant": ""}, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"] if "The secret of" in str(m)]
    assert len(shown) == 1 and " is ck_" in shown[0], shown
    secrets["admin"] = shown[0].split(" is ", 1)[1].split(" ", 1)[0]
    # The next page (the message consumed) and a session that lives on.
    assert browser.get("/admin/notifications/apikey/").status_code == 200

    # The management command prints it once.
    out = io.StringIO()
    call_command("create_api_key", "from command", "--tenant", "keyed", stdout=out,
                 stderr=io.StringIO())
    secrets["command"] = out.getvalue().strip().splitlines()[-1]

    # The embedded mode's demo key (its secret goes to a 0600 file, never the database).
    from notifications.demo import seed_demo

    settings.VAR_DIR = tmp_path
    secrets["demo"] = seed_demo().api_key

    assert ApiKey.objects.count() == 4
    for path, secret in secrets.items():
        assert secret.startswith("ck_"), (path, secret)
        key = ApiKey.objects.get(secret_hash=hash_secret(secret))  # the hash is what is kept
        assert secret.startswith(key.prefix + "_"), path
        use(secret)
    for path, secret in secrets.items():
        assert rows_containing(secret_parts(secret)) == [], f"the {path} key's secret is stored"


def test_the_scan_finds_a_secret_where_one_is_stored():
    # The scan is able to fail: a secret written into an ordinary column is found.
    _, secret = api_key_create(name="leaky")
    Tenant.objects.create(key="leak", name="Leak", footer=f"key: {secret}")
    assert ("notifications_tenant", "footer") in rows_containing(secret_parts(secret))

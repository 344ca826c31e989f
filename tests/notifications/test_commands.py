"""`create_api_key` and the demo that `serve` seeds."""

import json
import re
import stat
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from notifications.demo import seed_demo
from notifications.models import ApiKey, Recipient, Run, Tenant, Trigger, Workflow


def client_for(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    client.default_format = "json"
    return client


def create_api_key(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- create_api_key ---------------------------------------------------------------------------

def test_create_api_key_prints_a_working_secret_alone_on_the_last_line(db):
    out, err = create_api_key("svc")

    secret = out.splitlines()[-1]
    assert out.endswith("\n")
    key = ApiKey.objects.get()
    assert (key.name, key.tenant, key.revoked_at) == ("svc", None, None)
    assert secret.startswith(key.prefix + "_")
    assert secret not in err
    assert key.prefix in err
    assert key.secret_hash != secret
    assert client_for(secret).get("/api/v1/workflows").status_code == 200
    assert client_for(secret).put("/api/v1/topics/t", {}).status_code == 201


def test_create_api_key_twice_makes_two_different_keys(db):
    first = create_api_key("a")[0].splitlines()[-1]
    second = create_api_key("b")[0].splitlines()[-1]

    assert first != second
    assert ApiKey.objects.count() == 2
    assert client_for(first).get("/api/v1/workflows").status_code == 200
    assert client_for(second).get("/api/v1/workflows").status_code == 200


def test_create_api_key_for_a_tenant_restricts_it(db, make_workflow):
    acme = Tenant.objects.create(key="acme", name="Acme")
    Tenant.objects.create(key="globex", name="Globex")
    make_workflow("welcome", steps=[{"ref": "inbox", "type": "in_app",
                                     "templates": {"en": {"body": "Hi"}}}])

    out, err = create_api_key("acme-svc", "--tenant", "acme")

    secret = out.splitlines()[-1]
    assert ApiKey.objects.get().tenant == acme
    assert "for tenant acme" in err
    client = client_for(secret)
    assert client.post("/api/v1/workflows/welcome/trigger",
                       {"recipients": ["u1"]}).status_code == 202
    assert Trigger.objects.get().tenant == acme
    assert client.get("/api/v1/tenants/acme").status_code == 200
    assert client.get("/api/v1/tenants/globex").status_code == 404
    assert client.put("/api/v1/topics/t", {}).status_code == 403


def test_create_api_key_for_an_unknown_tenant_fails_and_creates_nothing(db):
    with pytest.raises(CommandError, match=r"^No tenant 'nope'\.$"):
        create_api_key("svc", "--tenant", "nope")

    assert not ApiKey.objects.exists()


def test_create_api_key_needs_a_name(db):
    with pytest.raises(CommandError, match="the following arguments are required: name"):
        create_api_key()


# --- The demo ---------------------------------------------------------------------------------

@pytest.fixture
def var_dir(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def test_seed_demo_creates_the_demo_once_with_working_credentials(var_dir):
    first = seed_demo()
    second = seed_demo()

    assert second == first
    assert list(Tenant.objects.values_list("key", flat=True)) == ["acme"]
    assert list(Workflow.objects.values_list("key", flat=True)) == ["comment-mentioned",
                                                                    "welcome"]
    users = get_user_model().objects.all()
    assert [(u.username, u.is_superuser, u.is_staff) for u in users] == [
        (first.admin_username, True, True)]
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 1

    browser = Client()
    assert browser.login(username=second.admin_username, password=second.admin_password)
    assert browser.get("/admin/").status_code == 200
    listed = client_for(second.api_key).get("/api/v1/workflows")
    assert listed.status_code == 200
    assert [w["key"] for w in listed.json()] == ["comment-mentioned", "welcome"]


def test_seed_demo_keeps_its_credentials_private_in_var_dir(var_dir):
    credentials = seed_demo()

    path = var_dir / "demo-credentials.json"
    assert json.loads(path.read_text()) == {"admin_username": credentials.admin_username,
                                            "admin_password": credentials.admin_password,
                                            "api_key": credentials.api_key}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_seed_demo_does_not_overwrite_an_edited_workflow(var_dir):
    credentials = seed_demo()
    api = client_for(credentials.api_key)
    edited = api.get("/api/v1/workflows/welcome").json()
    edited["name"] = "Our welcome"
    edited["steps"] = [edited["steps"][0]]
    edited["steps"][0]["templates"]["en"]["body"] = "Hello there"
    assert api.put("/api/v1/workflows/welcome", edited).status_code == 200

    seed_demo()

    assert api.get("/api/v1/workflows/welcome").json() == edited


def test_seed_demo_recreates_a_deleted_workflow(var_dir):
    credentials = seed_demo()
    Workflow.objects.filter(key="comment-mentioned").delete()

    seed_demo()

    body = client_for(credentials.api_key).get("/api/v1/workflows/comment-mentioned").json()
    assert [step["ref"] for step in body["steps"]] == ["inbox", "wait", "mail"]
    assert body["steps"][2]["unless"] == {"step": "inbox", "is": "read"}


def test_seed_demo_with_lost_credentials_issues_new_ones_and_revokes_the_old_key(var_dir):
    old = seed_demo()
    (var_dir / "demo-credentials.json").unlink()

    new = seed_demo()

    assert new.admin_username == old.admin_username
    assert new.admin_password != old.admin_password
    assert new.api_key != old.api_key
    assert Client().login(username=new.admin_username, password=new.admin_password)
    assert not Client().login(username=old.admin_username, password=old.admin_password)
    assert client_for(new.api_key).get("/api/v1/workflows").status_code == 200
    assert client_for(old.api_key).get("/api/v1/workflows").status_code == 401
    assert get_user_model().objects.count() == 1


def test_seed_demo_replaces_a_revoked_demo_key(var_dir):
    old = seed_demo()
    ApiKey.objects.update(revoked_at="2026-01-01T00:00:00Z")

    new = seed_demo()

    assert new.api_key != old.api_key
    assert new.admin_password == old.admin_password
    assert client_for(new.api_key).get("/api/v1/workflows").status_code == 200


def test_the_demo_welcome_workflow_runs_for_the_demo_user(var_dir, run_tasks, settings):
    from django.core import mail

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    credentials = seed_demo()
    assert Recipient.objects.get(external_id="demo-user").email == "ada@example.com"

    response = client_for(credentials.api_key).post(
        "/api/v1/workflows/welcome/trigger", {"recipients": ["demo-user"], "tenant": "acme"})
    assert response.status_code == 202, response.content
    run_tasks()

    assert Run.objects.get().status == Run.Status.COMPLETED
    assert [m.subject for m in mail.outbox] == ["Welcome to Acme Inc."]
    assert mail.outbox[0].to == ["Ada Lovelace <ada@example.com>"]


def test_the_demo_welcome_email_has_no_empty_image_and_only_absolute_links(var_dir, run_tasks,
                                                                            smtp, client):
    """A tenant without a logo shows its name (Liquid's "" is truthy, so the layout asks for
    `!= blank`), and every link works from a mail client: none is relative."""
    seed_demo()
    assert client.post("/demo/inbox/trigger").status_code == 202
    run_tasks()
    mail = smtp.wait_for(1)[-1]
    html = next(part for part in mail.walk() if part.get_content_type() == "text/html") \
        .get_payload(decode=True).decode()
    assert "<img" not in html and "Acme Inc." in html
    links = re.findall(r'href="([^"]*)"', html)
    assert len(links) == 3 and all(link.startswith("http") for link in links), links
    assert links[0].endswith("/demo/inbox/#welcome-tour")

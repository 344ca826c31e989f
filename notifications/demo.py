"""The demo data `serve` seeds: tenant acme, workflows welcome and comment-mentioned."""

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from .models import ApiKey, Layout, Recipient, Tenant, Workflow
from .rendering import DEFAULT_LAYOUT_TEXT, default_layout_html
from .services import (
    StepSpec,
    api_key_create,
    api_key_revoke,
    hash_secret,
    recipient_upsert,
    tenant_upsert,
    workflow_put,
)

DEMO_KEY_NAME = "demo"
WELCOME_HTML = """<h1>Welcome to {{ tenant.name | default: "Clarion" }}, {{ recipient.name }}!</h1>
<p>Your account is ready. Here is where to start:</p>
<p><a href="{{ data.start_url | default: 'https://example.com/start' }}">Open your dashboard</a>
</p>"""
WELCOME_TEXT = """Welcome to {{ tenant.name | default: "Clarion" }}, {{ recipient.name }}!

Your account is ready: {{ data.start_url | default: 'https://example.com/start' }}"""

MENTION_HTML = """<p>{{ actor.name | default: "Someone" }} mentioned you in
<strong>{{ data.document | default: "a document" }}</strong>:</p>
<blockquote>{{ data.excerpt }}</blockquote>
<p><a href="{{ data.url }}">Open the comment</a></p>"""
MENTION_TEXT = """{{ actor.name | default: "Someone" }} mentioned you in \
{{ data.document | default: "a document" }}: "{{ data.excerpt }}"

{{ data.url }}"""


@dataclass
class DemoCredentials:
    admin_username: str
    admin_password: str
    api_key: str


def _workflows() -> list[dict]:
    return [
        {
            "key": "welcome",
            "name": "Welcome",
            "category": "account",
            "sample_data": {"start_url": "https://example.com/start"},
            "steps": [
                StepSpec(ref="inbox", type="in_app", templates={"en": {
                    "body": "Welcome aboard, {{ recipient.name | default: 'friend' }}! "
                            "Take the tour to get started.",
                    "action_url": "{{ data.start_url | default: 'https://example.com/start' }}",
                }}),
                StepSpec(ref="mail", type="email", templates={"en": {
                    "subject": "Welcome to {{ tenant.name | default: 'Clarion' }}",
                    "html": WELCOME_HTML,
                    "text": WELCOME_TEXT,
                }}),
            ],
        },
        {
            "key": "comment-mentioned",
            "name": "Comment mention",
            "category": "collaboration",
            "sample_data": {"document": "Q3 roadmap", "excerpt": "Can you check the dates?",
                            "url": "https://example.com/docs/q3"},
            "steps": [
                StepSpec(ref="inbox", type="in_app", templates={"en": {
                    "body": "{{ actor.name | default: 'Someone' }} mentioned you in "
                            "{{ data.document | default: 'a document' }}: “{{ data.excerpt }}”",
                    "action_url": "{{ data.url }}",
                }}),
                # In-app now; email a quarter of an hour later, only if still unread.
                StepSpec(ref="wait", type="delay", config={"minutes": 15}),
                StepSpec(ref="mail", type="email", unless={"step": "inbox", "is": "read"},
                         templates={"en": {
                             "subject": "{{ actor.name | default: 'Someone' }} mentioned you in "
                                        "{{ data.document | default: 'a document' }}",
                             "html": MENTION_HTML,
                             "text": MENTION_TEXT,
                         }}),
            ],
        },
    ]


def _credentials_path() -> Path:
    return Path(settings.VAR_DIR) / "demo-credentials.json"


@transaction.atomic
def seed_demo() -> DemoCredentials:
    """Create what is missing of the demo; keep whatever exists. Returns working credentials."""
    if not Tenant.objects.filter(key="acme").exists():
        tenant_upsert(key="acme", name="Acme Inc.", sender_name="Acme",
                      sender_email="hello@acme.test", primary_color="#4f46e5")
    if not Layout.objects.exists():  # the built-in email layout, for every tenant to start from
        Layout.objects.create(name="Default", html=default_layout_html(),
                              text=DEFAULT_LAYOUT_TEXT)
    for spec in _workflows():
        if not Workflow.objects.filter(key=spec["key"]).exists():
            workflow_put(**spec)
    # Created once: a re-run must not overwrite what people changed on the demo recipients.
    if not Recipient.objects.filter(external_id="demo-user").exists():
        recipient_upsert(external_id="demo-user", name="Ada Lovelace", email="ada@example.com",
                         locale="en", timezone="Europe/London")
    if not Recipient.objects.filter(external_id="grace").exists():
        recipient_upsert(external_id="grace", name="Grace Hopper", email="grace@example.com")
    return _demo_credentials()


def _demo_credentials() -> DemoCredentials:
    """The admin login and API key, kept in var/ so every `serve` can print them again."""
    path = _credentials_path()
    saved = json.loads(path.read_text()) if path.exists() else {}
    user_model = get_user_model()
    username = saved.get("admin_username", "admin")
    password = saved.get("admin_password", "")
    user = user_model.objects.filter(username=username).first()
    if user is None or not password or not user.check_password(password):
        password = secrets.token_urlsafe(12)
        if user is None:
            user = user_model.objects.create_superuser(username, "admin@example.com", password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
    secret = saved.get("api_key", "")
    if not secret or not ApiKey.objects.filter(secret_hash=hash_secret(secret),
                                                revoked_at__isnull=True).exists():
        for old in ApiKey.objects.filter(name=DEMO_KEY_NAME, revoked_at__isnull=True):
            api_key_revoke(api_key=old)
        _, secret = api_key_create(name=DEMO_KEY_NAME)
    credentials = DemoCredentials(admin_username=username, admin_password=password,
                                  api_key=secret)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(credentials.__dict__, indent=2))
    path.chmod(0o600)
    return credentials

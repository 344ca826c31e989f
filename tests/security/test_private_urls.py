"""URLs naming private, loopback or link-local addresses are refused wherever a URL is entered,
unless CLARION_ALLOW_PRIVATE_URLS. The places are generated: every URLField of every model and
of every API serializer must have an entry in SUBMIT (how to enter a URL there, through the API
and through the admin's form), so a new URL field without one fails.

URLs inside JSON (a provider's base_url, a webhook step's URL, a chat webhook or Web Push
endpoint in channel data) are checked where Clarion connects, on the address it connects to:
tests/notifications/providers/test_ssrf.py."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import models
from django.forms.models import model_to_dict
from django.test import RequestFactory
from rest_framework import serializers

from events.models import EventEndpoint
from notifications.models import Tenant

pytestmark = pytest.mark.django_db

PRIVATE = ["https://127.0.0.1/logo.png", "https://10.1.2.3/logo.png",
           "https://169.254.169.254/latest/meta-data/", "https://[::1]/logo.png",
           "https://[::ffff:127.0.0.1]/logo.png",
           "https://localhost/logo.png"]  # a name that resolves to loopback (/etc/hosts)
PUBLIC = "https://93.184.215.14/logo.png"


def api_tenant(api, url):
    response = api.put("/api/v1/tenants/acme", {"name": "Acme", "logo_url": url})
    return response.status_code, response.json().get("fields", {}).get("logo_url")


def api_endpoint(api, url):
    response = api.put("/api/v1/event-endpoints/crm", {"url": url, "events": ["message.sent"]})
    return response.status_code, response.json().get("fields", {}).get("url")


def admin_form(model, field: str, url: str, instance=None):
    """The admin's add (or change) form for `model` with `field` set to `url`: (valid?, errors)."""
    model_admin = admin.site._registry[model]
    request = RequestFactory().get("/")
    request.user = User(is_superuser=True, is_staff=True)
    form_class = model_admin.get_form(request, instance)
    data = model_to_dict(instance) if instance is not None else {}
    data = {k: v for k, v in data.items() if v is not None}
    data[field] = url
    form = form_class(data=data, instance=instance)
    valid = form.is_valid()
    assert set(form.errors) <= {field}, form.errors  # only the URL can be wrong here
    return (200 if valid else 400), form.errors.get(field)


def admin_tenant(api, url):
    tenant, _ = Tenant.objects.get_or_create(key="acme", defaults={"name": "Acme"})
    return admin_form(Tenant, "logo_url", url, tenant)


def admin_endpoint(api, url):
    model_admin = admin.site._registry[EventEndpoint]
    request = RequestFactory().get("/")
    request.user = User(is_superuser=True, is_staff=True)
    form_class = model_admin.get_form(request, None)
    form = form_class(data={"key": "from-admin", "url": url, "events": ["message.sent"]})
    valid = form.is_valid()
    assert set(form.errors) <= {"url"}, form.errors  # only the URL can be wrong here
    return (200 if valid else 400), form.errors.get("url")


# Where each URL field is entered: (label, submit(api, url) -> (status, errors of the field)).
SUBMIT = {
    "notifications.Tenant.logo_url": [("API", api_tenant), ("admin", admin_tenant)],
    "TenantSerializer.logo_url": [("API", api_tenant)],
    "events.EventEndpoint.url": [("API", api_endpoint), ("admin", admin_endpoint)],
}


def url_fields() -> set[str]:
    """Every models.URLField and every serializers.URLField of a serializer in Clarion's apps."""
    found = {f"{m._meta.label}.{f.name}" for m in apps.get_models()
             for f in m._meta.get_fields() if isinstance(f, models.URLField)}
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports every view module)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for cls in set(subclasses(serializers.Serializer)):
        if cls.__module__.split(".")[0] not in {"notifications", "inbox", "preferences",
                                                "events", "compat", "clarion", "analytics"}:
            continue
        try:
            fields = cls().fields
        except Exception:  # noqa: BLE001 (a serializer that needs context to build)
            continue
        for name, field in fields.items():
            if isinstance(field, serializers.URLField) and not field.read_only:
                found.add(f"{cls.__name__}.{name}")
    return found


def test_every_url_field_has_a_way_to_submit_it():
    fields = url_fields()
    assert fields - set(SUBMIT) == set(), "URL fields without an entry in SUBMIT"
    assert set(SUBMIT) - fields == set(), "SUBMIT entries for fields that are gone"


@pytest.mark.parametrize("field", sorted(SUBMIT))
def test_a_private_destination_is_refused_wherever_a_url_is_entered(field, api):
    for where, submit in SUBMIT[field]:
        for url in PRIVATE:
            status, errors = submit(api, url)
            assert status == 400 and errors, (field, where, url, status)
        status, errors = submit(api, PUBLIC)
        assert status in (200, 201), (field, where, PUBLIC, errors)


@pytest.mark.parametrize("field", sorted(SUBMIT))
def test_private_destinations_are_accepted_when_the_deployment_allows_them(field, api,
                                                                           clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=True)
    for where, submit in SUBMIT[field]:
        for url in PRIVATE:
            status, errors = submit(api, url)
            assert status in (200, 201), (field, where, url, errors)

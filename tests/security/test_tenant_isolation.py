"""A tenant-restricted API key reaches nothing of another tenant, on every route of the URL conf.

The routes come from `get_resolver()` (every route under /api/v1/, /knock/ and /novu/), and each
(route, method) must have an entry in tests/security/tenant_routes.py saying how to call it for
a tenant's objects: a new endpoint without one fails `test_every_route_has_a_tenant_probe`. For
each probe, tenant A's credential naming tenant B's objects is refused (403/404, or an answer that
lists nothing of B) and no row of any table changes; then the same call for A's own objects
succeeds, so the refusal came from the tenant check and not from a malformed call.
"""

import pytest
from django.apps import apps
from django.db import transaction
from django.db.models import BinaryField
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from notifications.models import Tenant
from notifications.services import api_key_create

from .tenant_routes import ROUTES, NoTenantObject, Probe, TenantWorld, fill

pytestmark = pytest.mark.django_db

PREFIXES = ("api/v1/", "knock/", "novu/")
METHODS = ("get", "post", "put", "patch", "delete")
# Rows that any authenticated call writes: when a key was last used, the audit log's request
# context, rate-limit counters (no tenant data in any of them).
VOLATILE = {"notifications.ApiKey": {"last_used_at"}, "notifications.RateLimitCounter": None,
            "auditlog.LogEntry": None}


def routes_of_url_conf() -> set[tuple[str, str]]:
    """{(route, METHOD)} of every view under PREFIXES; a catch-all view (no handler methods)
    is (route, "*")."""
    found: set[tuple[str, str]] = set()

    def walk(resolver, prefix: str) -> None:
        for entry in resolver.url_patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry, route)
                continue
            assert isinstance(entry, URLPattern)
            if not route.startswith(PREFIXES):
                continue
            view = getattr(entry.callback, "view_class", None) or getattr(
                entry.callback, "cls", None)
            methods = [m.upper() for m in METHODS if view is not None and hasattr(view, m)]
            if not methods:
                found.add((route, "*"))
            for method in methods:
                found.add((route, method))

    walk(get_resolver(), "")
    return found


def test_every_route_has_a_tenant_probe():
    routes = routes_of_url_conf()
    missing = sorted(routes - set(ROUTES))
    assert not missing, (
        "These routes have no entry in tests/security/tenant_routes.py saying how a tenant's "
        f"key could reach another tenant's objects through them: {missing}")
    stale = sorted(set(ROUTES) - routes)
    assert not stale, f"Entries for routes the URL conf no longer has: {stale}"
    assert len(routes) > 70  # the walk found the API, the inbox API, Knock's and Novu's


def snapshot() -> dict[str, dict]:
    """Every row of every model (but VOLATILE fields), by model label and primary key."""
    rows = {}
    for model in apps.get_models():
        label = model._meta.label
        skip = VOLATILE.get(label, set())
        if skip is None:
            continue
        names = [f.attname for f in model._meta.concrete_fields
                 if f.attname not in skip and not isinstance(f, BinaryField)]
        rows[label] = {row[model._meta.pk.attname]: row
                       for row in model._default_manager.values(*names)}
    return rows


def changes(before: dict, after: dict) -> dict[str, list]:
    found = {}
    for label in before:
        keys = set(before[label]) | set(after[label])
        changed = [key for key in keys if before[label].get(key) != after[label].get(key)]
        if changed:
            found[label] = [(before[label].get(k), after[label].get(k)) for k in changed]
    return found


def client(probe: Probe, secret: str) -> APIClient:
    api = APIClient()
    scheme = "ApiKey" if probe.auth == "novu" else "Bearer"
    api.credentials(HTTP_AUTHORIZATION=f"{scheme} {secret}")
    return api


def call(api: APIClient, method: str, probe: Probe, world: TenantWorld):
    body = fill(probe.body, world)
    kwargs = {"format": "json"} if body is not None else {}
    return getattr(api, method.lower())(fill(probe.path, world), body, **kwargs)


def answer_of(response):
    if not response.content or "json" not in response.get("Content-Type", ""):
        return {}
    return response.json()


def probe_route(probe: Probe, method: str, own: TenantWorld, other: TenantWorld,
                operator: APIClient) -> None:
    """Tenant A's credential on B's objects: refused, nothing changed; then the control call
    on A's own objects (or by an operator) succeeds. Raises AssertionError naming what broke."""
    acme = Tenant.objects.get(key=own.t)
    a_key = api_key_create(name="acme only", tenant=acme)[1]
    if probe.auth == "inbox":
        minted = operator.post("/api/v1/recipients/sam/inbox-token", {"tenant": own.t},
                               format="json")
        assert minted.status_code == 201
        a_secret = minted.json()["token"]
    else:
        a_secret = a_key
    attacker = client(probe, a_secret)

    before = snapshot()
    response = call(attacker, method, probe, other)
    assert response.status_code in probe.refused, (
        f"answered {response.status_code}: {answer_of(response)}")
    if probe.leaks is not None:
        probe.leaks(answer_of(response), other)
    changed = changes(before, snapshot())
    for label in probe.may_change:  # the caller's own tenant's rows only
        rows = changed.pop(label, [])
        assert all((new or old).get("tenant_id") == acme.pk for old, new in rows), rows
    assert changed == {}, f"the refused call changed rows: {changed}"

    if probe.auth == "inbox":  # an API key is no inbox credential at all
        assert call(client(probe, a_key), method, probe, other).status_code in (401, 403)

    if probe.control == "operator":
        controller = client(probe, api_key_create(name="operator 2")[1])
        world = other
    else:
        controller, world = attacker, own
    response = call(controller, method, probe, world)
    assert 200 <= response.status_code < 300, (
        f"the control call answered {response.status_code}: {answer_of(response)}")
    if probe.controlled is not None:
        probe.controlled(answer_of(response), world)


def test_a_tenant_key_reaches_nothing_of_another_tenant(tenants, operator):
    """Every probe of ROUTES, each in a savepoint rolled back after it (the two tenants' objects
    are made once); every failure is reported, by route."""
    own, other = tenants
    failures, probed = [], 0
    for (route, method), entry in ROUTES.items():
        if isinstance(entry, NoTenantObject):
            continue
        for index, probe in enumerate(entry):
            probed += 1
            try:
                with transaction.atomic():
                    probe_route(probe, method, own, other, operator)
                    transaction.set_rollback(True)
            except AssertionError as exc:
                failures.append(f"{method} {route} #{index}: {exc}")
    assert not failures, "\n".join(failures)
    assert probed > 70

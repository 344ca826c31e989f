"""How to call each tenant-facing route for one tenant's objects: the table
tests/security/test_tenant_isolation.py runs, one entry per (route, method) of the URL conf.

A `Probe` is a call whose path and body name a tenant's objects through `{placeholders}` (the
fields of `TenantWorld`). The test makes it twice: with tenant A's key naming tenant B's objects
(the attack: answered with one of `refused`, and nothing in the database changes), and then with
the `control` caller naming A's own objects (answered 2xx: the call is well formed, so the
refusal was the tenant check and not a malformed request). Routes that only an unrestricted key
may use have `control="operator"`; routes authenticated by an inbox token have `auth="inbox"`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TenantWorld:
    """One tenant's objects, made through the API by an operator (tests/security/conftest.py)."""

    t: str                 # the tenant's key
    person: str            # a recipient only this tenant notified
    trigger: str           # its trigger of the shared workflow (still waiting on a delay)
    run: str               # the person's run of that trigger
    message: str           # the person's in-app message
    item: int              # the shared recipient's inbox item of this tenant
    ck: str                # the trigger's cancellation key
    provider: str          # a provider restricted to the tenant
    endpoint: str          # an outbound event endpoint of the tenant
    schedule: str          # a schedule of the tenant
    topic: str             # a topic of the tenant
    knock_object: str      # a Knock object (a topic) made for the tenant's people


def fill(value, world: TenantWorld):
    """`value` (a str, list or dict) with every {placeholder} replaced from `world`."""
    if isinstance(value, str):
        return value.format(**world.__dict__)
    if isinstance(value, list):
        return [fill(item, world) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, world) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Probe:
    path: str
    body: object = None
    refused: tuple[int, ...] = (403, 404)
    control: str = "tenant"          # "tenant": A's key on A's objects; "operator": any key
    auth: str = "bearer"             # "bearer" (API key), "novu" (ApiKey scheme), "inbox"
    # On the attack's answer: raise AssertionError if it shows anything of the other tenant.
    leaks: Callable[[dict, TenantWorld], None] | None = None
    # On the control's effect (its answer and the database) for the tenant's own objects.
    controlled: Callable[[dict, TenantWorld], None] | None = None
    # Models (app_label.ModelName) where the attack may change rows of the caller's own tenant.
    may_change: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class NoTenantObject:
    """A route that serves nothing a tenant owns; why, and where its guard is tested."""

    reason: str


def _ids(answer, key="id") -> set:
    """The ids of a list answer: {"results"|"messages"|"items": [...]} or a bare list."""
    rows = answer
    if isinstance(answer, dict):
        rows = next(answer[name] for name in ("results", "messages", "items") if name in answer)
    return {str(row[key]) for row in rows}


def no_message_of(answer, other):
    assert other.message not in _ids(answer), "another tenant's message is listed"


def no_endpoint_of(answer, other):
    assert other.endpoint not in _ids(answer), "another tenant's endpoint is listed"


def no_item_of(answer, other):
    assert str(other.item) not in _ids(answer), "another tenant's inbox item is listed"


def nothing_cancelled(answer, other):
    assert answer.get("cancelled", []) == [] and answer.get("data") in (None, False), answer


def every_result_refused(answer, other):
    results = answer.get("results") or answer.get("data")
    assert results and all(r.get("status") in (403, "error") for r in results), results


def lists_message(answer, own):
    assert own.message in _ids(answer)


def lists_endpoint(answer, own):
    assert own.endpoint in _ids(answer)


def lists_item(answer, own):
    assert str(own.item) in _ids(answer)


def run_cancelled(answer, own):
    from notifications.models import Run

    assert Run.objects.get(pk=own.run).status == Run.Status.CANCELLED


def every_result_accepted(answer, own):
    results = answer.get("results") or answer.get("data")
    assert results and all(r.get("status") in (202, "processed") for r in results), results


WORKFLOW = {"name": "Shared", "steps": [
    {"ref": "inbox", "type": "in_app", "templates": {"en": {"body": "Hi"}}},
    {"ref": "wait", "type": "delay", "config": {"seconds": 3600}}]}
PREFS = {"channel_types": {"sms": False}}
SCHEDULE = {"workflow": "shared", "recipients": ["{person}"], "tenant": "{t}",
            "repeat": {"frequency": "daily", "at": "09:00"}, "timezone": "UTC"}
PROVIDER = {"channel": "sms", "kind": "twilio", "tenant": "{t}",
            "credentials": {"account_sid": "AC0123456789abcdef", "auth_token": "tok-0123456789",
                            "from": "+15550001111"}}
ENDPOINT = {"url": "http://127.0.0.1:9/{t}", "events": ["message.sent"], "tenant": "{t}"}
TRIGGER = {"recipients": ["{person}"], "tenant": "{t}"}
PREFS_OF = "/api/v1/recipients/{person}/preferences?tenant={t}"
KNOCK_PREFS = "/knock/v1/users/{person}/preferences/default?tenant={t}"
NOVU_EVENT = {"name": "shared", "to": ["{person}"], "tenant": "{t}"}
OWN_PREFERENCES = frozenset({"preferences.PreferenceSet"})
INBOX_BULK = {"tenant": "{t}", "up_to": 1_000_000_000}
OPERATOR = {"control": "operator", "refused": (403,)}

ROUTES: dict[tuple[str, str], list[Probe] | NoTenantObject] = {
    # --- the server API ------------------------------------------------------------------------
    ("api/v1/workflows", "GET"): NoTenantObject(
        "workflows are global: every key reads the same catalogue"),
    ("api/v1/workflows/<str:key>", "GET"): NoTenantObject(
        "workflows are global: every key reads the same catalogue"),
    ("api/v1/workflows/<str:key>", "PUT"): [
        Probe("/api/v1/workflows/shared", WORKFLOW, **OPERATOR)],
    ("api/v1/workflows/<str:key>/trigger", "POST"): [
        Probe("/api/v1/workflows/shared/trigger", TRIGGER, refused=(403,)),
        # Another tenant's topic is unknown to the key (no fan-out to its subscribers).
        Probe("/api/v1/workflows/shared/trigger", {"recipients": [{"topic": "{topic}"}]},
              refused=(400,))],
    ("api/v1/workflows/<str:key>/trigger/bulk", "POST"): [
        Probe("/api/v1/workflows/shared/trigger/bulk", {"triggers": [TRIGGER]}, refused=(207,),
              leaks=every_result_refused, controlled=every_result_accepted)],
    ("api/v1/workflows/<str:key>/cancel", "POST"): [
        Probe("/api/v1/workflows/shared/cancel", {"cancellation_key": "{ck}"}, refused=(200,),
              leaks=nothing_cancelled, controlled=run_cancelled)],
    ("api/v1/triggers/<uuid:trigger_id>", "GET"): [Probe("/api/v1/triggers/{trigger}")],
    ("api/v1/approvals/<str:token>", "POST"): NoTenantObject(
        "the signed approval link is the credential, not an API key (forged, expired and "
        "reused links: tests/agents/test_approvals.py)"),
    ("api/v1/runs/<uuid:run_id>", "GET"): [Probe("/api/v1/runs/{run}")],
    ("api/v1/messages", "GET"): [
        Probe("/api/v1/messages", refused=(200,), leaks=no_message_of, controlled=lists_message),
        Probe("/api/v1/messages?tenant={t}", refused=(403,))],
    ("api/v1/messages/<uuid:message_id>", "GET"): [Probe("/api/v1/messages/{message}")],
    ("api/v1/recipients/<segment:recipient_id>", "GET"): [
        Probe("/api/v1/recipients/{person}", **OPERATOR)],
    ("api/v1/recipients/<segment:recipient_id>", "PUT"): [
        Probe("/api/v1/recipients/{person}", {"name": "Renamed"}, **OPERATOR)],
    ("api/v1/recipients/<segment:recipient_id>", "DELETE"): [
        Probe("/api/v1/recipients/{person}", **OPERATOR)],
    ("api/v1/recipients/<segment:recipient_id>/channel-data/<str:channel>", "PUT"): [
        Probe("/api/v1/recipients/{person}/channel-data/push", {"data": {"tokens": ["t1"]}},
              **OPERATOR)],
    ("api/v1/tenants/<str:key>", "GET"): [Probe("/api/v1/tenants/{t}")],
    ("api/v1/tenants/<str:key>", "PUT"): [Probe("/api/v1/tenants/{t}", {"name": "Renamed"})],
    ("api/v1/topics/<str:key>", "GET"): [Probe("/api/v1/topics/{topic}", **OPERATOR)],
    ("api/v1/topics/<str:key>", "PUT"): [
        Probe("/api/v1/topics/{topic}", {"name": "Renamed", "tenant": "{t}"}, **OPERATOR)],
    ("api/v1/topics/<str:key>/subscriptions", "POST"): [
        Probe("/api/v1/topics/{topic}/subscriptions", {"recipients": ["{person}"]}, **OPERATOR)],
    ("api/v1/topics/<str:key>/subscriptions", "DELETE"): [
        Probe("/api/v1/topics/{topic}/subscriptions", {"recipients": ["{person}"]}, **OPERATOR)],
    ("api/v1/schedules/<str:key>", "GET"): [Probe("/api/v1/schedules/{schedule}")],
    ("api/v1/schedules/<str:key>", "PUT"): [Probe("/api/v1/schedules/{schedule}", SCHEDULE)],
    ("api/v1/schedules/<str:key>", "DELETE"): [Probe("/api/v1/schedules/{schedule}")],
    ("api/v1/schedules/<str:key>/occurrences", "GET"): [
        Probe("/api/v1/schedules/{schedule}/occurrences")],
    ("api/v1/providers/<str:key>", "GET"): [Probe("/api/v1/providers/{provider}")],
    ("api/v1/providers/<str:key>", "PUT"): [Probe("/api/v1/providers/{provider}", PROVIDER)],
    ("api/v1/providers/<str:key>", "DELETE"): [Probe("/api/v1/providers/{provider}")],
    ("api/v1/recipients/<segment:recipient_id>/preferences", "GET"): [Probe(PREFS_OF)],
    ("api/v1/recipients/<segment:recipient_id>/preferences", "PUT"): [Probe(PREFS_OF, PREFS)],
    ("api/v1/recipients/<segment:recipient_id>/preferences", "PATCH"): [Probe(PREFS_OF, PREFS)],
    ("api/v1/tenants/<str:key>/preferences", "GET"): [Probe("/api/v1/tenants/{t}/preferences")],
    ("api/v1/tenants/<str:key>/preferences", "PUT"): [
        Probe("/api/v1/tenants/{t}/preferences", PREFS)],
    ("api/v1/tenants/<str:key>/preferences", "PATCH"): [
        Probe("/api/v1/tenants/{t}/preferences", PREFS)],
    ("api/v1/recipients/<segment:recipient_id>/inbox-token", "POST"): [
        Probe("/api/v1/recipients/{person}/inbox-token", {"tenant": "{t}"})],
    ("api/v1/tenants/<str:key>/inbox-secret", "POST"): [
        Probe("/api/v1/tenants/{t}/inbox-secret", {})],
    ("api/v1/event-endpoints", "GET"): [
        Probe("/api/v1/event-endpoints", refused=(200,), leaks=no_endpoint_of,
              controlled=lists_endpoint)],
    ("api/v1/event-endpoints/<str:endpoint_id>", "GET"): [
        Probe("/api/v1/event-endpoints/{endpoint}")],
    ("api/v1/event-endpoints/<str:endpoint_id>", "PUT"): [
        Probe("/api/v1/event-endpoints/{endpoint}", ENDPOINT)],
    ("api/v1/event-endpoints/<str:endpoint_id>", "DELETE"): [
        Probe("/api/v1/event-endpoints/{endpoint}")],
    ("api/v1/", "*"): NoTenantObject("every other path under /api/v1/ is the API's JSON 404"),
    # --- the inbox API (a person's browser: an inbox token of tenant A for a shared person) --
    ("api/v1/inbox/", "GET"): [
        Probe("/api/v1/inbox/?tenant={t}", refused=(403,), auth="inbox"),
        Probe("/api/v1/inbox/", refused=(200,), auth="inbox", leaks=no_item_of,
              controlled=lists_item)],
    ("api/v1/inbox/counts", "GET"): [
        Probe("/api/v1/inbox/counts?tenant={t}", refused=(403,), auth="inbox")],
    ("api/v1/inbox/^items/(?P<item_id>[0-9]+)/(?P<action>seen|read|unread|archived|unarchived"
     "|clicked)$", "POST"): [
        Probe("/api/v1/inbox/items/{item}/read", {}, refused=(404,), auth="inbox"),
        Probe("/api/v1/inbox/items/{item}/archived", {}, refused=(404,), auth="inbox")],
    ("api/v1/inbox/seen", "POST"): [
        Probe("/api/v1/inbox/seen", INBOX_BULK, refused=(403,), auth="inbox")],
    ("api/v1/inbox/read", "POST"): [
        Probe("/api/v1/inbox/read", INBOX_BULK, refused=(403,), auth="inbox")],
    ("api/v1/inbox/archive-read", "POST"): [
        Probe("/api/v1/inbox/archive-read", INBOX_BULK, refused=(403,), auth="inbox")],
    ("api/v1/inbox/preferences", "GET"): [
        Probe("/api/v1/inbox/preferences?tenant={t}", refused=(403,), auth="inbox")],
    ("api/v1/inbox/preferences", "PATCH"): [
        Probe("/api/v1/inbox/preferences?tenant={t}", PREFS, refused=(403,), auth="inbox")],
    ("api/v1/inbox/preferences/center", "GET"): [
        Probe("/api/v1/inbox/preferences/center?tenant={t}", refused=(403,), auth="inbox")],
    # --- Knock's API ---------------------------------------------------------------------------
    ("knock/v1/workflows/<str:key>/trigger", "POST"): [
        Probe("/knock/v1/workflows/shared/trigger", TRIGGER, refused=(403,))],
    ("knock/v1/workflows/<str:key>/cancel", "POST"): [
        Probe("/knock/v1/workflows/shared/cancel", {"cancellation_key": "{ck}"},
              refused=(204,), controlled=run_cancelled)],
    ("knock/v1/users/<segment:user_id>", "GET"): [
        Probe("/knock/v1/users/{person}", **OPERATOR)],
    ("knock/v1/users/<segment:user_id>", "PUT"): [
        Probe("/knock/v1/users/{person}", {"name": "Renamed"}, **OPERATOR)],
    ("knock/v1/users/<segment:user_id>", "DELETE"): [
        Probe("/knock/v1/users/{person}", **OPERATOR)],
    ("knock/v1/users/<segment:user_id>/preferences/<str:set_id>", "GET"): [
        Probe(KNOCK_PREFS, refused=(403,))],
    ("knock/v1/users/<segment:user_id>/preferences/<str:set_id>", "PUT"): [
        Probe(KNOCK_PREFS, PREFS, refused=(403,))],
    ("knock/v1/objects/<str:collection>/<segment:object_id>", "PUT"): [
        Probe("/knock/v1/objects/projects/{knock_object}", {"name": "Renamed"}, **OPERATOR)],
    ("knock/v1/objects/<str:collection>/<segment:object_id>/subscriptions", "POST"): [
        Probe("/knock/v1/objects/projects/{knock_object}/subscriptions",
              {"recipients": ["{person}"]}, **OPERATOR)],
    ("knock/v1/objects/<str:collection>/<segment:object_id>/subscriptions", "DELETE"): [
        Probe("/knock/v1/objects/projects/{knock_object}/subscriptions",
              {"recipients": ["{person}"]}, **OPERATOR)],
    ("knock/", "*"): NoTenantObject("every other path under /knock/ is Knock's JSON 404"),
    # --- Novu's API (Authorization: ApiKey <key>) ----------------------------------------------
    ("novu/v1/events/trigger", "POST"): [
        Probe("/novu/v1/events/trigger", NOVU_EVENT, refused=(403,), auth="novu")],
    ("novu/v1/events/trigger/bulk", "POST"): [
        Probe("/novu/v1/events/trigger/bulk", {"events": [NOVU_EVENT]}, refused=(201,),
              auth="novu", leaks=every_result_refused, controlled=every_result_accepted)],
    ("novu/v1/events/trigger/<segment:transaction_id>", "DELETE"): [
        Probe("/novu/v1/events/trigger/{ck}", refused=(200,), auth="novu",
              leaks=nothing_cancelled, controlled=run_cancelled)],
    ("novu/v2/subscribers", "POST"): [
        Probe("/novu/v2/subscribers", {"subscriberId": "{person}"}, auth="novu", **OPERATOR)],
    ("novu/v2/subscribers/<segment:subscriber_id>", "GET"): [
        Probe("/novu/v2/subscribers/{person}", auth="novu", **OPERATOR)],
    ("novu/v2/subscribers/<segment:subscriber_id>", "PATCH"): [
        Probe("/novu/v2/subscribers/{person}", {"firstName": "Re"}, auth="novu", **OPERATOR)],
    ("novu/v2/subscribers/<segment:subscriber_id>", "DELETE"): [
        Probe("/novu/v2/subscribers/{person}", auth="novu", **OPERATOR)],
    # Novu names no tenant here: a tenant's key reads and writes its own tenant's set only.
    ("novu/v2/subscribers/<segment:subscriber_id>/preferences", "GET"): [
        Probe("/novu/v2/subscribers/{person}/preferences", refused=(200,), auth="novu")],
    ("novu/v2/subscribers/<segment:subscriber_id>/preferences", "PATCH"): [
        Probe("/novu/v2/subscribers/{person}/preferences", {"channels": {"sms": False}},
              refused=(200,), auth="novu", may_change=OWN_PREFERENCES)],
    ("novu/v2/topics", "POST"): [
        Probe("/novu/v2/topics", {"key": "{topic}", "name": "Renamed"}, auth="novu",
              **OPERATOR)],
    ("novu/v2/topics/<str:key>", "GET"): [
        Probe("/novu/v2/topics/{topic}", auth="novu", **OPERATOR)],
    ("novu/v2/topics/<str:key>/subscriptions", "POST"): [
        Probe("/novu/v2/topics/{topic}/subscriptions", {"subscriberIds": ["{person}"]},
              auth="novu", **OPERATOR)],
    ("novu/v2/topics/<str:key>/subscriptions", "DELETE"): [
        Probe("/novu/v2/topics/{topic}/subscriptions", {"subscriberIds": ["{person}"]},
              auth="novu", **OPERATOR)],
    ("novu/", "*"): NoTenantObject("every other path under /novu/ is Novu's JSON 404"),
}

"""Every option a step's JSON takes has a field in the workflow builder (a new option without
one fails here), and the channel options (push `ttl`, `priority`, `collapse_key`; WhatsApp's
`content_sid`) go builder → `PUT workflows/{key}` JSON → builder unchanged, with their errors
next to their field."""

import pytest
from django.urls import reverse

from notifications.admin.builder import convert
from notifications.admin.builder.declarations import KINDS
from notifications.api.serializers import StepSerializer
from notifications.channels import CHANNEL_KEYS
from notifications.engine.validation import (
    APPROVAL_KEYS,
    CHANNEL_CONFIG_KEYS,
    DIGEST_KEYS,
    ROUTE_KEYS,
    SUPPORTED_STEP_TYPES,
    THROTTLE_KEYS,
    UNLESS_KEYS,
)
from notifications.engine.windows import WINDOW_KEYS
from notifications.models import Workflow

from .test_workflow_builder import form_fields, steps_of

# What a step's JSON holds besides its options: shown by every step card, or by the branches.
STRUCTURE = {"ref", "type", "conditions", "templates", "branches", "default"}
# Options by step type, as engine/validation.py checks a step's `config`. A delay's config is
# a duration ({"<unit>": n}, the builder's duration field at "config") or {"until": path}.
CONFIG_KEYS = {**CHANNEL_CONFIG_KEYS, "throttle": THROTTLE_KEYS, "digest": DIGEST_KEYS,
               "approval": APPROVAL_KEYS, "route": ROUTE_KEYS, "branch": (),
               "delay": ("", "until")}


def shown(step_type: str, under: str) -> set[str]:
    """The keys right under `under` ("config", "send_window", "" for the step) that a field of
    the step type's builder form writes."""
    keys = set()
    for spec in KINDS[step_type].fields:
        path = spec.json_path
        if under and path == under:
            keys.add("")
        elif not under or path.startswith(under + "."):
            keys.add(path[len(under) + 1 if under else 0:].split(".")[0])
    return keys


def test_every_step_type_the_engine_runs_has_a_builder_form():
    assert set(KINDS) == set(SUPPORTED_STEP_TYPES) == set(CONFIG_KEYS)


@pytest.mark.parametrize("step_type", sorted(SUPPORTED_STEP_TYPES))
def test_every_option_the_json_takes_has_a_builder_field(step_type):
    assert shown(step_type, "config") == set(CONFIG_KEYS[step_type])
    step_keys = set(StepSerializer().fields) - STRUCTURE - {"config"}  # unless, send_window…
    takes = step_keys if step_type in CHANNEL_KEYS else \
        step_keys - {"unless"} if step_type == "route" else set()
    assert shown(step_type, "") - {"config"} == takes
    if "send_window" in takes:
        assert shown(step_type, "send_window") == set(WINDOW_KEYS)
    if "unless" in takes:
        assert shown(step_type, "unless") == set(UNLESS_KEYS)


PUSH = {"ref": "buzz", "type": "push",
        "config": {"ttl": 3600, "priority": "high", "collapse_key": "order-42"}}
WHATSAPP = {"ref": "chat", "type": "whatsapp",
            "config": {"template": "order_update", "language": "en_US",
                       "content_sid": "HXb5b62575e6e4ff6129ad7c8efe1f983e"}}


@pytest.mark.parametrize("step", [
    PUSH, WHATSAPP,
    {"ref": "quiet", "type": "push", "config": {"ttl": 0, "priority": "very-low"}},
    {"ref": "twilio", "type": "whatsapp",
     "config": {"content_sid": "HX00000000000000000000000000000000"}},
])
def test_channel_options_shown_as_fields_post_back_the_same_json(step):
    values, extra = convert.step_values(step, KINDS[step["type"]])
    assert extra == {}  # every option is in a field, none in the hidden JSON
    fields = {f"steps-0-{name}": ("on" if value else "") if isinstance(value, bool) else value
              for name, value in values.items()}
    steps, problems = steps_of(fields)
    assert not problems
    assert steps == [step]


def change_url(workflow):
    return reverse("admin:notifications_workflow_change", args=[workflow.pk])


FORM = {"key": "orders", "name": "Orders", "default_locale": "en", "active": "on",
        "steps-0-type": "push", "steps-0-ref": "buzz", "steps-0-ttl": "3600",
        "steps-0-priority": "high", "steps-0-collapse_key": "order-42",
        "steps-1-type": "whatsapp", "steps-1-ref": "chat", "steps-1-template": "order_update",
        "steps-1-language": "en_US",
        "steps-1-content_sid": "HXb5b62575e6e4ff6129ad7c8efe1f983e"}


def test_push_and_whatsapp_options_built_with_forms_are_the_apis_json(admin_client, api):
    response = admin_client.post(reverse("admin:notifications_workflow_add"), FORM)
    assert response.status_code == 302, response.context["problems"]
    steps = api.get("/api/v1/workflows/orders").json()["steps"]
    assert steps == [{**PUSH, "templates": {}}, {**WHATSAPP, "templates": {}}]


def test_options_put_through_the_api_are_shown_labelled_and_saved_back_unchanged(
        admin_client, api):
    body = {"name": "Orders", "steps": [
        {**PUSH, "templates": {"en": {"title": "Order", "body": "On its way"}}},
        {**WHATSAPP, "templates": {"en": {"parameters": '["{{ data.order }}"]'}}}]}
    assert api.put("/api/v1/workflows/orders", body).status_code == 201
    workflow = Workflow.objects.get(key="orders")
    before = workflow.updated_at
    html = admin_client.get(change_url(workflow)).content.decode()
    assert ('<label><span>Time to live (seconds)</span><input type="text" data-name="ttl" '
            'name="steps-0-ttl" value="3600" placeholder="3600" inputmode="decimal"></label>'
            ) in html
    assert ('<label><span>Priority</span><select data-name="priority" name="steps-0-priority">'
            '<option value="">—</option><option value="very-low">very low</option>'
            '<option value="low">low</option><option value="normal">normal</option>'
            '<option value="high" selected>high</option></select></label>') in html
    assert '<span>Collapse key</span><input type="text" data-name="collapse_key" ' in html
    assert '<span>Twilio Content SID</span><input type="text" data-name="content_sid" ' in html
    fields = form_fields(html)
    assert {name: fields[name] for name in (
        "steps-0-ttl", "steps-0-priority", "steps-0-collapse_key", "steps-1-content_sid",
        "steps-0-extra", "steps-1-extra")} == {
        "steps-0-ttl": "3600", "steps-0-priority": "high", "steps-0-collapse_key": "order-42",
        "steps-1-content_sid": "HXb5b62575e6e4ff6129ad7c8efe1f983e",
        "steps-0-extra": "", "steps-1-extra": ""}

    response = admin_client.post(change_url(workflow), fields)
    assert response.status_code == 302, response.context["problems"]
    workflow.refresh_from_db()
    assert workflow.updated_at == before
    assert api.get("/api/v1/workflows/orders").json()["steps"] == body["steps"]


@pytest.mark.parametrize(("typed", "problems"), [
    ({"steps-0-ttl": "1.5"}, {"steps-0-ttl": ["Enter a whole number."]}),
    ({"steps-0-ttl": "an hour"}, {"steps-0-ttl": ["Enter a whole number."]}),
    ({"steps-0-ttl": "-1"}, {"steps-0-ttl": ['"ttl" must be a whole number of seconds ≥ 0.']}),
    ({"steps-0-ttl": "2419201"}, {"steps-0-ttl": [
        '"ttl" is at most 2419200 seconds (28 days, FCM\'s limit).']}),
    ({"steps-0-priority": "urgent"},
     {"steps-0-priority": ['"priority" must be one of: very-low, low, normal, high.']}),
    ({"steps-0-collapse_key": "order 42"}, {"steps-0-collapse_key": [
        '"collapse_key" takes at most 32 letters, digits, "-" and "_" (a Web Push Topic, '
        'RFC 8030 section 5.4), e.g. "order-42".']}),
    ({"steps-1-content_sid": "HX42"}, {"steps-1-content_sid": [
        '"content_sid" must be a Twilio Content SID: "HX" and 32 hex digits.']}),
])
def test_a_bad_option_is_an_error_on_its_field_and_nothing_is_saved(admin_client, typed,
                                                                    problems):
    response = admin_client.post(reverse("admin:notifications_workflow_add"), FORM | typed)
    assert response.status_code == 200
    assert response.context["problems"] == problems
    name = next(iter(typed))
    assert f'name="{name}"' in response.content.decode()
    assert 'aria-invalid="true"' in response.content.decode()
    assert not Workflow.objects.filter(key="orders").exists()


@pytest.mark.parametrize(("config", "problem"), [
    ({"ttl": 28 * 86400 + 1}, '"ttl" is at most 2419200 seconds'),
    ({"collapse_key": "x" * 33}, '"collapse_key" takes at most 32 letters'),
    ({"collapse_key": "order/42"}, '"collapse_key" takes at most 32 letters'),
    ({"collapse_key": "ordré"}, '"collapse_key" takes at most 32 letters'),
])
def test_push_options_every_service_would_refuse_are_refused_naming_the_field(api, config,
                                                                               problem):
    """A push goes to FCM, APNs and Web Push alike: a `ttl` over FCM's 28 days or a
    `collapse_key` that is not a Web Push Topic (RFC 8030 section 5.4) would fail at one of
    them on every send, so the workflow refuses it when saved."""
    response = api.put("/api/v1/workflows/w", {"name": "W", "steps": [
        {"ref": "push", "type": "push", "config": config,
         "templates": {"en": {"title": "t", "body": "b"}}}]})
    assert response.status_code == 400, response.content
    assert problem in response.json()["fields"]["steps[0].config"][0]


def test_the_longest_ttl_and_collapse_key_every_service_takes_are_accepted(api):
    config = {"ttl": 28 * 86400, "collapse_key": "Order_42-" + "x" * 23}
    response = api.put("/api/v1/workflows/w", {"name": "W", "steps": [
        {"ref": "push", "type": "push", "config": config,
         "templates": {"en": {"title": "t", "body": "b"}}}]})
    assert response.status_code in (200, 201), response.content
    assert api.get("/api/v1/workflows/w").json()["steps"][0]["config"] == config

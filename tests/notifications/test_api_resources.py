"""Workflows, tenants and topics through the server API (recipients: test_api_recipients.py)."""

import pytest
from rest_framework.test import APIClient

from notifications import services
from notifications.models import (
    Recipient,
    Step,
    Subscription,
    Template,
    TemplateVersion,
    Tenant,
    Topic,
    Workflow,
)

from ..conftest import invalid

GLOBAL_ONLY = {"error": "forbidden", "detail": "This API key is restricted to one tenant and "
               "cannot manage global resources."}
OTHER_TENANT = {"error": "forbidden", "detail": "This API key is restricted to another tenant."}

# The documented workflow contract, exactly as the issue writes it.
WELCOME = {
    "key": "welcome", "name": "Welcome", "category": "account", "critical": False,
    "active": True,
    "steps": [
        {"ref": "inbox", "type": "in_app",
         "templates": {"en": {"body": "Hi {{ recipient.name }}", "action_url": "/start"}}},
        {"ref": "wait", "type": "delay", "config": {"seconds": 60}},
        {"ref": "mail", "type": "email",
         "conditions": {"all": [{"path": "data.plan", "op": "eq", "value": "pro"}]},
         "templates": {"en": {"subject": "…", "html": "…", "text": "…"}}},
    ],
}


# --- Workflows --------------------------------------------------------------------------------

def test_put_workflow_with_the_documented_contract_creates_it(api, db):
    response = api.put("/api/v1/workflows/welcome", WELCOME)

    assert response.status_code == 201, response.content
    assert response.json() == {**WELCOME, "default_locale": "en", "data_schema": None}
    workflow = Workflow.objects.get(key="welcome")
    assert list(workflow.steps.values_list("position", "ref", "type")) == [
        (0, "inbox", "in_app"), (1, "wait", "delay"), (2, "mail", "email")]
    assert TemplateVersion.objects.count() == 2


def test_get_workflow_returns_what_was_put(api, db):
    put = api.put("/api/v1/workflows/welcome", WELCOME).json()

    response = api.get("/api/v1/workflows/welcome")

    assert response.status_code == 200
    assert response.json() == put


def test_put_of_what_get_returned_changes_nothing(api, db):
    api.put("/api/v1/workflows/welcome", WELCOME)
    exported = api.get("/api/v1/workflows/welcome").json()
    workflow = Workflow.objects.get()
    steps = list(Step.objects.order_by("position").values_list("id", "ref", "config",
                                                               "conditions"))
    versions = list(TemplateVersion.objects.values_list("id", flat=True))
    templates = list(Template.objects.values_list("id", "published_version_id", "updated_at"))

    response = api.put("/api/v1/workflows/welcome", exported)

    assert response.status_code == 200, response.content
    assert response.json() == exported
    assert list(Step.objects.order_by("position").values_list("id", "ref", "config",
                                                              "conditions")) == steps
    assert list(TemplateVersion.objects.values_list("id", flat=True)) == versions
    assert list(Template.objects.values_list("id", "published_version_id", "updated_at")
                ) == templates
    assert Workflow.objects.get().updated_at == workflow.updated_at


def test_changing_one_template_field_adds_exactly_one_version(api, db):
    api.put("/api/v1/workflows/welcome", WELCOME)
    body = api.get("/api/v1/workflows/welcome").json()
    body["steps"][2]["templates"]["en"]["subject"] = "Welcome, {{ recipient.name }}"

    response = api.put("/api/v1/workflows/welcome", body)

    assert response.status_code == 200
    assert response.json()["steps"][2]["templates"]["en"] == {
        "subject": "Welcome, {{ recipient.name }}", "html": "…", "text": "…"}
    mail = Template.objects.get(step__ref="mail")
    assert list(mail.versions.values_list("number", flat=True)) == [2, 1]
    assert mail.published_version.number == 2
    assert Template.objects.get(step__ref="inbox").versions.count() == 1
    assert TemplateVersion.objects.count() == 3


def test_put_workflow_removes_steps_it_no_longer_names_and_reorders(api, db):
    api.put("/api/v1/workflows/welcome", WELCOME)
    step_ids = dict(Step.objects.values_list("ref", "id"))
    body = {**WELCOME, "steps": [WELCOME["steps"][2], WELCOME["steps"][0]]}

    response = api.put("/api/v1/workflows/welcome", body)

    assert response.status_code == 200
    assert [step["ref"] for step in response.json()["steps"]] == ["mail", "inbox"]
    assert list(Step.objects.order_by("position").values_list("ref", "id")) == [
        ("mail", step_ids["mail"]), ("inbox", step_ids["inbox"])]
    assert not Step.objects.filter(ref="wait").exists()


def test_put_workflow_drops_a_locale_it_no_longer_names(api, db):
    body = {**WELCOME, "steps": [{"ref": "inbox", "type": "in_app", "templates": {
        "en": {"body": "Hi"}, "fr": {"body": "Salut"}}}]}
    api.put("/api/v1/workflows/welcome", body)
    body["steps"][0]["templates"] = {"fr": {"body": "Salut"}}

    response = api.put("/api/v1/workflows/welcome", body)

    assert response.json()["steps"][0]["templates"] == {"fr": {"body": "Salut"}}
    assert list(Template.objects.values_list("locale", flat=True)) == ["fr"]


def test_put_workflow_changes_its_fields(api, db):
    api.put("/api/v1/workflows/welcome", WELCOME)
    schema = {"type": "object", "properties": {"plan": {"type": "string"}}}

    response = api.put("/api/v1/workflows/welcome", {
        **WELCOME, "name": "Hello", "category": "", "critical": True, "active": False,
        "default_locale": "fr", "data_schema": schema})

    assert response.status_code == 200
    workflow = Workflow.objects.get()
    assert (workflow.name, workflow.category, workflow.critical, workflow.active,
            workflow.default_locale, workflow.data_schema) == (
        "Hello", "", True, False, "fr", schema)


def test_put_workflow_ignores_a_key_in_the_body(api, db):
    response = api.put("/api/v1/workflows/welcome", {**WELCOME, "key": "other"})

    assert response.status_code == 201
    assert response.json()["key"] == "welcome"
    assert list(Workflow.objects.values_list("key", flat=True)) == ["welcome"]


def _with_step(index: int, **changes) -> dict:
    steps = [dict(step) for step in WELCOME["steps"]]
    steps[index] = {**steps[index], **changes}
    return {**WELCOME, "steps": steps}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"name": ["This field is required."], "steps": ["This field is required."]}),
        (_with_step(2, conditions={"all": [{"path": "data.plan", "op": "like",
                                            "value": "pro"}]}),
         {"steps[2].conditions.all[0].op": [
             "Expected one of: eq, neq, gt, gte, lt, lte, in, contains, exists, not_exists."]}),
        (_with_step(2, conditions={"all": [{"path": "secrets.x", "op": "eq", "value": 1}]}),
         {"steps[2].conditions.all[0].path": [
             "Expected a path starting with one of: data, recipient, tenant, actor, steps."]}),
        (_with_step(2, conditions={"all": []}),
         {"steps[2].conditions.all": ["Expected a non-empty list."]}),
        (_with_step(0, templates={"en": {"body": "{% if x %}open"}}),
         {"steps[0].templates.en.body": [
             "Liquid syntax error: expected tag endif, found end of expression"]}),
        (_with_step(0, templates={"en": {"action_url": "/start"}}),
         {"steps[0].templates.en.body": ["This field is required."]}),
        (_with_step(0, templates={"en": {"body": "x", "subject": "y"}}),
         {"steps[0].templates.en.subject": [
             "Unknown field; in_app templates have: body, action_url, avatar."]}),
        (_with_step(0, templates={"english!": {"body": "x"}}),
         {"steps[0].templates.english!": ["Expected a locale like 'en' or 'pt-BR'."]}),
        (_with_step(2, templates={"en": {"subject": "x"}}),
         {"steps[2].templates.en.html": ["One of html or text is required."]}),
        (_with_step(1, config={"seconds": -1}),
         {"steps[1].config": ['"seconds" must be a number ≥ 0.']}),
        (_with_step(1, config={"weeks": 1}),
         {"steps[1].config": [
             'Expected {"seconds"|"minutes"|"hours"|"days": number} or {"until": "data.<path>"}.'
         ]}),
        (_with_step(1, config={"until": "now"}),
         {"steps[1].config": [
             '"until" must be a path starting with one of: data, recipient, tenant, actor, '
             'steps.']}),
        (_with_step(1, templates={"en": {"body": "x"}}),
         {"steps[1].templates": ["Delay steps have no templates."]}),
        (_with_step(1, ref="inbox"),
         {"steps": ["Step refs must be unique (nested steps included): inbox."]}),
        (_with_step(1, ref="has space"),
         {"steps[1].ref": ["Use letters, digits, '-', '_', '.', ':' (up to 128, starting with "
                           "a letter or digit)."]}),
        (_with_step(0, type="carrier_pigeon", templates={"en": {"text": "x"}}),
         {"steps[0].type": ['"carrier_pigeon" is not a valid choice.']}),
        ({**WELCOME, "steps": "none"},
         {"steps": ['Expected a list of items but got type "str".']}),
        ({**WELCOME, "data_schema": {"type": "nonsense"}},
         {"data_schema": ["Not a valid JSON Schema: 'nonsense' is not valid under any of the "
                          "given schemas"]}),
        ({**WELCOME, "default_locale": "!"},
         {"default_locale": ["Expected a locale like 'en' or 'pt-BR'."]}),
    ],
    ids=["empty", "condition-op", "condition-path", "condition-empty", "liquid-syntax",
         "missing-template-field", "unknown-template-field", "template-locale",
         "email-without-body", "negative-delay", "delay-unit", "delay-until", "delay-templates",
         "duplicate-refs", "bad-ref", "unsupported-type", "steps-not-a-list", "bad-schema",
         "bad-default-locale"],
)
def test_put_workflow_with_a_bad_body_is_400_naming_the_field(api, db, body, fields):
    response = api.put("/api/v1/workflows/welcome", body)

    assert response.status_code == 400, response.content
    assert response.json() == invalid(fields)
    assert not Workflow.objects.exists()
    assert not Step.objects.exists()


def test_put_workflow_with_a_bad_body_leaves_the_existing_one_alone(api, db):
    original = api.put("/api/v1/workflows/welcome", WELCOME).json()

    response = api.put("/api/v1/workflows/welcome",
                       {**_with_step(1, config={"seconds": "soon"}), "name": "Changed"})

    assert response.status_code == 400
    assert api.get("/api/v1/workflows/welcome").json() == original


@pytest.mark.parametrize("key", ["-bad", "bad%20key", "k" * 129])
def test_put_workflow_with_a_bad_key_is_400(api, db, key):
    response = api.put(f"/api/v1/workflows/{key}", WELCOME)

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "detail": "Use letters, digits, '-', '_', '.', ':' (up to 128, starting with a letter "
                  "or digit)."}
    assert not Workflow.objects.exists()


def test_get_unknown_workflow_is_404(api, db):
    response = api.get("/api/v1/workflows/nope")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No workflow 'nope'."}


def test_get_workflows_lists_all_as_put_bodies(api, db):
    api.put("/api/v1/workflows/welcome", WELCOME)
    api.put("/api/v1/workflows/digest", {"name": "Digest", "steps": [
        {"ref": "inbox", "type": "in_app", "templates": {"en": {"body": "x"}}}]})

    response = api.get("/api/v1/workflows")

    assert response.status_code == 200
    assert response.json() == [
        {"key": "digest", "name": "Digest", "category": "", "critical": False, "active": True,
         "default_locale": "en", "data_schema": None,
         "steps": [{"ref": "inbox", "type": "in_app", "templates": {"en": {"body": "x"}}}]},
        api.get("/api/v1/workflows/welcome").json(),
    ]


def test_a_workflow_put_through_the_api_runs(api, run_tasks, locmem):
    body = {"name": "Hello", "steps": [{"ref": "inbox", "type": "in_app",
                                        "templates": {"en": {"body": "Hi {{ data.who }}"}}}]}
    api.put("/api/v1/workflows/hello", body)

    run_id = api.post("/api/v1/workflows/hello/trigger",
                      {"recipients": ["u1"], "data": {"who": "you"}}).json()["runs"][0]["id"]
    run_tasks()

    assert api.get(f"/api/v1/runs/{run_id}").json()["messages"][0]["content"] == {
        "body": "Hi you"}


# --- Tenants ----------------------------------------------------------------------------------

def test_put_tenant_creates_then_replaces(api, db):
    created = api.put("/api/v1/tenants/acme", {
        "name": "Acme", "logo_url": "https://acme.test/logo.png", "primary_color": "#4f46e5",
        "sender_name": "Acme", "sender_email": "hello@acme.test", "settings": {"a": 1},
        "retention_days": 30})

    assert created.status_code == 201, created.content
    assert created.json() == {
        "key": "acme", "name": "Acme", "logo_url": "https://acme.test/logo.png",
        "primary_color": "#4f46e5", "sender_name": "Acme", "sender_email": "hello@acme.test",
        "footer": "", "settings": {"a": 1}, "retention_days": 30}
    assert Tenant.objects.get().retention_days == 30

    replaced = api.put("/api/v1/tenants/acme", {"name": "Acme Inc."})

    assert replaced.status_code == 200
    assert replaced.json() == {
        "key": "acme", "name": "Acme Inc.", "logo_url": "", "primary_color": "",
        "sender_name": "", "sender_email": "", "footer": "", "settings": {},
        "retention_days": None}
    assert api.get("/api/v1/tenants/acme").json() == replaced.json()
    assert Tenant.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"name": ["This field is required."]}),
        ({"name": "A", "logo_url": "not a url"}, {"logo_url": ["Enter a valid URL."]}),
        ({"name": "A", "sender_email": "nope"}, {"sender_email": ["Enter a valid email address."]}),
        ({"name": "A", "settings": []},
         {"settings": ['Expected a dictionary of items but got type "list".']}),
    ],
    ids=["no-name", "logo-url", "sender-email", "settings"],
)
def test_put_tenant_with_a_bad_body_is_400(api, db, body, fields):
    response = api.put("/api/v1/tenants/acme", body)

    assert response.status_code == 400
    assert response.json() == invalid(fields)
    assert not Tenant.objects.exists()


def test_put_tenant_with_a_bad_key_is_400(api, db):
    response = api.put("/api/v1/tenants/bad key", {"name": "A"})

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "detail": "Use letters, digits, '-', '_', '.', ':' (up to 128, starting with a letter "
                  "or digit)."}
    assert not Tenant.objects.exists()


def test_get_unknown_tenant_is_404(api, db):
    response = api.get("/api/v1/tenants/nope")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No tenant 'nope'."}


# --- Topics and subscriptions -----------------------------------------------------------------

def test_put_topic_creates_then_replaces(api, acme):
    created = api.put("/api/v1/topics/project-42", {"name": "Project 42", "tenant": "acme"})

    assert created.status_code == 201, created.content
    assert created.json() == {"key": "project-42", "name": "Project 42", "tenant": "acme",
                              "subscribers": 0}

    replaced = api.put("/api/v1/topics/project-42", {})

    assert replaced.status_code == 200
    assert replaced.json() == {"key": "project-42", "name": "", "tenant": None,
                               "subscribers": 0}
    assert api.get("/api/v1/topics/project-42").json() == replaced.json()


def test_put_topic_with_an_unknown_tenant_or_bad_key_is_400(api, db):
    tenant = api.put("/api/v1/topics/t", {"tenant": "nope"})
    key = api.put("/api/v1/topics/bad key", {})

    assert tenant.status_code == 400
    assert tenant.json() == invalid({"tenant": ["Unknown tenant 'nope'."]})
    assert key.status_code == 400
    assert key.json() == {
        "error": "invalid_request",
        "detail": "Use letters, digits, '-', '_', '.', ':' (up to 128, starting with a letter "
                  "or digit)."}
    assert not Topic.objects.exists()


def test_subscribe_by_id_and_by_profile(api, db):
    services.recipient_upsert(external_id="u1", name="Ada", email="ada@example.com")
    api.put("/api/v1/topics/news", {"name": "News"})

    response = api.post("/api/v1/topics/news/subscriptions", {"recipients": [
        "u1", {"id": "u2", "name": "Grace", "email": "grace@example.com"},
        {"id": "u1", "name": "Ada L."},
    ]})

    assert response.status_code == 200, response.content
    assert response.json() == {"key": "news", "name": "News", "tenant": None, "subscribers": 2}
    assert sorted(Subscription.objects.values_list("recipient__external_id", flat=True)) == [
        "u1", "u2"]
    ada = Recipient.objects.get(external_id="u1")
    assert (ada.name, ada.email) == ("Ada L.", "ada@example.com")
    assert Recipient.objects.get(external_id="u2").email == "grace@example.com"


def test_subscribing_twice_keeps_one_subscription(api, db):
    api.put("/api/v1/topics/news", {})

    api.post("/api/v1/topics/news/subscriptions", {"recipients": ["u1"]})
    response = api.post("/api/v1/topics/news/subscriptions", {"recipients": ["u1"]})

    assert response.json()["subscribers"] == 1
    assert Subscription.objects.count() == 1


def test_unsubscribing_by_id_removes_only_those_subscriptions(api, db):
    api.put("/api/v1/topics/news", {})
    api.post("/api/v1/topics/news/subscriptions", {"recipients": ["u1", "u2", "u3"]})

    response = api.delete("/api/v1/topics/news/subscriptions",
                          {"recipients": ["u1", {"id": "u3"}, "unknown"]})

    assert response.status_code == 200, response.content
    assert response.json()["subscribers"] == 1
    assert list(Subscription.objects.values_list("recipient__external_id", flat=True)) == ["u2"]
    assert Recipient.objects.filter(external_id="u1").exists()


def test_subscriptions_with_a_bad_body_are_400_and_write_nothing(api, db):
    api.put("/api/v1/topics/news", {})
    api.put("/api/v1/topics/other", {})

    empty = api.post("/api/v1/topics/news/subscriptions", {"recipients": []})
    email = api.post("/api/v1/topics/news/subscriptions",
                     {"recipients": ["u1", {"id": "u2", "email": "nope"}]})
    topic = api.post("/api/v1/topics/news/subscriptions", {"recipients": [{"topic": "other"}]})

    assert empty.json() == invalid({"recipients": ["This list may not be empty."]})
    assert email.json() == invalid({"recipients[1].email": ["Enter a valid email address."]})
    assert topic.json() == invalid({"recipients": ["A topic cannot subscribe to a topic."]})
    assert {empty.status_code, email.status_code, topic.status_code} == {400}
    assert not Recipient.objects.exists()
    assert not Subscription.objects.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/api/v1/topics/nope"), ("post", "/api/v1/topics/nope/subscriptions"),
     ("delete", "/api/v1/topics/nope/subscriptions")],
)
def test_unknown_topic_is_404(api, db, method, path):
    response = getattr(api, method)(path, {"recipients": ["u1"]})

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No topic 'nope'."}
    assert not Recipient.objects.exists()


# --- Tenant-restricted keys -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("put", "/api/v1/recipients/u1", {"name": "Ada"}),
        ("get", "/api/v1/recipients/u1", None),
        ("delete", "/api/v1/recipients/u1", None),
        ("put", "/api/v1/recipients/u1/channel-data/push", {"data": {}}),
        ("put", "/api/v1/workflows/welcome", WELCOME),
        ("put", "/api/v1/topics/news", {}),
        ("get", "/api/v1/topics/news", None),
        ("post", "/api/v1/topics/news/subscriptions", {"recipients": ["u1"]}),
        ("delete", "/api/v1/topics/news/subscriptions", {"recipients": ["u1"]}),
    ],
)
def test_restricted_key_cannot_manage_global_resources(acme_api, method, path, body):
    services.recipient_upsert(external_id="u1", name="Before")
    Topic.objects.create(key="news")

    response = getattr(acme_api, method)(path, body)

    assert response.status_code == 403
    assert response.json() == GLOBAL_ONLY
    assert Recipient.objects.get().name == "Before"
    assert not Workflow.objects.exists()
    assert not Subscription.objects.exists()


def test_restricted_key_reads_workflows(api, acme_api):
    api.put("/api/v1/workflows/welcome", WELCOME)

    one = acme_api.get("/api/v1/workflows/welcome")
    many = acme_api.get("/api/v1/workflows")

    assert one.status_code == 200
    assert one.json()["key"] == "welcome"
    assert [w["key"] for w in many.json()] == ["welcome"]


def test_restricted_key_reads_and_writes_only_its_own_tenant(acme_api, acme, globex):
    own = acme_api.get("/api/v1/tenants/acme")
    other = acme_api.get("/api/v1/tenants/globex")
    missing = acme_api.get("/api/v1/tenants/nope")
    put_own = acme_api.put("/api/v1/tenants/acme", {"name": "Acme Corp"})
    put_other = acme_api.put("/api/v1/tenants/globex", {"name": "Mine now"})
    put_new = acme_api.put("/api/v1/tenants/initech", {"name": "Initech"})

    assert own.status_code == 200
    assert own.json()["name"] == "Acme"
    assert other.status_code == 404
    assert other.json() == {"error": "not_found", "detail": "No tenant 'globex'."}
    assert missing.json() == {"error": "not_found", "detail": "No tenant 'nope'."}
    assert put_own.status_code == 200
    assert put_own.json()["name"] == "Acme Corp"
    assert (put_other.status_code, put_other.json()) == (403, OTHER_TENANT)
    assert (put_new.status_code, put_new.json()) == (403, OTHER_TENANT)
    assert dict(Tenant.objects.values_list("key", "name")) == {"acme": "Acme Corp",
                                                               "globex": "Globex"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/api/v1/workflows"), ("get", "/api/v1/workflows/welcome"),
     ("put", "/api/v1/workflows/welcome"), ("get", "/api/v1/recipients/u1"),
     ("put", "/api/v1/recipients/u1"), ("delete", "/api/v1/recipients/u1"),
     ("put", "/api/v1/recipients/u1/channel-data/push"), ("get", "/api/v1/tenants/acme"),
     ("put", "/api/v1/tenants/acme"), ("get", "/api/v1/topics/news"),
     ("put", "/api/v1/topics/news"), ("post", "/api/v1/topics/news/subscriptions"),
     ("delete", "/api/v1/topics/news/subscriptions")],
)
def test_every_resource_needs_a_key(db, method, path):
    response = getattr(APIClient(), method)(path, {}, format="json")

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized",
                               "detail": "Authentication credentials were not provided."}
    assert response["WWW-Authenticate"] == "Bearer"

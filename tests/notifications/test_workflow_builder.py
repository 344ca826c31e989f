"""The workflow builder's form ↔ the API's JSON: posted fields become the `PUT workflows/{key}`
body, a saved workflow's GET body is shown as fields, errors land next to their field, and a
save through the builder is a save through the API's serializer and service."""

import json

import pytest
from django.urls import reverse

from notifications.admin.builder import convert, schema
from notifications.admin.builder.declarations import KINDS, Problems
from notifications.admin.builder.diagram import describe_conditions, flow_html
from notifications.models import Template, Workflow

from ..conftest import delay_step, email_step, in_app_step
from .workflow_builder_support import INVOICE_FORM, change_url, form_fields, steps_of

INVOICE_STEPS = [
    {"ref": "inbox", "type": "in_app"},
    {"ref": "wait", "type": "delay", "config": {"days": 1}},
    {"ref": "mail", "type": "email", "unless": {"step": "inbox", "is": "read"}},
    {"ref": "text", "type": "sms",
     "conditions": {"all": [{"path": "data.amount", "op": "gte", "value": 1000}]}},
]


def test_posted_step_fields_become_the_apis_step_json():
    steps, problems = steps_of(INVOICE_FORM)
    assert not problems
    assert steps == INVOICE_STEPS


def test_form_tree_orders_steps_by_index_not_by_posting_order():
    fields = {"steps-10-type": "sms", "steps-10-ref": "b", "steps-2-type": "sms",
              "steps-2-ref": "a"}
    steps, _ = steps_of(fields)
    assert [step["ref"] for step in steps] == ["a", "b"]


def test_throttle_send_window_and_nested_condition_groups_convert():
    steps, problems = steps_of({
        "steps-0-type": "throttle", "steps-0-ref": "limit", "steps-0-limit": "2",
        "steps-0-window_amount": "10", "steps-0-window_unit": "minutes",
        "steps-0-key": "data.order_id",
        "steps-1-type": "push", "steps-1-ref": "push", "steps-1-urgent": "on",
        "steps-1-window_days": ["mon", "fri"], "steps-1-window_start": "08:00",
        "steps-1-window_end": "17:30", "steps-1-window_timezone": "Europe/Berlin",
        "steps-1-when-mode": "any",
        "steps-1-when-items-0-path": "data.plan", "steps-1-when-items-0-op": "in",
        "steps-1-when-items-0-value": "pro, team",
        "steps-1-when-items-1-mode": "all",
        "steps-1-when-items-1-items-0-path": "recipient.email",
        "steps-1-when-items-1-items-0-op": "exists", "steps-1-when-items-1-items-0-value": "",
        "steps-1-when-items-1-items-1-path": "data.note", "steps-1-when-items-1-items-1-op": "eq",
        "steps-1-when-items-1-items-1-value": '"42"',
        "steps-1-when-items-2-path": "", "steps-1-when-items-2-op": "eq",  # an empty row
        "steps-1-when-items-2-value": "",
    })
    assert not problems
    assert steps == [
        {"ref": "limit", "type": "throttle",
         "config": {"limit": 2, "window": {"minutes": 10}, "key": "data.order_id"}},
        {"ref": "push", "type": "push", "urgent": True,
         "send_window": {"days": ["mon", "fri"], "start": "08:00", "end": "17:30",
                         "timezone": "Europe/Berlin"},
         "conditions": {"any": [
             {"path": "data.plan", "op": "in", "value": ["pro", "team"]},
             {"all": [{"path": "recipient.email", "op": "exists"},
                      {"path": "data.note", "op": "eq", "value": "42"}]}]}},
    ]


def test_text_that_is_not_a_number_is_an_error_on_its_field():
    _, problems = steps_of({"steps-0-type": "throttle", "steps-0-ref": "t",
                            "steps-0-limit": "two", "steps-0-window_amount": "1.5x",
                            "steps-0-window_unit": "hours"})
    assert problems.by_name == {"steps-0-limit": ["Enter a whole number."],
                                "steps-0-window_amount": ["Enter a number."]}


@pytest.mark.parametrize("step", [
    *INVOICE_STEPS,
    {"ref": "t", "type": "throttle", "config": {"limit": 3, "window": {"hours": 2},
                                                "key": "data.id"}},
    {"ref": "d", "type": "delay", "config": {"until": "data.due_at"}},
    {"ref": "h", "type": "webhook", "config": {"url": "https://example.com/h"},
     "conditions": {"any": [{"path": "data.n", "op": "lt", "value": 2.5},
                            {"path": "data.s", "op": "eq", "value": "true"},
                            {"path": "data.l", "op": "in", "value": ["a,b", "c"]}]}},
    {"ref": "p", "type": "push", "urgent": True, "send_window": {
        "days": ["sat", "sun"], "start": "10:00", "end": "12:00", "timezone": "recipient"}},
    {"ref": "x", "type": "email", "config": {"unknown_option": {"kept": True}}},
])
def test_a_steps_json_shown_as_fields_and_posted_back_is_the_same_json(step):
    kind = KINDS[step["type"]]
    values, extra = convert.step_values(step, kind)
    fields = {"steps-0-extra": json.dumps(extra) if extra else ""}
    for name, value in values.items():
        fields[f"steps-0-{name}"] = ("on" if value else "") if isinstance(value, bool) else value
    group = convert.condition_rows(step.get("conditions"))
    fields["steps-0-when-mode"] = group["mode"]
    for index, leaf in enumerate(group["items"]):
        fields[f"steps-0-when-items-{index}-path"] = leaf["path"]
        fields[f"steps-0-when-items-{index}-op"] = leaf["op"]
        fields[f"steps-0-when-items-{index}-value"] = convert.show_value(
            leaf.get("value", convert.EMPTY), leaf["op"])
    steps, problems = steps_of(fields)
    assert not problems
    assert steps == [step]


def test_several_units_show_as_one_amount():
    assert convert.duration_parts({"hours": 1, "minutes": 30}) == ("90", "minutes")
    assert convert.duration_parts({"days": 1, "hours": 24}) == ("2", "days")
    assert convert.duration_parts({"seconds": 0}) == ("0", "seconds")


@pytest.mark.parametrize(("typed", "op", "value"), [
    ("1000", "gte", 1000), ("2.5", "lt", 2.5), ("pro", "eq", "pro"), ('"1000"', "eq", "1000"),
    ("true", "eq", True), ("a, b ,c", "in", ["a", "b", "c"]), ("1, 2", "in", [1, 2]),
    ('["x,y"]', "in", ["x,y"]), ("NaN", "eq", "NaN"), ("", "eq", ""),
])
def test_condition_values_are_read_as_json_where_they_are_json(typed, op, value):
    assert convert.parse_value(typed, op) == value
    assert convert.parse_value(convert.show_value(value, op), op) == value


@pytest.mark.parametrize(("error_key", "field"), [
    ("conditions.all[0].op", "when-items-0-op"),
    ("conditions.any[1].all[0].value", "when-items-1-items-0-value"),
    ("conditions.all", "when-mode"),
    ("conditions", "when-mode"),
])
def test_condition_errors_map_to_their_row(error_key, field):
    assert convert.condition_field_name(error_key) == field


@pytest.mark.parametrize(("step_type", "error_key", "field"), [
    ("throttle", "config.limit", "limit"),
    ("throttle", "config.window", "window_amount"),
    ("throttle", "config", "limit"),
    ("delay", "config", "duration_amount"),
    ("email", "unless.step", "unless_step"),
    ("email", "unless", "unless_step"),
    ("email", "send_window.start", "window_start"),
    ("email", "send_window", "window_days"),
    ("webhook", "config", "url"),
    ("email", "templates", ""),
])
def test_api_errors_map_to_the_field_they_are_about(step_type, error_key, field):
    assert convert.error_field(KINDS[step_type], error_key) == field


# --- Data fields ------------------------------------------------------------------------------

def test_data_fields_make_a_json_schema_and_the_sample_data():
    rows = [
        {"index": "0", "name": "amount", "type": "number", "required": True, "example": "1250"},
        {"index": "1", "name": "invoice.id", "type": "string", "required": True,
         "example": "INV-7"},
        {"index": "2", "name": "invoice.lines", "type": "array", "required": False,
         "example": '[{"sku": "A"}]'},
        {"index": "3", "name": "paid", "type": "boolean", "required": False, "example": "no"},
    ]
    problems = Problems()
    data_schema, sample = schema.schema_from_rows(rows, problems)
    assert not problems
    assert data_schema == {"type": "object", "required": ["amount"], "properties": {
        "amount": {"type": "number", "examples": [1250]},
        "invoice": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string", "examples": ["INV-7"]},
            "lines": {"type": "array", "examples": [[{"sku": "A"}]]}}},
        "paid": {"type": "boolean", "examples": [False]}}}
    assert sample == {"amount": 1250, "invoice": {"id": "INV-7", "lines": [{"sku": "A"}]},
                      "paid": False}
    shown = schema.rows_from_schema(data_schema, sample)
    assert [(r["name"], r["type"], r["required"], r["example"]) for r in shown] == [
        ("amount", "number", True, "1250"), ("invoice.id", "string", True, "INV-7"),
        ("invoice.lines", "array", False, '[{"sku": "A"}]'), ("paid", "boolean", False, "false")]


def test_bad_data_fields_are_errors_on_their_row():
    problems = Problems()
    schema.schema_from_rows([
        {"index": "0", "name": "order id", "type": "string", "required": False, "example": ""},
        {"index": "1", "name": "n", "type": "integer", "required": False, "example": "1.5"},
        {"index": "2", "name": "n", "type": "string", "required": False, "example": ""},
    ], problems)
    assert problems.by_name == {
        "fields-0-name": ["Use letters, digits and _, with dots between the parts of a field "
                          "inside an object (order.id)."],
        "fields-1-example": ["Enter a whole number."],
        "fields-2-name": ["n is listed twice."]}


def test_fields_are_inferred_from_sample_data():
    rows = schema.infer_rows({"amount": 12.5, "count": 3, "paid": False, "tags": ["a"],
                              "order": {"id": "A-1"}, "note": None})
    assert [(r["name"], r["type"], r["example"]) for r in rows] == [
        ("amount", "number", "12.5"), ("count", "integer", "3"), ("paid", "boolean", "false"),
        ("tags", "array", '["a"]'), ("order.id", "string", "A-1"), ("note", "string", "null")]


def test_a_schema_the_rows_cannot_say_is_kept_as_it_is():
    assert schema.rows_from_schema({"type": "object", "properties": {
        "plan": {"type": "string", "enum": ["pro"]}}}, {}) is None
    assert schema.rows_from_schema({"type": "object", "additionalProperties": False}, {}) is None


def test_the_diagram_says_what_decides_each_step():
    html = flow_html(INVOICE_STEPS, start="Trigger invoice-overdue")
    for words in ("Trigger invoice-overdue", "wait 1 day", "skipped if inbox has been read",
                  "only if data.amount ≥ 1000", "End"):
        assert words in html
    assert describe_conditions({"any": [{"path": "data.a", "op": "eq", "value": 1}, {
        "all": [{"path": "data.b", "op": "exists"}, {"path": "data.c", "op": "neq",
                                                     "value": "x"}]}]}) == \
        "data.a is 1 or (data.b is set and data.c is not x)"


# --- The admin page ---------------------------------------------------------------------------

def test_building_a_workflow_through_the_form_saves_what_the_api_returns(admin_client, api):
    response = admin_client.post(reverse("admin:notifications_workflow_add"), INVOICE_FORM | {
        "check_data": "on", "fields-0-name": "amount", "fields-0-type": "number",
        "fields-0-required": "on", "fields-0-example": "1250"})
    assert response.status_code == 302, response.context["problems"]
    body = api.get("/api/v1/workflows/invoice-overdue").json()
    assert body == {
        "key": "invoice-overdue", "name": "Invoice overdue", "category": "billing",
        "critical": False, "active": True, "default_locale": "en",
        "data_schema": {"type": "object", "required": ["amount"],
                        "properties": {"amount": {"type": "number", "examples": [1250]}}},
        "steps": [{**step, "templates": {}} if step["type"] != "delay" else step
                  for step in INVOICE_STEPS]}
    assert Workflow.objects.get(key="invoice-overdue").sample_data == {"amount": 1250}


def test_the_change_page_shows_each_step_as_fields_with_its_templates(admin_client,
                                                                       make_workflow):
    workflow = make_workflow("welcome", steps=[
        in_app_step(body="Hi"), delay_step(minutes=15),
        email_step(unless={"step": "inbox", "is": "read"})])
    response = admin_client.get(change_url(workflow))
    html = response.content.decode()
    assert 'name="steps-1-duration_amount" value="15"' in html
    assert '<option value="minutes" selected>' in html
    assert 'name="steps-2-unless_step" value="inbox"' in html
    template = Template.objects.get(step__ref="mail")
    assert (f'<a href="{reverse("admin:notifications_template_change", args=[template.pk])}">'
            "en</a>: v1 published") in html
    assert "skipped if inbox has been read" in html  # the diagram


def test_saving_unchanged_keeps_the_workflow_and_its_templates_as_they_are(admin_client,
                                                                           make_workflow):
    workflow = make_workflow("welcome", steps=[
        in_app_step(body="Hi"), delay_step(minutes=15), email_step()])
    before = workflow.updated_at
    response = admin_client.get(change_url(workflow))
    fields = form_fields(response.content.decode())
    response = admin_client.post(change_url(workflow), fields)
    assert response.status_code == 302, response.context["problems"]
    workflow.refresh_from_db()
    assert workflow.updated_at == before
    assert all(t.versions.count() == 1 for t in Template.objects.all())


def test_api_errors_are_shown_next_to_their_field_and_nothing_is_saved(admin_client,
                                                                       make_workflow):
    workflow = make_workflow("welcome", steps=[in_app_step(body="Hi"), email_step()])
    response = admin_client.post(change_url(workflow), {
        "name": "Welcome", "default_locale": "en", "active": "on",
        "steps-0-type": "email", "steps-0-ref": "mail", "steps-0-unless_step": "inbox",
        "steps-0-unless_is": "read", "steps-0-original": "mail",
        "steps-1-type": "in_app", "steps-1-ref": "inbox", "steps-1-original": "inbox",
        "steps-1-when-mode": "all", "steps-1-when-items-0-path": "amount",
        "steps-1-when-items-0-op": "gte", "steps-1-when-items-0-value": "1",
        "steps-2-type": "throttle", "steps-2-ref": "limit", "steps-2-limit": "0",
        "steps-2-window_amount": "1", "steps-2-window_unit": "hours",
    })
    assert response.status_code == 200
    assert response.context["problems"] == {
        "steps-1-when-items-0-path": ["Expected a path starting with one of: data, recipient, "
                                      "tenant, actor, steps."],
        "steps-2-limit": ["Expected a whole number ≥ 1."],
    }
    html = response.content.decode()
    assert 'name="steps-2-limit" value="0" inputmode="decimal" aria-invalid="true">' in html
    assert [s.ref for s in workflow.steps.all()] == ["inbox", "mail"]

    # The order of steps is checked once each step is well formed, as the API does.
    response = admin_client.post(change_url(workflow), {
        "name": "Welcome", "default_locale": "en", "active": "on",
        "steps-0-type": "email", "steps-0-ref": "mail", "steps-0-unless_step": "inbox",
        "steps-0-unless_is": "read", "steps-0-original": "mail",
        "steps-1-type": "in_app", "steps-1-ref": "inbox", "steps-1-original": "inbox"})
    assert response.context["problems"] == {"steps-0-unless_step": [
        "No step 'inbox' before this one: \"unless\" names an earlier channel step."]}


def test_a_renamed_step_takes_its_templates_along(admin_client, make_workflow):
    workflow = make_workflow("welcome", steps=[email_step(subject="Hi")])
    response = admin_client.post(change_url(workflow), {
        "name": "Welcome", "default_locale": "en", "active": "on",
        "steps-0-type": "email", "steps-0-ref": "letter", "steps-0-original": "mail",
        "steps-1-type": "email", "steps-1-ref": "letter_copy", "steps-1-original": "mail",
    })
    assert response.status_code == 302, response.context["problems"]
    assert sorted(Template.objects.values_list("step__ref", "published_version__fields__subject")
                  ) == [("letter", "Hi"), ("letter_copy", "Hi")]


def test_infer_fills_the_data_fields_without_saving(admin_client, make_workflow):
    workflow = make_workflow("welcome", steps=[in_app_step(body="Hi")])
    response = admin_client.post(change_url(workflow), {
        "name": "Welcome", "default_locale": "en", "_infer": "1",
        "steps-0-type": "in_app", "steps-0-ref": "inbox", "steps-0-original": "inbox",
        "sample_json": '{"order": {"id": "A-1", "total": 9.5}}'})
    assert response.status_code == 200
    assert [(r["name"], r["type"]) for r in response.context["state"].rows] == [
        ("order.id", "string"), ("order.total", "number")]
    workflow.refresh_from_db()
    assert workflow.data_schema is None and workflow.sample_data == {}


def test_json_export_and_import_are_the_api_json(admin_client, make_workflow, api):
    workflow = make_workflow("welcome", steps=[in_app_step(body="Hi"), delay_step(hours=2)])
    exported = admin_client.get(reverse("admin:notifications_workflow_export",
                                        args=[workflow.pk]))
    assert exported["Content-Disposition"] == 'attachment; filename="welcome.json"'
    body = json.loads(exported.content)
    assert body == api.get("/api/v1/workflows/welcome").json()
    body |= {"key": "welcome-2", "name": "Welcome again"}
    response = admin_client.post(reverse("admin:notifications_workflow_import"),
                                 {"json": json.dumps(body)})
    assert response.status_code == 302
    assert api.get("/api/v1/workflows/welcome-2").json() == body
    bad = admin_client.post(reverse("admin:notifications_workflow_import"),
                            {"json": json.dumps(body | {"steps": [{"ref": "x",
                                                                   "type": "nope"}]})})
    assert bad.context["errors"] == ['steps[0].type: "nope" is not a valid choice.']

"""The workflow builder's form ↔ the API's JSON: posted fields become the `PUT workflows/{key}`
body, a saved workflow's GET body is shown as fields, errors land next to their field, and a
save through the builder is a save through the API's serializer and service."""

import json

import pytest
from django.http import QueryDict
from django.urls import reverse

from notifications.admin.builder import convert, schema
from notifications.admin.builder.declarations import KINDS, Problems
from notifications.admin.builder.diagram import describe_conditions, flow_html
from notifications.models import Template, Workflow

from ..conftest import delay_step, email_step, in_app_step


def posted(fields: dict) -> QueryDict:
    data = QueryDict(mutable=True)
    for name, value in fields.items():
        if isinstance(value, list):
            data.setlist(name, value)
        else:
            data[name] = value
    return data


INVOICE_FORM = {
    "key": "invoice-overdue", "name": "Invoice overdue", "category": "billing",
    "default_locale": "en", "active": "on",
    "steps-0-type": "in_app", "steps-0-ref": "inbox", "steps-0-when-mode": "",
    "steps-1-type": "delay", "steps-1-ref": "wait", "steps-1-duration_amount": "1",
    "steps-1-duration_unit": "days", "steps-1-until": "",
    "steps-2-type": "email", "steps-2-ref": "mail", "steps-2-unless_step": "inbox",
    "steps-2-unless_is": "read", "steps-2-window_start": "", "steps-2-window_end": "",
    "steps-3-type": "sms", "steps-3-ref": "text", "steps-3-when-mode": "all",
    "steps-3-when-items-0-path": "data.amount", "steps-3-when-items-0-op": "gte",
    "steps-3-when-items-0-value": "1000",
}
INVOICE_STEPS = [
    {"ref": "inbox", "type": "in_app"},
    {"ref": "wait", "type": "delay", "config": {"days": 1}},
    {"ref": "mail", "type": "email", "unless": {"step": "inbox", "is": "read"}},
    {"ref": "text", "type": "sms",
     "conditions": {"all": [{"path": "data.amount", "op": "gte", "value": 1000}]}},
]


def steps_of(fields: dict) -> tuple[list[dict], Problems]:
    problems = Problems()
    tree = convert.form_tree(posted(fields))
    steps = [convert.step_from_form(node, f"steps-{index}-", problems)
             for index, node in convert.items(tree["steps"])]
    return steps, problems


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

def change_url(workflow):
    return reverse("admin:notifications_workflow_change", args=[workflow.pk])


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


def form_fields(html: str) -> dict:
    """The named controls of the builder's form as a browser would post them."""
    import re
    from html import unescape

    start = html.index('<form method="post" id="wb-form"')
    html = html[start:html.index("</form>", start)]
    fields: dict = {}
    for tag in re.findall(r"<(?:input|select|textarea)[^>]*>", html):
        name = re.search(r' name="([^"]+)"', tag)
        if not name or name.group(1) in ("csrfmiddlewaretoken", "_infer"):
            continue
        name = name.group(1)
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                fields.setdefault(name, []).append(re.search(r'value="([^"]*)"', tag).group(1))
            continue
        if tag.startswith("<select"):
            block = html[html.index(tag):]
            block = block[:block.index("</select>")]
            chosen = re.search(r'<option value="([^"]*)" selected>', block)
            fields[name] = unescape(chosen.group(1)) if chosen else re.search(
                r'<option value="([^"]*)"', block).group(1)
            continue
        if tag.startswith("<textarea"):
            continue
        value = re.search(r'value="([^"]*)"', tag)
        fields[name] = unescape(value.group(1)) if value else ""
    return fields


# --- Digest and branch steps ------------------------------------------------------------------

BRANCH_FORM = {
    "name": "Branchy", "default_locale": "en", "active": "on",
    "steps-0-type": "digest", "steps-0-ref": "batch", "steps-0-window_amount": "",
    "steps-0-window_unit": "minutes", "steps-0-daily": "09:00", "steps-0-key": "data.thread_id",
    "steps-0-max_events": "50", "steps-0-skip_read": "on",
    "steps-1-type": "branch", "steps-1-ref": "size",
    "steps-1-branches-0-name": "big", "steps-1-branches-0-when-mode": "all",
    "steps-1-branches-0-when-items-0-path": "data.amount",
    "steps-1-branches-0-when-items-0-op": "gte", "steps-1-branches-0-when-items-0-value": "1000",
    "steps-1-branches-0-steps-0-type": "sms", "steps-1-branches-0-steps-0-ref": "text",
    "steps-1-branches-0-steps-1-type": "email", "steps-1-branches-0-steps-1-ref": "big_mail",
    "steps-1-branches-0-steps-1-unless_step": "text",
    "steps-1-branches-0-steps-1-unless_is": "delivered",
    "steps-1-default-steps-0-type": "in_app", "steps-1-default-steps-0-ref": "inbox",
}
BRANCH_STEPS = [
    {"ref": "batch", "type": "digest", "config": {
        "window": {"daily": "09:00"}, "key": "data.thread_id", "max_events": 50,
        "skip_read": True}},
    {"ref": "size", "type": "branch", "branches": [
        {"name": "big", "conditions": {"all": [{"path": "data.amount", "op": "gte",
                                                "value": 1000}]},
         "steps": [{"ref": "text", "type": "sms"},
                   {"ref": "big_mail", "type": "email",
                    "unless": {"step": "text", "is": "delivered"}}]}],
     "default": {"steps": [{"ref": "inbox", "type": "in_app"}]}},
]


def test_digest_and_branch_fields_become_the_apis_json():
    problems = Problems()
    steps = convert.strip_originals(convert.steps_from_form(
        convert.form_tree(posted(BRANCH_FORM))["steps"], "steps-", problems))
    assert not problems
    assert steps == BRANCH_STEPS


@pytest.mark.parametrize("window", [{"minutes": 5}, {"daily": "09:00"},
                                    {"weekly": {"day": "mon", "time": "09:00"}}])
def test_a_digest_window_shown_as_fields_posts_back_the_same(window):
    step = {"ref": "d", "type": "digest", "config": {"window": window, "first_at_once": True}}
    values, extra = convert.step_values(step, KINDS["digest"])
    assert extra == {}
    fields = {f"steps-0-{name}": ("on" if value else "") if isinstance(value, bool) else value
              for name, value in values.items()}
    steps, problems = steps_of(fields)
    assert not problems
    assert steps == [step]


@pytest.mark.parametrize(("path", "field"), [
    ("steps[1].branches[0].steps[1].unless.step", "steps-1-branches-0-steps-1-unless_step"),
    ("steps[1].branches[0].name", "steps-1-branches-0-name"),
    ("steps[1].branches[0].conditions.all[0].op", "steps-1-branches-0-when-items-0-op"),
    ("steps[1].default.steps[0].config", "steps-1-default-steps-0-__step"),
    ("steps[0].config.window.daily", "steps-0-daily"),
    ("steps[0].config.max_events", "steps-0-max_events"),
    ("steps[1].branches", "steps-1-__step"),
    ("name", "name"),
])
def test_nested_api_errors_map_to_their_field(path, field):
    assert convert.error_target(path, BRANCH_STEPS, "Wrong.")[0] == field


def test_a_branch_workflow_is_saved_through_the_form_as_the_api_returns_it(admin_client, api):
    response = admin_client.post(reverse("admin:notifications_workflow_add"),
                                 BRANCH_FORM | {"key": "branchy"})
    assert response.status_code == 302, response.context["problems"]
    body = api.get("/api/v1/workflows/branchy").json()
    with_templates = json.loads(json.dumps(BRANCH_STEPS))
    for branch in with_templates[1]["branches"]:
        for step in branch["steps"]:
            step["templates"] = {}
    with_templates[1]["default"]["steps"][0]["templates"] = {}
    assert body["steps"] == with_templates

    workflow = Workflow.objects.get(key="branchy")
    page = admin_client.get(change_url(workflow)).content.decode()
    assert 'name="steps-1-branches-0-steps-1-unless_step" value="text"' in page
    assert "collects events, sends daily at 09:00, one batch per data.thread_id" in page
    assert '<code>big</code> if data.amount ≥ 1000</h3>' in page  # the diagram's columns
    assert "<code>default</code> otherwise</h3>" in page

    # A nested step's error is shown on that step.
    bad = admin_client.post(change_url(workflow), BRANCH_FORM | {
        "steps-1-branches-0-steps-1-unless_step": "inbox"})
    assert bad.context["problems"] == {"steps-1-branches-0-steps-1-unless_step": [
        "No step 'inbox' before this one: \"unless\" names an earlier channel step."]}


def test_a_route_step_is_edited_with_fields_and_keeps_its_templates(admin_client, api,
                                                                    make_workflow):
    route = {"ref": "reach", "type": "route", "config": {
        "channels": ["in_app", "email", "sms"], "ttl": {"hours": 1}, "success": "read",
        "always": ["in_app"]}}
    values, extra = convert.step_values(route, KINDS["route"])
    assert extra == {} and values["channels"] == "in_app, email, sms"
    fields = {f"steps-0-{name}": value for name, value in values.items()}
    assert steps_of(fields)[0] == [route]

    templates = {"email": {"en": {"subject": "Hi", "html": "<p>Hi</p>"}},
                 "in_app": {"en": {"body": "Hi"}}, "sms": {"en": {"text": "Hi"}}}
    assert api.put("/api/v1/workflows/reach", {"name": "Reach", "steps": [
        {**route, "templates": templates}]}).status_code == 201
    workflow = Workflow.objects.get(key="reach")
    page = admin_client.get(change_url(workflow)).content.decode()
    assert "tries in_app → email → sms until one is read, within 1 hour; always in_app" in page
    assert "email en</a>: v1 published" in page
    response = admin_client.post(change_url(workflow), {
        "name": "Reach", "default_locale": "en", "active": "on", **fields,
        "steps-0-original": "reach", "steps-0-ttl_amount": "2",
        "steps-1-type": "route", "steps-1-ref": "reach_2", "steps-1-original": "reach",
        **{name.replace("steps-0-", "steps-1-"): value for name, value in fields.items()
           if name not in ("steps-0-ref", "steps-0-type")}})
    assert response.status_code == 302, response.context["problems"]
    steps = api.get("/api/v1/workflows/reach").json()["steps"]
    assert steps[0]["config"]["ttl"] == {"hours": 2}
    assert steps[0]["templates"] == steps[1]["templates"] == templates


def test_a_new_route_step_gets_its_first_templates_from_the_builder(admin_client, api):
    form = {"key": "reach", "name": "Reach", "default_locale": "fr", "active": "on",
            "steps-0-type": "route", "steps-0-ref": "reach",
            "steps-0-channels": "in_app, email", "steps-0-ttl_amount": "30",
            "steps-0-ttl_unit": "minutes", "steps-0-success": "read"}
    first = admin_client.post(reverse("admin:notifications_workflow_add"), form)
    assert first.context["problems"] == {"steps-0-__step": [
        f'templates.{channel}: Missing: a route step needs a template for each of its channels '
        f'(e.g. {{"{channel}": {{"en": {{…}}}}}}).' for channel in ("in_app", "email")]}
    html = first.content.decode()
    assert 'name="steps-0-tpl-email-subject"' in html
    assert "First templates for in_app, email" in html

    response = admin_client.post(reverse("admin:notifications_workflow_add"), form | {
        "steps-0-tpl-in_app-body": "Bonjour", "steps-0-tpl-email-subject": "Salut",
        "steps-0-tpl-email-html": "<p>Salut</p>"})
    assert response.status_code == 302, response.context["problems"]
    step = api.get("/api/v1/workflows/reach").json()["steps"][0]
    assert step["templates"] == {"in_app": {"fr": {"body": "Bonjour"}},
                                 "email": {"fr": {"subject": "Salut", "html": "<p>Salut</p>"}}}


def test_an_approval_has_one_column_per_outcome_and_leaves_empty_ones_out(admin_client, api):
    form = {"key": "deploy", "name": "Deploy", "default_locale": "en", "active": "on",
            "steps-0-type": "approval", "steps-0-ref": "ask",
            "steps-0-question": "Deploy {{ data.version }}?", "steps-0-timeout_amount": "4",
            "steps-0-timeout_unit": "hours", "steps-0-default": "rejected",
            "steps-0-branches-0-name": "approved",
            "steps-0-branches-1-name": "rejected",
            "steps-0-branches-2-name": "expired",
            "steps-0-branches-2-steps-0-type": "throttle",
            "steps-0-branches-2-steps-0-ref": "chase", "steps-0-branches-2-steps-0-limit": "0",
            "steps-0-branches-2-steps-0-window_amount": "1",
            "steps-0-branches-2-steps-0-window_unit": "hours"}
    bad = admin_client.post(reverse("admin:notifications_workflow_add"), form)
    assert bad.context["problems"] == {
        "steps-0-branches-2-steps-0-limit": ["Expected a whole number ≥ 1."]}
    html = bad.content.decode()
    form_html = html[:html.index("<div hidden>")]  # not the new steps' <template>s
    assert form_html.count("<h3>If ") == 3  # approved, rejected, expired side by side

    response = admin_client.post(reverse("admin:notifications_workflow_add"),
                                 form | {"steps-0-branches-2-steps-0-limit": "1"})
    assert response.status_code == 302, response.context["problems"]
    step = api.get("/api/v1/workflows/deploy").json()["steps"][0]
    assert step == {"ref": "ask", "type": "approval", "config": {
        "question": "Deploy {{ data.version }}?", "timeout": {"hours": 4}, "default": "rejected"},
        "branches": [{"name": "expired", "steps": [
            {"ref": "chase", "type": "throttle",
             "config": {"limit": 1, "window": {"hours": 1}}}]}]}
    page = admin_client.get(change_url(Workflow.objects.get(key="deploy"))).content.decode()
    assert 'name="steps-0-branches-2-steps-0-limit" value="1"' in page
    assert "asks “Deploy {{ data.version }}?” on in_app, email; expires after 4 hours" in page


def test_a_viewer_sees_the_builder_but_cannot_save(client, make_workflow):
    from django.contrib.auth.models import Permission, User

    workflow = make_workflow("welcome", steps=[in_app_step(body="Hi")])
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_workflow"))
    client.force_login(viewer)
    page = client.get(change_url(workflow))
    assert page.status_code == 200
    html = page.content.decode()
    assert '<fieldset class="wb-all" disabled>' in html and 'name="_continue"' not in html
    assert client.post(change_url(workflow), {"name": "Changed"}).status_code == 403
    assert client.get(reverse("admin:notifications_workflow_add")).status_code == 403
    workflow.refresh_from_db()
    assert workflow.name == "Welcome"


def test_the_diagram_is_drawn_from_the_unsaved_form(admin_client, client):
    url = reverse("admin:notifications_workflow_diagram")
    response = admin_client.post(url, INVOICE_FORM)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Trigger invoice-overdue" in html and "only if data.amount ≥ 1000" in html
    assert not Workflow.objects.exists()
    assert client.post(url, INVOICE_FORM).status_code == 302  # to the login page

"""In chromium: a product manager builds a workflow with forms only (in-app, wait a day, email
unless the in-app item was read, SMS only for data.amount ≥ 1000); the API then returns exactly
that JSON. Steps are reordered, duplicated and removed, errors appear next to their field, and
axe-core (run offline from axe-playwright-python's bundled script) finds no serious or critical
violation, also 375 px wide."""

import pytest
from django.urls import reverse

from ..browser_support import serious_violations

EXPECTED_STEPS = [
    {"ref": "inbox", "type": "in_app", "templates": {}},
    {"ref": "wait", "type": "delay", "config": {"days": 1}},
    {"ref": "mail", "type": "email", "unless": {"step": "inbox", "is": "read"}, "templates": {}},
    {"ref": "text", "type": "sms", "templates": {},
     "conditions": {"all": [{"path": "data.amount", "op": "gte", "value": 1000}]}},
]


def log_in(page, live_server) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def add_step(page, label: str, ref: str):
    """Add a step of the type labelled `label` at the end of the top-level steps; its card."""
    top = page.locator("section > .wb-steps-block")
    top.locator(":scope > .wb-add select[data-add-type]").select_option(label=label)
    top.locator(":scope > .wb-add button[data-action=add-step]").click()
    cards = top.locator(":scope > ol[data-list=steps] > li.wb-step")
    card = cards.nth(cards.count() - 1)
    card.get_by_label("Ref").first.fill(ref)
    return card


def card(page, ref: str):
    """The step card whose ref was `ref` when the page was rendered."""
    ref_input = page.locator(f'input[data-name=ref][value="{ref}"]')
    return page.locator("li.wb-step").filter(has=ref_input)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_workflow_is_built_with_forms_and_saved_as_the_apis_json(page, live_server, api,
                                                                   admin_user):
    log_in(page, live_server)
    page.goto(live_server.url + reverse("admin:notifications_workflow_add"))
    page.get_by_label("Key").fill("invoice-overdue")
    page.get_by_label("Name", exact=True).fill("Invoice overdue")

    add_step(page, "In-app", "inbox")
    delay = add_step(page, "Delay", "wait")
    delay.get_by_label("Wait (amount)").fill("1")
    delay.get_by_label("Wait (unit)").select_option("days")
    mail = add_step(page, "Email", "mail")
    mail.locator("summary", has_text="Skip if").click()
    mail.get_by_label("Earlier step").fill("inbox")
    mail.get_by_label("has been").select_option("read")
    sms = add_step(page, "SMS", "text")
    sms.locator("summary", has_text="Conditions").click()
    sms.get_by_role("button", name="Add condition").click()
    sms.get_by_label("Path").fill("data.amount")
    sms.get_by_label("Operator").select_option(label="≥")
    sms.get_by_label("Value").fill("1000")
    # The flow is redrawn from the unsaved form as it changes.
    diagram = page.locator("#wb-diagram")
    diagram.get_by_text("only if data.amount ≥ 1000").wait_for()
    diagram.get_by_text("skipped if inbox has been read").wait_for()
    diagram.get_by_text("wait 1 day").wait_for()

    assert serious_violations(page, "#content-main") == []
    page.click("input[name=_continue]")
    page.get_by_text("The workflow “invoice-overdue” was saved.").wait_for()
    body = api.get("/api/v1/workflows/invoice-overdue").json()
    assert body == {"key": "invoice-overdue", "name": "Invoice overdue", "category": "",
                    "critical": False, "active": True, "default_locale": "en",
                    "data_schema": None, "steps": EXPECTED_STEPS}

    # The saved page shows the same steps as forms, and the flow in words.
    assert page.locator("li.wb-step").count() == 4
    page.locator(".wb-diagram").get_by_text("only if data.amount ≥ 1000").wait_for()
    page.locator(".wb-diagram").get_by_text("skipped if inbox has been read").wait_for()
    assert serious_violations(page, "#content-main") == []

    # Reorder (SMS before email), duplicate the email, delete the delay.
    card(page, "text").get_by_role("button", name="Move up step").click()
    card(page, "mail").get_by_role("button", name="Duplicate step").click()
    card(page, "wait").get_by_role("button", name="Remove step").click()
    page.click("input[name=_continue]")
    page.get_by_text("The workflow “invoice-overdue” was saved.").wait_for()
    steps = api.get("/api/v1/workflows/invoice-overdue").json()["steps"]
    assert [(s["ref"], s["type"]) for s in steps] == [
        ("inbox", "in_app"), ("text", "sms"), ("mail", "email"), ("mail_2", "email")]
    assert steps[3]["unless"] == {"step": "inbox", "is": "read"}

    # Errors appear next to their field, and nothing is saved.
    throttle = add_step(page, "Throttle", "limit")
    throttle.get_by_label("At most").fill("0")
    throttle.get_by_label("per (amount)").fill("10")
    card(page, "mail").get_by_label("Earlier step").fill("nowhere")
    page.click("input[name=_continue]")
    page.get_by_text("Please correct the errors below: nothing was saved.").wait_for()
    limit_field = page.locator(".wb-field").filter(has=page.locator("input[name=steps-4-limit]"))
    assert limit_field.locator(".wb-error").inner_text() == "Expected a whole number ≥ 1."
    assert page.locator("input[name=steps-4-limit]").get_attribute("aria-invalid") == "true"
    assert serious_violations(page, "#content-main") == []
    page.locator("input[name=steps-4-limit]").fill("2")
    page.click("input[name=_continue]")
    unless_field = page.locator(".wb-field").filter(
        has=page.locator("input[name=steps-2-unless_step]"))
    unless_field.locator(".wb-error").filter(
        has_text="No step 'nowhere' before this one").wait_for()
    assert len(api.get("/api/v1/workflows/invoice-overdue").json()["steps"]) == 4

    # 375 px wide: nothing sticks out sideways, and still no violation.
    page.set_viewport_size({"width": 375, "height": 800})
    overflow = page.evaluate("document.querySelector('#content-main').scrollWidth")
    assert overflow <= 375, overflow
    assert serious_violations(page, "#content-main") == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_branch_with_its_own_steps_is_built_side_by_side(page, live_server, api, admin_user):
    log_in(page, live_server)
    page.goto(live_server.url + reverse("admin:notifications_workflow_add"))
    page.get_by_label("Key").fill("orders")
    page.get_by_label("Name", exact=True).fill("Orders")
    digest = add_step(page, "Digest", "batch")
    digest.get_by_label("Collect for (amount)").fill("5")
    branch = add_step(page, "Branch", "size")
    first = branch.locator("li.wb-branch").first
    first.get_by_label("Branch name").fill("big")
    first.get_by_label("Path").fill("data.amount")
    first.get_by_label("Operator").select_option(label="≥")
    first.get_by_label("Value").fill("1000")
    first.get_by_label("New step").select_option(label="SMS")
    first.get_by_role("button", name="Add step").click()
    first.locator("li.wb-step").get_by_label("Ref").fill("text")
    default = branch.locator(".wb-default")
    default.get_by_label("New step").select_option(label="In-app")
    default.get_by_role("button", name="Add step").click()
    branch.get_by_role("button", name="Add branch").click()
    second = branch.locator("li.wb-branch").nth(1)
    second.get_by_label("Branch name").fill("vip")
    second.get_by_label("Path").fill("recipient.data.vip")
    second.get_by_label("Operator").select_option(label="is")
    second.get_by_label("Value").fill("true")
    push = add_step(page, "Push", "buzz")
    push.get_by_label("Time to live (seconds)").fill("3600")
    push.get_by_label("Priority").select_option(label="high")
    assert serious_violations(page, "#content-main") == []

    page.click("input[name=_continue]")
    page.get_by_text("The workflow “orders” was saved.").wait_for()
    steps = api.get("/api/v1/workflows/orders").json()["steps"]
    assert steps == [
        {"ref": "batch", "type": "digest", "config": {"window": {"minutes": 5}}},
        {"ref": "size", "type": "branch", "branches": [
            {"name": "big", "conditions": {"all": [{"path": "data.amount", "op": "gte",
                                                    "value": 1000}]},
             "steps": [{"ref": "text", "type": "sms", "templates": {}}]},
            {"name": "vip", "conditions": {"all": [{"path": "recipient.data.vip", "op": "eq",
                                                    "value": True}]}, "steps": []}],
         "default": {"steps": [{"ref": "in_app", "type": "in_app", "templates": {}}]}},
        {"ref": "buzz", "type": "push", "config": {"ttl": 3600, "priority": "high"},
         "templates": {}},
    ]
    # The diagram draws the branches side by side.
    columns = page.locator(".wb-diagram .wb-branches > .wb-branch")
    assert columns.count() == 3
    boxes = [columns.nth(i).bounding_box() for i in range(3)]
    assert boxes[0]["y"] == boxes[1]["y"] and boxes[0]["x"] < boxes[1]["x"]
    assert serious_violations(page, "#content-main") == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_workflow_list_and_the_template_editor_pass_axe(page, live_server, admin_user,
                                                             make_workflow):
    from notifications.models import Template

    from ..conftest import email_step

    workflow = make_workflow("order", steps=[email_step()])  # no category: a blank filter
    make_workflow("billing", steps=[], category="billing")
    log_in(page, live_server)
    page.goto(live_server.url + reverse("admin:notifications_workflow_changelist"))
    page.get_by_role("link", name="No category").click()
    page.get_by_text("1 workflow").wait_for()
    assert serious_violations(page) == []
    page.goto(live_server.url + reverse("admin:notifications_workflow_change",
                                        args=[workflow.pk]))
    assert serious_violations(page) == []
    template = Template.objects.get(step__workflow=workflow)
    page.goto(live_server.url + reverse("admin:notifications_template_change",
                                        args=[template.pk]))
    page.locator("[data-out=subject]").filter(has_text="Hello").wait_for()
    assert serious_violations(page) == []

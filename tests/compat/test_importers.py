"""`import_from_knock` and `import_from_novu` on small exports (tests/compat/fixtures/): the
workflows and templates they create, and every step they could not map, reported."""

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from notifications.models import Workflow
from notifications.selectors import workflow_export

FIXTURES = Path(__file__).parent / "fixtures"


def run(command: str, *args) -> list[str]:
    from io import StringIO

    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue().splitlines()


def steps_by_ref(steps) -> dict:
    found = {}
    for step in steps:
        found[step["ref"]] = step
        for branch in [*step.get("branches", []), step.get("default") or {"steps": []}]:
            found.update(steps_by_ref(branch["steps"]))
    return found


@pytest.mark.django_db
def test_knock_pull_directory_becomes_workflows_and_reports_what_it_left_out():
    lines = run("import_from_knock", str(FIXTURES / "knock"))
    assert lines == [
        "new-comment: created with 6 step(s)",
        "  not mapped: fetch_1 (fetch): Knock fetch steps have no Clarion equivalent; left out",
        "  not mapped: throttle_1 (throttle): Knock throttle steps have no Clarion equivalent; "
        "left out",
        "  not mapped: email_2 (channel): the operator 'is_one_of' has no Clarion equivalent; "
        "left out",
        "  not mapped: workflow (categories): Clarion keeps one category; kept 'collaboration', "
        "not 'comments'",
        "  not mapped: email_3 (email): Clarion refused it: templates.en.subject: Liquid syntax "
        "error: expected '}}', found end of file (line 1, column 8)",
        "password-reset: created with 1 step(s)",
        "  not mapped: batch_1 (batch): the 'sliding' batch window has no Clarion equivalent; "
        "left out",
    ]
    exported = workflow_export(Workflow.objects.get(key="new-comment"))
    assert (exported["name"], exported["category"]) == ("New comment", "collaboration")
    assert exported["data_schema"]["required"] == ["comment"]
    assert [s["ref"] for s in exported["steps"]] == [
        "in_app_feed_1", "delay_1", "email_1", "branch_1", "sms_1", "push_1"]
    steps = steps_by_ref(exported["steps"])
    assert steps["in_app_feed_1"]["templates"]["en"] == {
        "body": "**{{ actor.name }}** commented: {{ data.comment }}\n",
        "action_url": "{{ data.url }}"}
    assert steps["delay_1"]["config"] == {"minutes": 15}
    assert steps["email_1"]["templates"]["en"]["subject"] == "New comment from {{ actor.name }}"
    assert "<blockquote>{{ data.comment }}</blockquote>" in steps["email_1"]["templates"]["en"][
        "html"]
    assert steps["email_1"]["conditions"] == {"all": [{"path": "recipient.email",
                                                       "op": "exists"}]}
    assert steps["sms_1"]["conditions"] == {"all": [{"path": "steps.in_app_feed_1.read",
                                                     "op": "eq", "value": False}]}
    branch = steps["branch_1"]
    assert [(b["name"], [s["ref"] for s in b["steps"]]) for b in branch["branches"]] == [
        ("Pro-plan", ["chat_1"])]
    assert branch["branches"][0]["conditions"] == {"all": [{"path": "data.plan", "op": "eq",
                                                            "value": "pro"}]}
    assert [s["ref"] for s in branch["default"]["steps"]] == ["delay_2"]
    assert steps["push_1"]["templates"]["en"] == {
        "title": "New comment", "body": "{{ data.comment | truncate: 80 }}"}
    reset = workflow_export(Workflow.objects.get(key="password-reset"))
    assert sorted(reset["steps"][0]["templates"]) == ["en", "fr"]
    assert reset["steps"][0]["templates"]["fr"]["subject"] == "Réinitialisez votre mot de passe"


@pytest.mark.django_db
def test_importing_again_updates_in_place_and_dry_run_writes_nothing():
    assert run("import_from_knock", str(FIXTURES / "knock" / "workflows" / "password-reset"),
               "--dry-run")[0] == "password-reset: checked with 1 step(s)"
    assert not Workflow.objects.exists()
    run("import_from_knock", str(FIXTURES / "knock"))
    versions = Workflow.objects.get(key="new-comment").steps.get(ref="email_1").templates.get(
    ).versions.count()
    assert run("import_from_knock", str(FIXTURES / "knock"))[0] == (
        "new-comment: updated with 6 step(s)")
    assert Workflow.objects.get(key="new-comment").steps.get(ref="email_1").templates.get(
    ).versions.count() == versions


@pytest.mark.django_db
def test_novu_workflow_json_becomes_workflows_and_reports_what_it_left_out():
    lines = run("import_from_novu", str(FIXTURES / "novu" / "workflows.json"))
    assert lines == [
        "order-shipped: created with 4 step(s)",
        "  not mapped: fancy-email (email): block-editor (Maily) emails are not imported; "
        "switch the step to the HTML editor in Novu and export again; left out",
        "  not mapped: sms (sms): its skip condition (JSON Logic) has no Clarion equivalent; "
        "left out",
        "  not mapped: call-crm (http_request): Novu http_request steps have no Clarion "
        "equivalent; left out",
        "  not mapped: workflow (tags): Clarion keeps one category; kept 'orders', not "
        "'transactional'",
        "weekly-digest: created with 2 step(s)",
    ]
    shipped = workflow_export(Workflow.objects.get(key="order-shipped"))
    steps = {s["ref"]: s for s in shipped["steps"]}
    assert list(steps) == ["in-app", "wait", "email", "push"]
    assert steps["in-app"]["templates"]["en"] == {
        "body": "Order {{data.orderId}} has shipped",
        "action_url": "https://shop.example.com/orders/{{data.orderId}}"}
    assert steps["wait"]["config"] == {"hours": 1}
    assert steps["email"]["templates"]["en"] == {
        "subject": "Hi {{recipient.name}}, your order shipped",
        "html": "<p>Order {{ data.orderId }} is on its way.</p>"}
    assert steps["push"]["templates"]["en"] == {"title": "Shipped",
                                                 "body": "Order {{data.orderId}}"}
    assert shipped["data_schema"]["properties"] == {"orderId": {"type": "string"}}
    digest = workflow_export(Workflow.objects.get(key="weekly-digest"))["steps"][0]
    assert (digest["type"], digest["config"]) == ("digest", {"window": {"days": 7},
                                                             "key": "data.projectId"})


@pytest.mark.django_db
def test_a_directory_or_file_that_is_not_an_export_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="No workflow.json under"):
        call_command("import_from_knock", str(tmp_path))
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    with pytest.raises(CommandError, match="expected a workflow object or a list of them"):
        call_command("import_from_novu", str(bad))

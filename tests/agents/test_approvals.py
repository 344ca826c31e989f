"""Approvals: an `approval` step asks in-app (Approve / Reject in the widget) and by email (signed
links); the first answer from any channel wins, later ones are told "already answered"; the run
goes on down the approved, rejected or expired branch (conditions on steps.<ref>.outcome); the
answer shows in GET /api/v1/runs/{id} and the get_approval tool."""

import re
from datetime import timedelta

import pytest
from django.test import Client

from inbox.models import InboxItem
from notifications.approval_links import approval_token
from notifications.models import Approval, Message, Run, StepLog
from notifications.services import (
    StepSpec,
    TriggerRequest,
    api_key_create,
    recipient_upsert,
    trigger_workflow,
)
from notifications.workflow_json import BranchSpec

from ..conftest import advance_at, in_app_step, timeline_events

pytestmark = pytest.mark.django_db(transaction=True)


def branch(outcome: str) -> BranchSpec:
    """The approval's branch `outcome`, with one in-app step."""
    return BranchSpec(name=outcome, steps=[in_app_step(ref=f"on-{outcome}",
                                                       body=f"Outcome: {outcome}")])


@pytest.fixture
def deploy(make_workflow):
    return make_workflow("deploy-approval", steps=[
        StepSpec(ref="ask", type="approval", config={
            "question": "Deploy {{ data.version }} to production?",
            "details": "Requested by {{ data.by }}.", "timeout": {"hours": 2}},
            branches=[branch("approved"), branch("rejected"), branch("expired")]),
        in_app_step(ref="after", body="Done either way."),
    ])


@pytest.fixture
def asked(deploy, smtp, run_tasks, settings):
    """A run waiting at its approval; the email that asked (received by a real SMTP server)."""
    settings.PUBLIC_URL = "http://clarion.test"
    recipient_upsert(external_id="ada", name="Ada", email="ada@example.com")
    _, [run] = trigger_workflow(TriggerRequest(workflow=deploy, recipients=["ada"],
                                               data={"version": "v42", "by": "the deploy bot"}))
    run_tasks()
    [mail] = smtp.wait_for(1)
    return Run.objects.get(pk=run.pk), mail


def links(mail) -> dict[str, str]:
    text = mail.get_body(("plain",)).get_content()
    return {name.lower(): path for name, path in
            re.findall(r"(Approve|Reject): http://clarion\.test(/approvals/\S+/)", text)}


def test_the_approval_step_asks_in_app_and_by_email_and_waits(asked):
    run, mail = asked
    approval = Approval.objects.get(run=run)
    assert (approval.question, approval.details, approval.status) == (
        "Deploy v42 to production?", "Requested by the deploy bot.", "pending")
    assert run.status == Run.Status.WAITING and run.wake_at == approval.expires_at
    assert mail["Subject"] == "Approval needed: Deploy v42 to production?"
    assert set(links(mail)) == {"approve", "reject"}
    item = InboxItem.objects.get(recipient=run.recipient)
    assert item.content["body"] == "Deploy v42 to production? — Requested by the deploy bot."
    assert [(a["decision"], a["label"]) for a in item.content["approval"]["actions"]] == [
        ("approved", "Approve"), ("rejected", "Reject")]
    assert sorted(Message.objects.filter(run=run).values_list("step_ref", flat=True)) == [
        "ask:email", "ask:in_app"]


def test_the_email_link_answers_once_and_the_run_goes_down_the_approved_branch(asked,
                                                                               run_tasks, api):
    run, mail = asked
    paths, browser = links(mail), Client()
    page = browser.get(paths["approve"])  # a mail scanner opening the link answers nothing
    assert page.status_code == 200 and b"Deploy v42 to production?" in page.content
    assert Approval.objects.get(run=run).status == "pending"
    answered = browser.post(paths["approve"])
    assert answered.status_code == 200 and b"Thank you: approved." in answered.content
    late = browser.post(paths["reject"])
    assert late.status_code == 409 and b"Already answered: approved." in late.content
    run_tasks()
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert run.state["steps"]["ask"]["outcome"] == "approved"
    assert timeline_events(run)[-5:] == [
        ("ask", "answered"), ("ask", "branched"), ("on-approved", "sent"), ("after", "sent"),
        ("", "completed")]
    assert run.step_logs.get(event="branched").detail == {
        "branch": "approved", "approval_id": str(Approval.objects.get(run=run).pk)}
    detail = api.get(f"/api/v1/runs/{run.pk}").json()
    [approval] = detail["approvals"]
    assert (approval["status"], approval["decision"], approval["answered_via"]) == (
        "approved", "approved", "email")


def test_the_json_endpoint_answers_once_and_refuses_bad_links(asked, run_tasks):
    run, _ = asked
    approval = Approval.objects.get(run=run)
    reject = f"/api/v1/approvals/{approval_token(approval, 'rejected')}"
    approve = f"/api/v1/approvals/{approval_token(approval, 'approved')}"
    first = Client().post(reject, {}, content_type="application/json")
    assert first.status_code == 200 and first.json()["approval"]["status"] == "rejected"
    again = Client().post(approve, {}, content_type="application/json")
    assert again.status_code == 409 and again.json()["error"] == "already_answered"
    assert again.json()["detail"] == "Already answered: rejected."
    forged = Client().post(reject[:-3] + "abc", {}, content_type="application/json")
    assert forged.json() == {"error": "invalid_link", "detail": "This link is not valid."}
    assert forged.status_code == 400
    # A link made for someone else (the signature holds, the recipient does not match).
    approval.recipient = recipient_upsert(external_id="mallory")[0]
    other = Client().post(f"/api/v1/approvals/{approval_token(approval, 'approved')}", {},
                          content_type="application/json")
    assert other.status_code == 404
    run_tasks()
    events = timeline_events(Run.objects.get(pk=run.pk))
    assert ("on-rejected", "sent") in events and ("on-approved", "sent") not in events


def test_unanswered_it_expires_with_its_default_at_the_time_limit(asked, run_tasks):
    run, mail = asked
    approval = Approval.objects.get(run=run)
    early = advance_at(run, approval.expires_at - timedelta(seconds=1))
    assert early.status == Run.Status.WAITING
    run = advance_at(run, approval.expires_at + timedelta(seconds=1))
    approval.refresh_from_db()
    assert (approval.status, approval.decision) == ("expired", "rejected")
    assert run.state["steps"]["ask"] == {
        "approval_id": str(approval.pk), "outcome": "expired", "decision": "rejected",
        "answered_via": "", "answered_at": None}
    assert timeline_events(run)[-5:] == [
        ("ask", StepLog.Event.EXPIRED), ("ask", "branched"), ("on-expired", "sent"),
        ("after", "sent"), ("", "completed")]
    late = Client().post(links(mail)["approve"])
    assert late.status_code == 409
    assert b"This approval expired; it went on as rejected." in late.content


def test_an_approval_saved_through_the_api_round_trips_its_branches(api):
    body = {"name": "Refunds", "steps": [
        {"ref": "ask", "type": "approval", "config": {"question": "Refund?"},
         "branches": [{"name": "approved", "steps": [
             {"ref": "yes", "type": "in_app", "templates": {"en": {"body": "Refunded."}}}]}]}]}
    saved = api.put("/api/v1/workflows/refunds", body)
    assert saved.status_code == 201, saved.json()
    assert saved.json()["steps"][0]["branches"] == [{"name": "approved", "steps": [
        {"ref": "yes", "type": "in_app", "templates": {"en": {"body": "Refunded."}}}]}]
    refused = api.put("/api/v1/workflows/refunds", {**body, "steps": [{
        **body["steps"][0], "branches": [{"name": "maybe", "steps": []}]}]})
    assert refused.json()["fields"] == {
        "steps[0].branches[0].name": ["Expected one of: approved, rejected, expired."]}


def test_later_steps_may_also_read_the_outcome_in_their_conditions(make_workflow, run_tasks):
    workflow = make_workflow("plain", steps=[
        StepSpec(ref="ask", type="approval", config={"question": "Ok?", "channels": ["in_app"]}),
        in_app_step(ref="yes", conditions={"path": "steps.ask.outcome", "op": "eq",
                                           "value": "approved"})])
    _, [run] = trigger_workflow(TriggerRequest(workflow=workflow, recipients=["ada"]))
    run_tasks()
    approval = Approval.objects.get(run=run)
    Client().post(f"/api/v1/approvals/{approval_token(approval, 'approved')}", {},
                  content_type="application/json")
    run_tasks()
    assert ("yes", "sent") in timeline_events(Run.objects.get(pk=run.pk))


def test_an_approval_steps_config_is_checked_naming_the_field(api):
    response = api.put("/api/v1/workflows/bad", {"name": "Bad", "steps": [
        {"ref": "ask", "type": "approval", "config": {"timeout": {"hours": 1}}}]})
    assert response.status_code == 400
    assert response.json()["fields"] == {
        "steps[0].config.question": ["An approval asks a question (text or Liquid)."]}
    response = api.put("/api/v1/workflows/bad", {"name": "Bad", "steps": [
        {"ref": "ask", "type": "approval", "config": {"question": "Ok?", "default": "maybe"}}]})
    assert response.json()["fields"] == {
        "steps[0].config.default": ['Expected "approved" or "rejected".']}


# --- over MCP ---------------------------------------------------------------------------------

def test_request_approval_and_get_approval_over_mcp(mcp_call, smtp, run_tasks, settings):
    settings.PUBLIC_URL = "http://clarion.test"
    key = api_key_create(name="agent")[0]
    recipient_upsert(external_id="ada", email="ada@example.com")
    asked = mcp_call(key, "request_approval", {
        "recipient": "ada", "question": "Refund order 1234 (€42)?", "timeout_minutes": 30})
    assert not asked.is_error, asked
    run_id = asked.result["run_id"]
    assert mcp_call(key, "get_approval", {"run_id": run_id}).result["asked"] is False
    run_tasks()
    pending = mcp_call(key, "get_approval", {"run_id": run_id}).result
    assert (pending["status"], pending["question"]) == ("pending", "Refund order 1234 (€42)?")
    [mail] = smtp.wait_for(1)
    Client().post(links(mail)["approve"])
    answered = mcp_call(key, "get_approval", {"run_id": run_id}).result
    assert (answered["status"], answered["decision"], answered["answered_via"]) == (
        "approved", "approved", "email")
    assert answered["text"].startswith("approved by ada (via email) at ")
    run_tasks()
    words = [entry["text"] for entry in mcp_call(key, "get_run", {"run_id": run_id}
                                                 ).result["timeline"]]
    assert words[-3:] == ["ask: approved (answered via email)", "ask: took the approved branch",
                          "the run completed"]
    assert words[1:4] == ["in-app (ask:in_app) sent", "email (ask:email) queued to ada@example.com",
                          words[3]]
    assert words[3].startswith("ask: approval asked (in-app and email), waiting until ")
    # Errors name the field; another tenant's key finds nothing.
    assert mcp_call(key, "request_approval", {"recipient": "ada", "question": "",
                                              "timeout_minutes": 0}).error["fields"] == {
        "timeout_minutes": ["Input should be greater than or equal to 1"]}
    assert mcp_call(key, "request_approval", {"recipient": "ada", "question": ""}
                    ).error["fields"] == {"question": ["'' should be non-empty"]}
    from notifications.models import Tenant
    acme_key = api_key_create(name="acme", tenant=Tenant.objects.create(key="acme",
                                                                        name="Acme"))[0]
    assert mcp_call(acme_key, "get_approval", {"run_id": run_id}).error == {
        "error": "not_found", "detail": f"No run {run_id!r}."}


def test_expired_over_mcp_says_what_the_run_went_on_with(mcp_call, run_tasks):
    key = api_key_create(name="agent")[0]
    run_id = mcp_call(key, "request_approval", {"recipient": "ada", "question": "Ok?",
                                                "timeout_minutes": 5,
                                                "default_decision": "approved"}
                      ).result["run_id"]
    run_tasks()
    run = Run.objects.get(pk=run_id)
    advance_at(run, run.wake_at + timedelta(seconds=1))
    answer = mcp_call(key, "get_approval", {"run_id": run_id}).result
    assert (answer["status"], answer["decision"]) == ("expired", "approved")
    assert answer["text"] == "expired without an answer; the run went on as approved"


def test_the_run_detail_and_words_show_the_approval(asked, api):
    run, _ = asked
    body = api.get(f"/api/v1/runs/{run.pk}").json()
    assert body["approvals"][0]["status"] == "pending"
    assert body["approvals"][0]["question"] == "Deploy v42 to production?"


def test_the_answer_and_the_expiry_are_outbound_events(asked, run_tasks, deploy):
    from events.models import Event
    from events.services import endpoint_put

    endpoint_put(key="agent-system", url="https://hooks.example.com/clarion",
                 events=["approval.answered", "approval.expired"], tenant=None)
    run, mail = asked
    Client().post(links(mail)["reject"])
    [answered] = Event.objects.filter(type="approval.answered")
    assert (answered.recipient, answered.data["status"], answered.data["answered_via"]) == (
        "ada", "rejected", "email")
    assert answered.data["run_id"] == str(run.pk)
    Client().post(links(mail)["approve"])  # a late answer is no event
    assert Event.objects.filter(type="approval.answered").count() == 1
    _, [other] = trigger_workflow(TriggerRequest(workflow=deploy, recipients=["ada"],
                                                 data={"version": "v43", "by": "x"}))
    run_tasks()
    other = Run.objects.get(pk=other.pk)
    advance_at(other, other.wake_at + timedelta(seconds=1))
    [expired] = Event.objects.filter(type="approval.expired")
    assert (expired.data["status"], expired.data["decision"]) == ("expired", "rejected")


def test_the_approval_page_speaks_the_approvers_language(asked):
    """A hosted page, like the preference center: in the approver's locale (French here),
    while the API's answers stay in English."""
    run, mail = asked
    run.recipient.locale = "fr-CA"
    run.recipient.save(update_fields=["locale"])
    paths, browser = links(mail), Client()
    page = browser.get(paths["approve"]).content.decode()
    assert '<html lang="fr">' in page and "<title>Approbation</title>" in page
    assert ">Approuver</button>" in page
    answered = browser.post(paths["approve"]).content.decode()
    assert "Merci : approuvée." in answered
    late = browser.post(paths["reject"])
    assert late.status_code == 409 and "Déjà répondu : approuvée." in late.content.decode()
    assert "This link is not valid." in browser.get("/approvals/forged/").content.decode()

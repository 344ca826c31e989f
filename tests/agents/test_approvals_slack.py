"""An approval asked on Slack where a Slack provider is configured: chat.postMessage carries
Approve / Reject buttons (a local server speaks Slack's Web API and takes the response_url
posts); Slack's signed interactivity request answers it, the message is replaced with the
outcome, and a later click is told "already answered"."""

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from django.test import Client

from notifications.models import Approval, ProviderConfig
from notifications.services import StepSpec, TriggerRequest, recipient_upsert, trigger_workflow

from ..notifications.providers.servers import ProviderServer, Reply

pytestmark = pytest.mark.django_db(transaction=True)
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def slack_answers(request) -> Reply:
    if request.path == "/api/chat.postMessage":
        return Reply(200, json={"ok": True, "channel": request.json()["channel"],
                                "ts": "1503435956.000247"})
    return Reply(200, body=b"ok")  # the response_url


@pytest.fixture
def slack(clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=True, SLACK_RESPONSE_HOSTS=["127.0.0.1"])
    server = ProviderServer(respond=slack_answers)
    config = ProviderConfig(key="slack-bot", channel="chat", kind="slack",
                            options={"base_url": server.url})
    config.credentials = {"bot_token": "xoxb-1-2-secret", "signing_secret": SIGNING_SECRET}
    config.save()
    yield server
    server.stop()


def interaction(server, value: str, *, user="U042", secret=SIGNING_SECRET, at=None):
    """Slack's interactivity POST for a button with `value`, signed as Slack signs it."""
    payload = {"type": "block_actions", "user": {"id": user},
               "response_url": f"{server.url}/respond",
               "actions": [{"action_id": "clarion_approve", "value": value}]}
    body = urlencode({"payload": json.dumps(payload)})
    timestamp = str(int(at if at is not None else time.time()))
    signature = "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(),
                                 hashlib.sha256).hexdigest()
    return Client().post("/webhooks/slack/slack-bot/interactions", body,
                         content_type="application/x-www-form-urlencoded",
                         HTTP_X_SLACK_REQUEST_TIMESTAMP=timestamp,
                         HTTP_X_SLACK_SIGNATURE=signature)


def test_a_slack_button_answers_and_a_later_click_is_told_already_answered(
        slack, make_workflow, run_tasks):
    recipient_upsert(external_id="ada", channel_data={"chat": {"channel": "U042"}})
    workflow = make_workflow("spend", steps=[StepSpec(
        ref="ask", type="approval", config={"question": "Spend <$300> & more?"})])
    _, [run] = trigger_workflow(TriggerRequest(workflow=workflow, recipients=["ada"]))
    run_tasks()
    [posted] = [r.json() for r in slack.requests if r.path == "/api/chat.postMessage"]
    assert posted["channel"] == "U042"
    assert posted["blocks"][0]["text"]["text"] == "*Spend &lt;$300&gt; &amp; more?*"
    approve, reject = posted["blocks"][-1]["elements"]
    assert (approve["text"]["text"], reject["text"]["text"]) == ("Approve", "Reject")

    assert interaction(slack, approve["value"]).status_code == 200
    approval = Approval.objects.get(run=run)
    assert (approval.status, approval.answered_via) == ("approved", "chat")
    replaced = [r.json() for r in slack.requests if r.path == "/respond"][-1]
    assert replaced["replace_original"] is True
    assert replaced["blocks"][-1]["elements"][0]["text"] == "Approved by <@U042>."

    assert interaction(slack, reject["value"], user="U777").status_code == 200
    told = [r.json() for r in slack.requests if r.path == "/respond"][-1]
    assert told == {"response_type": "ephemeral", "replace_original": False,
                    "text": "Already answered: approved."}
    assert Approval.objects.get(run=run).status == "approved"


def test_unsigned_stale_or_unknown_interactions_are_refused(slack, make_workflow):
    assert interaction(slack, "x", secret="not-the-secret").status_code == 401
    assert interaction(slack, "x", at=time.time() - 600).status_code == 401
    unknown = Client().post("/webhooks/slack/nope/interactions", "payload=%7B%7D",
                            content_type="application/x-www-form-urlencoded")
    assert unknown.status_code == 404
    forged = interaction(slack, "not-a-signed-answer")
    assert forged.status_code == 200
    told = [r.json() for r in slack.requests if r.path == "/respond"][-1]
    assert told["text"] == "This link is not valid."


def test_without_a_slack_provider_the_question_is_not_sent_to_chat(make_workflow, run_tasks,
                                                                   smtp):
    recipient_upsert(external_id="ada", email="ada@example.com",
                     channel_data={"chat": {"channel": "U042"}})
    workflow = make_workflow("spend", steps=[StepSpec(
        ref="ask", type="approval", config={"question": "Spend?"})])
    _, [run] = trigger_workflow(TriggerRequest(workflow=workflow, recipients=["ada"]))
    run_tasks()
    assert sorted(run.messages.values_list("channel", flat=True)) == ["email", "in_app"]

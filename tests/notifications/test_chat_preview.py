"""The template editor's chat preview: Slack Block Kit blocks and Adaptive Card elements drawn
from escaped text only, the kind detected, bad JSON shown rather than raised; and in chromium,
the preview follows the editor's typing."""

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from notifications.models import Template
from notifications.rendering import chat_preview
from notifications.services import StepSpec

SLACK = [
    {"type": "header", "text": {"type": "plain_text", "text": "Deploy finished"}},
    {"type": "section", "text": {"type": "mrkdwn",
                                 "text": "*prod* is on _v2_ <https://ci.example.com/1|build 1>"},
     "fields": [{"type": "mrkdwn", "text": "*Author*\nada"}]},
    {"type": "divider"},
    {"type": "actions", "elements": [
        {"type": "button", "style": "primary", "text": {"type": "plain_text", "text": "Open"}}]},
    {"type": "video", "title": {"type": "plain_text", "text": "x"}},
]
CARD = [
    {"type": "TextBlock", "text": "**Invoice** overdue", "size": "Large", "weight": "Bolder"},
    {"type": "FactSet", "facts": [{"title": "Amount", "value": "€1,200"}]},
    {"type": "ActionSet", "actions": [{"type": "Action.OpenUrl", "title": "Pay now",
                                       "url": "https://pay.example.com"}]},
    {"type": "Media"},
]


def test_block_kit_is_drawn_as_a_slack_message_and_unknown_blocks_are_named():
    html = chat_preview.render({"text": "fallback", "blocks": json.dumps(SLACK)})
    assert chat_preview.kind_of(SLACK) == "slack"
    assert "<div class='block header'>Deploy finished</div>" in html
    assert "<strong>prod</strong> is on <em>v2</em>" in html
    assert '<u title="https://ci.example.com/1">build 1</u>' in html
    assert "<strong>Author</strong><br>ada" in html
    assert '<span class="btn primary">Open</span>' in html
    assert "[video block]" in html
    assert "fallback" not in html  # Slack shows the blocks; text is the notification fallback


def test_adaptive_card_elements_are_drawn_as_a_teams_card():
    html = chat_preview.render({"text": "", "blocks": CARD})
    assert chat_preview.kind_of(json.dumps(CARD)) == "teams"
    assert "<div class='block large bolder'><strong>Invoice</strong> overdue</div>" in html
    assert "<td class=bolder>Amount</td><td>€1,200</td>" in html
    assert "<span class=btn>Pay now</span>" in html
    assert "[Media]" in html


def test_text_only_is_drawn_with_slack_mrkdwn():
    html = chat_preview.render({"text": "Hi *Ada*", "blocks": ""})
    assert "Hi <strong>Ada</strong>" in html
    assert chat_preview.kind_of("") == ""


@pytest.mark.parametrize("payload", [
    '<img src=x onerror=alert(1)>',
    '<https://x.example" onmouseover="alert(1)|click>',
    "*<script>alert(1)</script>*",
])
def test_nothing_in_the_blocks_becomes_markup(payload):
    for blocks in ([{"type": "section", "text": {"type": "mrkdwn", "text": payload}}],
                   [{"type": "TextBlock", "text": payload}],
                   [{"type": "header", "text": {"type": "plain_text", "text": payload}}]):
        html = chat_preview.render({"blocks": blocks})
        assert "<script" not in html and "<img" not in html
        assert 'onmouseover="' not in html and "onerror=alert" not in html.replace(
            "onerror=alert(1)&gt;", "")


@pytest.mark.parametrize("blocks", ["[1, 2", '"just a string"', "[null, 3, []]",
                                    json.dumps([{"type": "Container", "items": [{}] * 3}])])
def test_odd_or_broken_blocks_never_raise(blocks):
    html = chat_preview.render({"text": "t", "blocks": blocks})
    assert html.startswith("<style>")
    if blocks == "[1, 2":
        assert "blocks is not JSON" in html


def test_deeply_nested_containers_stop_at_a_fixed_depth():
    element = {"type": "TextBlock", "text": "deep"}
    for _ in range(50):
        element = {"type": "Container", "items": [element]}
    assert "deep" not in chat_preview.render({"blocks": [element]})


@pytest.fixture
def chat_template(make_workflow):
    workflow = make_workflow("deploys", steps=[StepSpec(
        ref="ops", type="chat", config={"channel": "#ops"},
        templates={"en": {"text": "Deploy {{ data.version }}", "blocks": ""}})],
        sample_data={"version": "v7"})
    return Template.objects.get(step__workflow=workflow)


def test_the_preview_endpoint_answers_the_chat_kind_and_picture(admin_client, chat_template):
    blocks = json.dumps([{"type": "section", "text": {"type": "mrkdwn",
                                                      "text": "Deployed *{{ data.version }}*"}}])
    response = admin_client.post(reverse("admin:notifications_template_preview"), {
        "step": chat_template.step_id, "locale": "en", "text": "Deploy", "blocks": blocks})
    body = response.json()
    assert response.status_code == 200 and body["errors"] == []
    assert body["chat"]["kind"] == "slack"
    assert "Deployed <strong>v7</strong>" in body["chat"]["html"]


@pytest.mark.browser
def test_the_editor_draws_blocks_as_the_author_types(page, live_server, chat_template):
    User.objects.create_user("ed", "ed@example.com", "s3cret-pass", is_staff=True) \
        .user_permissions.add(*Permission.objects.filter(codename__in=[
            "view_template", "change_template", "add_template", "view_templateversion"]))
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "ed")
    page.fill("input[name=password]", "s3cret-pass")
    page.click("input[type=submit]")
    page.goto(live_server.url + reverse("admin:notifications_template_change",
                                        args=[chat_template.pk]))
    frame = page.frame_locator("#clarion-chat-frame")
    frame.get_by_text("Deploy v7").wait_for()
    page.fill("textarea[name=blocks]", json.dumps(CARD[:2]))
    page.locator("#clarion-chat-kind").filter(has_text="Adaptive Card").wait_for()
    frame.locator("td", has_text="€1,200").wait_for()
    page.fill("textarea[name=blocks]", json.dumps(SLACK[:1]))
    page.locator("#clarion-chat-kind").filter(has_text="Block Kit").wait_for()
    frame.get_by_text("Deploy finished").wait_for()

"""Provider channel steps in workflows: their config is checked when the workflow is saved, and
a run without an address writes an undeliverable message with the reason."""

import pytest

from notifications.models import Message

from ...conftest import invalid


def workflow(step: dict) -> dict:
    return {"name": "W", "steps": [step]}


@pytest.mark.parametrize("step, fields", [
    ({"ref": "hook", "type": "webhook", "templates": {"en": {"body": "{}"}}},
     {"steps[0].config": ['A webhook step needs {"url": "https://…"}.']}),
    ({"ref": "hook", "type": "webhook", "config": {"url": "ftp://x"},
      "templates": {"en": {"body": "{}"}}},
     {"steps[0].config": ['A webhook step needs {"url": "https://…"}.']}),
    ({"ref": "ops", "type": "chat", "config": {"channel": 5},
      "templates": {"en": {"text": "x"}}},
     {"steps[0].config": ['"channel" must be a string, e.g. "C024BE91L" or "#ops".']}),
    ({"ref": "text", "type": "sms", "templates": {"en": {"body": "x"}}},
     {"steps[0].templates.en.body": ["Unknown field; sms templates have: text."]}),
])
def test_bad_channel_step_config_is_refused_with_the_field(api, step, fields):
    response = api.put("/api/v1/workflows/w", workflow(step))
    assert response.status_code == 400
    assert response.json() == invalid(fields)


def test_channel_steps_are_accepted(api):
    steps = [
        {"ref": "text", "type": "sms", "templates": {"en": {"text": "Code {{ data.code }}"}}},
        {"ref": "ops", "type": "chat", "config": {"channel": "#ops"},
         "templates": {"en": {"text": "x"}}},
        {"ref": "hook", "type": "webhook", "config": {"url": "https://example.com/h"},
         "templates": {"en": {"body": "{}"}}},
    ]
    response = api.put("/api/v1/workflows/w", {"name": "W", "steps": steps})
    assert response.status_code in (200, 201), response.json()


def test_push_without_device_tokens_is_undeliverable(queue_message):
    message = queue_message("push", {"title": "Hi"}, recipient={"id": "u1"})
    assert message.status == Message.Status.UNDELIVERABLE
    assert message.error == "The recipient has no push channel data (device tokens)."


@pytest.mark.parametrize("blocks, message", [
    ('[{"type": "section" "text": "x"}]',
     "Not valid JSON: Expecting ',' delimiter (line 1 column 21, Liquid set aside)."),
    ('{"type": "section", "text": "{{ data.x }}"}',
     "Expected a JSON array (Slack blocks, Adaptive Card body elements, Discord embeds…), "
     "not dict."),
])
def test_chat_blocks_that_are_not_a_json_array_are_refused_naming_the_field(api, blocks,
                                                                            message):
    step = {"ref": "ops", "type": "chat", "templates": {"en": {"text": "x", "blocks": blocks}}}
    response = api.put("/api/v1/workflows/w", workflow(step))
    assert response.status_code == 400
    assert response.json() == invalid({"steps[0].templates.en.blocks": [message]})


def test_chat_blocks_with_liquid_values_loops_and_numbers_are_accepted(api):
    blocks = ('[{% for item in data.items %}{"type": "section", "text": {"type": "mrkdwn", '
              '"text": "*{{ item.name }}*"}, "n": {{ item.count }}}{% unless forloop.last %},'
              '{% endunless %}{% endfor %}]')
    step = {"ref": "ops", "type": "chat", "templates": {"en": {"text": "x", "blocks": blocks}}}
    response = api.put("/api/v1/workflows/w", workflow(step))
    assert response.status_code in (200, 201), response.json()

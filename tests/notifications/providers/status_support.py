"""A sent message to report on, for the delivery-status tests."""

import pytest
from django.utils import timezone

from notifications.models import Message, Recipient, Run, Trigger


@pytest.fixture
def sent_message(make_workflow):
    """sent_message(provider, provider_message_id, channel="email") -> a Message in `sent`."""
    workflow = make_workflow("status-tests")
    recipient = Recipient.objects.create(external_id="ada", email="ada@example.test",
                                         phone="+15550001111")
    trigger = Trigger.objects.create(workflow=workflow)
    run = Run.objects.create(trigger=trigger, workflow=workflow, recipient=recipient)

    def make(provider: str, provider_message_id: str, channel: str = "email") -> Message:
        return Message.objects.create(
            run=run, step_ref=f"{channel}-{provider_message_id}"[:64], recipient=recipient,
            workflow=workflow, channel=channel, status=Message.Status.SENT,
            to=recipient.email if channel == "email" else recipient.phone, provider=provider,
            provider_message_id=provider_message_id, sent_at=timezone.now())

    return make

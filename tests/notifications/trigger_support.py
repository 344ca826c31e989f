"""What the trigger API's tests share (test_api_trigger.py, test_api_trigger_idempotency.py,
test_api_runs.py): the endpoint, the rows a trigger writes, and the workflow they trigger."""

from notifications.models import ChannelData, IdempotencyRecord, Recipient, Run, Trigger

from ..conftest import email_step, in_app_step

TRIGGER = "/api/v1/workflows/welcome/trigger"


def row_counts() -> dict:
    return {
        "triggers": Trigger.objects.count(),
        "runs": Run.objects.count(),
        "recipients": Recipient.objects.count(),
        "channel_data": ChannelData.objects.count(),
        "idempotency": IdempotencyRecord.objects.count(),
    }



def welcome_workflow(make_workflow):
    """`welcome`: in-app, then email (the `welcome` fixture of these tests)."""
    return make_workflow("welcome", steps=[in_app_step(), email_step()])

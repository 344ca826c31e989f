"""The demo page of the embedded mode: `/demo/inbox/` shows the demo recipient's inbox widget and
a button that triggers the `welcome` workflow for it."""

from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from clarion.content_policy import demo_page as demo_page_policy
from notifications.models import Recipient, Tenant, Workflow
from notifications.services import TriggerRequest, trigger_workflow

from .auth import inbox_token_create

DEMO_RECIPIENT = "demo-user"
DEMO_WORKFLOW = "welcome"
DEMO_TENANT = "acme"


def _demo() -> tuple[Recipient, Workflow]:
    """The seeded demo recipient and workflow; 404 where the demo is off or was never seeded."""
    recipient = Recipient.objects.filter(external_id=DEMO_RECIPIENT).first()
    workflow = Workflow.objects.filter(key=DEMO_WORKFLOW, active=True).first()
    if not settings.INBOX_DEMO_PAGE or recipient is None or workflow is None:
        raise Http404("The inbox demo is not available here.")
    return recipient, workflow


@demo_page_policy
def demo_page(request):
    recipient, _ = _demo()
    token, expires_at = inbox_token_create(recipient=recipient)
    return render(request, "inbox/demo.html", {"recipient": recipient, "token": token,
                                               "expires_at": expires_at})


@require_POST
def demo_trigger(request):
    recipient, workflow = _demo()
    _, runs = trigger_workflow(TriggerRequest(
        workflow=workflow, recipients=[recipient.external_id],
        tenant=Tenant.objects.filter(key=DEMO_TENANT).first(),
        # Absolute (the email of this workflow links to it too), at the address the page has.
        data={"start_url": request.build_absolute_uri("/demo/inbox/#welcome-tour")},
    ))
    return JsonResponse({"runs": [str(run.id) for run in runs]}, status=202)

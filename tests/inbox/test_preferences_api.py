"""The recipient side of preferences: `GET/PATCH /api/v1/inbox/preferences` (Knock's
PreferenceSet) and `GET /api/v1/inbox/preferences/center` (what the widget's panel shows), with
the inbox's credentials, and the engine honouring what a recipient changed there."""

import pytest
from rest_framework.test import APIClient

from notifications.models import Message, Run, StepLog
from notifications.services import TriggerRequest, trigger_workflow
from preferences.models import Category, PreferenceSet, WorkflowDefault
from preferences.services import preference_set_update

from ..conftest import email_step, in_app_step, invalid
from .conftest import recipient_client

URL = "/api/v1/inbox/preferences"
CENTER = "/api/v1/inbox/preferences/center"
EMPTY = {"tenant": None, "channel_types": {}, "categories": {}, "workflows": {},
         "quiet_hours": None}
KNOCK = {
    "channel_types": {"email": False},
    "categories": {"marketing": False, "account": {"channel_types": {"sms": False}}},
    "workflows": {"welcome": {"channel_types": {"email": False}}},
}


@pytest.fixture
def catalogue(make_workflow):
    Category.objects.create(key="marketing", name="News and offers",
                            description="Our newsletter and promotions.")
    return {
        "newsletter": make_workflow("newsletter", name="Newsletter", category="marketing",
                                    steps=[email_step(), in_app_step()]),
        "comments": make_workflow("comments", name="Comments", steps=[in_app_step()]),
        "reset": make_workflow("reset", name="Password reset", critical=True,
                               steps=[email_step()]),
    }


def row(recipient, tenant=None) -> PreferenceSet:
    return PreferenceSet.objects.get(recipient=recipient, tenant=tenant)


# --- authentication ----------------------------------------------------------------------------

@pytest.mark.parametrize("method,url", [("get", URL), ("patch", URL), ("get", CENTER)])
def test_preferences_need_recipient_credentials(ada, method, url):
    response = getattr(APIClient(), method)(url, {}, format="json")
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized",
                               "detail": "Authentication credentials were not provided."}
    assert not PreferenceSet.objects.exists()


def test_a_server_api_key_is_not_a_recipient_credential(api, ada):
    response = api.get(URL)
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid or expired inbox token."


@pytest.mark.parametrize("via", ["token", "hmac"])
def test_the_recipient_patches_their_own_set_and_gets_knocks_shape(ada, bob, via):
    client = recipient_client(ada, via=via)
    assert client.get(URL).json() == EMPTY

    response = client.patch(URL, KNOCK)

    assert response.status_code == 200, response.json()
    assert response.json() == {**EMPTY, **KNOCK}
    assert client.get(URL).json() == {**EMPTY, **KNOCK}
    assert row(ada).categories == KNOCK["categories"]
    assert not PreferenceSet.objects.filter(recipient=bob).exists()


def test_a_wrong_hmac_is_refused(ada):
    client = APIClient()
    client.credentials(HTTP_X_CLARION_RECIPIENT="ada", HTTP_X_CLARION_HMAC="0" * 64)
    response = client.patch(URL, {"channel_types": {"email": False}}, format="json")
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized",
                               "detail": "Invalid recipient HMAC."}
    assert not PreferenceSet.objects.exists()


def test_a_widget_on_another_origin_may_patch(ada):
    response = APIClient().options(URL, HTTP_ORIGIN="https://app.example.com",
                                   HTTP_ACCESS_CONTROL_REQUEST_METHOD="PATCH",
                                   HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, "
                                                                      "content-type")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "PATCH" in response["Access-Control-Allow-Methods"]
    assert "content-type" in response["Access-Control-Allow-Headers"]


# --- PATCH merges; PUT is not offered --------------------------------------------------------

def test_patch_merges_one_toggle_into_the_set(ada):
    preference_set_update(recipient=ada, data=KNOCK, merge=True)
    client = recipient_client(ada)

    response = client.patch(URL, {"categories": {"account": {"channel_types": {"email": False}}}})

    assert response.status_code == 200
    assert response.json()["categories"] == {
        "marketing": False, "account": {"channel_types": {"sms": False, "email": False}}}
    assert response.json()["channel_types"] == {"email": False}
    assert response.json()["workflows"] == KNOCK["workflows"]


def test_put_is_not_offered_to_recipients(ada):
    preference_set_update(recipient=ada, data=KNOCK, merge=True)

    response = recipient_client(ada).put(URL, {"channel_types": {}})

    assert response.status_code == 405
    assert response.json() == {"error": "method_not_allowed",
                               "detail": 'Method "PUT" not allowed.'}
    assert "PUT" not in response["Allow"]
    assert row(ada).channel_types == {"email": False}


@pytest.mark.parametrize("body,fields", [
    ({"channel_types": {"fax": False}},
     {"channel_types.fax": ["Unknown channel; expected one of email, sms, push, chat, "
                            "whatsapp, in_app, webhook."]}),
    ({"categories": {"marketing": {"channel_types": {"email": "no"}}}},
     {"categories.marketing.channel_types.email": ["Expected true or false."]}),
    ({"workflows": {"bad key!": False}}, {"workflows.bad key!": ["Not a valid workflow key."]}),
    ({"channels": {}}, {"channels": ["Unknown field; expected one of: channel_types, categories, "
                                     "workflows, quiet_hours."]}),
])
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(ada, body, fields):
    preference_set_update(recipient=ada, data=KNOCK, merge=True)

    response = recipient_client(ada).patch(URL, body)

    assert response.status_code == 400
    assert response.json() == invalid(fields)
    assert row(ada).channel_types == {"email": False}


# --- tenants ----------------------------------------------------------------------------------

def test_a_tenant_token_reads_and_writes_only_its_tenants_set(ada, acme, globex):
    client = recipient_client(ada, acme)

    response = client.patch(URL, {"channel_types": {"sms": False}})

    assert response.status_code == 200
    assert response.json()["tenant"] == "acme"
    assert row(ada, acme).channel_types == {"sms": False}
    assert not PreferenceSet.objects.filter(recipient=ada, tenant__isnull=True).exists()

    for method in ("get", "patch"):
        refused = getattr(client, method)(f"{URL}?tenant=globex", {"channel_types": {}})
        assert refused.status_code == 403
        assert refused.json() == {"error": "forbidden",
                                  "detail": "This inbox token is restricted to another tenant."}
    assert client.get(f"{CENTER}?tenant=globex").status_code == 403
    assert not PreferenceSet.objects.filter(tenant=globex).exists()
    # A body naming another tenant is refused too, not written elsewhere.
    other = client.patch(URL, {"tenant": "globex", "channel_types": {"email": False}})
    assert other.status_code == 400
    assert list(other.json()["fields"]) == ["tenant"]


def test_a_tenant_hmac_acts_on_the_persons_set_for_that_tenant(ada, acme):
    client = recipient_client(ada, acme, via="hmac")

    response = client.patch(URL, {"categories": {"marketing": False}})

    assert response.status_code == 200
    assert response.json()["tenant"] == "acme"
    assert row(ada, acme).categories == {"marketing": False}
    assert recipient_client(ada, via="hmac").get(URL).json() == EMPTY  # their own set
    assert client.get(f"{URL}?tenant=acme").json()["tenant"] == "acme"
    unknown = client.get(f"{URL}?tenant=nope")
    assert unknown.status_code == 400
    assert unknown.json() == invalid({"tenant": ["Unknown tenant 'nope'."]})


def test_a_global_secret_hmac_cannot_choose_a_tenants_set(ada, acme):
    """The global secret opens only what belongs to no tenant: the person's own set."""
    response = recipient_client(ada, via="hmac").patch(f"{URL}?tenant=acme",
                                                       {"categories": {"marketing": False}})
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert not PreferenceSet.objects.filter(tenant=acme).exists()


# --- the center -----------------------------------------------------------------------------------

def toggles(channels) -> dict[str, bool]:
    return {c["channel"]: c["on"] for c in channels}


def test_the_center_lists_what_applies_with_names_and_effective_values(ada, catalogue):
    preference_set_update(recipient=ada, merge=True,
                          data={"workflows": {"newsletter": {"channel_types": {"email": False}}}})

    response = recipient_client(ada).get(CENTER)

    assert response.status_code == 200
    assert response.json() == {
        "tenant": None,
        "channels": [{"channel": "email", "name": "Email", "on": True},
                     {"channel": "in_app", "name": "In-app", "on": True}],
        "sections": [
            {"category": {"key": "marketing", "name": "News and offers",
                          "description": "Our newsletter and promotions.",
                          "channels": [{"channel": "email", "name": "Email", "on": True},
                                       {"channel": "in_app", "name": "In-app", "on": True}]},
             "workflows": [{"key": "newsletter", "name": "Newsletter",
                            "channels": [{"channel": "email", "name": "Email", "on": False},
                                         {"channel": "in_app", "name": "In-app", "on": True}]}]},
            {"category": None,
             "workflows": [{"key": "comments", "name": "Comments",
                            "channels": [{"channel": "in_app", "name": "In-app",
                                          "on": True}]}]},
        ],
    }  # the critical password reset is not listed


def test_the_center_shows_a_tenant_default_and_a_workflow_default_as_they_apply(ada, acme,
                                                                                catalogue):
    preference_set_update(recipient=None, tenant=acme, merge=True,
                          data={"categories": {"marketing": {"channel_types": {"email": False}}}})
    WorkflowDefault.objects.create(workflow=catalogue["comments"], channel_types={"in_app": False})

    center = recipient_client(ada, acme).get(CENTER).json()

    assert center["tenant"] == "acme"
    marketing, other = center["sections"]
    assert toggles(marketing["category"]["channels"]) == {"email": False, "in_app": True}
    assert toggles(marketing["workflows"][0]["channels"]) == {"email": False, "in_app": True}
    assert toggles(other["workflows"][0]["channels"]) == {"in_app": False}
    # Without the tenant, acme's default does not apply; the workflow default still does.
    own = recipient_client(ada).get(CENTER).json()
    assert toggles(own["sections"][0]["workflows"][0]["channels"])["email"] is True
    assert toggles(own["sections"][1]["workflows"][0]["channels"]) == {"in_app": False}

    # The person switches the comments back on: their choice beats the workflow default.
    recipient_client(ada, acme).patch(
        URL, {"workflows": {"comments": {"channel_types": {"in_app": True}}}})
    center = recipient_client(ada, acme).get(CENTER).json()
    assert toggles(center["sections"][1]["workflows"][0]["channels"]) == {"in_app": True}


def test_the_center_is_read_only(ada, catalogue):
    response = recipient_client(ada).patch(CENTER, {"channel_types": {"email": False}})
    assert response.status_code == 405
    assert not PreferenceSet.objects.exists()


# --- the engine honours it ----------------------------------------------------------------------

def test_a_category_email_opt_out_made_in_the_inbox_suppresses_the_next_email(
        ada, catalogue, run_tasks, django_capture_on_commit_callbacks, locmem):
    ada.email = "ada@example.com"
    ada.save(update_fields=["email"])
    response = recipient_client(ada).patch(
        URL, {"categories": {"marketing": {"channel_types": {"email": False}}}})
    assert response.status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        _, runs = trigger_workflow(TriggerRequest(workflow=catalogue["newsletter"],
                                                  recipients=["ada"], data={"body": "news"}))
    run_tasks()

    run = Run.objects.get(pk=runs[0].pk)
    assert run.status == Run.Status.COMPLETED
    opted_out = StepLog.objects.get(run=run, step_ref="mail")
    assert opted_out.event == "opted_out"
    assert opted_out.detail["rule"] == "recipient:categories.marketing.channel_types.email"
    assert Message.objects.get(run=run, channel="email").status == Message.Status.SUPPRESSED
    assert Message.objects.get(run=run, channel="in_app").status != Message.Status.SUPPRESSED
    assert locmem.outbox == []

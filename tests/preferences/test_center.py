"""The hosted preference center: a server-rendered form, signed links, translated, branded."""

import re

import pytest
from django.test import Client

from notifications.models import Recipient, Tenant
from notifications.services import StepSpec, recipient_upsert
from preferences.models import Category, PreferenceSet, WorkflowDefault
from preferences.selectors import allowed
from preferences.services import preference_set_update
from preferences.tokens import center_token, preferences_url
from preferences.views import language_for

from ..conftest import email_step, in_app_step


@pytest.fixture
def ada(db):
    return recipient_upsert(external_id="u1", name="Ada", email="ada@example.com",
                            timezone="Europe/Paris")[0]


@pytest.fixture
def catalogue(make_workflow):
    Category.objects.create(key="marketing", name="News and offers",
                            description="Our newsletter and promotions.")
    reset_mail = StepSpec(ref="mail", type="email", templates={"en": {"subject": "s", "text": "t"}})
    return {
        "newsletter": make_workflow("newsletter", name="Newsletter", category="marketing",
                                    steps=[email_step(), in_app_step()]),
        "offers": make_workflow("offers", name="Offers", category="marketing",
                                steps=[email_step()]),
        "comments": make_workflow("comments", name="Comments", steps=[in_app_step()]),
        "reset": make_workflow("reset", name="Password reset", critical=True,
                               category="account", steps=[reset_mail]),
        "delay-only": make_workflow("delay-only", steps=[]),
    }


def url_for(recipient: Recipient, tenant: Tenant | None = None) -> str:
    return f"/p/{center_token(recipient_id=recipient.pk, tenant_id=tenant.pk if tenant else None)}/"


def boxes(html: str) -> dict[str, bool]:
    """Every checkbox on the page: name → checked."""
    return {m.group(1): "checked" in m.group(0)
            for m in re.finditer(r'<input type="checkbox" name="([^"]+)"[^>]*>', html)}


def test_the_page_lists_categories_and_workflows_with_a_toggle_per_channel(ada, catalogue):
    response = Client().get(url_for(ada))
    assert response.status_code == 200
    html = response.content.decode()
    assert boxes(html) == {
        "channel:email": True, "channel:in_app": True,
        "category:marketing:email": True, "category:marketing:in_app": True,
        "workflow:newsletter:email": True, "workflow:newsletter:in_app": True,
        "workflow:offers:email": True,
        "workflow:comments:in_app": True,
    }
    assert "News and offers" in html and "Our newsletter and promotions." in html
    assert "Password reset" not in html  # critical: nobody may opt out
    assert 'aria-label="Newsletter: Email"' in html
    assert '<label for="quiet_start">' in html


def test_toggles_show_what_applies_now_including_defaults(ada, catalogue, acme):
    WorkflowDefault.objects.create(workflow=catalogue["offers"], channel_types={"email": False})
    preference_set_update(recipient=None, tenant=acme, merge=True,
                          data={"workflows": {"comments": False}})
    assert boxes(Client().get(url_for(ada)).content.decode())["workflow:offers:email"] is False
    page = boxes(Client().get(url_for(ada, acme)).content.decode())
    assert page["workflow:comments:in_app"] is False  # the tenant's default for this person


def test_saving_writes_only_what_changed_and_the_category_switch_governs_its_workflows(
        ada, catalogue):
    client = Client()
    url = url_for(ada)
    page = boxes(client.get(url).content.decode())
    form = {name: "on" for name, checked in page.items() if checked}
    del form["category:marketing:email"]
    form.update(quiet_start="", quiet_end="")
    response = client.post(url, form)
    assert response.status_code == 303
    assert response["Location"] == f"{url}?saved=1"
    row = PreferenceSet.objects.get(recipient=ada, tenant=None)
    assert (row.channel_types, row.categories, row.workflows, row.quiet_hours) == (
        {}, {"marketing": {"channel_types": {"email": False}}}, {}, None)
    after = client.get(response["Location"]).content.decode()
    assert "Your preferences were saved." in after
    assert boxes(after)["workflow:newsletter:email"] is False
    assert allowed(ada, catalogue["offers"], "email").rule == \
        "recipient:categories.marketing.channel_types.email"


def test_quiet_hours_are_saved_and_shown_in_the_persons_time_zone(ada, catalogue):
    client = Client()
    url = url_for(ada)
    form = {name: "on" for name, on in boxes(client.get(url).content.decode()).items() if on}
    client.post(url, {**form, "quiet_start": "22:00", "quiet_end": "07:30"})
    assert PreferenceSet.objects.get().quiet_hours == {"start": "22:00", "end": "07:30"}
    html = client.get(url).content.decode()
    assert 'value="22:00"' in html and 'value="07:30"' in html and "Europe/Paris" in html
    response = client.post(url, {**form, "quiet_start": "22:00", "quiet_end": ""})
    assert response.status_code == 400
    assert "Quiet hours need a start and an end time" in response.content.decode()
    client.post(url, {**form, "quiet_start": "", "quiet_end": ""})
    assert PreferenceSet.objects.get().quiet_hours is False  # none, even over a tenant default


def test_a_link_for_a_tenant_writes_the_persons_set_for_that_tenant_and_is_branded(
        ada, catalogue, acme):
    acme.logo_url = "https://acme.example/logo.png"
    acme.primary_color = "#ff6600"
    acme.save()
    client = Client()
    url = url_for(ada, acme)
    html = client.get(url).content.decode()
    assert "--brand: #ff6600;" in html
    assert '<img src="https://acme.example/logo.png" alt="Acme">' in html
    form = {name: "on" for name, on in boxes(html).items() if on and name != "channel:email"}
    client.post(url, form)
    assert PreferenceSet.objects.get().tenant == acme
    assert allowed(ada, catalogue["newsletter"], "email", acme).allowed is False
    assert allowed(ada, catalogue["newsletter"], "email").allowed is True


def test_a_tenant_colour_that_is_not_a_colour_is_not_written_into_the_page(ada, catalogue,
                                                                           acme):
    acme.primary_color = "red}</style><script>x()"
    acme.save()
    html = Client().get(url_for(ada, acme)).content.decode()
    assert "<script>" not in html
    assert "--brand: #1f4fd1;" in html


@pytest.mark.parametrize(("locale", "language", "heading"), [
    ("fr-CA", "fr", "Préférences de notification"),
    ("de", "de", "Benachrichtigungseinstellungen"),
    ("pt-BR", "en", "Notification preferences"),
    ("", "en", "Notification preferences"),
])
def test_the_page_speaks_the_recipients_language(ada, catalogue, locale, language, heading):
    Recipient.objects.filter(pk=ada.pk).update(locale=locale)
    html = Client().get(url_for(ada)).content.decode()
    assert f'<html lang="{language}">' in html
    assert f"<h1>{heading}</h1>" in html
    assert language_for(locale) == language


def test_forged_or_stale_links_are_404(ada, catalogue, acme):
    assert Client().get(url_for(ada)[:-3] + "xx/").status_code == 404
    url = url_for(ada, acme)
    acme.delete()
    assert Client().get(url).status_code == 404
    url = url_for(ada)
    ada.delete()
    assert Client().get(url).status_code == 404


def test_links_are_absolute_on_the_public_url(settings, ada):
    settings.PUBLIC_URL = "https://notify.example.com"
    assert preferences_url(recipient_id=ada.pk, tenant_id=None).startswith(
        "https://notify.example.com/p/")


def test_tokens_may_be_given_a_lifetime(clarion_settings, ada, catalogue):
    clarion_settings(PREFERENCES_TOKEN_MAX_AGE=-1)
    assert Client().get(url_for(ada)).status_code == 404

"""A route step's templates in the admin: one per channel, listed on the step's page, added
with `?channel=`, edited and previewed with that channel's fields."""

import pytest
from django.urls import reverse

from notifications.models import Step, Template

from .test_engine_route import route_step

ADD = reverse("admin:notifications_template_add")
PREVIEW = reverse("admin:notifications_template_preview")


@pytest.fixture
def route(make_workflow):
    workflow = make_workflow("mention", steps=[route_step(["in_app", "email"])],
                             sample_data={"document": "Q3"})
    return workflow.steps.get(ref="route")


def test_the_step_page_lists_a_routes_templates_per_channel_with_add_links(admin_client, route):
    html = admin_client.get(reverse("admin:notifications_step_change",
                                    args=[route.pk])).content.decode()
    email = reverse("admin:notifications_template_change",
                    args=[route.templates.get(channel="email").pk])
    assert (f'<div>email: <a href="{email}">en</a> '
            f'(<a href="{ADD}?step={route.pk}&amp;channel=email">add</a>)</div>') in html


def test_adding_a_route_template_for_a_channel_and_locale(admin_client, route):
    page = admin_client.get(f"{ADD}?step={route.pk}&channel=email")
    assert list(page.context["adminform"].form.fields) == ["step", "locale", "subject", "html",
                                                           "text"]
    assert "Route: Email fields" in page.content.decode()
    response = admin_client.post(f"{ADD}?step={route.pk}&channel=email", {
        "step": route.pk, "locale": "fr", "subject": "Mention",
        "html": "<p>{{ data.document }}</p>", "text": ""})
    assert response.status_code == 302
    template = Template.objects.get(step=route, channel="email", locale="fr")
    assert template.published_version.fields == {"subject": "Mention",
                                                 "html": "<p>{{ data.document }}</p>"}


def test_a_route_template_without_a_channel_is_refused_naming_the_choices(admin_client, route):
    page = admin_client.get(f"{ADD}?step={route.pk}")
    assert (f'<a href="{ADD}?step={route.pk}&amp;channel=in_app">in_app</a>'
            in page.content.decode())
    response = admin_client.post(f"{ADD}?step={route.pk}", {"step": route.pk, "locale": "fr"})
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "Choose which of the route's channels this template is for: in_app, email."]
    # A channel the route does not have is no choice either.
    response = admin_client.post(f"{ADD}?step={route.pk}&channel=sms",
                                 {"step": route.pk, "locale": "fr", "text": "Hi"})
    assert response.status_code == 200
    assert not Template.objects.filter(step=route, locale="fr").exists()


def test_editing_a_route_template_shows_its_channels_fields_and_saves_a_version(admin_client,
                                                                               route):
    template = route.templates.get(channel="in_app")
    url = reverse("admin:notifications_template_change", args=[template.pk])
    page = admin_client.get(url)
    assert list(page.context["adminform"].form.fields) == ["body", "action_url", "avatar"]
    response = admin_client.post(url, {"body": "New {{ data.document }}", "action_url": "",
                                       "avatar": ""})
    assert response.status_code == 302
    template.refresh_from_db()
    assert (template.published_version.number, template.published_version.fields) == (
        2, {"body": "New {{ data.document }}"})
    assert Template.objects.filter(step=route).count() == 2


def test_preview_renders_a_route_template_as_its_channel(admin_client, route):
    response = admin_client.post(PREVIEW, {"step": route.pk, "channel": "email", "locale": "en",
                                           "subject": "About {{ data.document }}",
                                           "html": "<p>x</p>"})
    body = response.json()
    assert (body["channel"], body["rendered"]["subject"]) == ("email", "About Q3")
    response = admin_client.post(PREVIEW, {"step": route.pk, "locale": "en", "body": "x"})
    assert response.status_code == 400
    assert response.json()["fields"] == {"channel": ["Expected one of: in_app, email."]}
    assert Step.objects.count() == 1

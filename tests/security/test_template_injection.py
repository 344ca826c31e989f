"""SSTI and XSS through every rendered field, generated from the channel table: for each channel
and each of its template fields, values that people or callers control (trigger data, the
recipient's name and data, tenant branding) carrying Liquid and HTML payloads are rendered once
and never evaluated again, are escaped in HTML fields, and reach nothing of Python; and Liquid
payloads written as the template itself stop at the sandbox (tests/notifications/test_rendering.py
holds the sandbox's own cases) — also through the admin's preview."""

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from notifications.channels import CHANNELS
from notifications.models import Tenant
from notifications.rendering import TemplateError, render_fields

from ..conftest import email_step

XSS = "<img src=x onerror=window.__xss=1>"
LIQUID = "{{ 7 | times: 7 }}{% assign x = 1 %}{{ 'a' | append: 'b' }}"
PAYLOAD = f"{XSS} {LIQUID} {{{{ data.__class__ }}}}"
VARIABLES = {
    "data": {"p": PAYLOAD, "nested": {"p": PAYLOAD}, "list": [PAYLOAD]},
    "recipient": {"id": "u1", "name": PAYLOAD, "locale": "en", "timezone": "UTC",
                  "data": {"p": PAYLOAD}},
    "tenant": {"key": "evil", "name": PAYLOAD, "footer": PAYLOAD, "sender_name": PAYLOAD,
               "primary_color": "#000000"},
    "actor": {"id": "a1", "name": PAYLOAD},
}
SOURCES = ["{{ data.p }}", "{{ data.nested.p }}", "{% for v in data.list %}{{ v }}{% endfor %}",
           "{{ recipient.name }}", "{{ recipient.data.p }}", "{{ tenant.name }}",
           "{{ tenant.footer }}", "{{ actor.name }}"]
FIELDS = [pytest.param(spec.key, name, id=f"{spec.key}.{name}")
          for spec in CHANNELS for name in spec.fields]


@pytest.mark.parametrize(("channel", "field"), FIELDS)
def test_payloads_in_data_are_rendered_once_and_escaped_in_html(channel, field):
    spec = next(s for s in CHANNELS if s.key == channel)
    if field in spec.json_fields:
        pytest.skip("a JSON field (chat blocks, WhatsApp parameters): a bare value is no JSON")
    for source in SOURCES:
        rendered = render_fields(channel, {field: f"[{source}]"}, VARIABLES)[field]
        assert "49" not in rendered and "ab" not in rendered  # never evaluated a second time
        assert "class" not in rendered.replace("__class__", "")  # no Python reached
        if field in spec.html_fields:
            assert "<img" not in rendered and "&lt;img src=x" in rendered
        else:
            assert XSS in rendered  # plain text keeps it, as text
        assert LIQUID.replace("'", "&#39;") in rendered or LIQUID in rendered


@pytest.mark.parametrize("source", [
    "{{ data.__class__.__mro__ }}", "{{ data.p.__class__ }}", "{% include 'secrets' %}",
    "{% render 'x' %}", "{{ data.p.upper }}", "{{ recipient.name.format }}",
    "{% for i in (1..100000000) %}{% endfor %}",
])
@pytest.mark.parametrize(("channel", "field"), FIELDS)
def test_ssti_payloads_as_the_template_stop_at_the_sandbox(channel, field, source):
    try:
        rendered = render_fields(channel, {field: source}, VARIABLES)[field]
    except TemplateError:
        return  # refused with a clear error
    assert rendered.strip() == "", rendered  # or rendered to nothing


@pytest.mark.django_db
def test_the_admin_preview_escapes_payloads_and_refuses_ssti(make_workflow):
    workflow = make_workflow("evil", steps=[email_step(subject="s", html="<p>h</p>")])
    step = workflow.steps.get()
    tenant = Tenant.objects.create(key="evil", name=PAYLOAD, footer=PAYLOAD)
    staff = User.objects.create_superuser("preview", "p@example.com", "pw-0123456789")
    client = Client()
    client.force_login(staff)
    url = "/admin/notifications/template/preview/"
    answer = client.post(url, {"step": step.pk, "preview_tenant": tenant.pk,
                               "subject": "{{ tenant.name }}",
                               "html": "<p>{{ tenant.name }} {{ tenant.footer }}</p>"})
    assert answer.status_code == 200, answer.content[:300]
    rendered = answer.json()["rendered"]
    assert rendered["subject"].startswith(XSS)  # a header is text: kept as text, not HTML
    assert "<img src=x" not in rendered["html"] and "&lt;img src=x" in rendered["html"]
    assert all("49" not in text and "{% assign" in text.replace("&#39;", "'")
               for text in rendered.values())  # the payload's Liquid was never evaluated
    answer = client.post(url, {"step": step.pk, "subject": "{{ tenant.__class__ }}",
                               "html": "<p>{{ tenant.name.__class__.__mro__ }}</p>"})
    shown = json.dumps(answer.json())
    assert "names starting with '__' are not template variables" in shown, shown[:500]
    assert "<class" not in shown

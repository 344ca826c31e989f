"""Email on a real SMTP server carries RFC 8058 headers and a working preferences link; the
one-click POST works from a plain HTTP client, without cookies, and stops the next email."""

import http.client
import re
from urllib.parse import urlsplit

import pytest

from notifications.models import Message, StepLog
from preferences.models import PreferenceSet

from ..conftest import email_step

pytestmark = pytest.mark.django_db(transaction=True)

FOOTER = '<p>{{ data.body }}</p><p><a href="{{ preferences_url }}">Preferences</a></p>'
PERSON = {"id": "u1", "name": "Ada", "email": "ada@example.com", "locale": "fr-FR"}


@pytest.fixture
def public(settings, live_server):
    settings.PUBLIC_URL = live_server.url
    return live_server.url


def send(api, run_tasks, smtp, workflow="newsletter", count=1, tenant=None):
    body = {"recipients": [PERSON], "data": {"body": "News"}}
    if tenant:
        body["tenant"] = tenant
    response = api.post(f"/api/v1/workflows/{workflow}/trigger", body)
    assert response.status_code == 202, response.content
    run_tasks()
    return smtp.wait_for(count)


def unsubscribe_url(mail) -> str:
    """The URL in `List-Unsubscribe: <…>` (a long header may be folded onto the next line)."""
    return re.fullmatch(r"\s*<([^>]+)>", mail["List-Unsubscribe"]).group(1)


def request(method: str, url: str, body: str = "", headers=None) -> http.client.HTTPResponse:
    """One request with nothing but what is given: no cookies, no redirects followed."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request(method, parts.path, body=body.encode(), headers=headers or {})
    response = connection.getresponse()
    response.body = response.read().decode()
    connection.close()
    return response


def one_click(url: str) -> http.client.HTTPResponse:
    return request("POST", url, "List-Unsubscribe=One-Click",
                {"Content-Type": "application/x-www-form-urlencoded"})


@pytest.fixture
def newsletter(make_workflow):
    return make_workflow("newsletter", category="marketing", steps=[email_step(html=FOOTER)])


def test_email_carries_both_headers_and_a_working_preferences_url(api, run_tasks, smtp,
                                                                  newsletter, public):
    mail = send(api, run_tasks, smtp)[0]
    assert re.fullmatch(rf"{re.escape(public)}/u/[^/]+/", unsubscribe_url(mail))
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = mail.get_body(("html",)).get_content()
    link = re.search(r'href="([^"]+)"', html).group(1)
    assert link.startswith(f"{public}/p/")
    page = request("GET", link)
    assert page.status == 200
    assert '<html lang="fr">' in page.body  # the recipient's locale
    assert "Préférences de notification" in page.body
    assert 'name="category:marketing:email"' in page.body


def test_one_click_post_without_cookies_unsubscribes_and_the_next_email_is_suppressed(
        api, run_tasks, smtp, newsletter, public):
    mail = send(api, run_tasks, smtp)[0]
    url = unsubscribe_url(mail)

    response = one_click(url)
    assert response.status == 200  # no redirect
    assert response.getheader("Set-Cookie") is None
    assert PreferenceSet.objects.get().categories == {
        "marketing": {"channel_types": {"email": False}}}
    assert one_click(url).status == 200  # idempotent
    assert PreferenceSet.objects.get().categories == {
        "marketing": {"channel_types": {"email": False}}}

    api.post("/api/v1/workflows/newsletter/trigger", {"recipients": ["u1"]})
    run_tasks()
    assert len(smtp.messages) == 1
    log = StepLog.objects.get(event="opted_out")
    assert log.detail["rule"] == "recipient:categories.marketing.channel_types.email"
    assert Message.objects.filter(status=Message.Status.SUPPRESSED).count() == 1


def test_unsubscribe_get_asks_and_changes_nothing(api, run_tasks, smtp, newsletter, public):
    url = unsubscribe_url(send(api, run_tasks, smtp)[0])
    response = request("GET", url)
    assert response.status == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in response.body
    assert "csrfmiddlewaretoken" not in response.body
    assert not PreferenceSet.objects.exists()


def test_a_post_without_the_one_click_body_or_with_a_forged_token_changes_nothing(
        api, run_tasks, smtp, newsletter, public):
    url = unsubscribe_url(send(api, run_tasks, smtp)[0])
    assert request("POST", url, "", {"Content-Type": "application/x-www-form-urlencoded"}).status \
        == 400
    assert one_click(url.replace("/u/", "/u/x")).status == 404
    center = url.replace("/u/", "/p/")  # an unsubscribe token is not a center token
    assert request("GET", center).status == 404
    assert not PreferenceSet.objects.exists()


def test_a_tenants_email_unsubscribes_for_that_tenant(api, run_tasks, smtp, newsletter, public,
                                                      acme):
    url = unsubscribe_url(send(api, run_tasks, smtp, tenant="acme")[0])
    assert one_click(url).status == 200
    row = PreferenceSet.objects.get()
    assert row.tenant == acme


def test_a_workflow_without_category_unsubscribes_from_that_workflow(api, run_tasks, smtp,
                                                                     make_workflow, public):
    make_workflow("digest", steps=[email_step(html=FOOTER)])
    url = unsubscribe_url(send(api, run_tasks, smtp, workflow="digest")[0])
    assert one_click(url).status == 200
    assert PreferenceSet.objects.get().workflows == {
        "digest": {"channel_types": {"email": False}}}


def test_critical_email_has_no_unsubscribe_headers(api, run_tasks, smtp, make_workflow, public):
    make_workflow("reset", critical=True, category="account", steps=[email_step(html=FOOTER)])
    mail = send(api, run_tasks, smtp, workflow="reset")[0]
    assert mail["List-Unsubscribe"] is None
    assert mail["List-Unsubscribe-Post"] is None

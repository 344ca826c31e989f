"""Email address headers built from people's data (a tenant's sender, a recipient's name) arrive
exactly as given, through SMTP and an ESP's API; what could not is refused when it is saved."""

from email import policy
from email.headerregistry import Address

import pytest
from django.core.checks import run_checks
from django.urls import reverse

from notifications.delivery import deliver
from notifications.models import Message, ProviderConfig, Recipient, Tenant
from notifications.services import tenant_upsert

from ...conftest import invalid
from .servers import Reply
from .test_email_kinds import FIELDS, MAILGUN_KEY, SENDGRID_KEY, mailgun_check, sendgrid_check

NAMES = [
    "Équipe Support, Inc. (EU)",
    'The "Quoted" Team',
    "Back\\slash & Co",
    "<Admin> ops@example.com",
    "Müller; Ops: [Zürich] @ HQ.",
    "Launch 🚀 Crew",
    "李小龍 支援",
]
SENDER = "support@acme.test"


def _mailbox(header) -> tuple[str, str]:
    [address] = header.addresses
    return address.display_name, address.addr_spec


@pytest.mark.parametrize("name", NAMES)
def test_from_and_to_names_arrive_over_smtp_exactly_as_given(smtp, queue_message, name):
    tenant, _ = tenant_upsert(key="acme", name="Acme", sender_name=name, sender_email=SENDER)
    message = queue_message("email", FIELDS, tenant=tenant,
                            recipient={"id": "u1", "name": name, "email": "ada@example.com"})
    deliver(str(message.id))

    [mail] = smtp.wait_for(1)
    assert _mailbox(mail["From"]) == (name, SENDER)
    assert _mailbox(mail["To"]) == (name, "ada@example.com")
    assert mail["From"].defects == () and mail["To"].defects == ()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_the_tenant_name_stands_in_for_a_blank_sender_name(smtp, queue_message):
    tenant, _ = tenant_upsert(key="acme", name="Équipe Support, Inc. (EU)",
                              sender_email=SENDER)
    message = queue_message("email", FIELDS, tenant=tenant,
                            recipient={"id": "u1", "email": "ada@example.com"})
    deliver(str(message.id))

    [mail] = smtp.wait_for(1)
    assert _mailbox(mail["From"]) == ("Équipe Support, Inc. (EU)", SENDER)
    assert _mailbox(mail["To"]) == ("", "ada@example.com")


@pytest.mark.filterwarnings("ignore:django-anymail has dropped official support for SendGrid")
@pytest.mark.parametrize("name", NAMES)
def test_from_and_to_names_reach_sendgrids_api_exactly_as_given(provider_server,
                                                                provider_config, queue_message,
                                                                name):
    server = provider_server(sendgrid_check, lambda r: Reply(202))
    provider_config("sendgrid", "email", "sendgrid", {"api_key": SENDGRID_KEY},
                    options={"base_url": f"{server.url}/v3/"})
    tenant, _ = tenant_upsert(key="acme", name="Acme", sender_name=name, sender_email=SENDER)
    message = queue_message("email", FIELDS, tenant=tenant,
                            recipient={"id": "u1", "name": name, "email": "ada@example.com"})
    deliver(str(message.id))

    assert server.problems == []
    body = server.requests[0].json()
    assert body["from"] == {"email": SENDER, "name": name}
    assert body["personalizations"][0]["to"] == [{"email": "ada@example.com", "name": name}]


def test_mailguns_form_fields_parse_back_to_the_names_given(provider_server, provider_config,
                                                           queue_message):
    server = provider_server(mailgun_check, lambda r: Reply(200, json={
        "id": "<1@acme.test>", "message": "Queued. Thank you."}))
    provider_config("mailgun", "email", "mailgun", {"api_key": MAILGUN_KEY},
                    options={"base_url": f"{server.url}/v3"})
    name = NAMES[0]
    tenant, _ = tenant_upsert(key="acme", name="Acme", sender_name=name, sender_email=SENDER)
    message = queue_message("email", FIELDS, tenant=tenant,
                            recipient={"id": "u1", "name": "Ada \"A\" L.", "email": "a@x.test"})
    deliver(str(message.id))

    assert server.problems == []
    form = server.requests[0].form()
    assert _mailbox(policy.default.header_factory("From", form["from"])) == (name, SENDER)
    assert _mailbox(policy.default.header_factory("To", form["to"])) == ('Ada "A" L.',
                                                                        "a@x.test")


def test_a_provider_from_email_with_a_quoted_name_arrives_as_given(smtp_server, provider_config,
                                                                  queue_message):
    host, port, inbox = smtp_server
    from_email = str(Address("Relay, Inc. (EU)", addr_spec="relay@example.net"))
    provider_config("relay", "email", "smtp", {"host": host, "port": port,
                                                "from_email": from_email})
    message = queue_message("email", FIELDS, recipient={"id": "u1", "email": "ada@example.com"})
    deliver(str(message.id))

    assert _mailbox(inbox.wait_for(1)[0]["From"]) == ("Relay, Inc. (EU)", "relay@example.net")


def test_an_international_sender_domain_is_punycoded_in_from_and_message_id(smtp, queue_message):
    tenant, _ = tenant_upsert(key="acme", name="Bücher", sender_email="hallo@bücher.example")
    message = queue_message("email", FIELDS, tenant=tenant,
                            recipient={"id": "u1", "email": "ada@example.com"})
    deliver(str(message.id))

    [mail] = smtp.wait_for(1)
    assert _mailbox(mail["From"]) == ("Bücher", "hallo@xn--bcher-kva.example")
    assert mail["Message-ID"] == f"<{message.id}@xn--bcher-kva.example>"


def test_a_name_saved_before_the_rule_still_sends_with_the_bare_address(smtp, queue_message):
    tenant, _ = tenant_upsert(key="acme", name="Acme", sender_email=SENDER)
    Tenant.objects.filter(pk=tenant.pk).update(sender_name="Acme\r\nBcc: victim@example.com")
    tenant.refresh_from_db()
    message = queue_message("email", FIELDS, tenant=tenant,
                            recipient={"id": "u1", "email": "ada@example.com"})
    deliver(str(message.id))

    [mail] = smtp.wait_for(1)
    assert _mailbox(mail["From"]) == ("", SENDER)
    assert mail["Bcc"] is None
    assert [rcpt for rcpt in smtp.envelopes[0].rcpt_tos] == ["ada@example.com"]


# --- Refused when saved -------------------------------------------------------------------------

NEWLINE = "must be one line of text without control characters (found U+000A)"


@pytest.mark.parametrize(("body", "fields"), [
    ({"name": "Acme", "sender_name": "Acme\nBcc: victim@example.com"},
     {"sender_name": [f"This name {NEWLINE}."]}),
    ({"name": "Acme", "sender_name": "Acme\x00"},  # the JSON parser refuses NUL anywhere
     {"sender_name": ["Text cannot contain NUL (\\u0000)."]}),
    ({"name": "Acme", "sender_name": "Acme\tSupport"},
     {"sender_name": ["This name must be one line of text without control characters "
                      "(found U+0009)."]}),
    ({"name": "Acme", "sender_name": "=?utf-8?q?Bank?="},
     {"sender_name": ["This name cannot contain '=?' (mail programs would read it as an "
                      "encoded word)."]}),
    ({"name": "Acme\u2028Inc"},
     {"name": ["This name must be one line of text without control characters "
               "(found U+2028)."]}),
    ({"name": "Acme", "sender_email": '"a\x01b"@acme.test'},
     {"sender_email": ["This address must be one line of text without control characters "
                       "(found U+0001)."]}),
], ids=["newline", "nul", "tab", "encoded-word", "line-separator", "control-in-address"])
def test_put_tenant_refuses_a_sender_that_cannot_be_sent_as_given(api, db, body, fields):
    response = api.put("/api/v1/tenants/acme", body)

    assert response.status_code == 400
    assert response.json() == invalid(fields)
    assert not Tenant.objects.exists()


def test_put_tenant_accepts_punctuation_non_ascii_and_emoji_in_the_sender_name(api, db):
    for name in NAMES:
        response = api.put("/api/v1/tenants/acme", {"name": name, "sender_name": name,
                                                     "sender_email": SENDER})
        assert response.status_code in (200, 201), response.json()
        assert Tenant.objects.get(key="acme").sender_name == name


def test_the_tenant_admin_form_shows_an_unsendable_sender_name_as_a_field_error(admin_client,
                                                                               db):
    response = admin_client.post(reverse("admin:notifications_tenant_add"), {
        "key": "acme", "name": "Acme", "sender_name": "Acme\nBcc: victim@example.com",
        "sender_email": SENDER, "settings": "{}"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"sender_name": [f"This name {NEWLINE}."]}
    assert not Tenant.objects.exists()


def test_recipient_and_trigger_profiles_refuse_a_name_that_cannot_be_a_display_name(api, db,
                                                                                   make_workflow):
    put = api.put("/api/v1/recipients/u1", {"name": "Ada\r\nLovelace", "email": "a@x.test"})
    assert put.status_code == 400
    assert put.json() == invalid({"name": [
        "This name must be one line of text without control characters (found U+000D)."]})

    make_workflow("welcome")
    trigger = api.post("/api/v1/workflows/welcome/trigger",
                       {"recipients": [{"id": "u1", "name": "Ada\nLovelace"}]})
    assert trigger.status_code == 400
    assert trigger.json() == invalid({"recipients[0].name": [f"This name {NEWLINE}."]})
    assert not Recipient.objects.exists()


def test_a_provider_from_email_with_an_unquoted_comma_is_refused_when_saved(api, db):
    response = api.put("/api/v1/providers/relay", {
        "channel": "email", "kind": "smtp",
        "credentials": {"host": "127.0.0.1", "from_email": "Équipe Support, Inc. <x@acme.test>"}})

    assert response.status_code == 400
    assert response.json() == invalid({"credentials.from_email": [
        'expected one address, like hello@example.com or "Acme, Inc." <hello@example.com> '
        '(quote a name holding , ; : ( ) < > @ " \\ [ ] or .)']})
    assert not ProviderConfig.objects.exists()


def test_a_default_from_email_that_is_not_one_address_stops_the_server_from_starting(settings):
    settings.DEFAULT_FROM_EMAIL = "Équipe Support, Inc. <hello@acme.test>"
    [error] = [e for e in run_checks(tags=["email"]) if e.id == "notifications.E001"]
    assert error.msg.startswith("DEFAULT_FROM_EMAIL 'Équipe Support, Inc. <hello@acme.test>': "
                                "expected one address")

    settings.DEFAULT_FROM_EMAIL = '"Équipe Support, Inc." <hello@acme.test>'
    assert [e for e in run_checks(tags=["email"]) if e.id == "notifications.E001"] == []


@pytest.mark.parametrize("address", [
    "ada@example.com", "first.last+tag@mail.example.co.uk", "a_b-c@x-y.example",
    "UPPER@EXAMPLE.COM", "a@b", "1@2.3", "-@-.-", "+@x.y", "a.b.c.d@e.f.g",
])
def test_a_plain_address_is_accepted_without_a_parse_exactly_as_the_parser_accepts_it(address):
    from notifications import addresses

    assert addresses._PLAIN_ADDRESS.fullmatch(address)
    assert addresses.email_address_problem(address) == ""
    # What the skipped parse would have said: one mailbox, the same addr-spec, no defects.
    parsed = policy.default.header_factory("To", str(Address(addr_spec=address)))
    assert not parsed.defects and [a.addr_spec for a in parsed.addresses] == [address]


@pytest.mark.parametrize("address", [
    "a..b@example.com", ".a@example.com", "a.@example.com", "a@example..com", "a b@example.com",
    '"a b"@example.com', "a@b@example.com", "é@example.com", "a@exämple.com", "a@example.com\n",
    "a@[127.0.0.1]", "a(comment)@example.com",
])
def test_an_address_outside_the_plain_form_takes_the_full_check(address):
    from notifications import addresses

    assert not addresses._PLAIN_ADDRESS.fullmatch(address)

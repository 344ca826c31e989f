"""The channel table (notifications/channels.py) is the one description every layer reads."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

from clarion.locale import HOSTED_LANGUAGES as LANGUAGES
from notifications.channels import (
    CHANNEL_DATA_CHANNELS,
    CHANNELS,
    PROVIDER_CHANNELS,
    QUIET_HOURS_CHANNELS,
    channel_position,
    channel_spec,
    template_fields,
)
from notifications.models import Channel, StepType
from notifications.providers import registry
from notifications.providers.base import Provider
from preferences.selectors import channel_label


def test_channel_and_step_type_choices_are_the_table_in_its_order():
    table = [(spec.key, spec.label) for spec in CHANNELS]
    assert Channel.choices == table
    assert StepType.choices[:len(table)] == table
    assert StepType.choices[len(table):] == [("delay", "Delay"), ("digest", "Digest"),
                                             ("throttle", "Throttle"), ("branch", "Branch"),
                                             ("route", "Route"), ("approval", "Approval")]
    assert Channel.IN_APP == "in_app" and StepType.WEBHOOK.label == "Webhook"


def test_each_channel_requires_and_escapes_only_fields_it_has():
    for spec in CHANNELS:
        assert spec.fields, spec.key
        assert set(spec.html_fields) <= set(spec.fields), spec.key
        assert {name for group in spec.required for name in group} <= set(spec.fields), spec.key


def test_derived_sets_read_the_table():
    assert tuple(PROVIDER_CHANNELS) == ("email", "sms", "push", "chat", "whatsapp", "webhook")
    assert set(CHANNEL_DATA_CHANNELS) == {"push", "chat"}
    assert set(QUIET_HOURS_CHANNELS) == {"email", "sms", "push", "whatsapp"}


def test_lookups_answer_none_empty_or_last_for_a_function_step_type():
    assert channel_spec("delay") is None
    assert template_fields("delay") == () and template_fields(None) == ()
    assert template_fields("email") == ("subject", "html", "text")
    assert [channel_position(spec.key) for spec in CHANNELS] == list(range(len(CHANNELS)))
    assert channel_position("delay") == len(CHANNELS)


def test_a_provider_kind_for_a_channel_without_providers_is_refused():
    class InboxProvider(Provider):
        kind, channel = "inbox-test", "in_app"

    with pytest.raises(TypeError, match="a `channel` providers deliver"):
        registry.register(InboxProvider)
    assert "inbox-test" not in registry.kinds()


def test_every_registered_kind_delivers_a_provider_channel():
    assert {cls.channel for cls in registry.kinds().values()} <= set(PROVIDER_CHANNELS)


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_each_channel_name_a_person_reads_is_translated_in_the_apps_own_catalog(language):
    """The names live in notifications/channels.py, so their translations live in
    notifications' own catalog, where `makemessages` run inside notifications/ keeps them; the
    compiled catalog is the one Django loads."""
    po = (Path(settings.BASE_DIR) / "notifications" / "locale" / language / "LC_MESSAGES"
          / "django.po").read_text()
    translated = dict(re.findall(r'^msgctxt "channel"\nmsgid "(.+)"\nmsgstr "(.+)"$', po,
                                 flags=re.M))
    english = {spec.key: str(spec.person_label) for spec in CHANNELS}
    assert set(english.values()) <= set(translated), language
    with translation.override(language):  # what a person reads: no other catalog's "Email"
        assert {spec.key: str(spec.person_label) for spec in CHANNELS} == {
            key: translated[label] for key, label in english.items()}


def test_the_preference_center_names_a_channel_in_the_active_language():
    from django.utils import translation

    with translation.override("de"):
        assert channel_label("push") == "Push-Benachrichtigungen"
    with translation.override("en"):
        assert channel_label("push") == "Push notifications"
    assert channel_label("carrier-pigeon") == "carrier-pigeon"

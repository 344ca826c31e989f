"""The channels Clarion delivers on, each described once: its key and labels, its template
fields, where its address comes from, whether providers deliver it and whether it waits for
quiet hours.

Everything else reads this table: the `Channel` and `StepType` choices (models.py), the engine,
delivery, template validation and the editor, the provider API and admin, and the preference
center (its labels and order). Adding a channel is one `ChannelSpec` line here, plus its provider
kinds (notifications/providers/) and its preview layout in the template editor, if it wants one.
"""

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import pgettext_lazy


@dataclass(frozen=True)
class ChannelSpec:
    """One channel. `fields` are its template's fields in editor order; `required` lists groups
    of which each needs one non-empty field; `html_fields` are rendered with HTML autoescape.
    `json_fields` must render to a JSON array (chat `blocks`: Slack Block Kit blocks, Adaptive
    Card body elements, Discord embeds, Google Chat cardsV2, Mattermost attachments): checked
    when the template is saved.
    `address` says where the engine finds the recipient's address: "email" or "phone" (the
    recipient's, the phone in E.164), "channel_data" (the recipient's ChannelData for the
    channel: push tokens, chat URLs), "step" (the step's config) or "inbox" (the recipient's own
    in-app feed)."""

    key: str  # stored in Step.type, Message.channel, ProviderConfig.channel, preference sets
    label: str  # in the admin and the API's choices
    person_label: str | Promise  # what a recipient sees in the preference center (translated)
    fields: tuple[str, ...]
    required: tuple[tuple[str, ...], ...]
    address: str
    html_fields: tuple[str, ...] = ()
    json_fields: tuple[str, ...] = ()
    providers: bool = True  # delivered through ProviderConfigs (in-app: written to the inbox)
    quiet_hours: bool = False  # a step waits for the end of the person's quiet hours


# In display order: the admin's choices and the preference center list channels in this order.
CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("email", "Email", pgettext_lazy("channel", "Email"),
                ("subject", "html", "text"), (("subject",), ("html", "text")), "email",
                html_fields=("html",), quiet_hours=True),
    ChannelSpec("sms", "SMS", pgettext_lazy("channel", "SMS"), ("text",), (("text",),), "phone",
                quiet_hours=True),
    ChannelSpec("push", "Push", pgettext_lazy("channel", "Push notifications"),
                ("title", "body", "data"), (("title", "body"),), "channel_data",
                quiet_hours=True),
    ChannelSpec("chat", "Chat", pgettext_lazy("channel", "Chat"), ("text", "blocks"),
                (("text", "blocks"),), "channel_data", json_fields=("blocks",)),
    # WhatsApp: an approved template (named in the step's config, with `parameters`: a JSON
    # array) or, inside the 24-hour customer-service window, free `text`.
    ChannelSpec("whatsapp", "WhatsApp", pgettext_lazy("channel", "WhatsApp"),
                ("text", "parameters"), (), "phone", json_fields=("parameters",),
                quiet_hours=True),
    ChannelSpec("in_app", "In-app", pgettext_lazy("channel", "In-app"),
                ("body", "action_url", "avatar"), (("body",),), "inbox", html_fields=("body",),
                providers=False),  # body: Markdown-ish HTML
    ChannelSpec("webhook", "Webhook", pgettext_lazy("channel", "Webhook"), ("body",), (),
                "step"),
)

_BY_KEY = {spec.key: spec for spec in CHANNELS}

CHANNEL_KEYS: tuple[str, ...] = tuple(_BY_KEY)
PROVIDER_CHANNELS: tuple[str, ...] = tuple(c.key for c in CHANNELS if c.providers)
CHANNEL_DATA_CHANNELS = frozenset(c.key for c in CHANNELS if c.address == "channel_data")
QUIET_HOURS_CHANNELS = frozenset(c.key for c in CHANNELS if c.quiet_hours)


def channel_spec(key: str) -> ChannelSpec | None:
    """The ChannelSpec of channel `key` ("email", "in_app"…), None for any other string (a
    function step's type such as "delay" included)."""
    return _BY_KEY.get(key)


def channel_position(key: str) -> int:
    """Where channel `key` sorts in the display order; unknown keys sort last."""
    spec = _BY_KEY.get(key)
    return CHANNELS.index(spec) if spec else len(CHANNELS)


def template_fields(key: str | None) -> tuple[str, ...]:
    """The template fields of channel `key`, in editor order; () for anything else."""
    spec = _BY_KEY.get(key)
    return spec.fields if spec else ()

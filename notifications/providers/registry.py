"""The kinds of provider, by name. A kind registers itself with `@register`; its module is listed
in KIND_MODULES so that every kind is known once `kinds()` or `get()` is first called."""

from importlib import import_module

from ..channels import PROVIDER_CHANNELS
from .base import Provider

KIND_MODULES = (
    "notifications.providers.email",
    "notifications.providers.twilio",
    "notifications.providers.vonage",
    "notifications.providers.plivo",
    "notifications.providers.messagebird",
    "notifications.providers.sinch",
    "notifications.providers.gupshup",
    "notifications.providers.whatsapp",
    "notifications.providers.chat",
    "notifications.providers.webhook",
    "notifications.providers.fcm",
    "notifications.providers.apns",
    "notifications.providers.webpush",
)

_KINDS: dict[str, type[Provider]] = {}
_loaded = False


def register(cls: type[Provider]) -> type[Provider]:
    """Class decorator: make `cls.kind` selectable in ProviderConfig."""
    if not cls.kind or cls.channel not in PROVIDER_CHANNELS:
        raise TypeError(f"{cls.__name__} needs a `kind` and a `channel` providers deliver "
                        f"({', '.join(PROVIDER_CHANNELS)})")
    existing = _KINDS.get(cls.kind)
    if existing is not None and existing is not cls:
        raise TypeError(f"kind {cls.kind!r} is already {existing.__name__}")
    _KINDS[cls.kind] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for module in KIND_MODULES:
        try:
            import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a missing dependency inside the module is a real error
                raise
    _loaded = True


def get(kind: str) -> type[Provider]:
    """The class of `kind`; KeyError for an unknown kind."""
    _load()
    return _KINDS[kind]


def kinds(channel: str | None = None) -> dict[str, type[Provider]]:
    """Every registered kind (of `channel`), by name."""
    _load()
    return {name: cls for name, cls in sorted(_KINDS.items())
            if channel is None or cls.channel == channel}

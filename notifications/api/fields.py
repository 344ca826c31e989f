"""Fields shared by the server API's serializers."""

from rest_framework import serializers

from .. import selectors


class CursorField(serializers.CharField):
    """A keyset page's cursor, as the page before gave it in `page_info.after`: validated to a
    `selectors.MessageLogCursor` (the message log and a trigger's runs share its format). An
    unreadable cursor is a 400 naming the field."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "Cursor: the `page_info.after` of the page before.")
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> selectors.MessageLogCursor:
        try:
            return selectors.MessageLogCursor.decode(super().to_internal_value(data))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

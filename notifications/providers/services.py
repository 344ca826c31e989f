"""Writes the provider layer needs outside delivery itself."""

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..models import ChannelData


def channel_data_deactivate(*, channel_data_id: int, addresses: Iterable[Any], reason: str) -> int:
    """Take dead addresses (push tokens, Web Push subscriptions, webhook URLs) out of a
    recipient's ChannelData so no later message uses them; keep them under "inactive" with the
    reason and time, for support. An address is removed wherever it appears: as an item of any
    list in the data (``{"tokens": [...]}``, ``{"subscriptions": [...]}``) or as the value of a
    top-level key (``{"webhook_url": "..."}``). Returns how many were removed.
    """
    dead = [a for a in addresses]
    if not dead:
        return 0
    with transaction.atomic():
        row = ChannelData.objects.select_for_update().filter(pk=channel_data_id).first()
        if row is None:
            return 0
        data = dict(row.data or {})
        removed = []
        for name, value in list(data.items()):
            if name == "inactive":
                continue
            if isinstance(value, list):
                kept = [item for item in value if item not in dead]
                removed += [item for item in value if item in dead]
                data[name] = kept
            elif value in dead:
                removed.append(value)
                del data[name]
        if not removed:
            return 0
        now = timezone.now().isoformat()
        data["inactive"] = list(data.get("inactive") or []) + [
            {"address": item, "reason": reason[:300], "at": now} for item in removed]
        row.data = data
        row.save(update_fields=["data", "updated_at"])
        return len(removed)

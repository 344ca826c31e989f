"""Integers beyond what a database column holds are a 400 naming the field, never a 500."""

import pytest
from rest_framework import serializers

import clarion.api
from clarion.api import BIGINT_MAX

HUGE = 10**30


def test_a_feed_cursor_beyond_a_bigint_is_a_400_naming_it(ada_client, make_items, ada):
    make_items(ada, 2)
    for name in ("after", "before"):
        response = ada_client.get(f"/api/v1/inbox/?{name}={HUGE}")
        assert response.status_code == 400, response.content
        assert list(response.json()["fields"]) == [name]
        assert "less than or equal to 9223372036854775807" in response.json()["fields"][name][0]
    assert ada_client.get(f"/api/v1/inbox/?after={BIGINT_MAX}").status_code == 200


def test_a_bulk_mark_up_to_beyond_a_bigint_is_a_400_naming_it(ada_client, make_items, ada):
    make_items(ada, 1)
    response = ada_client.post("/api/v1/inbox/read", {"up_to": HUGE}, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == ["up_to"]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@pytest.mark.parametrize("base", [clarion.api.Serializer, clarion.api.QuerySerializer])
def test_every_integer_a_request_can_send_is_bounded_by_the_database(base):
    unbounded = []
    for cls in _subclasses(base):
        try:
            fields = cls().fields
        except Exception:  # a serializer that needs context to build its fields
            continue
        for name, field in fields.items():
            if isinstance(field, serializers.IntegerField) and not field.read_only and (
                    field.max_value is None or field.max_value > BIGINT_MAX
                    or field.min_value is None or field.min_value < -BIGINT_MAX):
                unbounded.append(f"{cls.__qualname__}.{name}")
    assert not unbounded

"""A trigger's inline recipient validated by its serializer's fields directly
(clarion.api.validated_by_fields) gives what the whole serializer gives, or leaves the profile to
it: the same validated profile for any body, the same errors (the serializer still gives them)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from clarion.api import validated_by_fields, validated_reusing
from notifications.api.serializers.recipients import InlineRecipientSerializer, inline_recipient

texts = st.sampled_from(["", " ", "ann", " Ann Lee ", "u1@example.com", " u1@example.com ",
                         "a@b", "x" * 256, "bad\x00", "\ud800", "Ann, Inc.", "42", "+15550001111",
                         "Europe/Paris", "pt-BR", "not an email", "ü@exämple.com"]) | st.text(
    max_size=12)
values = texts | st.integers(-3, 3) | st.none() | st.booleans() | st.just({}) | st.just([])
names = st.sampled_from(["id", "name", "email", "phone", "locale", "timezone", "data",
                         "channel_data", "topic", "extra"])
profiles = st.dictionaries(names, values, max_size=5) | st.fixed_dictionaries(
    {"id": texts, "name": texts, "email": texts})


def by_serializer(data):
    try:
        return dict(validated_reusing(InlineRecipientSerializer, data))
    except serializers.ValidationError as exc:
        return ("refused", exc.detail)


@settings(max_examples=400, deadline=None)
@given(profiles)
def test_by_fields_gives_the_serializers_profile_or_leaves_the_body_to_it(data):
    expected = by_serializer(data)
    got = validated_by_fields(InlineRecipientSerializer, data)
    if got is not None:
        assert got == expected and list(got) == list(expected)
    assert inline_recipient(data) == expected if not isinstance(expected, tuple) else True


def test_a_common_profile_takes_the_fields_path_and_a_bad_one_the_serializers_errors():
    data = {"id": "u-1", "name": " Ann Lee ", "email": " ann@example.com "}
    assert validated_by_fields(InlineRecipientSerializer, data) == {
        "name": "Ann Lee", "email": "ann@example.com", "id": "u-1"}
    bad = {"id": "u-1", "email": "not an email", "nmae": "Ann"}
    assert validated_by_fields(InlineRecipientSerializer, bad) is None
    with pytest.raises(serializers.ValidationError) as refused:
        inline_recipient(bad)
    assert set(refused.value.detail) == {"email", "nmae"}

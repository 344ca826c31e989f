"""Schemathesis over every operation of /api/schema/ (server API with an API key, inbox API with
an inbox token): no 5xx, and every answer as the schema documents it (status, content type,
headers, body), invalid input refused. A bounded derandomized run here; `make chaos` runs more.

Each fault the fuzzer found is fixed where its kind lives and its input kept below."""

import pytest

from tests.conftest import client_for

from .fuzz_support import fuzz_operations, fuzz_world

# 49 operations × EXAMPLES cases each, positive and negative, ~1 minute on one core.
EXAMPLES = 25
CHAOS_EXAMPLES = 300


def assert_clean(report):
    print(f"\nfuzz: {report.cases} cases over {len(report.per_operation)} operations, "
          f"{report.server_errors} 5xx, statuses {dict(sorted(report.statuses.items()))}")
    assert not report.failures, "\n\n".join(f"{op}: {text}" for op, text in
                                             report.failures.items())
    assert report.server_errors == 0
    assert len(report.per_operation) >= 49
    assert all(count > 0 for count in report.per_operation.values()), report.per_operation


@pytest.mark.django_db
def test_every_operation_answers_as_documented_and_never_5xx():
    assert_clean(fuzz_operations(examples=EXAMPLES, world=fuzz_world()))


@pytest.mark.chaos
@pytest.mark.django_db
def test_every_operation_answers_as_documented_and_never_5xx_long_run():
    assert_clean(fuzz_operations(examples=CHAOS_EXAMPLES, world=fuzz_world()))


# --- What the fuzzer found, kept ---------------------------------------------------------------

@pytest.mark.parametrize(("path", "field"), [
    ("/api/v1/inbox/?archived=", "archived"),
    ("/api/v1/inbox/?status=", "status"),
    ("/api/v1/inbox/?tags=", "tags"),
    ("/api/v1/inbox/counts?tenant=", "tenant"),
    ("/api/v1/inbox/preferences?tenant=", "tenant"),
    ("/api/v1/inbox/preferences/center?tenant=", "tenant"),
])
@pytest.mark.django_db
def test_an_empty_inbox_query_parameter_is_a_400_naming_it(path, field):
    world = fuzz_world()
    response = client_for(world["inbox_token"]).get(path)
    assert response.status_code == 400
    assert response.json()["fields"] == {field: ["This field may not be blank."]}


@pytest.mark.parametrize(("path", "field"), [
    ("/api/v1/messages?after=", "after"),
    ("/api/v1/messages?provider=", "provider"),
])
@pytest.mark.django_db
def test_an_empty_message_log_query_parameter_is_a_400_naming_it(path, field):
    world = fuzz_world()
    response = client_for(world["api_key"]).get(path)
    assert response.status_code == 400
    assert response.json()["fields"] == {field: ["This field may not be blank."]}


@pytest.mark.parametrize(("path", "field"), [
    ("/api/v1/recipients/fuzz-user/preferences?tenant=%00", "tenant"),
    ("/api/v1/inbox/counts?tenant=a%00b", "tenant"),
    ("/api/v1/recipients/fuzz%00user", "path"),
])
@pytest.mark.django_db
def test_nul_in_a_query_parameter_or_the_path_is_a_400_naming_it(path, field):
    world = fuzz_world()
    key = world["inbox_token"] if "/inbox/" in path else world["api_key"]
    response = client_for(key).get(path)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request",
                               "detail": "The request is not valid; see `fields`.",
                               "fields": {field: ["Text cannot contain NUL (\\u0000)."]}}

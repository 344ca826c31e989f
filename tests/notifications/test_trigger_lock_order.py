"""Triggers sent at once that name the same people in different orders (a list and its
reverse), each on its own PostgreSQL connection: every one is accepted. Each upserted recipient
row stays locked until its trigger commits; written in the callers' orders, two such triggers
each waited for a row the other held, and PostgreSQL's deadlock detector aborted one (a 500).
Both of the trigger's write paths: profiles alike (one statement) and with an actor's profile
(a transaction); people new (their INSERTs wait on each other) and known (their UPDATEs)."""

import pytest
from django.db import connection

from notifications.models import Run, Trigger

from ..conftest import at_once, client_for, in_app_step

THREADS = 8
PEOPLE = [f"u{i:03d}" for i in range(200)]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="row locks under concurrency are PostgreSQL's"),
]


@pytest.mark.parametrize("known", [False, True], ids=["new people", "known people"])
@pytest.mark.parametrize("actor", [None, {"id": "boss", "name": "Boss"}],
                         ids=["one statement", "transaction"])
def test_triggers_naming_the_same_people_in_other_orders_are_all_accepted(
        api_key, make_workflow, actor, known):
    make_workflow("welcome", steps=[in_app_step()])
    url = "/api/v1/workflows/welcome/trigger"

    def body(people):
        payload = {"recipients": [{"id": p, "name": p.upper()} for p in people]}
        return {**payload, "actor": actor} if actor else payload

    if known:
        assert client_for(api_key[1]).post(url, body(PEOPLE)).status_code == 202

    def send(index: int) -> list[int]:
        client = client_for(api_key[1])
        client.raise_request_exception = False
        people = PEOPLE if index % 2 else PEOPLE[::-1]
        return [client.post(url, body(people)).status_code for _ in range(3)]

    answers = at_once(THREADS, send, timeout=120)
    assert answers == [[202] * 3] * THREADS
    triggers = THREADS * 3 + known
    assert Trigger.objects.count() == triggers
    assert Run.objects.count() == triggers * len(PEOPLE)

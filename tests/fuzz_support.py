"""Schemathesis against /api/schema/: every operation, positive and negative inputs, in process.

`fuzz_operations(examples=…)` draws cases for each operation of the OpenAPI document (the
server API with an API key, the inbox API with an inbox token), calls them through Django's
WSGI application and runs schemathesis' checks on every answer (no 5xx, status code, content
type, headers and body as the schema documents them, invalid input refused). Path parameters
are half the time swapped for ids that exist, so the fuzzer reaches past the 404s.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field

import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

from inbox.auth import inbox_token_create
from notifications.models import Tenant
from notifications.services import StepSpec, api_key_create, recipient_upsert, workflow_put


@dataclass
class FuzzReport:
    """What a run saw: cases sent, answers by status class, failures by operation."""

    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    per_operation: dict[str, int] = field(default_factory=dict)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def fuzz_world() -> dict:
    """Rows the fuzzer's path parameters may name, and the credentials it sends."""
    acme = Tenant.objects.create(key="acme", name="Acme")
    _, secret = api_key_create(name="fuzz")
    recipient, _ = recipient_upsert(external_id="fuzz-user", email="fuzz@example.com")
    workflow_put(key="welcome", name="Welcome", steps=[StepSpec(
        ref="feed", type="in_app", templates={"en": {"body": "Hi {{ data.name }}"}})])
    token, _ = inbox_token_create(recipient=recipient)
    return {
        "api_key": secret,
        "inbox_token": token,
        "known": {"key": ["welcome", "acme"], "recipient_id": ["fuzz-user"],
                  "channel": ["email", "sms", "push", "in_app", "chat"],
                  "action": ["read", "seen", "archive", "unread"]},
        "tenant": acme,
    }


@contextmanager
def connections_kept():
    """The WSGI handler closes the database connection after each request, as Django's test
    client avoids: keep it (the test's transaction) open while the fuzzer calls the app."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def load_schema():
    app = get_wsgi_application()
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app)
    # The query serializers ignore parameters they do not know, by design (clarion/api.py
    # QuerySerializer); the credentials are ours (fuzz_world), not generated.
    schema.config.generation.update(allow_extra_parameters=False,
                                    with_security_parameters=False)
    return schema


def fuzz_operations(*, examples: int, world: dict) -> FuzzReport:
    """Fuzz every operation with `examples` cases each (derandomized: the same cases every run).

    Returns the FuzzReport; failures hold schemathesis' message for the first failing case of
    each operation (after shrinking)."""
    with connections_kept():
        return _fuzz(examples=examples, world=world)


def _fuzz(*, examples: int, world: dict) -> FuzzReport:
    schema = load_schema()
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        before = report.cases
        try:
            _fuzz_operation(operation, examples=examples, world=world, report=report)
        except (FailureGroup, AssertionError, Exception) as failure:  # noqa: B014
            report.failures[label] = str(failure)[:3000]
        report.per_operation[label] = report.cases - before
    return report


def _fuzz_operation(operation, *, examples: int, world: dict, report: FuzzReport) -> None:
    known = world["known"]
    token = world["inbox_token"] if operation.path.startswith("/api/v1/inbox/") \
        else world["api_key"]
    headers = {"Authorization": f"Bearer {token}"}
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                      operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(case=cases, swap=st.booleans(), pick=st.integers(0, 4))
    def run(case, swap, pick):
        if swap and case.path_parameters:
            case.path_parameters = {
                name: known[name][pick % len(known[name])] if name in known else value
                for name, value in case.path_parameters.items()}
        response = case.call(headers=headers)
        report.cases += 1
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        # A schema-valid token or id that names nothing is refused (400/404) by design.
        case.validate_response(response, headers=headers,
                               excluded_checks=[positive_data_acceptance])

    run()

"""Fixtures for tests that run Clarion's production processes (tests/deploy/support.py)."""

import pytest

from .support import Service


@pytest.fixture
def services(request):
    """A list to append started `Service`s to: each is stopped after the test, and when the
    test failed, the end of each one's log is printed."""
    started: list[Service] = []
    yield started
    failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
    for service in reversed(started):
        code = service.stop()
        if failed:
            print(f"\n----- {service.name} (pid {service.pid}, exit code {code}) -----\n"
                  f"{service.log()[-6000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (`rep_setup`, `rep_call`), for `services`."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report

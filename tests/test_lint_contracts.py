"""Clarion's own import-linter contract: apps never import each other's private names."""

import grimp

from clarion.lint_contracts import PrivateNamesContract


def _graph(*imports: tuple[str, str, str]) -> grimp.ImportGraph:
    graph = grimp.ImportGraph()
    for importer, imported, line in imports:
        graph.add_import(importer=importer, imported=imported, line_number=3,
                         line_contents=line)
    return graph


def _check(graph):
    # Built without import-linter's option parsing (which trips over a test-time attribute);
    # `lint-imports` parses `packages` from pyproject.toml.
    contract = object.__new__(PrivateNamesContract)
    contract.packages = ["notifications", "inbox"]
    return contract.check(graph, verbose=False)


def test_importing_another_apps_private_name_breaks_the_contract():
    check = _check(_graph(
        ("inbox.api", "notifications.services", "from notifications.services import (a, _b)"),
    ))
    assert not check.kept
    assert check.metadata["violations"] == [
        "inbox.api -> notifications.services (l.3): "
        "from notifications.services import (a, _b)"]


def test_public_names_dunders_and_an_apps_own_private_names_keep_it():
    check = _check(_graph(
        ("inbox.api", "notifications.services", "from notifications.services import a as _a"),
        ("inbox.api", "notifications.models", "from notifications.models import __version__"),
        ("inbox.api", "inbox.selectors", "from .selectors import _scope"),
        ("inbox.api", "django.db", "from django.db import _private"),
    ))
    assert check.kept, check.metadata["violations"]


def test_importing_another_apps_private_module_breaks_the_contract():
    check = _check(_graph(("inbox.api", "notifications._internal",
                           "from notifications import _internal")))
    assert not check.kept

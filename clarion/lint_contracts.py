"""Import-linter contract types of Clarion's own, loaded only by `lint-imports` (`make lint`).

`private_names`: an app never imports another app's private names (a leading underscore), so what
one app shares with another is a public function or class, not a helper it may rename at will.
"""

from __future__ import annotations

import re

import grimp
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck

_FROM_IMPORT = re.compile(r"^\s*from\s+[\w.]+\s+import\s+\(?(?P<names>[^)#]*)")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imported_names(line: str) -> list[str]:
    """The names a `from x import a, b as c` line binds from its module (`a`, `b`)."""
    match = _FROM_IMPORT.match(line)
    if not match:
        return []
    return [part.split(" as ")[0].strip() for part in match["names"].split(",") if part.strip()]


class PrivateNamesContract(Contract):
    """No module of one of `packages` imports a private name from another of them.

    Options: `packages`, the top-level packages (apps) to check.
    """

    type_name = "private_names"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        apps = set(self.packages)  # type: ignore[arg-type]
        violations = []
        for importer in sorted(graph.modules):
            importer_app = importer.split(".")[0]
            if importer_app not in apps:
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                imported_app = imported.split(".")[0]
                if imported_app not in apps or imported_app == importer_app:
                    continue
                for detail in graph.get_import_details(importer=importer, imported=imported):
                    names = [n for n in _imported_names(detail["line_contents"]) if _private(n)]
                    private_module = any(_private(part) for part in imported.split("."))
                    if names or private_module:
                        violations.append(
                            f"{importer} -> {imported} (l.{detail['line_number']}): "
                            f"{detail['line_contents'].strip()}"
                        )
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        output.print_error("Apps may not import each other's private names:", bold=False)
        output.new_line()
        for violation in check.metadata["violations"]:
            output.print_error(f"- {violation}", bold=False)
            output.new_line()

"""`manage.py import_from_novu <file.json>`: workflows from Novu's workflow JSON."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from compat.importers import novu, report, workflow_import


class Command(BaseCommand):
    help = ("Create (or update) Clarion workflows, with their templates, from Novu's workflow "
            "JSON (GET /v2/workflows/{id}); reports every step it could not map.")

    def add_arguments(self, parser):
        parser.add_argument("files", type=Path, nargs="+",
                            help="JSON files: one workflow, a list, or either in {\"data\": …}.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Check and report; write nothing.")

    def handle(self, *args, files: list[Path], dry_run: bool, **options):
        items = []
        for path in files:
            try:
                items += novu.read_export(path)
            except novu.NovuExportError as exc:
                raise CommandError(str(exc)) from None
        for item in items:
            for line in report(workflow_import(item, dry_run=dry_run)):
                self.stdout.write(line)

"""`manage.py import_from_knock <dir>`: the workflows of a `knock workflow pull --all` export."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from compat.importers import knock, report, workflow_import


class Command(BaseCommand):
    help = ("Create (or update) Clarion workflows, with their templates, from Knock's "
            "`knock workflow pull --all` directory; reports every step it could not map.")

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path,
                            help="The pulled directory (or one workflow's directory).")
        parser.add_argument("--dry-run", action="store_true",
                            help="Check and report; write nothing.")

    def handle(self, *args, directory: Path, dry_run: bool, **options):
        try:
            items = knock.read_export(directory)
        except knock.KnockExportError as exc:
            raise CommandError(str(exc)) from None
        for item in items:
            for line in report(workflow_import(item, dry_run=dry_run)):
                self.stdout.write(line)

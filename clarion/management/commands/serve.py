"""`python manage.py serve`: migrate, seed the demo, run daphne and a qcluster until Ctrl-C."""

import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from notifications.demo import seed_demo
from notifications.models import Recipient, Tenant
from preferences.tokens import preferences_url


class Command(BaseCommand):
    help = "Run Clarion embedded: web server (daphne) and worker (qcluster) together."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--no-demo", action="store_true", help="Do not seed demo data.")

    def handle(self, *args, host, port, no_demo, **options):
        call_command("migrate", interactive=False, verbosity=0)
        base = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"
        if not no_demo:
            credentials = seed_demo()
            self.stdout.write(self.style.SUCCESS("Clarion is starting.") + f"""
  Admin:    {base}/admin/
            user {credentials.admin_username}   password {credentials.admin_password}
  API docs: {base}/api/docs/
  API key:  {credentials.api_key}
  Inbox:    {base}/demo/inbox/   (the <clarion-inbox> widget for demo-user)
  Preferences of demo-user: {self._demo_preferences_url()}

  Try it once "Clarion is ready" shows below:
    curl -X POST {base}/api/v1/workflows/welcome/trigger \\
      -H 'Authorization: Bearer {credentials.api_key}' -H 'Content-Type: application/json' \\
      -d '{{"recipients": ["demo-user"], "tenant": "acme"}}'
""")
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        processes = [
            subprocess.Popen([sys.executable, "-m", "clarion.serve_daphne", "-b", host, "-p",
                              str(port), "clarion.asgi:application"], cwd=settings.BASE_DIR),
            subprocess.Popen([*manage, "qcluster"], cwd=settings.BASE_DIR),
        ]
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)  # even when started with SIGINT ignored (nohup, &)
        ready = False
        try:
            while not stopping and all(p.poll() is None for p in processes):
                if not ready and self._listening(host, port):
                    ready = True
                    self.stdout.write(self.style.SUCCESS(f"Clarion is ready at {base}/"))
                    self.stdout.flush()
                time.sleep(0.2)
        finally:
            self._stop(processes)
        clean = (0, -signal.SIGINT, -signal.SIGTERM)
        failed = [p for p in processes if p.returncode not in clean]
        if failed and not stopping:
            sys.exit(1)

    def _stop(self, processes):
        for process in processes:
            if process.poll() is None:
                process.terminate()  # SIGTERM: daphne and qcluster both stop cleanly on it
        deadline = time.monotonic() + 10
        for process in processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.stdout.write("Clarion stopped.")

    @staticmethod
    def _listening(host: str, port: int) -> bool:
        """Whether daphne accepts connections yet."""
        try:
            with socket.create_connection(("127.0.0.1" if host == "0.0.0.0" else host, port),
                                          timeout=0.2):
                return True
        except OSError:
            return False

    @staticmethod
    def _demo_preferences_url() -> str:
        """The hosted preference center of the demo recipient, in the demo tenant."""
        recipient = Recipient.objects.filter(external_id="demo-user").first()
        tenant = Tenant.objects.filter(key="acme").first()
        if recipient is None:
            return "(no demo recipient)"
        return preferences_url(recipient_id=recipient.pk, tenant_id=tenant.pk if tenant else None)

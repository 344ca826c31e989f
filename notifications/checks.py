"""Django system checks (`manage.py check`, and every management command that runs the checks,
e.g. `serve` and `qcluster`): settings that would make the task queue and the sweeper work
against each other refuse to start. Registered in apps.py (tag "queue")."""

from django.conf import settings
from django.core import checks


def task_timing_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Errors for timing settings under which a message could be sent twice or a task run twice
    while it is still running:

    - notifications.E002: CLARION["STUCK_AFTER_SECONDS"] ≤ Q_CLUSTER["timeout"] — the sweeper would
      take a message or run for stuck while its task may still be working on it;
    - notifications.E003: Q_CLUSTER["retry"] ≤ Q_CLUSTER["timeout"] — django-q would present a task
      again while its first run is still going (django-q2's docs: "retry" must be larger than
      "timeout").

    Takes what Django's check framework passes; returns a list of `checks.Error`.
    """
    errors = []
    queue = settings.Q_CLUSTER
    timeout = queue.get("timeout")
    if not timeout:
        return errors
    stuck = settings.CLARION["STUCK_AFTER_SECONDS"]
    if stuck <= timeout:
        errors.append(checks.Error(
            f"CLARION_STUCK_AFTER_SECONDS ({stuck}) must be larger than the task queue's "
            f"timeout ({timeout} s).",
            hint="The sweeper would re-enqueue runs and messages whose task is still running, "
                 "or take a message still being sent for one whose worker died.",
            id="notifications.E002"))
    retry = queue.get("retry")
    if retry is not None and retry <= timeout:
        errors.append(checks.Error(
            f"Q_CLUSTER['retry'] ({retry} s) must be larger than Q_CLUSTER['timeout'] "
            f"({timeout} s).",
            hint="django-q would hand a task to a second worker while the first still runs it.",
            id="notifications.E003"))
    return errors

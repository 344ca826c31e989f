"""The task tests/test_worker_preload.py has a qcluster run: its imports are only what it reads,
so that importing it loads nothing the test asks about."""

import json
import sys

from django.conf import settings


def note_loaded(path: str) -> None:
    """Write to `path` (JSON) whether this process had imported the URLconf, the task modules
    and anymail's webhook modules (boto3 among them), and built the URL resolver's reverse
    tables, before this task began."""
    from django.urls import get_resolver

    from clarion.worker_preload import TASK_MODULES

    loaded = {"urlconf": settings.ROOT_URLCONF in sys.modules,
              "tasks": all(name in sys.modules for name in TASK_MODULES),
              "boto3": "boto3" in sys.modules,
              # URLResolver's flag, set once reverse() or resolve() has built its tables.
              "reverse_tables": get_resolver()._populated}
    with open(path, "w") as out:
        json.dump(loaded, out)

"""Settings of bench/pipeline.py's clusters: Clarion's own, except that a worker is not recycled.

django-q2 replaces a worker after `recycle` tasks (500 by default): the sentinel sees it gone on
its next guard cycle (every 0.5 s) and forks another, a 0.5–1.4 s gap in the drain that holds
it. A cluster kept for a row's alternating drains would recycle at places that differ from
drain to drain (in the no-op drains, which are tasks, and hardly ever in the pipeline's, which
batch 100 notifications a task), so neither kind of drain recycles; bench/README.md says what a
recycle costs. They also install bench/first_task.py, which notes when a drain's first task began.
"""

from clarion.settings import *  # noqa: F403
from clarion.settings import INSTALLED_APPS, Q_CLUSTER

Q_CLUSTER = {**Q_CLUSTER, "recycle": 1_000_000}
INSTALLED_APPS = [*INSTALLED_APPS, "bench.first_task.FirstTaskConfig"]

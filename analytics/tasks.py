"""django-q2 tasks of analytics."""

from .rollups import rollup_fold_all


def fold() -> int:
    """Every minute: fold the workers' deltas into the hourly rollups."""
    return rollup_fold_all()

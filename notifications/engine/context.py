"""One advance of a run (Pass), shared by the walk loop and the step handlers."""

from dataclasses import dataclass, field
from datetime import datetime

from ..models import Run, StepLog

NEXT = "next"
WAIT = "wait"
END = "end"  # the run ends here (a throttle refused it)


@dataclass
class Pass:
    """One advance of a run: its template variables and clock, the steps that already have a
    message (a re-run skips them), and the timeline entries, written together at the end."""

    run: Run
    now: datetime
    variables: dict = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    timeline: list[StepLog] = field(default_factory=list)
    preferences: dict = field(default_factory=dict)  # rows the preference gate read, per pass
    walked: frozenset[str] = frozenset()  # refs walked before the run last waited: passed over
    messages: list = field(default_factory=list)  # the Messages this pass created

    def log(self, step_ref: str, event: str, **detail) -> None:
        self.timeline.append(StepLog(run=self.run, step_ref=step_ref, event=event, detail=detail))


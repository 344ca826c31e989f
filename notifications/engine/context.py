"""One advance of a run (Pass), shared by the walk loop and the step handlers, and what the
passes of a batch of runs share (Batch, batch.py)."""

import json
from dataclasses import dataclass, field
from datetime import datetime

from clarion.db import instance_maker
from preferences.selectors import preference_layers_many, workflow_default
from preferences.tokens import Links

from ..models import Run, Step, StepLog, StepType, Workflow
from ..rendering.variables import LINK_VARIABLES, actor_variables_many, run_messages_many
from .writes import Writes, record

NEXT = "next"
WAIT = "wait"
END = "end"  # the run ends here (a throttle refused it)


@dataclass
class Pass:
    """One advance of a run: its template variables and clock, the steps that already have a
    message (a re-run skips them), and the timeline entries, written together at the end. Its
    rows are written through `writes` (the batch's, or its own): see writes.py."""

    run: Run
    now: datetime
    variables: dict = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    timeline: list[StepLog] = field(default_factory=list)
    preferences: dict = field(default_factory=dict)  # rows the preference gate read, per pass
    walked: frozenset[str] = frozenset()  # refs walked before the run last waited: passed over
    messages: list = field(default_factory=list)  # the Messages this pass created
    writes: Writes = field(default_factory=Writes)
    shared: dict = field(default_factory=dict)  # rows read once for a batch (e.g. layouts)

    def log(self, step_ref: str, event: str, **detail) -> StepLog:
        """Add a timeline entry (written at the end of the pass, or of its batch)."""
        entry = instance_maker(StepLog)(run_id=self.run.pk, step_ref=step_ref, event=event,
                                        detail=detail)
        self.timeline.append(entry)
        return entry

    def flush(self) -> None:
        """Write the rows held so far (this pass's and, in a batch, the earlier passes'):
        called before a step reads what earlier steps or runs wrote."""
        self.writes.flush()


# Step types that may render an email, into a layout: the layout can read any variable.
LAYOUT_STEP_TYPES = frozenset({StepType.EMAIL, StepType.ROUTE, StepType.APPROVAL})


def _step_texts(step: Step) -> list[str]:
    """What of `step` a template or condition could be written in: its JSON and its
    templates' published fields, as text."""
    texts = [json.dumps([step.config, step.conditions, step.unless, step.send_window])]
    texts += [json.dumps(template.fields) for template in step.templates.all()]
    return texts


class Batch:
    """The rows a batch's passes share, and what they collected to write at the end."""

    def __init__(self, runs: list[Run], *, new: bool = False):
        """`new`: the runs are new, not written yet (advance_new_runs): they have no messages
        to read, and each is inserted in the state its pass leaves it (Writes.insert_runs)."""
        self.runs = runs
        self._steps: dict[int, list[Step]] = {}
        self._defaults: dict[int, dict] = {}
        self._messages: dict = {run.pk: [] for run in runs}
        for message in [] if new else run_messages_many(runs):
            self._messages[message.run_id].append(message)
        self._layers: dict = {}
        by_tenant: dict = {}
        for run in runs:
            by_tenant.setdefault(run.tenant_id, (run.tenant, set()))[1].add(run.recipient_id)
        for tenant_id, (tenant, recipient_ids) in by_tenant.items():
            for pk, layers in preference_layers_many(recipient_ids=recipient_ids,
                                                     tenant=tenant).items():
                self._layers[(tenant_id, pk)] = layers
        self.writes = Writes(messages_read=True, insert_runs=new)
        self.passes: list[Pass] = []
        self.shared: dict = {}
        self._actors: dict = {}
        self._links: dict[int, bool] = {}
        self._link_maker = Links()

    def steps_of(self, workflow: Workflow) -> list[Step]:
        """The workflow's steps with their templates and published versions, read once."""
        if workflow.pk not in self._steps:
            self._steps[workflow.pk] = list(
                workflow.steps.prefetch_related("templates__published_version"))
        return self._steps[workflow.pk]

    def actor_of(self, run: Run) -> dict:
        """actor_variables of the run's trigger; the batch's triggers' actors are read together
        (one query) when the first is asked for."""
        if run.trigger_id not in self._actors:
            triggers = list({r.trigger_id: r.trigger for r in self.runs
                             if r.trigger_id not in self._actors}.values())
            for trigger, variables in zip(triggers, actor_variables_many(
                    [trigger.actor for trigger in triggers]), strict=True):
                self._actors[trigger.pk] = variables
        return self._actors[run.trigger_id]

    def links_read(self, workflow: Workflow) -> bool | Links:
        """Whether the workflow's runs need the signed links (rendering.variables.
        LINK_VARIABLES): when a step may render an email (its layout's footer reads them) or
        any step's JSON or published template names them, the batch's link maker
        (preferences.tokens.Links), else False. Decided once per workflow; a fan-out of
        in-app, SMS or push steps skips two signatures a run."""
        if workflow.pk not in self._links:
            self._links[workflow.pk] = any(
                step.type in LAYOUT_STEP_TYPES or any(
                    name in text for name in LINK_VARIABLES
                    for text in _step_texts(step)) for step in self.steps_of(workflow))
        return self._links[workflow.pk] and self._link_maker

    def messages_of(self, run: Run) -> list:
        """The run's messages as run_messages reads them (read for the whole batch at once)."""
        return self._messages[run.pk]

    def preference_memo(self, run: Run) -> dict:
        """The pass's memo for channel_step_verdict: the person's layers and the workflow's
        defaults, already read."""
        workflow = run.workflow
        if workflow.pk not in self._defaults:
            self._defaults[workflow.pk] = {} if workflow.critical else workflow_default(workflow)
        return {"layers": self._layers[(run.tenant_id, run.recipient_id)],
                "defaults": self._defaults[workflow.pk]}

    def write(self) -> None:
        """Write what the batch's passes decided: the rows still held (writes.py), then the
        timelines, outbound events and analytics facts. RunMovedOn: see Writes.run."""
        self.writes.flush()
        record(self.passes, self.writes)

"""What happened: triggers, runs and their timeline (step logs), idempotency records, digest
batches and approvals."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from clarion.ids import new_id

from .audience import ApiKey, Recipient, Tenant
from .workflows import Workflow


class Trigger(models.Model):
    """One API call: the workflow, the audience and the data it was given."""

    class Fanout(models.TextChoices):
        DONE = "done", _("Done")
        PENDING = "pending", _("Pending")

    id = models.UUIDField(primary_key=True, default=new_id, editable=False,
                          verbose_name=_("id"))
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="triggers",
                                 verbose_name=_("workflow"))
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="triggers",
        verbose_name=_("tenant"),
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="triggers",
        verbose_name=_("API key"),
    )
    actor = models.JSONField(null=True, blank=True, verbose_name=_("actor"))
    data = models.JSONField(default=dict, blank=True, verbose_name=_("data"))
    recipients = models.JSONField(default=list, blank=True, verbose_name=_("recipients"))
    cancellation_key = models.CharField(max_length=255, blank=True,
                                        verbose_name=_("cancellation key"))
    idempotency_key = models.CharField(
        max_length=255, blank=True,
        help_text=_("The request's Idempotency-Key, if it sent one (kept after the 24-hour replay "
                    "record expires, so support can find the trigger by it)."),
        verbose_name=_("idempotency key"))
    fanout = models.CharField(max_length=16, choices=Fanout.choices, default=Fanout.DONE,
                              verbose_name=_("fanout"))
    recipients_total = models.PositiveIntegerField(
        null=True, blank=True,
        help_text=_("How many recipients the trigger reaches: direct ones, plus topic subscribers "
                    "counted when the fan-out starts (the actor left out). Empty until then."),
        verbose_name=_("recipients total"),
    )
    runs_created = models.PositiveIntegerField(default=0, help_text=_("Runs created so far."),
                                               verbose_name=_("runs created"))
    fanout_after = models.BigIntegerField(
        default=0, help_text=_("The fan-out's keyset cursor: subscribers up to this recipient "
                               "primary key have their runs."),
        verbose_name=_("fanout after"),
    )
    fanout_at = models.DateTimeField(
        null=True, blank=True, help_text=_("When the fan-out last made progress (the sweeper "
                                           "resumes one that stalled)."),
        verbose_name=_("fanout at"),
    )
    cancelled_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Cancelled for everyone: a pending fan-out stops."),
        verbose_name=_("cancelled at"),
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True,
                                      verbose_name=_("created at"))

    class Meta:
        verbose_name = _("trigger")
        verbose_name_plural = _("triggers")
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["workflow", "cancellation_key"],
                condition=~Q(cancellation_key=""),
                name="trigger_cancellation_idx",
            ),
            models.Index(
                fields=["idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="trigger_idempotency_idx",
            ),
        ]

    def __str__(self):
        return str(self.id)


class Run(models.Model):
    """One recipient's pass through one workflow."""

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        WAITING = "waiting", _("Waiting")
        COMPLETED = "completed", _("Completed")
        CANCELLED = "cancelled", _("Cancelled")
        FAILED = "failed", _("Failed")

    id = models.UUIDField(primary_key=True, default=new_id, editable=False,
                          verbose_name=_("id"))
    # No index of their own on trigger and recipient: each is the first column of one in Meta
    # (run_once_per_recipient, run_recipient_idx), which serves every lookup by it.
    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="runs",
                                db_index=False, verbose_name=_("trigger"))
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="runs",
                                 verbose_name=_("workflow"))
    # The workflow's published version when the run began (empty: the workflow had none). No
    # index: nothing looks runs up by version, and a version is deleted only with its workflow,
    # which runs PROTECT.
    workflow_version = models.ForeignKey(
        "notifications.WorkflowVersion", null=True, blank=True, on_delete=models.DO_NOTHING,
        db_index=False, related_name="+", verbose_name=_("workflow version"))
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="runs",
                                  db_index=False, verbose_name=_("recipient"))
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="runs",
        verbose_name=_("tenant"),
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING,
                              verbose_name=_("status"))
    cursor = models.PositiveIntegerField(default=0, help_text=_("Index of the next step."),
                                         verbose_name=_("cursor"))
    wake_at = models.DateTimeField(null=True, blank=True, verbose_name=_("wake at"))
    step_refs = models.JSONField(
        default=list, blank=True,
        help_text=_("While the run waits: the refs of the workflow's steps, in order, when it "
                    "began waiting (the cursor indexes them), so it resumes at the right step "
                    "however the workflow is edited meanwhile. Empty otherwise."),
        verbose_name=_("step refs"),
    )
    state = models.JSONField(default=dict, blank=True, help_text=_("Step outputs."),
                             verbose_name=_("state"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("run")
        verbose_name_plural = _("runs")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["trigger", "recipient"], name="run_once_per_recipient")
        ]
        indexes = [
            # The sweeper: waiting runs that are due, running runs that stalled.
            models.Index(
                fields=["status", "wake_at"],
                condition=Q(status__in=["running", "waiting"]),
                name="run_active_idx",
            ),
            models.Index(fields=["recipient", "-created_at"], name="run_recipient_idx"),
        ]

    def __str__(self):
        return f"{self.workflow.key} → {self.recipient.external_id}"


class AdvanceLane(models.Model):
    """An advance lane that a queued or running `advance_lane` task holds: a trigger whose
    batch falls in a held lane queues no task of its own, that task's claims take its runs
    (engine/claim.py explains why none is lost). At most CLARION["ADVANCE_LANES"] rows."""

    lane = models.PositiveSmallIntegerField(primary_key=True, verbose_name=_("lane"))
    touched_at = models.DateTimeField(
        help_text=_("When its task last claimed a full batch; older than "
                    "ADVANCE_LANE_STALE_SECONDS, the lane counts as free (its task was lost)."),
        verbose_name=_("touched at"))

    class Meta:
        verbose_name = _("advance lane")
        verbose_name_plural = _("advance lanes")

    def __str__(self):
        return f"lane {self.lane}"


class StepLog(models.Model):
    """One decision on a run: the admin shows these as the run's timeline."""

    class Event(models.TextChoices):
        TRIGGERED = "triggered", _("Triggered")
        STARTED = "started", _("Started")
        SKIPPED = "skipped", _("Skipped")
        CONDITION_FALSE = "condition_false", _("Condition false")
        OPTED_OUT = "opted_out", _("Opted out")
        QUIET_HOURS = "quiet_hours", _("Quiet hours")
        DELAYED = "delayed", _("Delayed")
        RESUMED = "resumed", _("Resumed")
        BATCHED = "batched", _("Joined a digest")
        DIGESTED = "digested", _("Digested")
        QUEUED = "queued", _("Queued")
        RETRYING = "retrying", _("Retrying")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        RATE_LIMITED = "rate_limited", _("Rate limited")
        THROTTLED = "throttled", _("Throttled")
        BRANCHED = "branched", _("Branch taken")
        PASSED = "passed", _("Passed")
        SEND_WINDOW = "send_window", _("Outside the send window")
        SUCCEEDED = "succeeded", _("Success reached")  # a route: a channel reached its success
        EXHAUSTED = "exhausted", _("Every channel tried")  # a route sent all it could
        CANCELLED = "cancelled", _("Cancelled")
        COMPLETED = "completed", _("Completed")
        ASKED = "asked", _("Approval asked")
        ANSWERED = "answered", _("Approval answered")
        EXPIRED = "expired", _("Approval expired")

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="step_logs",
                            verbose_name=_("run"))
    step_ref = models.CharField(max_length=64, blank=True, verbose_name=_("step ref"))
    event = models.CharField(max_length=32, choices=Event.choices, verbose_name=_("event"))
    detail = models.JSONField(default=dict, blank=True, verbose_name=_("detail"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("step log")
        verbose_name_plural = _("step logs")
        ordering = ["run", "id"]

    def __str__(self):
        return f"{self.step_ref or '-'} {self.event}"


class IdempotencyRecord(models.Model):
    """The first response to a request carrying an `Idempotency-Key`, kept 24 hours."""

    # No index of its own: idempotency_unique (api_key, key) leads with it.
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+",
                                db_index=False, verbose_name=_("API key"))
    key = models.CharField(max_length=255, verbose_name=_("key"))
    request_hash = models.CharField(max_length=64, verbose_name=_("request hash"))
    response_status = models.PositiveSmallIntegerField(null=True, blank=True,
                                                       verbose_name=_("response status"))
    response_body = models.JSONField(null=True, blank=True, verbose_name=_("response body"))
    created_at = models.DateTimeField(auto_now_add=True, db_index=True,
                                      verbose_name=_("created at"))

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_unique")
        ]

    def __str__(self):
        return self.key

    @property
    def in_progress(self) -> bool:
        return self.response_status is None


class DigestBatch(models.Model):
    """The events one digest step gathers for one recipient, tenant and key value while its
    window is open (notifications/engine/digest.py). At most one open batch per `key`: the
    database refuses a second (digestbatch_one_open), so concurrent runs join the same one."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    class CloseReason(models.TextChoices):
        WINDOW = "window", _("Its window ended")
        MAX_EVENTS = "max_events", _("It reached max_events")
        CANCELLED = "cancelled", _("Every run in it was cancelled")

    id = models.UUIDField(primary_key=True, default=new_id, editable=False,
                          verbose_name=_("id"))
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE,
                                 related_name="digest_batches", verbose_name=_("workflow"))
    step_ref = models.CharField(max_length=64, verbose_name=_("step ref"))
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE,
                                  related_name="digest_batches", verbose_name=_("recipient"))
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE,
                               related_name="digest_batches", verbose_name=_("tenant"))
    key = models.CharField(max_length=64, help_text=_("SHA-256 of (workflow, step, recipient, "
                                                      "tenant, key value)."), verbose_name=_("key"))
    key_value = models.JSONField(null=True, blank=True,
                                 help_text=_("The value at the step's `key` path."),
                                 verbose_name=_("key value"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN,
                              verbose_name=_("status"))
    opened_at = models.DateTimeField(verbose_name=_("opened at"))
    closes_at = models.DateTimeField(help_text=_("When its window ends."),
                                     verbose_name=_("closes at"))
    closed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("closed at"))
    close_reason = models.CharField(max_length=16, choices=CloseReason.choices, blank=True,
                                    verbose_name=_("close reason"))
    event_count = models.PositiveIntegerField(default=0, verbose_name=_("event count"))
    carrier = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+", help_text=_("The run that goes on with it."),
                                verbose_name=_("carrier"))

    class Meta:
        verbose_name = _("digest batch")
        verbose_name_plural = _("digest batches")
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=Q(status="open"),
                                    name="digestbatch_one_open"),
        ]

    def __str__(self):
        return f"{self.step_ref} batch {self.id}"


class DigestEvent(models.Model):
    """One run's event in a digest batch: the trigger's data and actor, and what became of it
    when the batch closed."""

    class Outcome(models.TextChoices):
        PENDING = "", _("Waiting for the batch to close")
        INCLUDED = "included", _("In the digest")
        SENT_AT_ONCE = "sent_at_once", _("Sent at once (first_at_once)")
        CANCELLED = "cancelled", _("Left out: its run was cancelled")
        READ = "read", _("Left out: read in-app before the window closed")

    batch = models.ForeignKey(DigestBatch, on_delete=models.CASCADE, related_name="events",
                              verbose_name=_("batch"))
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="digest_events",
                            verbose_name=_("run"))
    step_ref = models.CharField(max_length=64, verbose_name=_("step ref"))
    data = models.JSONField(default=dict, blank=True, verbose_name=_("data"))
    actor = models.JSONField(default=dict, blank=True, verbose_name=_("actor"))
    at = models.DateTimeField(help_text=_("When its trigger was made."), verbose_name=_("at"))
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True,
                               verbose_name=_("outcome"))

    class Meta:
        ordering = ["batch", "at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step_ref"], name="digestevent_once"),
        ]
        indexes = [models.Index(fields=["batch", "at"], name="digestevent_batch_at")]

    def __str__(self):
        return f"{self.step_ref} event of run {self.run_id}"


class Approval(models.Model):
    """A question an `approval` step put to one person (or the `request_approval` tool), and its
    answer. The first answer from any channel wins: the row moves from `pending` once, by a
    conditional UPDATE; a later answer finds it answered. Unanswered at `expires_at`, it expires
    with the step's default decision."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting for an answer")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        EXPIRED = "expired", _("Expired (no answer in time)")

    class Decision(models.TextChoices):
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")

    id = models.UUIDField(primary_key=True, default=new_id, editable=False,
                          verbose_name=_("id"))
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="approvals",
                            verbose_name=_("run"))
    step_ref = models.CharField(max_length=64, verbose_name=_("step ref"))
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="approvals",
                                  verbose_name=_("recipient"))
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="approvals",
        verbose_name=_("tenant"),
    )
    question = models.TextField(verbose_name=_("question"))
    details = models.TextField(blank=True, verbose_name=_("details"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING,
                              verbose_name=_("status"))
    decision = models.CharField(
        max_length=16, choices=Decision.choices, blank=True,
        help_text=_("What the run goes on with: the answer, or the default once expired."),
        verbose_name=_("decision"))
    default_decision = models.CharField(max_length=16, choices=Decision.choices,
                                        default=Decision.REJECTED,
                                        verbose_name=_("default decision"))
    expires_at = models.DateTimeField(verbose_name=_("expires at"))
    answered_at = models.DateTimeField(null=True, blank=True, verbose_name=_("answered at"))
    answered_via = models.CharField(max_length=16, blank=True,
                                    help_text=_("email, in_app, chat (Slack) or api."),
                                    verbose_name=_("answered via"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("approval")
        verbose_name_plural = _("approvals")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step_ref"], name="approval_once_per_step"),
        ]

    def __str__(self):
        return f"{self.step_ref} of run {self.run_id}: {self.status}"

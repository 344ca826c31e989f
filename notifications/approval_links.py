"""The links that answer an approval: signed (django.core.signing, salted), bound to the approval,
its recipient and one decision, and good until the approval expires. They are single-use in
effect: the first answer moves the approval out of `pending`, and any link then shows it
"already answered"."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import Approval

SALT = "clarion.approval"
DECISIONS = {"approve": Approval.Decision.APPROVED, "reject": Approval.Decision.REJECTED}


class ApprovalLinkError(ValueError):
    """A link that is not (or no longer) valid; the message says why, for the person."""


@dataclass(frozen=True)
class ApprovalLink:
    approval_id: str
    recipient: str  # the recipient's external id the link was made for
    decision: str  # Approval.Decision


def approval_token(approval: Approval, decision: str) -> str:
    """The signed token of one answer ("approved" or "rejected") to `approval`."""
    short = "approve" if decision == Approval.Decision.APPROVED else "reject"
    return signing.dumps({"a": str(approval.id), "r": approval.recipient.external_id,
                          "d": short}, salt=SALT, compress=True)


def approval_link_read(token: str, *, now: datetime | None = None) -> ApprovalLink:
    """What `token` answers; raises ApprovalLinkError when it is forged, damaged, or older than
    the longest an approval may wait (the approval's own expiry is checked when answering)."""
    try:
        value = signing.loads(token, salt=SALT,
                              max_age=settings.CLARION["APPROVAL_MAX_WAIT_SECONDS"])
    except signing.SignatureExpired:
        raise ApprovalLinkError(_("This link has expired.")) from None
    except signing.BadSignature:
        raise ApprovalLinkError(_("This link is not valid.")) from None
    if not isinstance(value, dict) or value.get("d") not in DECISIONS:
        raise ApprovalLinkError(_("This link is not valid."))
    return ApprovalLink(approval_id=str(value.get("a")), recipient=str(value.get("r")),
                        decision=DECISIONS[value["d"]])


def approval_urls(approval: Approval) -> dict:
    """{"approve": {"page", "api"}, "reject": {…}}: the hosted page (email links) and the JSON
    endpoint (the inbox widget) of each answer, absolute, on PUBLIC_URL."""
    base = settings.PUBLIC_URL.rstrip("/")
    urls = {}
    for short, decision in DECISIONS.items():
        token = approval_token(approval, decision)
        urls[short] = {"page": base + reverse("approval-page", args=[token]),
                       "api": base + reverse("approval-answer", args=[token])}
    return urls


def is_open(approval: Approval, now: datetime | None = None) -> bool:
    return approval.status == Approval.Status.PENDING and approval.expires_at > (
        now or timezone.now())

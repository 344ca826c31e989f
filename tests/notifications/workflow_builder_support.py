"""What the workflow builder's tests share: posted forms, the form's fields as a browser posts
them, the invoice workflow as fields."""

import re
from html import unescape

from django.http import QueryDict
from django.urls import reverse

from notifications.admin.builder import convert
from notifications.admin.builder.declarations import Problems


def posted(fields: dict) -> QueryDict:
    data = QueryDict(mutable=True)
    for name, value in fields.items():
        if isinstance(value, list):
            data.setlist(name, value)
        else:
            data[name] = value
    return data

INVOICE_FORM = {
    "key": "invoice-overdue", "name": "Invoice overdue", "category": "billing",
    "default_locale": "en", "active": "on",
    "steps-0-type": "in_app", "steps-0-ref": "inbox", "steps-0-when-mode": "",
    "steps-1-type": "delay", "steps-1-ref": "wait", "steps-1-duration_amount": "1",
    "steps-1-duration_unit": "days", "steps-1-until": "",
    "steps-2-type": "email", "steps-2-ref": "mail", "steps-2-unless_step": "inbox",
    "steps-2-unless_is": "read", "steps-2-window_start": "", "steps-2-window_end": "",
    "steps-3-type": "sms", "steps-3-ref": "text", "steps-3-when-mode": "all",
    "steps-3-when-items-0-path": "data.amount", "steps-3-when-items-0-op": "gte",
    "steps-3-when-items-0-value": "1000",
}


def steps_of(fields: dict) -> tuple[list[dict], Problems]:
    problems = Problems()
    tree = convert.form_tree(posted(fields))
    steps = [convert.step_from_form(node, f"steps-{index}-", problems)
             for index, node in convert.items(tree["steps"])]
    return steps, problems

def change_url(workflow):
    return reverse("admin:notifications_workflow_change", args=[workflow.pk])

def form_fields(html: str) -> dict:
    """The named controls of the builder's form as a browser would post them."""
    start = html.index('<form method="post" id="wb-form"')
    html = html[start:html.index("</form>", start)]
    fields: dict = {}
    for tag in re.findall(r"<(?:input|select|textarea)[^>]*>", html):
        name = re.search(r' name="([^"]+)"', tag)
        if not name or name.group(1) in ("csrfmiddlewaretoken", "_infer"):
            continue
        name = name.group(1)
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                fields.setdefault(name, []).append(re.search(r'value="([^"]*)"', tag).group(1))
            continue
        if tag.startswith("<select"):
            block = html[html.index(tag):]
            block = block[:block.index("</select>")]
            chosen = re.search(r'<option value="([^"]*)" selected>', block)
            fields[name] = unescape(chosen.group(1)) if chosen else re.search(
                r'<option value="([^"]*)"', block).group(1)
            continue
        if tag.startswith("<textarea"):
            continue
        value = re.search(r'value="([^"]*)"', tag)
        fields[name] = unescape(value.group(1)) if value else ""
    return fields

"""What the admin tests share (test_admin.py, test_admin_runs.py): admin URLs, the links and
messages of a response. Their fixtures, `welcome` and `triggered`, are in conftest.py."""

import re
from html import unescape

from django.contrib.messages import get_messages
from django.urls import reverse


def url(model, view="changelist", *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def hrefs(response) -> list[str]:
    return [unescape(href) for href in re.findall(r'href="([^"]*)"', response.content.decode())]


def message_texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]

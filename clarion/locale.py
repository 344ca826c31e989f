"""The admin speaks the person's language: English, French or German (settings.LANGUAGES), chosen
with the admin's language menu (Django's `set_language`, a cookie) or else from the browser's
Accept-Language. Only the admin: the API's answers and webhooks stay in LANGUAGE_CODE, and the
hosted pages (preference center, unsubscribe, approval) follow the recipient's own locale
(`language_for`)."""

import functools

from django.conf import settings
from django.middleware.locale import LocaleMiddleware
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import translation

# Languages the hosted pages (preference center, unsubscribe, approval) are translated into;
# the recipient's locale picks one.
HOSTED_LANGUAGES = ("en", "fr", "de")


def language_for(locale: str) -> str:
    """The hosted pages' language for a recipient's locale (a BCP 47 tag such as "pt-BR" or
    "de_AT"): the tag, then its language alone (pt-BR → pt-br → pt), the first the pages are
    translated into (HOSTED_LANGUAGES), else "en"."""
    locale = (locale or "").lower().replace("_", "-")
    for candidate in (locale, locale.split("-", 1)[0]):
        if candidate in HOSTED_LANGUAGES:
            return candidate
    return "en"


def is_admin_path(path: str) -> bool:
    """Whether `path` (a request's path_info: without the script prefix, SCRIPT_NAME) is a page
    of the admin site."""
    return path.startswith(_admin_path(get_urlconf() or settings.ROOT_URLCONF))


@functools.lru_cache(maxsize=8)
def _admin_path(urlconf: str) -> str:
    # reverse() puts the script prefix in front, which path_info leaves out; kept per URLconf
    # (every request asks twice, and the answer changes only with the URLconf).
    return "/" + reverse("admin:index", urlconf=urlconf)[len(get_script_prefix()):]


class AdminLocaleMiddleware(LocaleMiddleware):
    """Django's LocaleMiddleware, for the admin's pages only; every other request runs in
    LANGUAGE_CODE (a thread's earlier admin request must not leave its language behind)."""

    def process_request(self, request):
        if is_admin_path(request.path_info):
            super().process_request(request)
        else:
            translation.activate(settings.LANGUAGE_CODE)

    def process_response(self, request, response):
        if is_admin_path(request.path_info):
            return super().process_response(request, response)
        return response

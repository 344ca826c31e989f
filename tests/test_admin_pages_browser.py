"""Every admin page (generated from the admin site's registry and URL patterns,
tests/admin_pages.py) opened in chromium, with a real row behind every change page: axe-core
finds no serious or critical violation at 1280 px (and at 375 px on Clarion's own pages), and at
375 px no page scrolls sideways (a stock changelist's wide table scrolls inside its own box,
which is allowed); in French and German as well (longer words, longer buttons)."""

import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.db import connections

from .admin_pages import (
    admin_pages,
    admin_world,
    admin_world_gaps,
    unchecked_admin_urls,
)
from .browser_support import overflowing, page_width, serious_violations
from .events.conftest import Receiver

PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 800}


def in_a_thread(func, **kwargs):
    """func(**kwargs) in a thread of its own: delivery runs an event loop, which Playwright's,
    running in this thread, would refuse. Its database connections are closed after."""
    def run():
        try:
            return func(**kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def receiver(clarion_settings):
    """A real HTTP endpoint on 127.0.0.1 for outbound events (private addresses allowed)."""
    clarion_settings(ALLOW_PRIVATE_URLS=True)
    made = Receiver()
    yield made
    made.close()


def test_every_admin_url_is_a_checked_page_or_a_listed_non_page():
    assert unchecked_admin_urls() == [], (
        "Add these admin URLs to CUSTOM_PAGES (pages) or NOT_PAGES in tests/admin_pages.py")


# The suite checks Clarion's own views (those that are not a model's stock list, add, change,
# history or delete view; and the builder and template editor), in English and in German;
# `make chaos` checks every page, and every page of Clarion's own apps in French and German.
MODEL_VIEWS = re.compile(r" (changelist|add|change|history|delete)$")
# Change views that are wholly Clarion's pages: the workflow builder and the template editor.
OWN_CHANGE_VIEWS = {"notifications.Workflow change", "notifications.Template change"}


def quick(admin_page) -> bool:
    """The suite's slice: Clarion's own views."""
    return not MODEL_VIEWS.search(admin_page.name) or admin_page.name in OWN_CHANGE_VIEWS


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_admin_pages_pass_axe_and_fit_375_px(live_server, page, api, run_tasks, smtp, receiver):
    sweep(live_server, page, api, run_tasks, receiver, quick)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_admin_pages_in_german_pass_axe_and_fit_375_px(live_server, page, api, run_tasks, smtp,
                                                       receiver):
    """Translated text is longer (German's most): Clarion's own views must still fit."""
    sweep(live_server, page, api, run_tasks, receiver, quick, "de")


@pytest.mark.chaos
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", ["fr", "de"])
def test_clarions_admin_pages_in_french_and_german_pass_axe_and_fit_375_px(
        live_server, page, api, run_tasks, smtp, receiver, language):
    """Every page of Clarion's own (its models' pages too), in French and in German."""
    sweep(live_server, page, api, run_tasks, receiver, lambda p: p.custom, language)


@pytest.mark.chaos
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_every_admin_page_passes_axe_and_fits_375_px(live_server, page, api, run_tasks, smtp,
                                                     receiver):
    sweep(live_server, page, api, run_tasks, receiver, lambda p: True)


def sweep(live_server, page, api, run_tasks, receiver, chosen, language: str = "en") -> None:
    """axe at 1280 and 375 px, and the width at 375 px, on the admin pages `chosen` keeps, in
    `language` (a code of settings.LANGUAGES)."""
    user = in_a_thread(admin_world, api=api, run_tasks=run_tasks, receiver=receiver)
    problems: list[str] = []

    def check(name: str, *, axe: bool, width: bool) -> None:
        found = serious_violations(page) if axe else []
        found = [f"{name} at {page.viewport_size['width']} px: {v}" for v in found]
        if width and page_width(page) > PHONE["width"] + 1:
            found.append(f"{name} is {page_width(page)} px wide at 375 px: {overflowing(page)}")
        for problem in found:
            print(problem, flush=True)  # noqa: T201 (seen at once with -s on a long run)
        problems.extend(found)

    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/admin/login/")
    check("login", axe=True, width=True)
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", "s3cret-pass")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    assert admin_world_gaps() == [], "these models have no row: their pages go unchecked"
    if language != "en":  # as the header's language menu chooses it (Django's set_language)
        page.context.add_cookies([{"name": settings.LANGUAGE_COOKIE_NAME, "value": language,
                                   "url": live_server.url}])
        page.goto(f"{live_server.url}/admin/")
        assert page.get_attribute("html", "lang") == language

    pages = [p for p in admin_pages(user) if chosen(p)]
    if os.environ.get("CLARION_ADMIN_PAGES"):  # a regular expression: check only those pages
        pages = [p for p in pages if re.search(os.environ["CLARION_ADMIN_PAGES"], p.name)]
        assert pages, "no admin page's name matches CLARION_ADMIN_PAGES"
    print(f"{len(pages)} admin pages", flush=True)  # noqa: T201
    for admin_page in pages:
        page.set_viewport_size(DESKTOP)
        if not opened(page, live_server.url + admin_page.path, admin_page.name, problems):
            continue
        check(admin_page.name, axe=True, width=False)
        page.set_viewport_size(PHONE)
        # axe again at 375 px where the page is Clarion's own (the stock admin's pages share
        # their header and navigation with those).
        check(admin_page.name, axe=admin_page.custom, width=True)
    assert problems == [], f"{len(problems)} problems on {len(pages)} pages:\n" + "\n".join(
        problems)


def opened(page, url: str, name: str, problems: list[str]) -> bool:
    response = page.goto(url)
    if response.status == 200:
        return True
    problems.append(f"{name}: HTTP {response.status}")
    return False

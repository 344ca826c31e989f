"""The French and German catalogs are complete and current: every string the code and templates
mark for translation has a msgid in them (makemessages run on a copy of the project adds
none), every msgid has a translation that is neither empty nor fuzzy, and the compiled .mo files
committed beside them say what the .po files say."""

import ast
import gettext
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
LANGUAGES = ("fr", "de")
CATALOGS = sorted(ROOT.glob("*/locale/*/LC_MESSAGES/django.po"))
# What `make messages` leaves out of the catalogs (the Makefile's -i patterns).
NOT_TRANSLATED = (".git", ".venv", "var", "tests", "bench", "docs", "static", "node_modules",
                  "*.egg-info", "__pycache__")


def entries(po: Path) -> list[dict]:
    """Each entry of a .po file (the header left out) as {"flags", "msgctxt", "msgid",
    "msgid_plural", "msgstr": [forms]}, strings unquoted and joined."""
    found = []
    for block in po.read_text(encoding="utf-8").split("\n\n"):
        entry = {"flags": [], "msgctxt": None, "msgid": None, "msgid_plural": None,
                 "msgstr": []}
        current = None
        for line in block.strip().splitlines():
            if line.startswith("#,"):
                entry["flags"] = [flag.strip() for flag in line[2:].split(",")]
            elif line.startswith("#"):
                continue
            elif match := re.match(r'(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?) (".*")$',
                                   line):
                name, value = match.group(1), unquote(match.group(2))
                if name.startswith("msgstr"):
                    entry["msgstr"].append(value)
                    current = ("msgstr", len(entry["msgstr"]) - 1)
                else:
                    entry[name] = value
                    current = (name, None)
            elif line.startswith('"') and current:
                name, index = current
                if index is None:
                    entry[name] += unquote(line)
                else:
                    entry["msgstr"][index] += unquote(line)
        if entry["msgid"]:
            found.append(entry)
    return found


def unquote(quoted: str) -> str:
    """A .po string's text: its escapes (\\" \\\\ \\n \\t) are Python's."""
    return ast.literal_eval(quoted)


def msgids(po: Path) -> set[tuple]:
    return {(e["msgctxt"], e["msgid"], e["msgid_plural"]) for e in entries(po)}


def test_each_language_has_a_catalog_per_app_that_has_one():
    assert CATALOGS
    apps = {po.parts[-5] for po in CATALOGS}
    for app in apps:
        for language in LANGUAGES:
            assert (ROOT / app / "locale" / language / "LC_MESSAGES" / "django.po").exists()


@pytest.mark.parametrize("po", CATALOGS, ids=lambda po: "/".join(po.parts[-5:-2]))
def test_every_msgid_is_translated_and_none_is_fuzzy(po):
    untranslated = [e["msgid"] for e in entries(po) if not all(e["msgstr"])]
    fuzzy = [e["msgid"] for e in entries(po) if "fuzzy" in e["flags"]]
    assert untranslated == [], f"{po}: no translation for {untranslated[:5]}"
    assert fuzzy == [], f"{po}: fuzzy (check and unmark) {fuzzy[:5]}"


@pytest.mark.parametrize("po", CATALOGS, ids=lambda po: "/".join(po.parts[-5:-2]))
def test_the_committed_mo_says_what_the_po_says(po):
    with po.with_suffix(".mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    stale = []
    for e in entries(po):
        context = e["msgctxt"]
        if e["msgid_plural"] is None:
            got = (compiled.pgettext(context, e["msgid"]) if context is not None
                   else compiled.gettext(e["msgid"]))
            if got != e["msgstr"][0]:
                stale.append(e["msgid"])
        else:
            got = [compiled.ngettext(e["msgid"], e["msgid_plural"], n) for n in (1, 2)]
            if got != e["msgstr"][:2] and got != [e["msgstr"][0]] * 2:
                stale.append(e["msgid"])
    assert stale == [], f"{po}: run `make messages` (compilemessages); stale: {stale[:5]}"


def test_makemessages_finds_no_string_the_catalogs_lack(tmp_path):
    """Every string marked in the code and templates is in the catalogs (so it has the
    translation the test above checks): run on a copy, `make messages` would add nothing."""
    if shutil.which("xgettext") is None:
        pytest.skip("xgettext is missing: apt-get install gettext")
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*NOT_TRANSLATED))
    result = subprocess.run(
        [sys.executable, "manage.py", "makemessages", *(f"-l{lang}" for lang in LANGUAGES),
         "--no-obsolete", "--no-location"],
        cwd=copy, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(copy), "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    for po in CATALOGS:
        fresh = copy / po.relative_to(ROOT)
        missing = msgids(fresh) - msgids(po)
        assert missing == set(), f"{po.relative_to(ROOT)} lacks {sorted(missing)[:5]}"

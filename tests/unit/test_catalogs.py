"""The French catalogs cover every message: extracted with Babel, compared with the .po files.

Fails when a template, a view, a reason or a label has a message without French, when a
translation loses a placeholder, or when a committed .mo is older than its .po (run
`make translations`).
"""

from __future__ import annotations

import gettext
import io
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from gateway.screening.words import (
    CALLER_KINDS,
    ENTRY_FORMS,
    NUMBER_TYPES,
    REASONS,
    RULE_KINDS,
    SOURCES,
    SYSTEM_LABELS,
)
from tests.conftest import REPO_ROOT

PACKAGES = ("gateway", "web")
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2),
            "N_": None, "Nn_": (1, 2), "_n": (1, 2), "_p": ((1, "c"), 2)}
PLACEHOLDER = re.compile(r"\{(\w*)\}")

MessageKey = tuple[str | None, str | tuple[str, ...]]


def _po(package: str) -> Catalog:
    with (REPO_ROOT / package / "translations/fr/LC_MESSAGES/messages.po").open("rb") as f:
        return read_po(f)


def _extracted(package: str) -> dict[MessageKey, str]:
    """Every message of `package` as Babel extracts it (id or (singular, plural), context)."""
    cfg = REPO_ROOT / package / "translations" / "babel.cfg"
    with cfg.open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    found: dict[MessageKey, str] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
            REPO_ROOT, method_map, options_map, keywords=KEYWORDS):
        key = (context, tuple(message) if isinstance(message, list | tuple) else message)
        found[key] = f"{filename}:{lineno}"
    return found


def _key(message: Message) -> MessageKey:
    msgid = message.id
    return (message.context, tuple(msgid) if isinstance(msgid, list | tuple) else msgid)


def _translated(message: Message) -> bool:
    strings = message.string if isinstance(message.string, tuple) else (message.string,)
    return bool(strings) and all(strings) and not message.fuzzy


@pytest.mark.parametrize("package", PACKAGES)
def test_every_extracted_message_has_french(package: str) -> None:
    extracted = _extracted(package)
    assert len(extracted) > 50, "extraction found almost nothing: is babel.cfg right?"
    catalog = {_key(m): m for m in _po(package) if m.id}
    missing = sorted(f"{where}: {key[1]!r}" for key, where in extracted.items()
                     if key not in catalog or not _translated(catalog[key]))
    assert not missing, "no French (run `make translations`, then translate):\n" + \
        "\n".join(missing)


@pytest.mark.parametrize("package", PACKAGES)
def test_translations_keep_their_placeholders(package: str) -> None:
    for message in _po(package):
        if not message.id or not message.string:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = set(PLACEHOLDER.findall(ids[-1])) | set(PLACEHOLDER.findall(ids[0]))
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) <= wanted, (message.id, text)


def test_every_reason_label_and_source_has_french() -> None:
    """The core's tables, checked directly too: these are what old call rows are shown with."""
    french = gettext.translation("messages", REPO_ROOT / "gateway" / "translations", ["fr"])
    singles = [t for t in REASONS.values() if isinstance(t, str)]
    singles += [*ENTRY_FORMS.values(), *SYSTEM_LABELS, *CALLER_KINDS.values(),
                *NUMBER_TYPES.values(), *SOURCES.values(), *RULE_KINDS.values()]
    # "mobile" and "pattern"-only forms read the same in French; everything else must differ.
    same_in_french = {"{pattern}", "mobile"}
    untranslated = [t for t in singles if french.gettext(t) == t and t not in same_in_french]
    assert not untranslated, untranslated
    for template in REASONS.values():
        if isinstance(template, tuple):
            singular, plural, _count = template
            assert french.ngettext(singular, plural, 2) != plural, template


@pytest.mark.parametrize("package", PACKAGES)
def test_the_committed_mo_is_compiled_from_the_po(package: str) -> None:
    folder = REPO_ROOT / package / "translations" / "fr" / "LC_MESSAGES"
    fresh = io.BytesIO()
    write_mo(fresh, _po(package))
    fresh.seek(0)
    with (folder / "messages.mo").open("rb") as committed:
        assert gettext.GNUTranslations(committed)._catalog == \
            gettext.GNUTranslations(fresh)._catalog, "run `make translations`"  # type: ignore


def test_a_message_in_both_catalogs_reads_the_same() -> None:
    gateway = {_key(m): m.string for m in _po("gateway") if m.id}
    web = {_key(m): m.string for m in _po("web") if m.id}
    differ = {key: (gateway[key], web[key]) for key in gateway.keys() & web.keys()
              if gateway[key] != web[key]}
    # The UI loads both catalogs, the web one last: a different French would silently win.
    assert not differ, differ


def test_every_catalog_folder_is_packaged() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for package in PACKAGES:
        assert Path(REPO_ROOT / package / "translations").is_dir()
    assert pyproject.count('"translations/**/*"') == 2

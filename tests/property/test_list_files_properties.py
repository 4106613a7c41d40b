"""What Ringfence exports it imports back to the same entries (issue 11, item 11): Hypothesis
builds lists through the store's API (every kind, every action, labels a spreadsheet would
evaluate or split, expiries past and future, "permit next call"), exports each as CSV,
imports it into a fresh database and finds the same kind, pattern, action, label, expiry and
once. Labels lose only what the export strips on purpose (control and bidi characters)."""

from __future__ import annotations

import io
import shutil
import string
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway import untrusted
from gateway.config import load_settings_from_text
from gateway.screening.rules import PROMPTS, REJECT_CODES
from gateway.store.models import ListEntryRow
from tests.helpers import Services

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
ACTIONS = (["pass", "challenge", "voicemail", "announce"]
           + [f"reject:{code}" for code in REJECT_CODES]
           + [f"announce:{p}" for p in PROMPTS] + [f"voicemail:{p}" for p in PROMPTS])
LABELS = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40) | st.sampled_from(
    ["=1+2", "+33612345678", "-2", "@SUM(A1)", "'=quoted", "''", "\tx", 'a "b", c',
     "spam;junk", " padded ", "#not a comment", "line\nbreak", "\u202eevil"])
DIGITS = st.text(string.digits, min_size=8, max_size=8)
PATTERNS = st.one_of(
    DIGITS.map(lambda d: ("+336" + d, "exact")),
    DIGITS.map(lambda d: ("06" + d, None)),
    st.text(string.digits, min_size=3, max_size=5).map(lambda d: (f"0612{d}*", None)),
    st.text(string.digits, min_size=3, max_size=3).map(lambda d: (f"+336{d}??{d}", "glob")),
    st.text(string.digits, min_size=2, max_size=4).map(lambda d: (fr"re:^\+3361{d}\d+$", None)),
    st.sampled_from([("re:=1", None), ("re:-?\\d+", None), ("re:[+]33", None)]),
)
ENTRIES = st.lists(st.fixed_dictionaries({
    "pattern": PATTERNS, "label": LABELS, "action": st.none() | st.sampled_from(ACTIONS),
    "expires_at": st.none() | st.integers(-10**6, 10**6).map(
        lambda s: NOW + timedelta(seconds=s, microseconds=s % 997)),
    "once": st.booleans(),
}), max_size=12)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    service = Services.open(load_settings_from_text("", folder))
    service.store.close()
    return folder / "data" / "ringfence.db"


def installation(template: Path, folder: Path) -> Services:
    folder.mkdir(parents=True)
    settings = load_settings_from_text(f'data_dir = "{folder / "data"}"\n', folder)
    settings.data_dir.mkdir(parents=True)
    shutil.copy(template, settings.data_dir / "ringfence.db")
    return Services.open(settings, upgrade=False)


def entries(service: Services, list_name: str) -> list[tuple[Any, ...]]:
    with service.db.session() as s:
        rows = s.scalars(select(ListEntryRow).where(ListEntryRow.list == list_name))
        return sorted((r.kind, r.pattern, r.action, r.label, r.expires_at, r.once)
                      for r in rows)


def exported_label(label: str) -> str:
    """What an export keeps of a label: control and bidi characters are stripped."""
    return untrusted.strip_controls(label)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(list_name=st.sampled_from(["allow", "block"]), drawn=ENTRIES)
# Issue 11's list: reject:404 and announce:sit came back as 603, the label as
# "spam,exact,reject:404,", an expired entry as permanent.
@example(list_name="block", drawn=[
    {"pattern": ("0612345601", None), "label": "spam", "action": "reject:404",
     "expires_at": None, "once": False},
    {"pattern": ("0612345602", None), "label": "robot", "action": "announce:sit",
     "expires_at": None, "once": False},
    {"pattern": ("0612345603", None), "label": "gone", "action": None,
     "expires_at": NOW - timedelta(days=3), "once": False}])
@example(list_name="allow", drawn=[
    {"pattern": ("0612345604", None), "label": "once", "action": None, "expires_at": None,
     "once": True}])
def test_an_exported_list_imports_back_to_the_same_entries(
        template: Path, tmp_path_factory: pytest.TempPathFactory, list_name: str,
        drawn: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as tmp:
        source = installation(template, Path(tmp) / "source")
        target = installation(template, Path(tmp) / "target")
        try:
            with source.db.session() as s:  # start from empty lists, as a fresh import does
                s.query(ListEntryRow).delete()
            for entry in drawn:
                text, kind = entry["pattern"]
                source.store.entries.add(
                    list_name, text, kind=kind, label=entry["label"],
                    action=entry["action"] if list_name == "block" else None,
                    expires_at=entry["expires_at"], once=entry["once"] and list_name == "allow",
                    confirm=True)
            with target.db.session() as s:
                s.query(ListEntryRow).delete()
            out = io.StringIO()
            source.store.list_files.export_csv(list_name, out)
            report = target.store.list_files.import_csv(io.StringIO(out.getvalue()),
                                                        list_name, confirm=True)
            assert report.rejected == [] and report.unconfirmed == []
            expected = [(k, p, a, exported_label(lb), e, o)
                        for k, p, a, lb, e, o in entries(source, list_name)]
            assert entries(target, list_name) == sorted(expected)
        finally:
            source.store.close()
            target.store.close()

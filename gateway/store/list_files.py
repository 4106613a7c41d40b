"""Lists as files: CSV import and export, and a subscription's entries replaced at once.

Imports stream, so a million-line file needs little memory, and run in one transaction, so an
interrupted import leaves the list as it was. Bad lines are reported with their line number.

A file may start with a header naming its columns: the README's ``number_or_pattern,label``,
or what `export_csv` writes (``pattern,label,kind,action,expires_at,once``). Columns are then
read by name, so an exported list comes back with each entry's kind, action, label, expiry
and "permit next call" as they were. Without a header (or with one of other words) the first
field is the number or pattern and the rest of the line its label, as always.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway import untrusted
from gateway.numbers import list_number
from gateway.screening.rules import Action, ListName, MatchKind
from gateway.screening.words import N_
from gateway.store.csv_cells import neutralise, restore
from gateway.store.db import Database
from gateway.store.decode import FileProblem, csv_rows, read_text_file, shown_text
from gateway.store.entries import MAX_LABEL_LENGTH, check_breadth, classify_pattern
from gateway.store.errors import BroadEntry, EntryError, entry_error
from gateway.store.models import ListEntryRow, UTCDateTime, utcnow
from gateway.store.settings import bump_rules_version

IMPORT_BATCH = 5_000
MAX_REPORTED_REJECTS = 1_000
HEADER_WORDS = ("number", "pattern", "numero", "numéro", "number_or_pattern")
EXPORT_HEADER = ["pattern", "label", "kind", "action", "expires_at", "once"]
# Column names a header may use, by what they hold (export_csv's first, then common words).
COLUMNS = {"pattern": "pattern", "number": "pattern", "number_or_pattern": "pattern",
           "numero": "pattern", "numéro": "pattern", "label": "label", "name": "label",
           "kind": "kind", "action": "action", "expires_at": "expires_at", "once": "once"}
_TRUE = ("true", "yes", "1", "once")
_FALSE = ("", "false", "no", "0")


@dataclass(frozen=True)
class _Line:
    """One entry read from a file, before it is checked."""

    typed: str
    label: str
    kind: str | None = None
    action: str | None = None
    expires_at: datetime | None = None
    once: bool = False


def _header(fields: list[str]) -> dict[str, int] | None:
    """Where each column is, if `fields` is a header that names the pattern's column."""
    found: dict[str, int] = {}
    for index, name in enumerate(fields):
        role = COLUMNS.get(name.strip().lower())
        if role is not None:
            found.setdefault(role, index)
    return found if "pattern" in found else None


def _cell(fields: list[str], columns: dict[str, int], role: str) -> str:
    index = columns.get(role)
    return fields[index].strip() if index is not None and index < len(fields) else ""


def _by_name(fields: list[str], columns: dict[str, int], delimiter: str) -> _Line:
    """An entry from a line of a file with a header; EntryError names a bad column."""
    expires_text = _cell(fields, columns, "expires_at")
    expires_at = None
    if expires_text:
        try:
            expires_at = datetime.fromisoformat(expires_text)
        except ValueError:
            raise EntryError(N_("expires_at {value}: expected a time such as "
                                "2026-12-24T18:00+01:00"), "expires_at",
                             value=expires_text[:40]) from None
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)  # as export_csv writes: UTC
    once_text = _cell(fields, columns, "once").lower()
    if once_text not in _TRUE + _FALSE:
        raise EntryError(N_("once {value}: expected true or nothing"), "once",
                         value=once_text[:20])
    label_at = columns.get("label")
    if label_at is not None:
        # The label as written: an exported one comes back exactly (spaces included).
        label = fields[label_at] if label_at < len(fields) else ""
    else:  # "Numéro;Libellé": the columns the header does not name make the label, as before
        named = set(columns.values())
        label = delimiter.join(f for i, f in enumerate(fields) if i not in named).strip()
    return _Line(_cell(fields, columns, "pattern"), label,
                 kind=_cell(fields, columns, "kind").lower() or None,
                 action=_cell(fields, columns, "action") or None, expires_at=expires_at,
                 once=once_text in _TRUE)


class Rejected(tuple[int, str, str]):
    """A line an import did not take: (line number, text, why in English), unpacked as a
    triple; `template` and `params` say why again for the UI to render in the reader's
    language, `label` keeps the line's label for lines held back for confirmation."""

    template: str
    params: dict[str, Any]
    label: str

    def __new__(cls, line: int, text: str, why: str, template: str = "",
                params: dict[str, Any] | None = None, label: str = "") -> Rejected:
        """A rejected line."""
        self = super().__new__(cls, (line, text, why))
        self.template, self.params, self.label = template or why, dict(params or {}), label
        return self

    @property
    def line(self) -> int:
        """The line number in the file (1 is the first line)."""
        return self[0]

    @property
    def text(self) -> str:
        """The line's first field, as the report shows it."""
        return self[1]

    @property
    def why(self) -> str:
        """Why, in English."""
        return self[2]


@dataclass
class ImportReport:
    """What an import did: counts, and each rejected line with its number and reason."""

    added: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    rejected_count: int = 0  # all rejected lines; `rejected` keeps only the first ones
    # Lines that reach a whole country or more than a million numbers, left out until the
    # owner confirms them (import again with confirm, or add them one by one).
    unconfirmed: list[Rejected] = field(default_factory=list)
    encoding: str = ""  # how the file was read, when it came as bytes
    delimiter: str = ","

    def reject(self, line_no: int, text: str, why: str | ValueError) -> None:
        """Note a bad line (keeping the first MAX_REPORTED_REJECTS in detail)."""
        self.rejected_count += 1
        if len(self.rejected) < MAX_REPORTED_REJECTS:
            self.rejected.append(_rejected(line_no, text, why))

    def hold(self, line_no: int, text: str, why: BroadEntry, label: str = "") -> None:
        """Note a broad line that waits for the owner's confirmation."""
        if len(self.unconfirmed) < MAX_REPORTED_REJECTS:
            self.unconfirmed.append(_rejected(line_no, text, why, label))

    def summary(self) -> str:
        """One line for the owner."""
        held = f", {len(self.unconfirmed)} waiting for confirmation" if self.unconfirmed else ""
        return (f"{self.added} added, {self.duplicates} already present, "
                f"{self.rejected_count} rejected{held}")


def _rejected(line_no: int, text: str, why: str | ValueError, label: str = "") -> Rejected:
    template = getattr(why, "template", "") if isinstance(why, ValueError) else ""
    params = getattr(why, "params", {}) if isinstance(why, ValueError) else {}
    return Rejected(line_no, shown_text(text), str(why), template or str(why), dict(params),
                    label)


def iter_lines(data: bytes) -> Iterator[str]:
    """Decode an uploaded file's bytes (any encoding `decode.read_text_file` knows) to lines."""
    try:
        yield from read_text_file(data).lines
    except FileProblem:
        return


# An expanding parameter keeps one cached statement for every batch size (a literal IN list
# would cache a new 5,000-parameter statement per batch).
_COUNT_EXISTING = select(func.count(ListEntryRow.id)).where(
    ListEntryRow.list == bindparam("list_name"),
    ListEntryRow.pattern.in_(bindparam("patterns", expanding=True)),
)

_MOVE_STAGED = text(
    "INSERT OR IGNORE INTO list_entries "
    "(list, kind, pattern, label, action, source, once, expires_at, created_at, hits) "
    "SELECT :list, kind, pattern, label, action, :source, once, expires_at, :created_at, 0 "
    "FROM temp.rf_import ORDER BY pattern, rowid"
).bindparams(bindparam("created_at", type_=UTCDateTime()))
_Staged = tuple[str, str, str, str | None, Any, bool]  # kind, pattern, label, action, expiry, once


def insert_ignoring_duplicates(s: Session, rows: list[dict[str, Any]]) -> int:
    """Insert entry rows, skipping patterns already on their list; return how many were new."""
    if not rows:
        return 0
    unique = list({(r["list"], r["pattern"]): r for r in reversed(rows)}.values())
    # Core inserts on the table, not the ORM class: the ORM's bulk path costs more per
    # row than SQLite does, and imports run to a million lines.
    table = cast(Table, ListEntryRow.__table__)
    conn = s.connection()
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # SQLite's change counter is exact for INSERT OR IGNORE; executemany's rowcount
        # is not reliable across drivers.
        raw = conn.connection.dbapi_connection
        assert raw is not None
        before = int(raw.total_changes)
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(), unique)
        return int(raw.total_changes) - before
    if dialect == "postgresql":
        result = conn.execute(postgresql.insert(table).on_conflict_do_nothing(), unique)
        rowcount = int(getattr(result, "rowcount", -1))
        if rowcount >= 0:
            return rowcount
    else:  # pragma: no cover - other backends: count what is new, then plain insert
        existing = s.scalar(_COUNT_EXISTING, {
            "list_name": unique[0]["list"], "patterns": [r["pattern"] for r in unique],
        }) or 0
        conn.execute(insert(table), unique)
        return len(unique) - int(existing)
    return len(unique)  # pragma: no cover - a driver without rowcount


class _ImportSink:
    """Where imported rows go, batch by batch, inside the import's transaction.

    On SQLite, rows are staged in an unindexed temporary table and moved over with one
    ``INSERT OR IGNORE … SELECT … ORDER BY pattern``: the unique index then grows in key order
    instead of at random, which is what makes a million-line import fast, and SQLite sorts on
    disk with bounded memory. Other databases take batched inserts that skip duplicates.
    """

    def __init__(self, session: Session, *, source: str, list_name: ListName) -> None:
        self.session = session
        self.conn = session.connection()
        self.staged = self.conn.dialect.name == "sqlite"
        self.common = {"list": list_name.value, "source": source}
        self.batch: list[_Staged] = []
        self.added = 0
        # The staged table holds expiries as the column stores them (naive UTC text).
        self._when = UTCDateTime().bind_processor(self.conn.dialect)
        if self.staged:
            self.conn.exec_driver_sql("DROP TABLE IF EXISTS temp.rf_import")
            self.conn.exec_driver_sql(
                "CREATE TEMP TABLE rf_import (kind TEXT, pattern TEXT, label TEXT, "
                "action TEXT, expires_at TEXT, once INTEGER)"
            )

    def add(self, kind: str, pattern: str, label: str, action: str | None = None,
            expires_at: datetime | None = None, once: bool = False) -> None:
        self.batch.append((kind, pattern, label, action, expires_at, once))
        if len(self.batch) >= IMPORT_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self.batch:
            return
        if self.staged:
            raw = self.conn.connection.dbapi_connection
            assert raw is not None
            when = self._when or (lambda value: value)
            raw.cursor().executemany(
                "INSERT INTO temp.rf_import VALUES (?, ?, ?, ?, ?, ?)",
                [(k, p, lb, a, when(e) if e is not None else None, int(o))
                 for k, p, lb, a, e, o in self.batch])
        else:
            now = utcnow()
            rows = [{**self.common, "kind": k, "pattern": p, "label": lb, "action": a,
                     "expires_at": e, "once": o, "created_at": now, "hits": 0}
                    for k, p, lb, a, e, o in self.batch]
            self.added += insert_ignoring_duplicates(self.session, rows)
        self.batch.clear()

    def finish(self) -> int:
        """Move staged rows into the list; return how many were new."""
        self._flush()
        if not self.staged:
            return self.added
        raw = self.conn.connection.dbapi_connection
        assert raw is not None
        before = int(raw.total_changes)
        self.conn.execute(_MOVE_STAGED, {**self.common, "created_at": utcnow()})
        added = int(raw.total_changes) - before
        self.conn.exec_driver_sql("DROP TABLE temp.rf_import")
        return added


def export_pattern(kind: str, pattern: str) -> str:
    """A stored pattern the way the owner types it (``0162*`` style prefixes, ``re:`` regexes)."""
    if kind == MatchKind.REGEX.value:
        return f"re:{pattern}"
    if kind == MatchKind.PREFIX.value:
        return f"{pattern}*"
    return pattern


def _checked_action(action: str | None) -> str | None:
    """An action as stored; EntryError("action") if it is not one."""
    if action is None:
        return None
    try:
        return str(Action.parse(action))
    except ValueError as exc:
        raise entry_error(exc, "action") from None


class ListFiles:
    """CSV in and out of the lists, and atomic replacement of a subscription's entries."""

    def __init__(self, db: Database, home_region: str) -> None:
        self.db = db
        self.home_region = home_region

    def import_csv(
        self, stream: TextIO | Iterable[str], list_name: ListName | str, *,
        source: str = "manual", action: str | None = None, delimiter: str = ",",
        confirm: bool = False,
    ) -> ImportReport:
        """Import "number_or_pattern[,label]" lines, or a file `export_csv` wrote; bad lines
        are reported, good ones kept.

        `action` is for block entries whose line names none (a file without an action column).
        Entries that reach a whole country or more than a million numbers are held back in
        `report.unconfirmed` unless `confirm` is true (the same rule as adding one entry).
        """
        list_name = ListName(list_name)
        default_action = _checked_action(action)
        report = ImportReport(delimiter=delimiter)
        parsed = 0
        columns: dict[str, int] | None = None  # the header's columns, if it named them
        with self.db.session() as s:
            sink = _ImportSink(s, source=source, list_name=list_name)
            for line_no, cells, problem in csv_rows(iter(stream), delimiter):
                if cells is None:
                    report.reject(line_no, "", EntryError(
                        N_("this line cannot be read as CSV ({error})"), error=problem))
                    continue
                fields = [restore(cell) for cell in cells]  # what export_csv neutralised
                if not fields or not fields[0].strip() or fields[0].lstrip().startswith("#"):
                    continue
                typed = fields[0].strip()
                if line_no == 1 and (typed.lower() in HEADER_WORDS
                                     or not any(c.isdigit() for c in typed)):
                    columns = _header(fields)
                    continue  # a header row ("number", "Numéro de téléphone"…)
                try:
                    line = (_by_name(fields, columns, delimiter) if columns is not None else
                            _Line(typed, delimiter.join(fields[1:]).strip()))
                    entry = self._entry(line, list_name, default_action, confirm)
                except BroadEntry as exc:
                    report.hold(line_no, line.typed, exc, line.label[:MAX_LABEL_LENGTH])
                    continue
                except EntryError as exc:
                    report.reject(line_no, typed, exc)
                    continue
                sink.add(*entry)
                parsed += 1
            report.added = sink.finish()
            report.duplicates = parsed - report.added
            bump_rules_version(s)
        return report

    def _entry(self, line: _Line, list_name: ListName, default_action: str | None,
               confirm: bool) -> tuple[str, str, str, str | None, datetime | None, bool]:
        """The row of one line: (kind, pattern, label, action, expires_at, once)."""
        number = list_number(line.typed, self.home_region) if line.kind in (None, "exact") \
            else None
        if number is not None:
            kind, pattern = MatchKind.EXACT, number
        else:
            kind, pattern = classify_pattern(line.typed, self.home_region, line.kind)
            check_breadth(kind, pattern, line.typed, confirm=confirm)
        action = None
        if list_name is ListName.BLOCK:  # an allow entry takes no action: it always rings
            action = _checked_action(line.action) or default_action
        once = line.once and list_name is ListName.ALLOW  # "permit next call" is an allow
        return (kind.value, pattern, line.label[:MAX_LABEL_LENGTH], action, line.expires_at,
                once)

    def import_file(
        self, data: bytes, list_name: ListName | str, *, source: str = "manual",
        action: str | None = None, confirm: bool = False,
    ) -> ImportReport:
        """Import an uploaded file's bytes: encoding and separator are worked out first.

        Raises FileProblem (the whole file is unusable: binary, empty) or EntryError (a bad
        action); anything wrong with a line is in the report, with its line number.
        """
        text = read_text_file(data)
        report = self.import_csv(text.lines, list_name, source=source, action=action,
                                 delimiter=text.delimiter, confirm=confirm)
        report.encoding = text.encoding_shown
        return report

    def export_csv(self, list_name: ListName | str, out: TextIO) -> int:
        """Write a list as CSV (pattern,label,kind,action,expires_at,once); return the count.

        Labels come from strangers (subscriptions, vCards, imports): every cell is stripped of
        control and bidi-override characters and neutralised (`csv_cells`) so no spreadsheet
        evaluates it; E.164 numbers so come out as ``'+33…``, which a spreadsheet shows as
        text, keeping the ``+``. `import_csv` reads the file back to the same entries.
        """
        writer = csv.writer(out)
        writer.writerow(EXPORT_HEADER)
        count = 0
        query = (select(ListEntryRow).where(ListEntryRow.list == ListName(list_name).value)
                 .order_by(ListEntryRow.id).execution_options(yield_per=5000))
        with self.db.session() as s:
            for row in s.scalars(query):
                cells = [export_pattern(row.kind, row.pattern), row.label, row.kind,
                         row.action or "", row.expires_at.isoformat() if row.expires_at else "",
                         "true" if row.once else ""]
                writer.writerow([neutralise(untrusted.strip_controls(cell)) for cell in cells])
                count += 1
        return count

    def replace_source(self, list_name: ListName | str, source: str,
                       entries: Iterable[tuple[str, str]]) -> ImportReport:
        """Atomically replace every entry from `source` (a subscription) with `entries`."""
        list_name = ListName(list_name)
        report = ImportReport()
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        now = utcnow()
        for line_no, (typed, label) in enumerate(entries, start=1):
            try:
                kind, pattern = classify_pattern(typed, self.home_region)
                # A subscribed list cannot confirm anything: a whole country stays out.
                check_breadth(kind, pattern, typed, confirm=False)
            except EntryError as exc:
                report.reject(line_no, typed, exc)
                continue
            if pattern in seen:
                report.duplicates += 1
                continue
            seen.add(pattern)
            rows.append({"list": list_name.value, "kind": kind.value, "pattern": pattern,
                         "label": label[:MAX_LABEL_LENGTH], "action": None, "source": source,
                         "once": False, "created_at": now, "hits": 0})
        with self.db.session() as s:
            s.execute(delete(ListEntryRow).where(ListEntryRow.source == source))
            for start in range(0, len(rows), IMPORT_BATCH):
                chunk = rows[start:start + IMPORT_BATCH]
                report.added += insert_ignoring_duplicates(s, chunk)
            bump_rules_version(s)
        return report

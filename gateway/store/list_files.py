"""Lists as files: CSV import and export, and a subscription's entries replaced at once.

Imports stream, so a million-line file needs little memory, and run in one transaction, so an
interrupted import leaves the list as it was. Bad lines are reported with their line number.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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
HEADER_WORDS = ("number", "pattern", "numero", "numéro")
EXPORT_HEADER = ["pattern", "label", "kind", "action", "expires_at"]


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
    "(list, kind, pattern, label, action, source, once, created_at, hits) "
    "SELECT :list, kind, pattern, label, :action, :source, 0, :created_at, 0 "
    "FROM temp.rf_import ORDER BY pattern, rowid"
).bindparams(bindparam("created_at", type_=UTCDateTime()))


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

    def __init__(self, session: Session, *, action: str | None, source: str,
                 list_name: ListName) -> None:
        self.session = session
        self.conn = session.connection()
        self.staged = self.conn.dialect.name == "sqlite"
        self.common = {"list": list_name.value, "action": action, "source": source}
        self.batch: list[tuple[str, str, str]] = []
        self.added = 0
        if self.staged:
            self.conn.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS rf_import (kind TEXT, pattern TEXT, label TEXT)"
            )
            self.conn.exec_driver_sql("DELETE FROM temp.rf_import")

    def add(self, kind: str, pattern: str, label: str) -> None:
        self.batch.append((kind, pattern, label))
        if len(self.batch) >= IMPORT_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self.batch:
            return
        if self.staged:
            raw = self.conn.connection.dbapi_connection
            assert raw is not None
            raw.cursor().executemany("INSERT INTO temp.rf_import VALUES (?, ?, ?)", self.batch)
        else:
            now = utcnow()
            rows = [{**self.common, "kind": k, "pattern": p, "label": lb, "once": False,
                     "created_at": now, "hits": 0} for k, p, lb in self.batch]
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
        """Import "number_or_pattern[,label]" lines; bad lines are reported, good ones kept.

        Entries that reach a whole country or more than a million numbers are held back in
        `report.unconfirmed` unless `confirm` is true (the same rule as adding one entry).
        """
        list_name = ListName(list_name)
        if action is not None:
            try:
                action = str(Action.parse(action))
            except ValueError as exc:
                raise entry_error(exc, "action") from None
        report = ImportReport(delimiter=delimiter)
        parsed = 0
        exported = False  # a file export_csv wrote: its label is the second column only
        with self.db.session() as s:
            sink = _ImportSink(s, action=action, source=source, list_name=list_name)
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
                    exported = fields == EXPORT_HEADER
                    continue  # a header row ("number", "Numéro de téléphone"…)
                label = (fields[1] if exported and len(fields) > 1
                         else delimiter.join(fields[1:])).strip()[:MAX_LABEL_LENGTH]
                number = list_number(typed, self.home_region)
                if number is not None:
                    kind, pattern = MatchKind.EXACT, number
                else:
                    try:
                        kind, pattern = classify_pattern(typed, self.home_region)
                        check_breadth(kind, pattern, typed, confirm=confirm)
                    except BroadEntry as exc:
                        report.hold(line_no, typed, exc, label)
                        continue
                    except EntryError as exc:
                        report.reject(line_no, typed, exc)
                        continue
                sink.add(kind.value, pattern, label)
                parsed += 1
            report.added = sink.finish()
            report.duplicates = parsed - report.added
            bump_rules_version(s)
        return report

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
        """Write a list as CSV (pattern,label,kind,action,expires_at); return the row count.

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
                         row.action or "", row.expires_at.isoformat() if row.expires_at else ""]
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

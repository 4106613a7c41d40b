"""Lists as files: CSV import and export, and a subscription's entries replaced at once.

Imports stream, so a million-line file needs little memory, and run in one transaction, so an
interrupted import leaves the list as it was. Bad lines are reported with their line number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway import untrusted
from gateway.numbers import list_number
from gateway.screening.rules import Action, ListName, MatchKind
from gateway.store.csv_cells import neutralise, restore
from gateway.store.db import Database
from gateway.store.entries import MAX_LABEL_LENGTH, classify_pattern
from gateway.store.errors import EntryError, entry_error
from gateway.store.models import ListEntryRow, UTCDateTime, utcnow
from gateway.store.settings import bump_rules_version

IMPORT_BATCH = 5_000
MAX_REPORTED_REJECTS = 1_000
HEADER_WORDS = ("number", "pattern", "numero", "numéro")
EXPORT_HEADER = ["pattern", "label", "kind", "action", "expires_at"]


@dataclass
class ImportReport:
    """What an import did: counts, and each rejected line with its number and reason."""

    added: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line, text, why)
    rejected_count: int = 0  # all rejected lines; `rejected` keeps only the first ones

    def reject(self, line_no: int, text: str, why: str) -> None:
        """Note a bad line (keeping the first MAX_REPORTED_REJECTS in detail)."""
        self.rejected_count += 1
        if len(self.rejected) < MAX_REPORTED_REJECTS:
            self.rejected.append((line_no, text[:80], why))

    def summary(self) -> str:
        """One line for the owner."""
        return (f"{self.added} added, {self.duplicates} already present, "
                f"{self.rejected_count} rejected")


def iter_lines(data: bytes) -> Iterator[str]:
    """Decode an uploaded file's bytes (UTF-8 with or without BOM, else Latin-1) to lines."""
    try:
        decoded = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        decoded = data.decode("latin-1")
    yield from io.StringIO(decoded)


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
        self, stream: TextIO, list_name: ListName | str, *, source: str = "manual",
        action: str | None = None,
    ) -> ImportReport:
        """Import "number_or_pattern[,label]" lines; bad lines are reported, good ones kept."""
        list_name = ListName(list_name)
        if action is not None:
            try:
                action = str(Action.parse(action))
            except ValueError as exc:
                raise entry_error(exc, "action") from None
        report = ImportReport()
        parsed = 0
        exported = False  # a file export_csv wrote: its label is the second column only
        with self.db.session() as s:
            sink = _ImportSink(s, action=action, source=source, list_name=list_name)
            for line_no, cells in enumerate(csv.reader(stream), start=1):
                fields = [restore(cell) for cell in cells]  # what export_csv neutralised
                if not fields or not fields[0].strip() or fields[0].lstrip().startswith("#"):
                    continue
                typed = fields[0].strip()
                if line_no == 1 and typed.lower() in HEADER_WORDS:
                    exported = fields == EXPORT_HEADER
                    continue  # a header row
                if exported:
                    fields = fields[:2]
                number = list_number(typed, self.home_region)
                if number is not None:
                    kind, pattern = MatchKind.EXACT, number
                else:
                    try:
                        kind, pattern = classify_pattern(typed, self.home_region)
                    except EntryError as exc:
                        report.reject(line_no, typed, str(exc))
                        continue
                sink.add(kind.value, pattern, ",".join(fields[1:]).strip()[:MAX_LABEL_LENGTH])
                parsed += 1
            report.added = sink.finish()
            report.duplicates = parsed - report.added
            bump_rules_version(s)
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
            except EntryError as exc:
                report.reject(line_no, typed, str(exc))
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

"""Allow and block list entries: what the owner typed becomes a typed, normalised entry.

`classify_pattern` turns "0612345678", "0162*", "06 ?? ?? ?? 99" or "re:…" into an exact
number, an indexed prefix, a glob or a regex; every change bumps `rules_version` so the next
call sees it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from gateway.numbers import (
    Reach,
    glob_reach,
    list_number,
    normalize_glob,
    normalize_prefix,
    number_query,
    prefix_reach,
    why_not_a_number,
)
from gateway.screening.rules import Action, InvalidField, ListEntry, ListName, MatchKind
from gateway.screening.words import N_
from gateway.store.db import Database, rowcount
from gateway.store.errors import BroadEntry, EntryError, entry_error
from gateway.store.models import ListEntryRow, utcnow
from gateway.store.settings import bump_rules_version

MAX_PATTERN_LENGTH = 200
MAX_LABEL_LENGTH = 200


def entry_from_row(row: ListEntryRow) -> ListEntry:
    """The screening core's value for a stored entry."""
    return ListEntry(
        id=row.id,
        list=ListName(row.list),
        kind=MatchKind(row.kind),
        pattern=row.pattern,
        label=row.label,
        action=Action.parse(row.action) if row.action else None,
        expires_at=row.expires_at,
        once=row.once,
        source=row.source,
    )


def entry_from_mapping(row: Any) -> ListEntry:
    """The screening core's value for an entry read with a Core query (a row mapping)."""
    expires = row["expires_at"]
    return ListEntry(
        id=row["id"],
        list=ListName(row["list"]),
        kind=MatchKind(row["kind"]),
        pattern=row["pattern"],
        label=row["label"],
        action=Action.parse(row["action"]) if row["action"] else None,
        # Core queries bypass the ORM's type decorator result processing on some drivers:
        # make sure the time is aware UTC either way.
        expires_at=None if expires is None else (
            expires if expires.tzinfo else expires.replace(tzinfo=UTC)),
        once=bool(row["once"]),
        source=row["source"],
    )


BROAD_NUMBERS = 1_000_000  # an entry reaching more numbers than this asks for confirmation


def classify_pattern(text: str, home_region: str, kind: str | None = None) -> tuple[MatchKind, str]:
    """Work out an entry's kind and normalised pattern from what the owner typed.

    ``re:…`` is a regex; a lone trailing ``*`` makes a prefix (indexed, so faster); other
    ``*``/``?``/``[`` make a glob; anything else must be a possible phone number. A prefix is
    never guessed: ``06 12`` is refused with a hint to type ``06 12*`` (it used to become the
    prefix +33612 and block a million numbers). Digits no number can start with (``+999…``)
    are refused with the reason. How far an entry reaches is `entry_reach`'s question.
    """
    text = text.strip()
    if not text:
        raise EntryError(N_("the number or pattern is empty"))
    if len(text) > MAX_PATTERN_LENGTH:
        raise EntryError(N_("the number or pattern is longer than {limit} characters"),
                         limit=MAX_PATTERN_LENGTH)
    try:
        wanted = MatchKind(kind) if kind else None
    except ValueError:
        raise EntryError(N_("kind {kind}: expected exact, prefix, glob or regex"), "kind",
                         kind=kind) from None
    if wanted is MatchKind.REGEX or (wanted is None and text.startswith("re:")):
        pattern = text[3:] if text.startswith("re:") else text
        try:
            re.compile(pattern)
        except re.error as exc:
            raise EntryError(N_("{pattern} is not a valid regular expression: {error}"),
                             pattern=pattern, error=str(exc)) from None
        return MatchKind.REGEX, pattern
    try:
        if wanted is MatchKind.PREFIX or (
            wanted is None and text.endswith("*") and not any(c in text[:-1] for c in "*?[")
        ):
            if not text.rstrip("*").strip():
                raise EntryError(N_("a prefix needs digits before the *, such as 0162*"))
            prefix = normalize_prefix(text.rstrip("*").strip(), home_region)
            prefix_reach(prefix)  # refuses digits no number starts with (+999*)
            return MatchKind.PREFIX, prefix
        if wanted is MatchKind.GLOB or (wanted is None and any(c in text for c in "*?[")):
            pattern = normalize_glob(text, home_region)
            glob_reach(pattern)
            return MatchKind.GLOB, pattern
    except ValueError as exc:
        raise entry_error(exc, "pattern") from None
    number = list_number(text, home_region)
    if number is not None:
        return MatchKind.EXACT, number
    if wanted is MatchKind.EXACT and any(c in text for c in "*?["):
        raise EntryError(N_("{text} is not a possible phone number: an exact number has no "
                            "*, ? or ["), text=text)
    raise entry_error(why_not_a_number(text, home_region), "pattern")


def entry_reach(kind: MatchKind, pattern: str) -> Reach | None:
    """How many numbers a classified entry reaches; None when it cannot be told (a regex)."""
    if kind is MatchKind.EXACT:
        return Reach(1)
    if kind is MatchKind.PREFIX:
        return prefix_reach(pattern)
    if kind is MatchKind.GLOB:
        return glob_reach(pattern)
    return None


def is_broad(reach: Reach | None) -> bool:
    """Whether an entry reaches a whole country or more than BROAD_NUMBERS numbers."""
    return reach is not None and (bool(reach.countries) or reach.numbers > BROAD_NUMBERS)


def check_breadth(kind: MatchKind, pattern: str, typed: str, *, confirm: bool) -> None:
    """Raise BroadEntry unless the entry is narrow or the owner confirmed it."""
    reach = entry_reach(kind, pattern)
    if confirm or reach is None or not is_broad(reach):
        return
    if len(reach.codes) == 1:
        raise BroadEntry(N_("{typed} covers every number with the calling code +{code} "
                            "({countries}), about {count} numbers: confirm to add it"), reach,
                         typed=typed, code=reach.codes[0], countries=list(reach.countries),
                         count=reach.numbers)
    if reach.codes:
        raise BroadEntry(N_("{typed} covers every number of {n} calling codes, about {count} "
                            "numbers: confirm to add it"), reach, typed=typed,
                         n=len(reach.codes), count=reach.numbers)
    raise BroadEntry(N_("{typed} covers about {count} numbers: confirm to add it"), reach,
                     typed=typed, count=reach.numbers)


def _parse_action(list_name: ListName, action: str | None) -> str | None:
    if action is None:
        return None
    if list_name is ListName.ALLOW:
        raise EntryError(N_("allow entries take no action: an allowed call always rings"),
                         "action")
    try:
        return str(Action.parse(action))
    except ValueError as exc:
        raise entry_error(exc, "action") from None


def search_clause(search: str, home_region: str) -> Any:
    """Entries whose pattern or label holds `search`, reading a number in any written form.

    ``0612345678`` finds the entry +33612345678 and the prefix entries that cover it (+33612…);
    ``06 12`` or ``+33612`` finds every entry starting +33612; a word finds labels (any case).
    """
    clause = (ListEntryRow.pattern.contains(search, autoescape=True)
              | ListEntryRow.label.icontains(search, autoescape=True))
    query = number_query(search, home_region)
    if query is None:
        return clause
    if query.start:
        clause |= ListEntryRow.pattern.startswith(query.start, autoescape=True)
    if query.digits:
        clause |= ListEntryRow.pattern.contains(query.digits, autoescape=True)
    if query.complete:
        # The prefix entries a complete number falls under: which entry would decide its call.
        clause |= (ListEntryRow.pattern.in_(number_prefixes(query.complete))
                   & ListEntryRow.kind.in_((MatchKind.EXACT.value, MatchKind.PREFIX.value)))
    return clause


def number_prefixes(number: str) -> list[str]:
    """The number and each of its prefixes ("+3", "+33", …)."""
    return [number[:i] for i in range(2, len(number) + 1)]


class Entries:
    """Reads and writes of the allow and block lists."""

    def __init__(self, db: Database, home_region: str) -> None:
        self.db = db
        self.home_region = home_region

    def classify(self, text: str, kind: str | None = None) -> tuple[MatchKind, str]:
        """`classify_pattern` in this installation's home region."""
        return classify_pattern(text, self.home_region, kind)

    def add(
        self,
        list_name: ListName | str,
        text: str,
        *,
        kind: str | None = None,
        label: str = "",
        action: str | None = None,
        expires_at: datetime | None = None,
        once: bool = False,
        source: str = "manual",
        confirm: bool = False,
    ) -> ListEntry:
        """Add an entry (or update the one with the same pattern); raise EntryError if bad.

        An entry reaching a whole country or more than BROAD_NUMBERS numbers raises
        BroadEntry (an EntryError that says how many) unless `confirm` is true.
        """
        list_name = ListName(list_name)
        match_kind, pattern = self.classify(text, kind)
        action = _parse_action(list_name, action)
        if len(label) > MAX_LABEL_LENGTH:
            raise EntryError(N_("the label is longer than {limit} characters"), "label",
                             limit=MAX_LABEL_LENGTH)
        check_breadth(match_kind, pattern, text.strip(), confirm=confirm)
        with self.db.session() as s:
            row = s.scalar(
                select(ListEntryRow).where(
                    ListEntryRow.list == list_name.value, ListEntryRow.pattern == pattern
                )
            )
            if row is None:
                row = ListEntryRow(list=list_name.value, pattern=pattern, created_at=utcnow())
                s.add(row)
            row.kind, row.label, row.action = match_kind.value, label or row.label or "", action
            row.expires_at, row.once, row.source = expires_at, once, source
            s.flush()
            bump_rules_version(s)
            return entry_from_row(row)

    def add_numbers(
        self, list_name: ListName | str, numbers: list[str], *, label: str = "",
        labels: dict[str, str] | None = None, source: str = "manual",
    ) -> tuple[list[ListEntry], list[tuple[str, InvalidField]]]:
        """Put several complete numbers on a list at once, in one transaction.

        Each number moves: an exact entry for it on the other list is removed (the call log's
        "block"/"allow" of several rows). `labels` gives some numbers (as typed) their own
        label. Returns the entries and, for each number refused, what was typed and why.
        """
        list_name = ListName(list_name)
        other = ListName.BLOCK if list_name is ListName.ALLOW else ListName.ALLOW
        good: dict[str, str] = {}
        refused: list[tuple[str, InvalidField]] = []
        for text in numbers:
            number = list_number(text, self.home_region)
            if number is None:
                refused.append((text, why_not_a_number(text, self.home_region)))
            else:
                good.setdefault(number, text)
        if not good:
            return [], refused
        with self.db.session() as s:
            existing = {r.pattern: r for r in s.scalars(select(ListEntryRow).where(
                ListEntryRow.list == list_name.value, ListEntryRow.pattern.in_(list(good))))}
            rows: list[ListEntryRow] = []
            for number in good:
                row = existing.get(number)
                if row is None:
                    row = ListEntryRow(list=list_name.value, pattern=number, created_at=utcnow())
                    s.add(row)
                own = (labels or {}).get(good[number], "")
                row.kind, row.label = MatchKind.EXACT.value, own or label or row.label or ""
                row.action, row.expires_at, row.once, row.source = None, None, False, source
                rows.append(row)
            s.execute(delete(ListEntryRow).where(
                ListEntryRow.list == other.value, ListEntryRow.pattern.in_(list(good)),
                ListEntryRow.kind == MatchKind.EXACT.value))
            s.flush()
            bump_rules_version(s)
            return [entry_from_row(r) for r in rows], refused

    def remove_many(self, entry_ids: list[int]) -> list[ListEntry]:
        """Delete several entries in one transaction; return those that existed."""
        if not entry_ids:
            return []
        with self.db.session() as s:
            rows = list(s.scalars(select(ListEntryRow).where(ListEntryRow.id.in_(entry_ids))))
            gone = [entry_from_row(r) for r in rows]
            if rows:
                s.execute(delete(ListEntryRow).where(ListEntryRow.id.in_([r.id for r in rows])))
                bump_rules_version(s)
        return gone

    def remove(self, entry_id: int) -> bool:
        """Delete an entry by id; False if there was none."""
        with self.db.session() as s:
            deleted = rowcount(s.execute(delete(ListEntryRow).where(ListEntryRow.id == entry_id)))
            bump_rules_version(s)
        return bool(deleted)

    def remove_pattern(self, list_name: ListName | str, text: str) -> bool:
        """Delete the entry matching what the owner typed; False if there was none.

        Lenient where adding is strict: ``0162`` removes the prefix entry +33162 too, since
        removing cannot block anybody by mistake.
        """
        try:
            _, pattern = self.classify(text)
        except EntryError:
            _, pattern = self.classify(text, MatchKind.PREFIX.value)
        with self.db.session() as s:
            deleted = rowcount(s.execute(
                delete(ListEntryRow).where(
                    ListEntryRow.list == ListName(list_name).value, ListEntryRow.pattern == pattern
                )
            ))
            bump_rules_version(s)
        return bool(deleted)

    def get(self, entry_id: int) -> ListEntry | None:
        """One entry by id."""
        with self.db.session() as s:
            row = s.get(ListEntryRow, entry_id)
            return None if row is None else entry_from_row(row)

    def find(
        self, list_name: ListName | str | None = None, *, source: str | None = None,
        search: str = "", limit: int = 1000, offset: int = 0,
    ) -> list[ListEntry]:
        """Entries, newest first."""
        query = select(ListEntryRow).order_by(ListEntryRow.id.desc()).limit(limit).offset(offset)
        if list_name is not None:
            query = query.where(ListEntryRow.list == ListName(list_name).value)
        if source is not None:
            query = query.where(ListEntryRow.source == source)
        if search:
            query = query.where(search_clause(search, self.home_region))
        with self.db.session() as s:
            return [entry_from_row(r) for r in s.scalars(query)]

    def count(self, list_name: ListName | str | None = None, search: str = "") -> int:
        """How many entries a list has (that match `search`, filtered as `find` does)."""
        query = select(func.count(ListEntryRow.id))
        if list_name is not None:
            query = query.where(ListEntryRow.list == ListName(list_name).value)
        if search:
            query = query.where(search_clause(search, self.home_region))
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

    def pending_permits(self, limit: int = 50) -> list[ListEntry]:
        """"Permit next call" entries not used yet, newest first."""
        query = (select(ListEntryRow)
                 .where(ListEntryRow.list == ListName.ALLOW.value, ListEntryRow.once.is_(True))
                 .order_by(ListEntryRow.id.desc()).limit(limit))
        with self.db.session() as s:
            return [entry_from_row(r) for r in s.scalars(query)]

    def note_used(self, entry_id: int, *, consume: bool, at: datetime) -> None:
        """Count a hit on an entry, deleting it if it was a one-off permission.

        The gateway counts hits in its call writer's batches (`gateway.store.batch`) and uses
        permits with `use_permit`; this is the one-at-a-time form.
        """
        with self.db.session() as s:
            if consume:
                s.execute(delete(ListEntryRow).where(ListEntryRow.id == entry_id))
                bump_rules_version(s)
            else:
                s.execute(
                    update(ListEntryRow).where(ListEntryRow.id == entry_id)
                    .values(hits=ListEntryRow.hits + 1, last_hit_at=at)
                )

    def use_permit(self, entry_id: int) -> bool:
        """Use up a "permit next call" entry: True for the one call that gets it.

        A conditional DELETE, so two simultaneous calls cannot both pass on one permission:
        the database lets exactly one of them delete the row, the other sees 0 rows.
        """
        with self.db.session() as s:
            used = rowcount(s.execute(delete(ListEntryRow).where(
                ListEntryRow.id == entry_id, ListEntryRow.once.is_(True)))) == 1
            if used:
                bump_rules_version(s)
        return used

    def purge_expired(self, now: datetime) -> int:
        """Delete entries whose expiry has passed; return how many."""
        with self.db.session() as s:
            count = rowcount(s.execute(
                delete(ListEntryRow).where(ListEntryRow.expires_at.is_not(None),
                                           ListEntryRow.expires_at <= now)
            ))
            if count:
                bump_rules_version(s)
        return count

"""The allow and block lists on SQLite: what the owner types becomes an entry (`classify_pattern`),
every change bumps the rules version the screener watches, and CSV files go in and out whole."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from gateway.screening import ListName, MatchKind
from gateway.screening.decide import Step
from gateway.store import EntryError, Store
from gateway.store.entries import MAX_LABEL_LENGTH, MAX_PATTERN_LENGTH, classify_pattern
from gateway.store.list_files import iter_lines
from gateway.store.models import ListEntryRow
from gateway.store.screening import _ENTRIES_BY_PREFIX, _PATTERN_ENTRIES
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import Services, caller

# --------------------------------------------------------------------------- classify_pattern


@pytest.mark.parametrize(("typed", "kind", "expected"), [
    ("0612345678", None, (MatchKind.EXACT, "+33612345678")),
    ("+33 6 12 34 56 78", None, (MatchKind.EXACT, "+33612345678")),
    ("06.12.34.56.78", None, (MatchKind.EXACT, "+33612345678")),
    ("+1 202 555 0100", None, (MatchKind.EXACT, "+12025550100")),
    ("0162*", None, (MatchKind.PREFIX, "+33162")),
    ("0162", "prefix", (MatchKind.PREFIX, "+33162")),  # without *, only when asked for
    ("+44*", None, (MatchKind.PREFIX, "+44")),
    ("06 ?? ?? ?? 99", None, (MatchKind.GLOB, "+336??????99")),
    ("12*34*", None, (MatchKind.GLOB, "+12*34*")),
    ("*99", None, (MatchKind.GLOB, "*99")),
    (r"re:^\+336", None, (MatchKind.REGEX, r"^\+336")),
    (r"^\+33", "regex", (MatchKind.REGEX, r"^\+33")),
    ("0612345678", "prefix", (MatchKind.PREFIX, "+33612345678")),
    ("0612345678", "glob", (MatchKind.GLOB, "+33612345678")),
    ("  0612345678  ", "exact", (MatchKind.EXACT, "+33612345678")),
])
def test_classify_pattern(typed: str, kind: str | None, expected: tuple[MatchKind, str]) -> None:
    assert classify_pattern(typed, "FR", kind) == expected


@pytest.mark.parametrize(("typed", "kind", "field", "message"), [
    ("", None, "pattern", "empty"),
    ("   ", None, "pattern", "empty"),
    ("1" * (MAX_PATTERN_LENGTH + 1), None, "pattern", "longer than"),
    ("hello", None, "pattern", "neither a phone number nor a pattern"),
    ("0162", None, "pattern", r"not a complete phone number .* type 0162\*"),  # the old trap
    ("06 12", None, "pattern", r"type 06 12\*"),
    ("+999123", None, "pattern", r"\+999 is not a country calling code"),
    ("+999*", None, "pattern", r"\+999 is not a country calling code"),
    ("0612345678901234", None, "pattern", "too many digits"),
    ("re:(", None, "pattern", "not a valid regular expression"),
    ("*", None, "pattern", "a prefix needs digits"),
    ("06a*", None, "pattern", "not a number"),
    ("06a?", None, "pattern", "not a number pattern"),
    ("0162*", "exact", "pattern", "not a possible phone number"),
    ("0612345678", "fuzzy", "kind", "expected exact, prefix, glob or regex"),
])
def test_classify_pattern_errors_name_their_field(typed: str, kind: str | None, field: str,
                                                 message: str) -> None:
    with pytest.raises(EntryError, match=message) as caught:
        classify_pattern(typed, "FR", kind)
    assert caught.value.field == field


def test_a_glob_set_keeps_its_range(service: Services) -> None:
    assert classify_pattern("01[2-5]*", "FR") == (MatchKind.GLOB, "+331[2-5]*")
    service.store.entries.add("block", "01[2-5]*", confirm=True)  # 40 million numbers
    decision = service.screener.screen(caller("0130000000"), NOW)
    assert decision.step is Step.BLOCK


# --------------------------------------------------------------------------- Entries


@pytest.fixture
def store(service: Services) -> Store:
    return service.store


def version(store: Store) -> int:
    return store.runtime.version()


def test_add_stores_the_normalised_entry(store: Store) -> None:
    entry = store.entries.add("block", "06 12 34 56 78", label="pest", action="reject:404",
                              expires_at=NOW + timedelta(days=1))
    assert (entry.list, entry.kind, entry.pattern) == (ListName.BLOCK, MatchKind.EXACT,
                                                       "+33612345678")
    assert (entry.label, str(entry.action), entry.source) == ("pest", "reject:404", "manual")
    assert entry.expires_at == NOW + timedelta(days=1)
    assert store.entries.get(entry.id) == entry


def test_adding_the_same_pattern_again_updates_the_entry(store: Store) -> None:
    first = store.entries.add("block", "0612345678", label="pest")
    second = store.entries.add("block", "+33 6 12 34 56 78", action="announce:sit")
    assert second.id == first.id
    assert second.label == "pest"  # no new label: the old one stays
    assert str(second.action) == "announce:sit"
    assert store.entries.count("block") == 1


def test_the_same_number_on_both_lists_is_two_entries(store: Store) -> None:
    allowed = store.entries.add("allow", "0612345678")
    blocked = store.entries.add("block", "0612345678")
    assert allowed.id != blocked.id
    assert store.entries.count() == 2


@pytest.mark.parametrize(("list_name", "options", "field"), [
    ("allow", {"action": "reject:603"}, "action"),
    ("block", {"action": "explode"}, "action"),
    ("block", {"action": "reject:999"}, "action"),
    ("block", {"label": "x" * (MAX_LABEL_LENGTH + 1)}, "label"),
    ("block", {"kind": "fuzzy"}, "kind"),
])
def test_add_errors_name_their_field(store: Store, list_name: str, options: dict[str, Any],
                                     field: str) -> None:
    before = version(store)
    with pytest.raises(EntryError) as caught:
        store.entries.add(list_name, "0612345678", **options)
    assert caught.value.field == field
    assert store.entries.count() == 0 and version(store) == before


def test_remove_by_id(store: Store) -> None:
    entry = store.entries.add("block", "0612345678")
    assert store.entries.remove(entry.id)
    assert not store.entries.remove(entry.id)
    assert store.entries.get(entry.id) is None


def test_remove_pattern_takes_what_the_owner_typed(store: Store) -> None:
    store.entries.add("block", "0612345678")
    store.entries.add("allow", "0612345678")
    assert store.entries.remove_pattern("block", "06 12 34 56 78")
    assert not store.entries.remove_pattern("block", "0612345678")
    assert [e.list for e in store.entries.find()] == [ListName.ALLOW]


def test_find_is_newest_first_and_filters(store: Store) -> None:
    a = store.entries.add("block", "0611111111", label="alpha")
    b = store.entries.add("block", "0622222222", label="beta", source="subscription:1")
    c = store.entries.add("allow", "0633333333", label="gamma")
    assert [e.id for e in store.entries.find()] == [c.id, b.id, a.id]
    assert [e.id for e in store.entries.find("block")] == [b.id, a.id]
    assert [e.id for e in store.entries.find(source="subscription:1")] == [b.id]
    assert [e.id for e in store.entries.find(search="alp")] == [a.id]
    assert [e.id for e in store.entries.find(search="+3363")] == [c.id]
    assert [e.id for e in store.entries.find(limit=1, offset=1)] == [b.id]


def test_count_by_list_and_search(store: Store) -> None:
    store.entries.add("block", "0611111111", label="plumber")
    store.entries.add("block", "0622222222", label="pest")
    store.entries.add("allow", "0633333333", label="plumber's friend")
    assert store.entries.count() == 3
    assert store.entries.count("block") == 2
    assert store.entries.count("block", search="plumb") == 1
    assert store.entries.count(search="plumb") == 2


def test_pending_permits_are_unused_once_entries_of_the_allow_list(store: Store) -> None:
    permit = store.entries.add("allow", "0611111111", once=True)
    store.entries.add("allow", "0622222222")
    store.entries.add("block", "0633333333", once=True)
    assert [e.id for e in store.entries.pending_permits()] == [permit.id]


def hits(store: Store, entry_id: int) -> tuple[int, Any]:
    with store.db.session() as s:
        row = s.get(ListEntryRow, entry_id)
        assert row is not None
        return row.hits, row.last_hit_at


def test_note_used_counts_hits_without_bumping_the_version(store: Store) -> None:
    entry = store.entries.add("block", "0612345678")
    before = version(store)
    store.entries.note_used(entry.id, consume=False, at=NOW)
    store.entries.note_used(entry.id, consume=False, at=NOW + timedelta(minutes=1))
    assert hits(store, entry.id) == (2, NOW + timedelta(minutes=1))
    assert version(store) == before


def test_note_used_with_consume_deletes_a_permit(store: Store) -> None:
    permit = store.entries.add("allow", "0612345678", once=True)
    before = version(store)
    store.entries.note_used(permit.id, consume=True, at=NOW)
    assert store.entries.get(permit.id) is None
    assert version(store) > before


def test_purge_expired_deletes_only_what_has_expired(store: Store) -> None:
    store.entries.add("block", "0611111111", expires_at=NOW - timedelta(minutes=1))
    store.entries.add("block", "0622222222", expires_at=NOW)  # expires exactly now: gone
    keep = store.entries.add("block", "0633333333", expires_at=NOW + timedelta(minutes=1))
    forever = store.entries.add("block", "0644444444")
    assert store.entries.purge_expired(NOW) == 2
    assert {e.id for e in store.entries.find()} == {keep.id, forever.id}


def test_purging_nothing_leaves_the_version_alone(store: Store) -> None:
    store.entries.add("block", "0611111111", expires_at=NOW + timedelta(days=1))
    before = version(store)
    assert store.entries.purge_expired(NOW) == 0
    assert version(store) == before


CHANGES: dict[str, Callable[[Store], object]] = {
    "add": lambda s: s.entries.add("block", "0699999999"),
    "update": lambda s: s.entries.add("block", "0611111111", label="changed"),
    "remove": lambda s: s.entries.remove(s.entries.find()[0].id),
    "remove_pattern": lambda s: s.entries.remove_pattern("block", "0611111111"),
    "consume": lambda s: s.entries.note_used(s.entries.find()[0].id, consume=True, at=NOW),
    "purge_expired": lambda s: s.entries.purge_expired(NOW + timedelta(days=2)),
    "import_csv": lambda s: s.list_files.import_csv(io.StringIO("0688888888\n"), "block"),
    "replace_source": lambda s: s.list_files.replace_source("block", "subscription:1", []),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_every_list_change_bumps_the_rules_version(store: Store,
                                                   change: Callable[[Store], object]) -> None:
    store.entries.add("block", "0611111111", expires_at=NOW + timedelta(days=1))
    before = version(store)
    change(store)
    assert version(store) > before


def test_the_screener_sees_a_list_change_on_the_next_call(service: Services) -> None:
    who = caller("0612345678")
    assert service.screener.screen(who, NOW).action.is_pass
    entry = service.store.entries.add("block", "0612345678")
    assert service.screener.screen(who, NOW).step is Step.BLOCK
    service.store.entries.add("block", "0612345678", action="announce:sit")
    assert str(service.screener.screen(who, NOW).action) == "announce:sit"
    service.store.entries.remove(entry.id)
    assert service.screener.screen(who, NOW).action.is_pass


def test_the_screener_sees_a_glob_added_after_it_cached_the_globs(service: Services) -> None:
    who = caller("0612345678")
    service.store.entries.add("block", "07 ?? ?? ?? ??", confirm=True)  # caches the globs
    assert service.screener.screen(who, NOW).action.is_pass
    service.store.entries.add("block", "06 ?? ?? ?? 78")
    assert service.screener.screen(who, NOW).step is Step.BLOCK


# --------------------------------------------------------------------------- ListFiles


def import_text(store: Store, text: str, list_name: str = "block", **options: Any) -> Any:
    return store.list_files.import_csv(io.StringIO(text), list_name, **options)


def test_import_reports_rejected_lines_by_number(store: Store) -> None:
    report = import_text(store, "\n".join([
        "number,label",  # 1: header
        "0611111111,first",  # 2
        "# a comment",  # 3
        "",  # 4
        "not a number",  # 5
        "0622222222",  # 6
        "re:(",  # 7
    ]))
    assert (report.added, report.duplicates, report.rejected_count) == (2, 0, 2)
    assert [(line, text) for line, text, _why in report.rejected] == [
        (5, "not a number"), (7, "re:(")]
    assert "not a valid regular expression" in report.rejected[1][2]
    assert report.summary() == "2 added, 0 already present, 2 rejected"


@pytest.mark.parametrize("header", ["number", "Pattern", "NUMÉRO", "numero,label"])
def test_a_header_row_on_the_first_line_is_skipped(store: Store, header: str) -> None:
    report = import_text(store, f"{header}\n0611111111\n")
    assert (report.added, report.rejected_count) == (1, 0)


def test_a_header_word_further_down_is_a_bad_line(store: Store) -> None:
    report = import_text(store, "0611111111\nnumber\n")
    assert [line for line, _, _ in report.rejected] == [2]


def test_import_counts_duplicates_in_the_file_and_in_the_list(store: Store) -> None:
    store.entries.add("block", "0611111111", label="already")
    report = import_text(store, "0611111111\n0622222222\n06 22 22 22 22\n")
    assert (report.added, report.duplicates) == (1, 2)
    assert store.entries.find(search="already")  # the existing entry is left as it was


def test_import_keeps_labels_kinds_source_and_action(store: Store) -> None:
    import_text(store, '0611111111,"Smith, plumber"\n0162*,telemarketing\n',
                source="import", action="reject:607")
    by_pattern = {e.pattern: e for e in store.entries.find()}
    assert by_pattern["+33611111111"].label == "Smith, plumber"
    assert by_pattern["+33162"].kind is MatchKind.PREFIX
    assert {e.source for e in by_pattern.values()} == {"import"}
    assert {str(e.action) for e in by_pattern.values()} == {"reject:607"}


def test_import_with_a_bad_action_names_the_field(store: Store) -> None:
    with pytest.raises(EntryError) as caught:
        import_text(store, "0611111111\n", action="explode")
    assert caught.value.field == "action"
    assert store.entries.count() == 0


def test_uploaded_bytes_are_decoded_with_or_without_bom_or_as_latin_1() -> None:
    assert list(iter_lines("\ufeffnuméro\n06\n".encode())) == ["numéro\n", "06\n"]
    assert list(iter_lines("numéro\n".encode("latin-1"))) == ["numéro\n"]


def test_export_writes_patterns_as_the_owner_types_them(store: Store) -> None:
    store.entries.add("block", "0611111111", label="pest", action="reject:404",
                      expires_at=NOW + timedelta(days=1))
    store.entries.add("block", "0162*", label="tm")
    store.entries.add("block", r"re:^\+4420")
    store.entries.add("block", "06 ?? ?? ?? 99")
    store.entries.add("allow", "0699999999")
    out = io.StringIO()
    assert store.list_files.export_csv("block", out) == 4
    assert out.getvalue().splitlines() == [
        "pattern,label,kind,action,expires_at,once",
        f"'+33611111111,pest,exact,reject:404,{(NOW + timedelta(days=1)).isoformat()},",
        "'+33162*,tm,prefix,,,",
        r"re:^\+4420,,regex,,,",
        "'+336??????99,,glob,,,",
    ]


def test_an_export_imports_again_as_the_same_entries(store: Store) -> None:
    for typed in ("0611111111", "0162*", r"re:^\+4420", "06 ?? ?? ?? 99"):
        store.entries.add("block", typed)
    before = {(e.kind, e.pattern) for e in store.entries.find()}
    out = io.StringIO()
    store.list_files.export_csv("block", out)
    for entry in store.entries.find():
        store.entries.remove(entry.id)
    report = import_text(store, out.getvalue())
    assert report.added == 4 and report.rejected_count == 0
    assert {(e.kind, e.pattern) for e in store.entries.find()} == before


def test_replace_source_swaps_a_subscriptions_entries(store: Store) -> None:
    store.entries.add("block", "0611111111", label="mine")
    store.list_files.replace_source("block", "subscription:1",
                                    [("0622222222", "a"), ("0633333333", "b")])
    report = store.list_files.replace_source(
        "block", "subscription:1",
        [("0644444444", "c"), ("06 44 44 44 44", "again"), ("junk", ""), ("0655555555", "")])
    assert (report.added, report.duplicates) == (2, 1)
    assert [(line, text) for line, text, _ in report.rejected] == [(3, "junk")]
    assert {e.pattern: e.source for e in store.entries.find()} == {
        "+33611111111": "manual", "+33644444444": "subscription:1",
        "+33655555555": "subscription:1"}


def test_replace_source_leaves_the_list_as_it_was_when_reading_fails(store: Store) -> None:
    store.list_files.replace_source("block", "subscription:1", [("0622222222", "a")])
    before = version(store)

    def feed() -> Iterator[tuple[str, str]]:
        yield ("0633333333", "b")
        raise OSError("connection reset (test)")

    with pytest.raises(OSError):
        store.list_files.replace_source("block", "subscription:1", feed())
    assert [e.pattern for e in store.entries.find()] == ["+33622222222"]
    assert version(store) == before


def test_replace_source_rolls_back_when_writing_fails(store: Store,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store.list_files.replace_source("block", "subscription:1", [("0622222222", "a")])

    def broken(*args: object) -> int:
        raise RuntimeError("disk full (test)")

    monkeypatch.setattr("gateway.store.list_files.insert_ignoring_duplicates", broken)
    with pytest.raises(RuntimeError):
        store.list_files.replace_source("block", "subscription:1", [("0633333333", "b")])
    assert [e.pattern for e in store.entries.find()] == ["+33622222222"]


# --------------------------------------------------------------------------- ScreeningReads


def patterns(entries: list[Any]) -> set[str]:
    return {e.pattern for e in entries}


def test_candidates_are_the_number_its_prefixes_and_nearby_patterns(store: Store) -> None:
    for list_name, typed in [
        ("block", "0612345678"), ("block", "061*"), ("allow", "+33*"), ("block", "0622*"),
        ("block", "06 ?? ?? ?? 78"), ("block", "07 ?? ?? ?? 78"), ("allow", r"re:.*78"),
        ("block", "*78"),
    ]:
        store.entries.add(list_name, typed, confirm=True)
    found = patterns(store.screening.candidate_entries(caller("0612345678")))
    assert found == {"+33612345678", "+3361", "+33", "+336??????78", ".*78", "*78"}


def test_a_caller_without_a_number_matches_no_pattern(store: Store) -> None:
    store.entries.add("block", "0612345678")
    store.entries.add("block", "06 ?? ?? ?? 78")
    store.entries.add("block", r"re:.*")
    withheld = caller("anonymous", privacy="id")
    assert patterns(store.screening.candidate_entries(withheld)) == set()


def sneak_in_glob(store: Store, pattern: str) -> None:
    """Write an entry as a buggy writer would: without bumping the rules version."""
    with store.db.session() as s:
        s.add(ListEntryRow(list="block", kind="glob", pattern=pattern, created_at=NOW))


def test_the_glob_and_regex_index_is_reloaded_only_when_a_pattern_changes(store: Store) -> None:
    who = caller("0612345678")
    reads = store.screening
    store.entries.add("block", "06 ?? ?? ?? 78")
    assert patterns(reads.candidate_entries(who)) == {"+336??????78"}
    sneak_in_glob(store, "+336*")
    store.runtime.set("challenge_digit", "7")  # a setting: the policy's version only
    store.entries.add("block", "0699999999")  # an exact entry: read by index, no cache
    assert patterns(reads.candidate_entries(who)) == {"+336??????78"}  # still cached
    assert reads.pattern_loads == 1
    store.entries.add("block", "re:\\+3361.*")
    assert patterns(reads.candidate_entries(who)) == {"+336??????78", "+336*", "\\+3361.*"}
    assert reads.pattern_loads == 2


def test_adding_an_allow_entry_reloads_neither_patterns_nor_policy(store: Store,
                                                                  service: Services) -> None:
    """Auto-allows and known callers arrive in the middle of storms: they must not make the
    gateway reload its policy or its glob/regex index (issue 10, item 4)."""
    store.entries.add("block", "06 ?? ?? ?? 78")
    who = caller("0612345678")
    service.screener.evaluate(who, NOW)
    loads = (store.screening.pattern_loads, store.screening.policy_loads)
    store.entries.add("allow", "0611111111")  # as the owner does
    service.book.auto_allow("+33622222222")  # as a passed challenge does
    service.book.mark_known("+33633333333")  # as "answered elsewhere" does
    for number in ("0611111111", "0622222222", "0633333333", "0612345678"):
        service.screener.evaluate(caller(number), NOW)
    assert (store.screening.pattern_loads, store.screening.policy_loads) == loads
    assert service.screener.evaluate(caller("0622222222"), NOW).step == "allow"


def query_plan(store: Store, statement: Any, **params: Any) -> str:
    with store.db.engine.connect() as conn:
        compiled = statement.compile(conn, compile_kwargs={"literal_binds": True,
                                                            "render_postcompile": True})
        sql = str(compiled)
        for name, value in params.items():
            sql = sql.replace(f"__[POSTCOMPILE_{name}]", ", ".join(f"'{v}'" for v in value))
        return " ".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))


def test_patterns_are_read_through_the_kind_index(store: Store) -> None:
    """EXPLAIN QUERY PLAN of the pattern reload: a search of the index, not a table scan."""
    for i in range(50):
        store.entries.add("block", f"06123456{i:02d}")
    plan = query_plan(store, _PATTERN_ENTRIES)
    assert "SCAN list_entries" not in plan
    assert "ix_list_entries_kind_list" in plan


def test_a_number_is_looked_up_through_the_pattern_index(store: Store) -> None:
    """The per-call lookup must not wander onto the kind index (every exact entry)."""
    plan = query_plan(store, _ENTRIES_BY_PREFIX.params(prefixes=["+33", "+336"]))
    assert "ix_list_entries_pattern" in plan and "kind" not in plan


def test_the_policy_is_cached_per_version(store: Store) -> None:
    who = caller("0612345678")
    first = store.screening.rules_for(who)
    again = store.screening.rules_for(who)
    assert again.versions == first.versions and again.policy is first.policy  # not rebuilt
    store.runtime.set("block_action", "announce:sit")
    changed = store.screening.rules_for(who)
    assert changed.versions.policy > first.versions.policy
    assert changed.versions.patterns == first.versions.patterns
    assert str(changed.policy.block_action) == "announce:sit"


def imported(store: Store, text: str, list_name: str = "block", **options: Any) -> list[
        tuple[object, ...]]:
    report = store.list_files.import_csv(io.StringIO(text), list_name, **options)
    assert report.rejected == [], report.rejected
    return sorted((e.pattern, str(e.action) if e.action else None, e.label, e.expires_at, e.once)
                  for e in store.entries.find(list_name))


def test_the_readme_header_is_understood(store: Store) -> None:
    assert imported(store, "number_or_pattern,label\n0612345678,from the README\n") == [
        ("+33612345678", None, "from the README", None, False)]


def test_the_two_column_form_and_extra_fields_still_import(store: Store) -> None:
    assert imported(store, "0612345678,pest, really\n0612345679\n") == [
        ("+33612345678", None, "pest, really", None, False),
        ("+33612345679", None, "", None, False)]


def test_an_export_of_the_previous_version_keeps_its_actions_and_expiries(store: Store) -> None:
    text = ("pattern,label,kind,action,expires_at\n"  # before the `once` column
            "'+33612345601,\"spam,exact,x\",exact,reject:404,\n"
            "'+33612345602,robot,exact,announce:sit,\n"
            "'+33612345603,gone,exact,,2026-11-01T00:00:00+00:00\n")
    assert imported(store, text) == [
        ("+33612345601", "reject:404", "spam,exact,x", None, False),
        ("+33612345602", "announce:sit", "robot", None, False),
        ("+33612345603", None, "gone", NOW.replace(year=2026, month=11, day=1, hour=0,
                                                   minute=0, second=0, microsecond=0), False)]


def test_a_line_without_its_own_action_takes_the_import_action(store: Store) -> None:
    text = "pattern,label,action\n0612345601,a,reject:404\n0612345602,b,\n"
    assert [a for _, a, *_ in imported(store, text, action="announce")] == [
        "reject:404", "announce"]


def test_an_allow_list_takes_no_action_and_keeps_once(store: Store) -> None:
    text = "pattern,label,action,once\n0612345601,mum,reject:404,true\n0612345602,dad,,\n"
    assert imported(store, text, "allow") == [
        ("+33612345601", None, "mum", None, True), ("+33612345602", None, "dad", None, False)]


@pytest.mark.parametrize(("line", "field", "why"), [
    ("0612345601,x,exact,reject:999,,", "reject code", "reject code '999'"),
    ("0612345601,x,exact,,tomorrow,", "expires_at", "expires_at tomorrow"),
    ("0612345601,x,exact,,,maybe", "once", "once maybe"),
    ("0612345601,x,sideways,,,", "kind", "kind sideways"),
])
def test_a_bad_column_rejects_its_line_naming_the_field(
        store: Store, line: str, field: str, why: str) -> None:
    # `field`: the words of the reason that say which column is wrong
    text = "pattern,label,kind,action,expires_at,once\n" + line + "\n0612345602,ok,exact,,,\n"
    report = store.list_files.import_csv(io.StringIO(text), "block")
    assert report.added == 1
    [rejected] = report.rejected
    assert rejected.line == 2 and why in rejected.why and field in rejected.why, rejected.why

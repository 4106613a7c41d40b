"""The `ringfence` command, run as a real process against a copy of the example config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A copy of config.example.toml in a temp folder (relative paths follow it)."""
    path = tmp_path / "conf" / "config.toml"
    path.parent.mkdir()
    path.write_text((REPO_ROOT / "config.example.toml").read_text(encoding="utf-8"),
                    encoding="utf-8")
    return path


def ringfence(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("RINGFENCE_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ringfence {args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_screen_explains_why_a_telemarketing_number_is_not_passed(config: Path) -> None:
    ringfence(config, "db", "upgrade")
    assert (config.parent / "data" / "ringfence.db").exists()  # next to the config copy
    [out] = json_lines(ringfence(config, "screen", "0162123456").stdout)
    assert out["caller"] == "+33162123456"
    assert out["action"] == "reject:603"
    assert "0162" in str(out["reason"]) and "telemarketing" in str(out["reason"])
    [withheld] = json_lines(ringfence(config, "screen", "anonymous").stdout)
    assert withheld["caller"] == "withheld" and withheld["action"] == "voicemail"


def test_screen_is_a_dry_run(config: Path) -> None:
    ringfence(config, "db", "upgrade")
    for _ in range(5):
        ringfence(config, "screen", "0612345678")
    assert ringfence(config, "calls").stdout.strip() == ""


def test_lists_add_list_remove(config: Path) -> None:
    ringfence(config, "db", "upgrade")
    added = json_lines(ringfence(config, "block", "add", "06 12 34 56 78", "--label", "pest",
                                 "--action", "reject:404", "--expires", "7d").stdout)[0]["added"]
    assert isinstance(added, dict) and added["pattern"] == "+33612345678"
    [out] = json_lines(ringfence(config, "screen", "+33612345678").stdout)
    assert out["action"] == "reject:404" and "pest" in str(out["reason"])
    listed = json_lines(ringfence(config, "block", "list").stdout)
    assert [e["pattern"] for e in listed] == ["+33612345678"]
    ringfence(config, "allow", "add", "0612345678")
    [allowed] = json_lines(ringfence(config, "screen", "0612345678").stdout)
    assert allowed["action"] == "pass" and allowed["step"] == "allow"
    ringfence(config, "block", "remove", "0612345678")
    missing = ringfence(config, "block", "remove", "0612345678", check=False)
    assert missing.returncode == 1 and "nothing on the block list" in missing.stderr


def test_bad_input_gets_one_clear_line(config: Path) -> None:
    ringfence(config, "db", "upgrade")
    bad = ringfence(config, "block", "add", "0612", "--action", "explode", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "ringfence block: unknown action 'explode': expected pass, reject:CODE, "
        "announce[:PROMPT], voicemail[:PROMPT] or challenge")
    config.write_text(config.read_text(encoding="utf-8").replace(
        'timezone = "Europe/Paris"', 'timezone = "Paris"'), encoding="utf-8")
    broken = ringfence(config, "check-config", check=False)
    assert broken.returncode == 2
    assert broken.stderr.strip() == (
        "ringfence: configuration error: config.toml: timezone = 'Paris': expected an IANA "
        "zone such as 'Europe/Paris'")


def test_commands_refuse_a_database_without_schema(config: Path) -> None:
    result = ringfence(config, "screen", "0612345678", check=False)
    assert result.returncode == 2 and "run `ringfence db upgrade`" in result.stderr


def test_import_export(config: Path, tmp_path: Path) -> None:
    ringfence(config, "db", "upgrade")
    csv_file = tmp_path / "numbers.csv"
    csv_file.write_text("0612345678,pest\nnonsense\n+44 20 7946 0958\n0162*\n", encoding="utf-8")
    result = ringfence(config, "import", str(csv_file), "--list", "block")
    assert "block list: 3 added, 0 already present, 1 rejected" in result.stdout
    assert "numbers.csv:2: 'nonsense' rejected" in result.stderr
    exported = ringfence(config, "export", "--list", "block").stdout.splitlines()
    assert exported[0] == "pattern,label,kind,action,expires_at"
    assert len(exported) == 4


def test_replay_changes_nothing_unless_recorded(config: Path, tmp_path: Path) -> None:
    ringfence(config, "db", "upgrade")
    calls = tmp_path / "calls.csv"
    calls.write_text("time,number,name\n" + "".join(
        f"2026-11-24T15:{i:02d},06 12 34 56 78,Robot\n" for i in range(5)), encoding="utf-8")
    decisions = json_lines(ringfence(config, "replay", str(calls)).stdout)
    assert [d["action"] for d in decisions] == ["pass"] * 3 + ["voicemail"] * 2
    assert ringfence(config, "calls").stdout.strip() == ""
    recorded = json_lines(ringfence(config, "replay", str(calls), "--record").stdout)
    assert [d["action"] for d in recorded] == [d["action"] for d in decisions]
    logged = json_lines(ringfence(config, "calls", "--limit", "10").stdout)
    assert len(logged) == 5 and logged[0]["name"] == "Robot"


def test_rules_pause_and_permit(config: Path) -> None:
    ringfence(config, "db", "upgrade")
    rules = json_lines(ringfence(config, "rules").stdout)
    telemarketing = next(r for r in rules if r.get("kind") == "telemarketing")
    ringfence(config, "rules", "set", str(telemarketing["id"]), "--disable")
    [out] = json_lines(ringfence(config, "screen", "0162123456").stdout)
    assert out["action"] == "pass"
    ringfence(config, "rules", "add", "number_type", "--action", "announce:sit",
              "--param", "types=MOBILE")
    [mobile] = json_lines(ringfence(config, "screen", "0612345678").stdout)
    assert mobile["action"] == "announce:sit"
    ringfence(config, "permit", "0612345678")
    [permitted] = json_lines(ringfence(config, "screen", "0612345678").stdout)
    assert permitted["action"] == "pass" and "permitted once" in str(permitted["reason"])
    assert "paused until" in ringfence(config, "pause", "30m").stdout
    [paused] = json_lines(ringfence(config, "screen", "0612345678").stdout)
    assert paused["step"] == "pause"
    ringfence(config, "pause", "off")
    bad = ringfence(config, "rules", "setting", "burst", '{"distinct_callers": -1}', check=False)
    assert bad.returncode == 2 and "burst.distinct_callers = -1" in bad.stderr

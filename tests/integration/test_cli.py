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
    bad = ringfence(config, "block", "add", "0612*", "--action", "explode", check=False)
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


def test_typos_never_block_a_range_silently(config: Path, tmp_path: Path) -> None:
    ringfence(config, "db", "upgrade")
    # "06 12" used to become the prefix +33612 (a million numbers), "+999123" was accepted.
    short = ringfence(config, "block", "add", "06 12", check=False)
    assert short.returncode == 2
    assert "06 12 is not a complete phone number" in short.stderr and "06 12*" in short.stderr
    impossible = ringfence(config, "block", "add", "+999123", check=False)
    assert impossible.returncode == 2 and "+999 is not a country calling code" in \
        impossible.stderr
    # "+33*" is all of France: refused until confirmed, and the message says how many.
    country = ringfence(config, "block", "add", "+33*", check=False)
    assert country.returncode == 2
    assert "calling code +33 (FR), about 1,000,000,000 numbers" in country.stderr
    assert "--yes" in country.stderr
    assert json.loads(ringfence(config, "block", "add", "+33*", "--yes").stdout)["added"][
        "pattern"] == "+33"
    assert json.loads(ringfence(config, "allow", "add", "+44*", "--confirm").stdout)["added"][
        "kind"] == "prefix"
    # An explicit prefix of a million numbers or fewer needs nothing more (the README's 0162*).
    assert ringfence(config, "block", "add", "0162*").returncode == 0
    # The same rules in an import: broad lines are left out until --yes.
    csv_file = tmp_path / "typos.csv"
    csv_file.write_text("06 12\n+49*\n+999123\n0612345678\n", encoding="utf-8")
    result = ringfence(config, "import", str(csv_file))
    assert "block list: 1 added, 0 already present, 2 rejected, 1 waiting for confirmation" \
        in result.stdout
    assert "typos.csv:2: '+49*' left out" in result.stderr and "--yes" in result.stderr
    again = ringfence(config, "import", str(csv_file), "--yes")
    assert "1 added, 1 already present, 2 rejected" in again.stdout


def test_import_reads_french_excel_and_utf16(config: Path, tmp_path: Path) -> None:
    ringfence(config, "db", "upgrade")
    excel = tmp_path / "excel.csv"
    excel.write_bytes("Numéro;Libellé\r0612345678;Zoé, plombier\r".encode("cp1252"))
    result = ringfence(config, "import", str(excel), "--list", "allow")
    assert "1 added" in result.stdout and "Windows-1252, separated by semicolons" in result.stdout
    listed = json.loads(ringfence(config, "allow", "list").stdout.splitlines()[0])
    assert listed["label"] == "Zoé, plombier"
    unicode = tmp_path / "unicode.txt"
    unicode.write_bytes("0698765432\tMarc\n".encode("utf-16"))
    assert "1 added" in ringfence(config, "import", str(unicode), "--list", "allow").stdout
    picture = tmp_path / "photo.csv"
    picture.write_bytes(bytes(range(256)) * 8)
    refused = ringfence(config, "import", str(picture), check=False)
    assert refused.returncode == 2 and "not a text (CSV) file" in refused.stderr
    assert "Traceback" not in refused.stderr


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
    assert exported[0] == "pattern,label,kind,action,expires_at,once"
    assert len(exported) == 4


def test_an_export_imports_back_to_the_same_entries_in_a_new_installation(
        config: Path, tmp_path: Path) -> None:
    """Issue 11, item 11: reject:404 came back as 603, announce:sit as 603, the label as
    "spam,exact,reject:404,", an expiry as permanent; the README's header was a bad line."""
    ringfence(config, "db", "upgrade")
    for args in (("0612000001", "--action", "reject:404", "--label", "=spam, really"),
                 ("0612000002", "--action", "announce:sit", "--expires", "2099-01-01T00:00Z"),
                 ("0612*", "--kind", "glob", "--label", "@SUM(A1)")):
        ringfence(config, "block", "add", *args, "--yes")
    ringfence(config, "allow", "add", "0612000003", "--once", "--label", "next call")
    exported = {name: ringfence(config, "export", "--list", name).stdout
                for name in ("block", "allow")}
    assert "'=spam, really" in exported["block"]  # a spreadsheet would evaluate it

    fresh = tmp_path / "fresh" / "config.toml"
    fresh.parent.mkdir()
    fresh.write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
    ringfence(fresh, "db", "upgrade")
    for name, text in exported.items():
        file = tmp_path / f"{name}.csv"
        file.write_text(text, encoding="utf-8")
        result = ringfence(fresh, "import", str(file), "--list", name, "--yes")
        assert "0 rejected" in result.stdout, result.stdout + result.stderr
        again = ringfence(fresh, "export", "--list", name).stdout.splitlines()
        assert again[0] == text.splitlines()[0] and sorted(again) == sorted(text.splitlines())
    readme = tmp_path / "readme.csv"
    readme.write_text("number_or_pattern,label\n0612000009,from the README\n", encoding="utf-8")
    result = ringfence(fresh, "import", str(readme), "--list", "block")
    assert "1 added" in result.stdout and result.stderr == "", result.stderr
    # "+" starts a formula in a spreadsheet: exported numbers carry the neutralising "'".
    assert "'+33612000009,from the README,exact,,," in \
        ringfence(fresh, "export", "--list", "block").stdout.splitlines()


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


def test_allow_import_vcard_adds_every_number_named_after_its_contact(config: Path) -> None:
    ringfence(config, "db", "upgrade")
    cards = config.parent / "contacts.vcf"
    # A phone's export: UTF-16 with a BOM, folded lines, 3.0 and 4.0 cards, one without a
    # phone, one TEL that is not a number.
    cards.write_text(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Élodie\r\n  Martin\r\nTEL;TYPE=cell:06 12 34 56 78\r\n"
        "TEL;TYPE=home:+33 (0)1 23 45 67 89\r\nEND:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Paul\r\nTEL;VALUE=uri:tel:+33-6-98-76-54-32\r\n"
        "END:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No phone\r\nEMAIL:x@example.org\r\nEND:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Odd\r\nTEL:re:.*\r\nEND:VCARD\r\n",
        encoding="utf-16")
    result = ringfence(config, "allow", "import-vcard", str(cards))
    assert "3 numbers added from 3 contacts (1 rejected)" in result.stdout
    assert "'Odd: re:.*' rejected" in result.stderr
    entries = {e["pattern"]: e for e in json_lines(ringfence(config, "allow", "list").stdout)}
    assert {p: (e["label"], e["source"], e["kind"]) for p, e in entries.items()} == {
        "+33612345678": ("Élodie Martin", "contact", "exact"),
        "+33123456789": ("Élodie Martin", "contact", "exact"),
        "+33698765432": ("Paul", "contact", "exact"),
    }
    (config.parent / "notes.txt").write_text("no cards here\n", encoding="utf-8")
    refused = ringfence(config, "allow", "import-vcard", str(config.parent / "notes.txt"),
                        check=False)
    assert refused.returncode == 2 and "no vCard" in refused.stderr

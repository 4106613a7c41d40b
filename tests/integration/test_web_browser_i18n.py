"""In real headless Chromium, in French and in English: typo refusal, the confirmation of a
whole country, and CSV uploads of every kind. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import random

import pytest

from tests.integration.test_web_browser import (  # noqa: F401 - fixtures are found by name
    PASSWORD,
    PHONE,
    Server,
    _pw,
    browser,
    ringfence,
    server,
    shoot,
)

pytestmark = pytest.mark.slow

WORDS = {
    "fr": {
        "switch": "Français", "typo": "06 12 n'est pas un numéro complet",
        "hint": "tapez 06 12*", "impossible": "+999 n'est l'indicatif d'aucun pays",
        "broad": "+33* couvre tous les numéros de l'indicatif +33 (France), environ "
                 "1\u202f000\u202f000\u202f000 numéros",
        "added": "+33 ajouté à la liste noire.",
        "excel": "Lu en Windows-1252, séparé par des points-virgules.",
        "utf16": "Lu en UTF-16, séparé par des tabulations.",
        "mac": "2 ajoutés", "binary": "ce n'est pas un fichier texte (CSV)",
        "held": "1 en attente de votre confirmation", "confirmed": "1 entrée ajoutée à la liste.",
        "one_added": "1 ajouté,",
    },
    "en": {
        "switch": "English", "typo": "06 12 is not a complete phone number",
        "hint": "type 06 12*", "impossible": "+999 is not a country calling code",
        "broad": "+33* covers every number with the calling code +33 (France), about "
                 "1,000,000,000 numbers",
        "added": "+33 added to the block list.",
        "excel": "Read as Windows-1252, separated by semicolons.",
        "utf16": "Read as UTF-16, separated by tabs.",
        "mac": "2 added", "binary": "this is not a text (CSV) file",
        "held": "1 waiting for your confirmation", "confirmed": "1 entry added to the list.",
        "one_added": "1 added,",
    },
}


def _logged_in_page(server: Server, browser: object,  # noqa: F811 - the fixtures' values
                    language: str) -> object:
    ringfence(server.config, "set-password", "--password-file", str(_pw(server.config)))
    context = browser.new_context(viewport=PHONE)  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(server.url + "/login")
    page.fill("#f-password", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(server.url + "/")
    if language == "fr":
        page.click(f"text={WORDS['fr']['switch']}")
        page.wait_for_url(server.url + "/")
    return page


@pytest.mark.parametrize("language", ["fr", "en"])
def test_a_typo_is_refused_and_a_whole_country_is_confirmed(
        server: Server, browser: object, language: str) -> None:  # noqa: F811 - fixtures
    words = WORDS[language]
    page = _logged_in_page(server, browser, language)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    page.goto(server.url + "/lists/block")
    page.click("#add-entry >> xpath=..//summary")
    page.fill("#f-pattern", "06 12")
    page.click("#add-entry button.primary")
    message = page.locator("#e-pattern").inner_text()
    assert words["typo"] in message and words["hint"] in message
    shoot(page, f"phone-typo-refused-{language}")

    page.fill("#f-pattern", "+999123")
    page.click("#add-entry button.primary")
    assert words["impossible"] in page.locator("#e-pattern").inner_text()

    page.fill("#f-pattern", "+33*")
    page.click("#add-entry button.primary")
    box = page.locator("#confirm-broad")
    assert words["broad"] in box.inner_text()
    shoot(page, f"phone-confirm-country-{language}")
    assert ringfence(server.config, "block", "list").stdout.count("+33\"") == 0
    page.click("#confirm-broad-button")
    page.wait_for_url(server.url + "/lists/block")
    assert words["added"] in page.locator("body").inner_text()
    screened = json.loads(ringfence(server.config, "screen", "0612345678").stdout)
    assert screened["step"] == "block"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # The browser logs the 400 and 409 answers themselves; anything else is a real error.
    assert not [e for e in errors if "the server responded with a status of 4" not in e]


@pytest.mark.parametrize("language", ["fr", "en"])
def test_csv_uploads_of_every_kind(
        server: Server, browser: object, language: str) -> None:  # noqa: F811 - fixtures
    words = WORDS[language]
    page = _logged_in_page(server, browser, language)
    random.seed(13)
    uploads = [
        ("excel", "numéro;libellé\r\n0612345678;Zoé, plombier\r\n".encode("cp1252"),
         words["excel"]),
        ("utf16", "0698765432\tMarc\n".encode("utf-16"), words["utf16"]),
        ("mac", b"0611111111,a\r0622222222,b\r", words["mac"]),
        ("binary", bytes(random.randrange(256) for _ in range(4000)), words["binary"]),
    ]
    for name, data, expected in uploads:
        page.goto(server.url + "/transfer")
        page.set_input_files("#f-file", files=[{"name": f"{name}.csv", "mimeType": "text/csv",
                                                "buffer": data}])
        page.click("form[action$='/transfer/import'] button.primary")
        page.wait_for_load_state()
        assert expected in page.locator("main").inner_text(), name
        assert "\x00" not in page.locator("main").inner_text()
        shoot(page, f"phone-import-{name}-{language}")

    page.goto(server.url + "/transfer")
    page.set_input_files("#f-file", files=[{"name": "broad.csv", "mimeType": "text/csv",
                                            "buffer": b"+49*,Germany\n0633333333,one\n"}])
    page.click("form[action$='/transfer/import'] button.primary")
    page.wait_for_load_state()
    summary = page.locator("#import-summary").inner_text()
    assert words["one_added"] in summary and words["held"] in summary
    shoot(page, f"phone-import-held-{language}")
    page.click("#confirm-import")
    page.wait_for_load_state()
    assert words["confirmed"] in page.locator("#confirm-report").inner_text()
    listed = ringfence(server.config, "block", "list").stdout
    assert '"pattern": "+49"' in listed

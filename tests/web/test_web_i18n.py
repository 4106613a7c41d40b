"""The UI in French as much as in English: reasons, labels, plurals, dates, typo traps, CSV."""

from __future__ import annotations

import html
import io
import random
import re

from flask.testing import FlaskClient

from gateway.store.models import utcnow
from tests.helpers import TUESDAY_AFTERNOON, Services
from tests.web.support import log_call, post, wav_bytes


def text(response: object) -> str:
    return html.unescape(response.get_data(as_text=True))  # type: ignore[attr-defined]


def french(client: FlaskClient) -> FlaskClient:
    post(client, "/language", {"lang": "fr", "next": "/"})
    return client


def english(client: FlaskClient) -> FlaskClient:
    post(client, "/language", {"lang": "en", "next": "/"})
    return client


def screened_call(service: Services, number: str) -> None:
    """A call logged the way the gateway logs it: decided, with its reason code."""
    who = service.screener.caller(number)
    service.book.record_call(who, service.screener.screen(who, TUESDAY_AFTERNOON),
                             at=TUESDAY_AFTERNOON, line="home")


def test_reasons_follow_the_language_and_old_rows_keep_their_text(
        client: FlaskClient, service: Services) -> None:
    screened_call(service, "0162123456")  # the telemarketing rule, with its default label
    screened_call(service, "0612345678")  # no rule: default pass
    log_call(service, "0698765432", reason="an English reason from before codes")
    page = text(french(client).get("/calls"))
    assert "0162 est une tranche que l'ARCEP réserve au démarchage" in page
    assert "[tranches de démarchage]" in page and "telemarketing ranges" not in page
    assert "aucune règle ne s'applique" in page and "no rule matched" not in page
    assert "an English reason from before codes" in page  # shown as stored
    assert "3 appels" in page
    assert "24/11/2026 15:00" in page  # a French date, not 2026-11-24 15:00
    page = text(english(client).get("/calls"))
    assert "[telemarketing ranges]" in page and "no rule matched" in page
    assert "24/11/2026, 15:00" in page


def test_plurals_are_real_in_both_languages(client: FlaskClient, service: Services) -> None:
    log_call(service, "0612345678")
    assert "1 call<" in text(english(client).get("/calls"))
    page = text(french(client).get("/calls"))
    assert "1 appel<" in page and "1 appels" not in page
    service.store.entries.add("block", "0612345678")
    assert "1 entrée<" in text(client.get("/lists/block"))


def test_the_french_ui_has_no_english_labels_sources_or_states(
        client: FlaskClient, service: Services) -> None:
    service.book.mark_known("0612345678")  # "answered by owner", source "known"
    service.book.set_line_state("home", "registered", None)
    allow = text(french(client).get("/lists/allow"))
    assert "vous avez répondu" in allow and "answered by owner" not in allow
    page = text(client.get("/rules"))
    rules = re.sub(r"<[^>]*>", " ", page)  # what the owner reads, not attribute values
    for english_words in ("withheld numbers leave a message", "telemarketing ranges",
                          "number_type", "quiet_hours"):
        assert english_words not in rules, english_words
    # "block" as a country rule's mode is not the block list's name (issue 13, item 3).
    assert "bloquer ces pays" in rules and ">noire<" not in page
    assert "enregistrée" in text(client.get("/"))


def test_a_typo_is_refused_in_french_and_a_whole_country_asks_first(
        client: FlaskClient, service: Services) -> None:
    french(client)
    response = post(client, "/lists/block/add", {"pattern": "06 12"})
    page = text(response)
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert re.search(r'id="e-pattern">06 12 n\'est pas un numéro complet.*tapez 06 12\*', page)
    assert service.store.entries.count("block") == 0
    response = post(client, "/lists/block/add", {"pattern": "+999123"})
    assert "+999 n'est l'indicatif d'aucun pays" in text(response)
    response = post(client, "/lists/block/add", {"pattern": "+33*", "label": "tout"})
    page = text(response)
    assert response.status_code == 409  # type: ignore[attr-defined]
    assert 'id="confirm-broad"' in page
    assert "+33* couvre tous les numéros de l'indicatif +33 (France)" in page
    assert "1\u202f000\u202f000\u202f000 numéros" in page  # French digit grouping
    assert 'value="tout"' in page  # what was typed is kept for the confirmation
    assert service.store.entries.count("block") == 0
    response = post(client, "/lists/block/add", {"pattern": "+33*", "label": "tout",
                                                 "confirm": "1"})
    assert response.status_code == 302  # type: ignore[attr-defined]
    assert "+33 ajouté à la liste noire." in text(client.get("/lists/block"))


def test_the_english_flash_names_the_list_not_a_country_mode(client: FlaskClient) -> None:
    post(english(client), "/lists/block/add", {"pattern": "0162*"})
    page = text(client.get("/lists/block"))
    assert "+33162 added to the block list." in page
    assert "block these countries" not in page


def _upload(client: FlaskClient, data: bytes, name: str = "list.csv",
            list_name: str = "block") -> object:
    return post(client, "/transfer/import", {"list": list_name,
                                             "file": (io.BytesIO(data), name)},
                content_type="multipart/form-data")


def test_csv_uploads_of_every_kind(client: FlaskClient, service: Services) -> None:
    french(client)
    excel = "Numéro;Libellé\r\n0612345678;Zoé, plombier\r\n06 12;oups\r\n".encode("cp1252")
    page = text(_upload(client, excel, "excel.csv", "allow"))
    assert "1 ajouté, 0 déjà présent, 1 rejeté" in page
    assert "Lu en Windows-1252, séparé par des points-virgules." in page
    assert "06 12 n'est pas un numéro complet" in page
    assert service.store.entries.find("allow")[0].label == "Zoé, plombier"
    page = text(_upload(client, "0698765432\tMarc\n".encode("utf-16"), "unicode.txt"))
    assert "1 ajouté" in page and "UTF-16" in page and "\x00" not in page
    page = text(_upload(client, b"0611111111,a\r0622222222,b\r", "mac.csv"))
    assert "2 ajoutés" in page
    random.seed(13)
    response = _upload(client, bytes(random.randrange(256) for _ in range(4000)), "photo.csv")
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "ce n'est pas un fichier texte (CSV)" in text(response)


def test_broad_import_lines_wait_for_a_confirmation(client: FlaskClient,
                                                    service: Services) -> None:
    page = text(_upload(english(client), b"+44*,all of the UK\n0612345678,one\n"))
    assert "1 added" in page and "1 waiting for your confirmation" in page
    assert "+44* covers every number with the calling code +44" in page
    assert service.store.entries.count("block") == 1
    response = post(client, "/transfer/import/confirm", {"list": "block", "action": "",
                                                         "pattern": "+44*",
                                                         "label": "all of the UK"})
    assert "1 entry added to the list." in text(response)
    assert {e.pattern for e in service.store.entries.find("block")} == {"+44", "+33612345678"}


def test_a_restore_error_names_the_upload_not_a_temporary_path(client: FlaskClient) -> None:
    response = post(client, "/transfer/restore", {
        "confirm": "yes", "file": (io.BytesIO(b"not a backup"), "my-backup.tar.gz")},
        content_type="multipart/form-data")
    page = text(response)
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "my-backup.tar.gz: not a .tar.gz archive" in page
    assert "/tmp" not in page and "ReadError" not in page and "rf-restore" not in page


def test_the_api_asks_for_confirmation_with_the_count(client: FlaskClient,
                                                      service: Services) -> None:
    from web.security import new_api_token

    headers = {"Authorization": f"Bearer {new_api_token(service.store)}"}
    response = client.post("/api/lists/block", json={"pattern": "+33*"}, headers=headers)
    body = response.get_json()
    assert response.status_code == 409
    assert body["covers"] == 1_000_000_000 and body["countries"] == ["FR"]
    assert body["field"] == "pattern" and "confirm" in body
    response = client.post("/api/lists/block", json={"pattern": "+33*", "confirm": True},
                           headers=headers)
    assert response.status_code == 201 and response.get_json()["pattern"] == "+33"
    response = client.post("/api/lists/block", json={"pattern": "06 12"}, headers=headers)
    assert response.status_code == 400 and "06 12*" in response.get_json()["error"]
    response = client.post("/api/lists/block/import", data=b"+49*\n0612345678\n",
                           headers=headers)
    body = response.get_json()
    assert body["added"] == 1 and [u["text"] for u in body["unconfirmed"]] == ["+49*"]
    assert body["encoding"] == "UTF-8" and body["delimiter"] == ","
    response = client.post("/api/lists/block/import?confirm=1", data=b"+49*\n",
                           headers=headers)
    assert response.get_json()["added"] == 1
    response = client.post("/api/lists/block/import", data=bytes(range(256)) * 10,
                           headers=headers)
    assert response.status_code == 400 and response.get_json()["field"] == "body"
    assert utcnow()  # the API never answered 500 above


def test_prompts_have_labels_in_both_languages(client: FlaskClient) -> None:
    page = text(french(client).get("/prompts"))
    assert "anti-usurpation" in page and "spoof_shield</strong>" not in page
    assert wav_bytes(0.01)


def test_password_errors_are_french_on_the_french_setup_page(anonymous: FlaskClient) -> None:
    french(anonymous)
    page = text(post(anonymous, "/setup", {"password": "short", "confirm": "short"}))
    assert "le mot de passe doit avoir au moins 10 caractères" in page
    page = text(post(anonymous, "/setup", {"password": "long enough one",
                                           "confirm": "long enough two"}))
    assert "les deux mots de passe sont différents" in page

"""Voicemail playback, prompts upload, CSV import/export and vCard contacts through the UI."""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from gateway.config import Settings
from gateway.screening.rules import ListName
from tests.helpers import Services
from tests.web.support import NOW, login, make_app, post, save_voicemail, wav_bytes


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined,no-any-return]


# ---------------------------------------------------------------------------- voicemail


def test_voicemail_list_audio_range_download(client: FlaskClient, settings: Settings,
                                             service: Services) -> None:
    vm = save_voicemail(service, settings, "+33612345678", name="Alice", seconds=1.0)
    html = text(client.get("/voicemail"))
    assert f'src="/voicemail/{vm}/audio"' in html and "<audio controls" in html
    assert "06 12 34 56 78" in html and "0:01" in html
    assert "1 message, 0.0 MB of 500 MB used" in html
    response = client.get(f"/voicemail/{vm}/audio")
    assert response.status_code == 200 and response.mimetype == "audio/wav"
    assert response.data[:4] == b"RIFF"
    assert response.headers["Accept-Ranges"] == "bytes"
    partial = client.get(f"/voicemail/{vm}/audio", headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206 and len(partial.data) == 100
    download = client.get(f"/voicemail/{vm}/download")
    assert "attachment" in download.headers["Content-Disposition"]
    assert "voicemail-" in download.headers["Content-Disposition"]


def test_a_message_a_crash_cut_short_says_so(client: FlaskClient, settings: Settings,
                                             service: Services) -> None:
    """Issue 11: a message saved on start from what a crash left is marked, not passed off."""
    whole = save_voicemail(service, settings, "+33612345678", seconds=2.0)
    cut = save_voicemail(service, settings, "+33612345679", seconds=3.0, interrupted=True)
    html = text(client.get("/voicemail"))
    rows = {re.search(r'id="vm-(\d+)"', row).group(1): row  # type: ignore[union-attr]
            for row in html.split('<li class="row')[1:]}
    assert "cut short" in rows[str(cut)] and "cut short" not in rows[str(whole)]


def test_mark_heard_and_delete_removes_file_and_row(client: FlaskClient, settings: Settings,
                                                    service: Services) -> None:
    vm = save_voicemail(service, settings, "+33612345678")
    row = service.store.voicemails.get(vm)
    assert row is not None and not row.heard
    path = settings.voicemail_dir / row.path
    post(client, f"/voicemail/{vm}/heard", {"heard": "1"})
    assert service.store.voicemails.get(vm).heard  # type: ignore[union-attr]
    assert service.store.voicemails.count(unheard_only=True) == 0
    post(client, f"/voicemail/{vm}/delete")
    assert service.store.voicemails.get(vm) is None and not path.exists()
    assert post(client, f"/voicemail/{vm}/delete").status_code == 404  # type: ignore[attr-defined]


def test_a_recording_path_outside_the_folder_is_never_served(client: FlaskClient,
                                                            settings: Settings,
                                                            service: Services) -> None:
    secret = settings.data_dir / "web-secret"
    assert secret.exists()
    vm = service.store.voicemails.save(None, at=NOW, path="../web-secret", duration_s=1,
                                     size_bytes=10, number=None, display_name="")
    assert client.get(f"/voicemail/{vm}/audio").status_code == 404
    assert client.get("/voicemail/12345/audio").status_code == 404


# ---------------------------------------------------------------------------- prompts


def _upload(client: FlaskClient, data: bytes, name: str = "greeting", lang: str = "fr",
            filename: str = "hello.wav") -> object:
    return post(client, "/prompts", {"lang": lang, "name": name,
                                     "file": (io.BytesIO(data), filename)},
                content_type="multipart/form-data")


def test_upload_a_prompt_and_play_it_back(client: FlaskClient, settings: Settings) -> None:
    response = _upload(client, wav_bytes(0.3))
    assert response.status_code == 302  # type: ignore[attr-defined]
    stored = settings.data_dir / "prompts" / "fr" / "greeting.wav"
    assert stored.read_bytes()[:4] == b"RIFF"
    assert 'src="/prompts/fr/greeting.wav"' in text(client.get("/prompts"))
    played = client.get("/prompts/fr/greeting.wav")
    assert played.status_code == 200 and played.mimetype == "audio/wav"
    assert client.get("/prompts/fr/../../web-secret.wav").status_code == 404
    assert client.get("/prompts/de/greeting.wav").status_code == 404


@pytest.mark.parametrize(("data", "message"), [
    (b"ID3\x03hello mp3", "not a WAV file"),
    (wav_bytes(0.1, fmt=6), "compressed"),
    (b"RIFF" + struct.pack("<I", 4) + b"WAVE", "no audio data"),
    (b"RIFF" + b"\0" * (5 * 1024 * 1024 + 10), "larger than 5 MB"),
])
def test_bad_prompt_uploads_are_refused_with_a_reason(client: FlaskClient, data: bytes,
                                                      message: str) -> None:
    response = _upload(client, data)
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert re.search(r'id="e-file">[^<]*' + message, text(response))


def test_prompt_name_and_language_must_be_known(client: FlaskClient) -> None:
    response = _upload(client, wav_bytes(0.1), name="../../etc/passwd")
    assert response.status_code == 400 and 'id="e-name"' in text(response)  # type: ignore
    response = _upload(client, wav_bytes(0.1), lang="xx")
    assert 'id="e-lang"' in text(response)


# ---------------------------------------------------------------------------- import / export


def test_csv_import_reports_rejected_lines_with_numbers(client: FlaskClient,
                                                        service: Services) -> None:
    csv_data = "number,label\n0612345678,spam\nnot a number,oops\n+44 20 7946 0000,london\n0162*\n"
    response = post(client, "/transfer/import", {
        "list": "block", "action": "", "file": (io.BytesIO(csv_data.encode()), "list.csv")},
        content_type="multipart/form-data")
    html = text(response)
    assert "3 added, 0 already present, 1 rejected" in html
    assert re.search(r"<td>3</td><td><code>not a number</code></td>", html)
    assert service.store.entries.count("block") == 3


def test_csv_import_validates_list_file_and_action(client: FlaskClient) -> None:
    response = post(client, "/transfer/import", {"list": "grey"})
    assert response.status_code == 400 and 'id="e-list"' in text(response)
    response = post(client, "/transfer/import", {"list": "block"})
    assert 'id="e-file"' in text(response)
    response = post(client, "/transfer/import", {
        "list": "block", "action": "explode", "file": (io.BytesIO(b"0612345678\n"), "a.csv")},
        content_type="multipart/form-data")
    assert 'id="e-action"' in text(response) and 'value="explode"' in text(response)


def test_export_a_list_as_csv(client: FlaskClient, service: Services) -> None:
    service.store.entries.add(ListName.BLOCK, "0612345678", label="spam")
    service.store.entries.add(ListName.BLOCK, "0162*", label="range")
    response = client.get("/transfer/export/block.csv")
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    body = response.get_data(as_text=True)
    assert body.splitlines()[0] == "pattern,label,kind,action,expires_at,once"  # once: issue 11
    assert "'+33612345678,spam,exact" in body and "'+33162*,range,prefix" in body
    assert client.get("/transfer/export/grey.csv").status_code == 404


VCARDS = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Alice Martin\r\nN:Martin;Alice;;;\r\n"
    "TEL;TYPE=CELL:06 12 34 56 78\r\nTEL;TYPE=HOME:+33 1 23 45 67 \r\n 89\r\n"
    "END:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Bob <b>\r\n"
    "TEL;VALUE=uri;TYPE=\"voice,cell\":tel:+44-20-7946-0000\r\n"
    "item1.TEL:not-a-number\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No Phone\r\nEMAIL:x@example.org\r\nEND:VCARD\r\n"
)


def test_vcard_contacts_go_to_the_allow_list_with_names(client: FlaskClient,
                                                        service: Services) -> None:
    response = post(client, "/transfer/contacts", {
        "file": (io.BytesIO(VCARDS.encode()), "contacts.vcf")},
        content_type="multipart/form-data")
    html = text(response)
    assert "2 contacts read, 3 numbers allowed, 1 rejected" in html
    entries = {e.pattern: e for e in service.store.entries.find("allow")}
    assert entries["+33612345678"].label == "Alice Martin"
    assert entries["+33123456789"].source == "contact"  # the folded TEL line
    assert entries["+442079460000"].label == "Bob <b>"
    assert "Bob &lt;b&gt;: not-a-number" in html
    response = post(client, "/transfer/contacts", {
        "file": (io.BytesIO(b"just text"), "x.vcf")}, content_type="multipart/form-data")
    assert response.status_code == 400 and 'id="e-vcf"' in text(response)


def test_the_current_challenge_key_prompt_can_be_replaced(client: FlaskClient,
                                                          settings: Settings,
                                                          service: Services) -> None:
    pytest.importorskip("gateway.prompts")
    service.store.runtime.set("challenge_digit", "7")
    assert "challenge_7" in text(client.get("/prompts"))
    assert _upload(client, wav_bytes(0.2), name="challenge_7").status_code == 302  # type: ignore
    assert (settings.data_dir / "prompts" / "fr" / "challenge_7.wav").is_file()
    assert _upload(client, wav_bytes(0.2), name="challenge_3").status_code == 400  # type: ignore


def test_uploads_go_to_the_owners_prompts_dir_when_configured(
        make_settings: Callable[[str], Settings], tmp_path: object) -> None:
    from tests.helpers import Services

    settings = make_settings('language = "en"\n[gateway]\nprompts_dir = "mine"\n')
    service = Services.open(settings)
    app = make_app(settings, service)
    with app.test_client() as c:
        login(c, service)
        assert _upload(c, wav_bytes(0.2), lang="en").status_code == 302  # type: ignore
        assert settings.gateway.prompts_dir is not None
        assert (settings.gateway.prompts_dir / "en" / "greeting.wav").is_file()
        assert c.get("/prompts/en/greeting.wav").status_code == 200


def test_backup_download_and_restore_from_the_ui(client: FlaskClient,
                                                 service: Services) -> None:
    service.store.entries.add(ListName.BLOCK, "0612345678", label="kept by the backup")
    page = text(client.get("/transfer"))
    assert page.count('id="backup"') == 1 and page.count('id="restore"') == 1
    assert "<section" not in page.split("</title>")[0]  # the forms sit in the page body
    response = client.get("/transfer/backup?calls=1")
    assert response.mimetype == "application/gzip"
    assert "attachment" in response.headers["Content-Disposition"]
    archive = response.get_data()
    assert archive[:2] == b"\x1f\x8b"  # gzip
    service.store.entries.add(ListName.BLOCK, "0699999999", label="added after the backup")
    # Restoring needs the file and the owner's explicit confirmation.
    refused = post(client, "/transfer/restore", {
        "file": (io.BytesIO(archive), "backup.tar.gz")}, content_type="multipart/form-data")
    assert refused.status_code == 400 and "Tick the box" in text(refused)
    assert service.store.entries.count("block") == 2
    bad = post(client, "/transfer/restore", {
        "confirm": "yes", "file": (io.BytesIO(b"not an archive"), "x.tar.gz")},
        content_type="multipart/form-data")
    assert bad.status_code == 400 and 'id="e-restore"' in text(bad)
    done = post(client, "/transfer/restore", {
        "confirm": "yes", "file": (io.BytesIO(archive), "backup.tar.gz")},
        content_type="multipart/form-data")
    assert done.status_code == 200 and "Backup restored" in text(done)
    assert [e.label for e in service.store.entries.find("block")] == ["kept by the backup"]

"""A stranger's backup restored through the UI keeps the owner's password, token and session."""

from __future__ import annotations

import io
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from gateway.ops.backup import backup_to
from tests.helpers import Services
from tests.unit.test_backup_credentials import STRANGER, installation
from tests.web.support import PASSWORD, login, post
from web.security import new_api_token


def test_ui_cross_restore_keeps_the_owner_in_and_the_stranger_out(
        app: Flask, service: Services, tmp_path: Path) -> None:
    theirs, _, their_token = installation(tmp_path / "stranger", STRANGER)
    archive = tmp_path / "stranger.tar.gz"
    backup_to(archive, theirs, with_credentials=True)  # even one that holds them
    owner = app.test_client()
    login(owner, service)
    my_token = new_api_token(service.store)

    done = post(owner, "/transfer/restore", {
        "confirm": "yes", "file": (io.BytesIO(archive.read_bytes()), "backup.tar.gz")},
        content_type="multipart/form-data")
    assert done.status_code == 200, done.get_data(as_text=True)  # type: ignore[attr-defined]
    assert [e.label for e in service.store.entries.find("block")] == ["from stranger"]
    assert owner.get("/calls").status_code == 200  # the owner's session survives

    stranger = app.test_client()
    assert stranger.get("/setup").status_code == 302  # never back to first-run setup
    assert post(stranger, "/login", {"password": STRANGER}).status_code == 401  # type: ignore
    assert app.test_client().get(
        "/api/stats", headers={"Authorization": f"Bearer {their_token}"}).status_code == 401
    assert app.test_client().get(
        "/api/stats", headers={"Authorization": f"Bearer {my_token}"}).status_code == 200
    again = app.test_client()
    login(again, service, PASSWORD)


def test_the_ui_restore_page_says_credentials_are_kept(client: FlaskClient, service: Services,
                                                       tmp_path: Path) -> None:
    archive = tmp_path / "mine.tar.gz"
    backup_to(archive, service.settings, db=service.db)
    done = post(client, "/transfer/restore", {
        "confirm": "yes", "file": (io.BytesIO(archive.read_bytes()), "backup.tar.gz")},
        content_type="multipart/form-data")
    assert "password and API token kept" in done.get_data(as_text=True)  # type: ignore

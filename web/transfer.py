"""Import numbers from CSV or vCard contacts, export lists as CSV, back up and restore."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from flask import Blueprint, abort, render_template, request, send_file
from werkzeug.wrappers import Response as BaseResponse

from gateway.feeds.vcard import import_contacts
from gateway.ops.backup import BackupError, backup_to, restore_from
from gateway.store import EntryError, ImportReport, Store
from gateway.store.decode import FileProblem
from gateway.store.list_files import Rejected, iter_lines
from web.helpers import _, error_words
from web.state import state

bp = Blueprint("transfer", __name__)

MAX_REPORTED = 200  # rejected lines shown; the summary still counts them all


def import_csv_bytes(store: Store, data: bytes, list_name: str, action: str | None, *,
                     confirm: bool = False) -> ImportReport:
    """Import an uploaded list file (any encoding and separator) into a list.

    Raises FileProblem when the file as a whole is unusable, EntryError for a bad action.
    """
    return store.list_files.import_file(data, list_name, action=action, confirm=confirm)


def _render(status: int = 200, **context: object) -> tuple[str, int]:
    context.setdefault("errors", {})
    context.setdefault("form", {"list": "block"})
    return render_template("transfer.html", max_reported=MAX_REPORTED, **context), status


@bp.route("/transfer")
def index() -> tuple[str, int]:
    """Show the import and export forms."""
    return _render()


@bp.route("/transfer/import", methods=["POST"])
def import_file() -> tuple[str, int]:
    """Import a CSV into a list and show the report of rejected lines."""
    store = state().store
    form = {"list": request.form.get("list", ""), "action": request.form.get("action", "")}
    if form["list"] not in ("allow", "block"):
        return _render(form=form, errors={"list": _("Choose the allow or block list.")},
                       status=400)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _render(form=form, errors={"file": _("Choose a CSV file.")}, status=400)
    action = form["action"].strip() or None
    if form["list"] == "allow":
        action = None
    try:
        report = import_csv_bytes(store, upload.read(), form["list"], action)
    except FileProblem as exc:  # not a list at all: binary, empty
        return _render(form=form, errors={"file": error_words(exc)}, status=400)
    except ValueError as exc:  # a bad action for the whole file
        return _render(form=form, errors={"action": error_words(exc)}, status=400)
    return _render(form=form, report=report, report_name=upload.filename)


@dataclass
class ConfirmReport:
    """What adding the confirmed broad lines of an import did."""

    added: int = 0
    rejected: list[Rejected] = field(default_factory=list)


@bp.route("/transfer/import/confirm", methods=["POST"])
def confirm_import() -> tuple[str, int]:
    """Add the lines an import held back because they reach a country or a million numbers."""
    store = state().store
    list_name = request.form.get("list", "")
    if list_name not in ("allow", "block"):
        return _render(errors={"list": _("Choose the allow or block list.")}, status=400)
    action = (request.form.get("action") or "").strip() or None
    if list_name == "allow":
        action = None
    labels = request.form.getlist("label")
    report = ConfirmReport()
    for index, typed in enumerate(request.form.getlist("pattern")[:MAX_REPORTED]):
        label = labels[index] if index < len(labels) else ""
        try:
            store.entries.add(list_name, typed, label=label[:200], action=action,
                              source="manual", confirm=True)
        except EntryError as exc:
            report.rejected.append(Rejected(0, typed[:80], str(exc), exc.template, exc.params))
        else:
            report.added += 1
    return _render(form={"list": list_name, "action": action or ""}, confirmed=report)


@bp.route("/transfer/contacts", methods=["POST"])
def import_vcard() -> tuple[str, int]:
    """Allow every number of an uploaded vCard file, labelled with the contact's name."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _render(errors={"vcf": _("Choose a .vcf file.")}, status=400)
    text = "".join(iter_lines(upload.read()))  # UTF-16 and Windows-1252 cards read too
    if "BEGIN:VCARD" not in text.upper():
        return _render(errors={"vcf": _("This file has no vCard in it.")}, status=400)
    report = import_contacts(state().store, text)
    return _render(contacts=report)


def export_file(store: Store, list_name: str) -> IO[bytes]:
    """Write a list's CSV to a temporary file (on disk past 1 MiB) and rewind it.

    A million-entry block list is tens of megabytes: spooling keeps it out of memory, and the
    database read finishes before the (maybe slow) download starts.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - sent, then closed
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    store.list_files.export_csv(list_name, text)
    text.flush()
    text.detach()  # keep the binary file open for send_file
    spool.seek(0)
    return spool


@bp.route("/transfer/export/<name>.csv")
def export(name: str) -> BaseResponse:
    """Download a list as CSV."""
    if name not in ("allow", "block"):
        abort(404)
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return send_file(export_file(state().store, name), mimetype="text/csv",
                     as_attachment=True, download_name=f"ringfence-{name}-{stamp}.csv")


@bp.route("/transfer/backup")
def backup() -> BaseResponse:
    """Download a backup archive (lists, rules, settings, prompts; optionally calls, voicemail).

    A GET because it changes nothing; the archive is written to a temporary folder first so a
    failure shows as an error page, not as a truncated download.
    """
    web = state()
    with_calls = request.args.get("calls") == "1"
    with_voicemail = request.args.get("voicemail") == "1"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    folder = tempfile.TemporaryDirectory(prefix="rf-backup-")
    path = f"{folder.name}/ringfence-{stamp}.tar.gz"
    backup_to(path, web.settings, with_calls=with_calls, with_voicemail=with_voicemail,
              db=web.store.db)
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - sent, then closed by send_file
    with open(path, "rb") as archive:
        spool.write(archive.read())
    folder.cleanup()
    spool.seek(0)
    return send_file(spool, mimetype="application/gzip", as_attachment=True,
                     download_name=f"ringfence-{stamp}.tar.gz")


@bp.route("/transfer/restore", methods=["POST"])
def restore() -> tuple[str, int]:
    """Restore an uploaded backup after the owner confirmed it replaces lists and rules."""
    web = state()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _render(errors={"restore": _("Choose a backup file (.tar.gz).")}, status=400)
    if request.form.get("confirm") != "yes":
        return _render(errors={"restore": _(
            "Tick the box: a restore replaces the lists, rules and settings.")}, status=400)
    with tempfile.TemporaryDirectory(prefix="rf-restore-") as folder:
        path = f"{folder}/upload.tar.gz"
        upload.save(path)
        try:
            report = restore_from(path, web.settings, db=web.store.db)
        except BackupError as exc:
            # The owner uploaded "their file", not our temporary copy: name it so.
            message = str(exc).replace(path, upload.filename).replace(folder, "")
            return _render(errors={"restore": message}, status=400)
    return _render(restored=report.summary())

"""Voicemail (listen, download, mark heard, delete) and the owner's own prompts."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from werkzeug.wrappers import Response as BaseResponse

from gateway.files import create_private
from gateway.prompts import PACKAGED_DIR, challenge_prompt_name, keyed_prompt_name
from gateway.store.models import VoicemailRow
from gateway.store.voicemail import resolve_voicemail_path
from web.helpers import _, paginate
from web.i18n import LANGUAGES
from web.state import state
from web.wav import MAX_PROMPT_BYTES, PROMPT_NAMES, WavError, check_pcm_wav

bp = Blueprint("voicemail", __name__)


@bp.route("/voicemail")
def index() -> str:
    """List voicemails, newest first."""
    st = state()
    page = paginate(st.store.voicemails.count(), size=20)
    rows = st.store.voicemails.recent(limit=page.size, offset=page.offset)
    used_mb = st.store.voicemails.bytes_used() / (1024 * 1024)
    return render_template("voicemail.html", rows=rows, page=page, used_mb=used_mb,
                           cap_mb=st.settings.voicemail.max_total_mb)


def _recording(voicemail_id: int) -> tuple[VoicemailRow, Path]:
    st = state()
    row = st.store.voicemails.get(voicemail_id)
    if row is None:
        abort(404)
    try:
        path = resolve_voicemail_path(st.settings.voicemail_dir, row.path)
    except ValueError:
        abort(404)
    if not path.is_file():
        abort(404)
    return row, path


@bp.route("/voicemail/<int:voicemail_id>/audio")
def audio(voicemail_id: int) -> BaseResponse:
    """Stream a recording; `conditional` makes Werkzeug answer Range requests (seeking)."""
    _row, path = _recording(voicemail_id)
    return send_file(path, mimetype="audio/wav", conditional=True, max_age=0)


@bp.route("/voicemail/<int:voicemail_id>/download")
def download(voicemail_id: int) -> BaseResponse:
    """Download a recording with a readable file name."""
    row, path = _recording(voicemail_id)
    stamp = row.at.strftime("%Y%m%d-%H%M")
    who = (row.number or "unknown").lstrip("+")
    return send_file(path, mimetype="audio/wav", as_attachment=True,
                     download_name=f"voicemail-{stamp}-{who}.wav")


@bp.route("/voicemail/<int:voicemail_id>/heard", methods=["POST"])
def heard(voicemail_id: int) -> BaseResponse:
    """Mark a voicemail heard (or unheard again)."""
    if not state().store.voicemails.mark_heard(voicemail_id,
                              request.form.get("heard", "1") == "1"):
        abort(404)
    return redirect(url_for("voicemail.index"))


@bp.route("/voicemail/<int:voicemail_id>/delete", methods=["POST"])
def delete(voicemail_id: int) -> BaseResponse:
    """Delete a voicemail's recording and its log row."""
    st = state()
    if not st.store.voicemails.delete(voicemail_id):
        abort(404)
    flash(_("Voicemail deleted."))
    return redirect(url_for("voicemail.index"))


# ---------------------------------------------------------------------------- prompts


def known_prompt_names() -> tuple[str, ...]:
    """Prompts the owner may replace: the usual list, plus what the gateway plays today.

    The gateway asks for the key with a prompt per key (`challenge_5`, …) and thanks a caller
    it transfers with `connecting`; offering those (for the current challenge key only) means
    an owner's recording is the one callers actually hear.
    """
    names = list(PROMPT_NAMES)
    digit = str(state().store.runtime.get("challenge_digit"))
    for extra in ("connecting", challenge_prompt_name(digit),
                  keyed_prompt_name("published", digit)):
        if extra not in names:
            names.append(extra)
    return tuple(names)


def prompts_folder() -> Path:
    """Where the owner's prompts go: `gateway.prompts_dir` if set, else data_dir/prompts.

    The gateway looks in `prompts_dir` first, so an upload anywhere else would be shadowed by a
    file there.
    """
    settings = state().settings
    return settings.gateway.prompts_dir or settings.data_dir / "prompts"


def prompt_path(lang: str, name: str) -> Path:
    """Where an owner's prompt lives: <prompts folder>/<lang>/<name>.wav."""
    if lang not in LANGUAGES or name not in known_prompt_names():
        raise ValueError("unknown prompt")
    return prompts_folder() / lang / f"{name}.wav"


def save_prompt(lang: str, name: str, data: bytes) -> Path:
    """Validate and store a prompt atomically (the gateway may be reading the old one)."""
    check_pcm_wav(data)
    path = prompt_path(lang, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".wav.tmp")
    tmp.unlink(missing_ok=True)
    create_private(tmp)  # the owner's voice: 0600 whatever the umask
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def builtin_prompt_path(lang: str, name: str) -> Path:
    """The packaged recording of a prompt (rendered by `make prompts`), which callers hear
    unless the owner uploaded their own."""
    if lang not in LANGUAGES or name not in known_prompt_names():
        raise ValueError("unknown prompt")
    return PACKAGED_DIR / lang / f"{name}.wav"


def _render_prompts(errors: dict[str, str], form: dict[str, str],
                    status: int = 200) -> tuple[str, int]:
    names = known_prompt_names()
    existing = {(lang, name): prompt_path(lang, name).is_file()
                for lang in LANGUAGES for name in names}
    builtin = {(lang, name): builtin_prompt_path(lang, name).is_file()
               for lang in LANGUAGES for name in names}
    return render_template("prompts.html", names=names, langs=LANGUAGES,
                           existing=existing, builtin=builtin, errors=errors, form=form,
                           folder=prompts_folder(),
                           max_mb=MAX_PROMPT_BYTES // (1024 * 1024)), status


@bp.route("/prompts", methods=["GET", "POST"])
def prompts() -> BaseResponse | tuple[str, int]:
    """List the owner's prompts and upload a new recording."""
    if request.method == "GET":
        return _render_prompts({}, {"lang": state().settings.language})
    form = {"lang": request.form.get("lang", ""), "name": request.form.get("name", "")}
    if form["lang"] not in LANGUAGES:
        return _render_prompts({"lang": _("Choose a language.")}, form, 400)
    if form["name"] not in known_prompt_names():
        return _render_prompts({"name": _("Choose a prompt from the list.")}, form, 400)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _render_prompts({"file": _("Choose a WAV file.")}, form, 400)
    data = upload.stream.read(MAX_PROMPT_BYTES + 1)
    try:
        save_prompt(form["lang"], form["name"], data)
    except WavError as exc:
        return _render_prompts({"file": str(exc)}, form, 400)
    flash(_("Prompt {name} ({lang}) saved.", name=form["name"], lang=form["lang"]))
    return redirect(url_for("voicemail.prompts"))


@bp.route("/prompts/<lang>/<name>.wav")
def prompt_audio(lang: str, name: str) -> BaseResponse:
    """Play back an uploaded prompt."""
    try:
        path = prompt_path(lang, name)
    except ValueError:
        abort(404)
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype="audio/wav", conditional=True, max_age=0)


@bp.route("/prompts/<lang>/<name>/built-in.wav")
def builtin_prompt_audio(lang: str, name: str) -> BaseResponse:
    """Play back the built-in voice of a prompt."""
    try:
        path = builtin_prompt_path(lang, name)
    except ValueError:
        abort(404)
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype="audio/wav", conditional=True, max_age=0)

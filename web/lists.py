"""Allow and block lists: search, paginate, add, edit, remove; confirm; permit next call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from gateway.numbers import to_e164
from gateway.screening.rules import ListEntry, ListName, MatchKind
from gateway.screening.words import entry_words
from gateway.store.errors import BroadEntry, EntryError
from web.forms import FieldError, entry_as_form, entry_fields, error_for, parse_expires
from web.helpers import _, _n, _p, current_language, error_words, local_url, paginate
from web.i18n import formats
from web.state import state

bp = Blueprint("lists", __name__)


def _list_name(name: str) -> str:
    if name not in ("allow", "block"):
        abort(404)
    return name


def _render_list(list_name: str, form: dict[str, Any], errors: dict[str, str],
                 status: int = 200, broad: str = "") -> tuple[str, int]:
    st = state()
    search = request.args.get("q", "").strip()
    page = paginate(st.store.entries.count(list_name, search))
    entries = st.store.entries.find(list_name, search=search, limit=page.size,
                                      offset=page.offset)
    return render_template(
        "list.html", list_name=list_name, entries=entries, page=page, search=search,
        form=form, errors=errors, kinds=[k.value for k in MatchKind],
        block_action=st.store.runtime.get("block_action"), broad=broad,
    ), status


@bp.route("/lists/<name>")
def show(name: str) -> tuple[str, int]:
    """Show one list, searchable and paginated (a block list may hold a million entries)."""
    return _render_list(_list_name(name), {}, {})


@bp.route("/lists/<name>/add", methods=["POST"])
def add(name: str) -> BaseResponse | tuple[str, int]:
    """Add an entry; on error re-show the form with what the owner typed."""
    list_name = _list_name(name)
    st = state()
    try:
        fields = entry_fields(request.form, st.settings, list_name)
        entry = st.store.entries.add(list_name, source="manual", **fields)
    except BroadEntry as exc:
        # Not an error: a confirmation step that says how far the entry reaches.
        return _render_list(list_name, dict(request.form), {}, 409, broad=error_words(exc))
    except (FieldError, EntryError) as exc:
        field, message = error_for(exc)
        return _render_list(list_name, dict(request.form), {field: message}, 400)
    flash(added_message(list_name, entry.pattern))
    return redirect(url_for("lists.show", name=list_name))


def added_message(list_name: str, pattern: str) -> str:
    """"… added to the block list.": one whole sentence per list, never a list-name word."""
    if list_name == "block":
        return _("{pattern} added to the block list.", pattern=pattern)
    return _("{pattern} added to the allow list.", pattern=pattern)


def removed_message(list_name: str, pattern: str) -> str:
    """"… removed from the block list.", one sentence per list."""
    if list_name == "block":
        return _("{pattern} removed from the block list.", pattern=pattern)
    return _("{pattern} removed from the allow list.", pattern=pattern)


@bp.route("/lists/entry/<int:entry_id>/edit", methods=["GET", "POST"])
def edit(entry_id: int) -> BaseResponse | tuple[str, int]:
    """Edit an entry (its list stays); a changed pattern replaces the old entry."""
    st = state()
    store = st.store
    entry = store.entries.get(entry_id)
    if entry is None:
        abort(404)
    list_name = entry.list.value
    if request.method == "GET":
        return render_template("entry_edit.html", entry=entry,
                               form=entry_as_form(entry, st.settings.timezone), errors={},
                               kinds=[k.value for k in MatchKind]), 200
    try:
        fields = entry_fields(request.form, st.settings, list_name)
        saved = store.entries.add(list_name, source=entry.source, **fields)
    except BroadEntry as exc:
        return render_template("entry_edit.html", entry=entry, form=dict(request.form),
                               errors={}, kinds=[k.value for k in MatchKind],
                               broad=error_words(exc)), 409
    except (FieldError, EntryError) as exc:
        field, message = error_for(exc)
        return render_template("entry_edit.html", entry=entry, form=dict(request.form),
                               errors={field: message}, kinds=[k.value for k in MatchKind]), 400
    if saved.id != entry.id:
        store.entries.remove(entry.id)
    flash(_("Entry saved."))
    return redirect(url_for("lists.show", name=list_name))


@bp.route("/lists/entry/<int:entry_id>/delete", methods=["POST"])
def delete(entry_id: int) -> BaseResponse:
    """Remove an entry."""
    store = state().store
    entry = store.entries.get(entry_id)
    if entry is None:
        abort(404)
    store.entries.remove(entry_id)
    flash(removed_message(entry.list.value, entry.pattern))
    return redirect(local_url(request.form.get("back"),
                              url_for("lists.show", name=entry.list.value)))


def list_word(name: str) -> str:
    """"blanche"/"noire": a list's name as a word in a sentence ("the {list} list")."""
    return _p("list", "block") if name == "block" else _p("list", "allow")


def entry_text(entry: ListEntry) -> str:
    """An entry in words, in the reader's language."""
    return entry_words(entry.kind.value, entry.pattern, entry.label,
                       formats(current_language()))


def describe_change(list_name: str, number: str) -> dict[str, Any]:
    """Say what allowing or blocking `number` changes, for the confirmation page."""
    store = state().store
    other = "allow" if list_name == "block" else "block"
    caller = state().screener.caller(number)
    existing = [e for e in store.screening.candidate_entries(caller) if e.matches(caller)]
    on_other = [e for e in existing if e.list.value == other and e.kind is MatchKind.EXACT]
    on_same = [e for e in existing if e.list.value == list_name and e.kind is MatchKind.EXACT]
    block_action = str(store.runtime.get("block_action"))
    if list_name == "block":
        effect = _("{number} will be added to the block list; calls from it will get "
                   "{action}.", number=number, action=block_action)
    else:
        effect = _("{number} will be added to the allow list; calls from it will ring "
                   "through.", number=number)
    notes = []
    if on_other:
        notes.append(_("It will be removed from the {list} list.", list=list_word(other)))
    if on_same:
        notes.append(_("It is already on the {list} list; the entry will be updated.",
                       list=list_word(list_name)))
    for e in (e for e in existing if e.kind is not MatchKind.EXACT):
        if list_name == "block" and e.list is ListName.ALLOW:
            # The allow list is checked first (docs/architecture.md, "How a decision is made"):
            # say the block will not bite.
            notes.append(_("Warning: it also matches {entry} on the allow list, which is "
                           "checked first, so its calls will still ring.", entry=entry_text(e)))
        else:
            notes.append(_("It also matches {entry} on the {list} list.", entry=entry_text(e),
                           list=list_word(e.list.value)))
    return {"effect": effect, "notes": notes, "on_other": on_other}


@bp.route("/lists/confirm", methods=["GET", "POST"])
def confirm() -> BaseResponse | tuple[str, int]:
    """Confirm allowing or blocking one number (from the call log), then do it."""
    source = request.form if request.method == "POST" else request.args
    list_name = _list_name(source.get("list", ""))
    number = to_e164(source.get("number", ""), state().settings.home_region)
    if number is None:
        return render_template("error.html", title=_("Not a number"),
                               message=_("{value} is not a phone number",
                                         value=source.get("number", ""))), 400
    back = local_url(source.get("back"), url_for("calls.index"))
    change = describe_change(list_name, number)
    if request.method == "GET":
        return render_template("confirm.html", list_name=list_name, number=number,
                               change=change, back=back), 200
    store = state().store
    # Stored in English (a system label), shown in the reader's language (helpers.label).
    label = source.get("label", "").strip()[:200] or "from the call log"
    store.entries.add(list_name, number, kind="exact", label=label, source="manual")
    for entry in change["on_other"]:
        store.entries.remove(entry.id)
    flash(change["effect"])
    return redirect(back)


@bp.route("/lists/confirm-many", methods=["POST"])
def confirm_many() -> BaseResponse:
    """Put the numbers of several call log rows on a list (after `calls.bulk` said what)."""
    list_name = _list_name(request.form.get("list", ""))
    back = local_url(request.form.get("back"), url_for("calls.index"))
    numbers = request.form.getlist("number")[:200]
    label = request.form.get("label", "").strip()[:200] or "from the call log"
    added, refused = state().store.entries.add_numbers(list_name, numbers, label=label)
    if added:
        flash(bulk_added_message(list_name, len(added)))
    for typed, why in refused:
        flash(_("{value}: {error}", value=typed, error=error_words(why)))
    return redirect(back)


def bulk_added_message(list_name: str, n: int) -> str:
    """"3 numbers added to the block list.", one sentence per list and plural form."""
    if list_name == "block":
        return _n("{n} number added to the block list.", "{n} numbers added to the block list.", n)
    return _n("{n} number added to the allow list.", "{n} numbers added to the allow list.", n)


@bp.route("/lists/<name>/bulk", methods=["POST"])
def bulk(name: str) -> BaseResponse:
    """Remove the ticked entries, or move them to the other list, at once."""
    list_name = _list_name(name)
    store = state().store
    back = local_url(request.form.get("back"), url_for("lists.show", name=list_name))
    ids = [int(i) for i in request.form.getlist("entry") if i.isdigit()][:1000]
    entries = [e for e in (store.entries.get(i) for i in ids)
               if e is not None and e.list.value == list_name]
    if not entries:
        flash(_("Tick at least one entry first."))
        return redirect(back)
    if request.form.get("do") == "move":
        other = "allow" if list_name == "block" else "block"
        exact = [e for e in entries if e.kind is MatchKind.EXACT]
        # add_numbers takes them off this list in the same transaction, labels kept.
        moved, _refused = store.entries.add_numbers(
            other, [e.pattern for e in exact], labels={e.pattern: e.label for e in exact})
        flash(bulk_moved_message(other, len(moved)))
        if len(exact) < len(entries):
            flash(_("Only single numbers move to the other list; prefixes and patterns stayed."))
        return redirect(back)
    gone = store.entries.remove_many([e.id for e in entries])
    flash(bulk_removed_message(list_name, len(gone)))
    return redirect(back)


def bulk_moved_message(list_name: str, n: int) -> str:
    """"2 numbers moved to the allow list."."""
    if list_name == "block":
        return _n("{n} number moved to the block list.", "{n} numbers moved to the block list.", n)
    return _n("{n} number moved to the allow list.", "{n} numbers moved to the allow list.", n)


def bulk_removed_message(list_name: str, n: int) -> str:
    """"2 entries removed from the block list."."""
    if list_name == "block":
        return _n("{n} entry removed from the block list.",
                  "{n} entries removed from the block list.", n)
    return _n("{n} entry removed from the allow list.",
              "{n} entries removed from the allow list.", n)


@bp.route("/permit", methods=["GET", "POST"])
def permit() -> BaseResponse | tuple[str, int]:
    """Let the next call from a number ring once (an allow entry used up by that call)."""
    form: dict[str, Any] = {"expires": "1d"}
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = dict(request.form)
        st = state()
        try:
            expires = parse_expires(form.get("expires", ""), st.settings) or (
                datetime.now(UTC) + timedelta(days=1))
            entry = st.store.entries.add(
                ListName.ALLOW, form.get("number", ""), kind="exact",
                label=form.get("label", "").strip() or "permit next call",
                once=True, expires_at=expires)
        except FieldError as exc:
            errors[exc.field] = error_words(exc)
        except EntryError as exc:
            errors["number"] = error_words(exc)
        else:
            flash(_("The next call from {number} will ring.", number=entry.pattern))
            return redirect(url_for("lists.permit"))
    pending = state().store.entries.pending_permits()
    return render_template("permit.html", form=form, errors=errors, pending=pending), \
        400 if errors else 200

"""Text messages (SIP MESSAGE): the texts Ringfence accepted, held or refused, beside the calls."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from gateway.store.messages import VERDICTS, MessageFilter
from web.helpers import _, paginate
from web.state import state

bp = Blueprint("messages", __name__)


def verdict_names() -> dict[str, str]:
    """Each verdict in the reader's language."""
    return {"accepted": _("accepted"), "held": _("held"), "refused": _("refused")}


@bp.route("/messages")
def index() -> str:
    """List texts, newest first, optionally of one verdict."""
    st = state()
    verdict = request.args.get("verdict", "")
    flt = MessageFilter(verdict=verdict if verdict in VERDICTS else None)
    page = paginate(st.store.messages.count(flt), size=30)
    rows = st.store.messages.recent(flt, limit=page.size, offset=page.offset)
    return render_template("messages.html", rows=rows, page=page, verdict=flt.verdict or "",
                           verdicts=verdict_names(),
                           forwarding=st.settings.messages.forward)

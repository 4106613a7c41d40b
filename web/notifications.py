"""Notifications: channels with a test button, what was sent or failed, list subscriptions."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from gateway.feeds.subscriptions import (
    SubscriptionError,
    add_subscription,
    list_subscriptions,
    refresh,
    remove_subscription,
)
from gateway.notify.notifier import Notifier
from gateway.notify.outbox import recent_notifications
from gateway.store.errors import EntryError
from web.helpers import _
from web.state import state

bp = Blueprint("notifications", __name__)


def _render(status: int = 200, **context: object) -> tuple[str, int]:
    web = state()
    notifier = Notifier(web.store.db, web.settings)
    context.setdefault("errors", {})
    context.setdefault("form", {"list": "block", "refresh_hours": "24"})
    return render_template(
        "notifications.html",
        channels=[c.name for c in notifier.channels],
        digest_time=web.store.runtime.get("digest_time") or web.settings.notify.digest_time,
        sent=recent_notifications(web.store.db, limit=30),
        subscriptions=list_subscriptions(web.store.db),
        **context,
    ), status


@bp.route("/notifications")
def index() -> tuple[str, int]:
    """Show the channels, the latest notifications and the subscriptions."""
    return _render()


@bp.route("/notifications/test", methods=["POST"])
def test() -> tuple[str, int]:
    """Send a test message on one channel (or all) and show each channel's own answer."""
    web = state()
    notifier = Notifier(web.store.db, web.settings)
    if not notifier.channels:
        return _render(errors={"test": _(
            "No channel is configured: set [notify.smtp] host or notify.apprise_urls.")},
            status=400)
    wanted = request.form.get("channel")
    results = notifier.send_test([wanted] if wanted else None)
    return _render(tested=results)


@bp.route("/notifications/subscriptions", methods=["POST"])
def subscribe() -> tuple[str, int]:
    """Subscribe a list to a URL, a file or an address book; errors keep what was typed."""
    form = {key: request.form.get(key, "").strip()
            for key in ("list", "url", "label", "refresh_hours", "lan", "kind", "user",
                        "password_file")}
    hours = form["refresh_hours"] or "24"
    if not hours.isdigit():
        return _render(form=form, errors={"refresh_hours": _("Give a whole number of hours.")},
                       status=400)
    try:
        add_subscription(state().store.db, form["list"], form["url"], label=form["label"],
                         refresh_hours=int(hours), lan=form["lan"] == "1",
                         kind=form["kind"] or "list", username=form["user"],
                         password_file=form["password_file"] or None)
    except SubscriptionError as exc:
        return _render(form=form, errors={exc.field or "url": str(exc)}, status=400)
    return _render(message=_("Subscribed; the list is fetched at the next refresh."))


@bp.route("/notifications/subscriptions/<int:subscription_id>/refresh", methods=["POST"])
def refresh_now(subscription_id: int) -> tuple[str, int]:
    """Fetch a subscription now; on failure the old entries stay."""
    web = state()
    result = refresh(web.store.db, web.settings, subscription_id)
    if result.ok:
        return _render(message=_("Refreshed: {n} entries, {r} rejected lines.",
                                 n=result.entries, r=result.rejected))
    return _render(errors={"subscriptions": result.error or _("The refresh failed.")},
                   status=502)


@bp.route("/notifications/subscriptions/<int:subscription_id>/remove", methods=["POST"])
def unsubscribe(subscription_id: int) -> tuple[str, int]:
    """Remove a subscription and the entries it brought; manual entries stay."""
    web = state()
    if not remove_subscription(web.store.db, web.settings, subscription_id):
        return _render(errors={"subscriptions": _("There is no such subscription.")},
                       status=404)
    return _render(message=_("Subscription removed with its entries."))


@bp.route("/notifications/digest-time", methods=["POST"])
def digest_time() -> tuple[str, int]:
    """Set the daily digest's local time; the gateway's scheduler follows within a minute."""
    typed = request.form.get("digest_time", "").strip()
    try:
        state().store.runtime.set("digest_time", typed or None)
    except EntryError as exc:
        return _render(form={"digest_time": typed}, errors={"digest_time": str(exc)},
                       status=400)
    return _render(message=_("Digest time saved; it applies within a minute."))

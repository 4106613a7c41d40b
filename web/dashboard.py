"""The dashboard: today's and the week's calls and messages, charts, burst mode and its
profile, the pause, the gateway and its lines, the newest calls (live) and voicemail, and the
week's top callers and most-blocked numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from gateway.ops.health import call_log_status
from gateway.screening.ratelimit import BurstState, burst_state
from gateway.screening.rules import BURST_PROFILES, burst_profile
from gateway.store.calls import CATEGORIES
from gateway.store.models import GatewayStatusRow, utcnow
from gateway.store.status import Liveness, liveness
from web.calls import ONGOING, list_statuses, live_answer, row_context
from web.charts import bar_chart
from web.helpers import _, _n, _p, local_url
from web.state import state

bp = Blueprint("dashboard", __name__)

LATEST = 5


@dataclass(frozen=True)
class Overview:
    """Everything the dashboard shows, also served by the API."""

    today: dict[str, int]
    week: dict[str, int]
    hours: list[dict[str, int]]
    hour_start: datetime
    days: list[dict[str, int]]
    day_start: datetime
    burst: BurstState
    burst_enabled: bool
    paused_until: datetime | None
    # Messages actually left, apart from the calls sent to voicemail (a caller may hang up
    # during the greeting): {"today": n, "week": n}.
    messages: dict[str, int] = field(default_factory=dict)
    burst_profile: str | None = None  # a key of BURST_PROFILES, None for an action set by hand
    burst_action: str = ""


def overview(now: datetime | None = None) -> Overview:
    """Gather the dashboard figures at `now`."""
    st = state()
    store = st.store
    now = now or utcnow()
    zone = ZoneInfo(st.settings.timezone)
    local = now.astimezone(zone)
    week_start = datetime.combine(local.date() - timedelta(days=6), time(0), tzinfo=zone)
    today_start = datetime.combine(local.date(), time(0), tzinfo=zone)
    # Hours step in UTC so a daylight-saving change never makes a 0- or 2-hour bucket.
    hour_start = (now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
                  - timedelta(hours=23))
    policy = store.screening.policy()
    burst = policy.burst
    window = timedelta(minutes=burst.window_minutes)
    duration = timedelta(minutes=burst.duration_minutes)
    state_now = (burst_state(store.calls.history(now, window + duration), now,
                             threshold=burst.distinct_callers, window=window, duration=duration)
                 if burst.enabled else BurstState(active=False))
    paused = policy.paused_until if policy.paused_until and policy.paused_until > now else None
    days = store.calls.buckets(week_start, timedelta(days=1), 7)
    # The last day bucket starts at local midnight, so it is today; the week is their sum.
    return Overview(
        today=dict(days[-1]),
        week={c: sum(day[c] for day in days) for c in CATEGORIES},
        hours=store.calls.buckets(hour_start, timedelta(hours=1), 24),
        hour_start=hour_start,
        days=days,
        day_start=week_start,
        burst=state_now,
        burst_enabled=burst.enabled,
        paused_until=paused,
        messages={"today": store.voicemails.count(since=today_start),
                  "week": store.voicemails.count(since=week_start)},
        burst_profile=burst_profile(burst.action),
        burst_action=str(burst.action),
    )


@dataclass(frozen=True)
class CallLogLine:
    """The dashboard's line about the gateway's call writer (from its status file)."""

    waiting: int  # calls and their ends not in the database yet (kept in the journal)
    waiting_since: datetime | None
    lost: int  # lost since the gateway started: neither the database nor the journal took them


def call_log_line() -> CallLogLine:
    """What the call writer reports; the gateway is another process, so it reads a file."""
    info = call_log_status(state().settings.data_dir)
    since = info.get("waiting_since")
    return CallLogLine(waiting=int(info["pending"]),
                       waiting_since=datetime.fromisoformat(since) if since else None,
                       lost=int(info["dropped_since_start"]))


def category_names() -> dict[str, str]:
    """Chart legend names in the owner's language."""
    # A count's name: French says "envoyés" for the calls, "envoyé" for one call (the log).
    return {"pass": _("rang"), "blocked": _("blocked"),
            "voicemail": _p("count", "sent to voicemail"), "challenge": _("challenged")}


def profile_names() -> dict[str, tuple[str, str]]:
    """Each burst profile's button and what callers get, in the owner's language."""
    return {
        "spoofed": (_("My number is being spoofed"),
                    _("Unknown callers hear that we did not call them, then may leave a "
                      "message.")),
        "published": (_("My number was published"),
                      _("Unknown callers hear that the number was just published and press a "
                        "key: then they may leave a message, their next call rings (or they are "
                        "transferred where the line can).")),
    }


@dataclass(frozen=True)
class GatewayView:
    """One gateway's heartbeat as the Lines card shows it."""

    row: GatewayStatusRow
    life: Liveness


def gateways(now: datetime | None = None) -> list[GatewayView]:
    """The gateways that wrote a heartbeat, the most recently seen first (at most 3)."""
    now = now or utcnow()
    return [GatewayView(row, liveness(row, now)) for row in state().store.status.all()[:3]]


TOPS_FOR = timedelta(minutes=5)
_tops: dict[str, Any] = {}  # the last week tops and when they were counted, per process


def week_tops(now: datetime | None = None) -> dict[str, list[tuple[str, int, str]]]:
    """The 7 days' top callers and most-blocked numbers, counted at most every 5 minutes.

    Two grouped scans of the week's calls (tens of milliseconds on a Pi at 100,000 calls) for
    a figure that moves slowly: a dashboard reloaded often reuses the last count.
    """
    now = now or utcnow()
    cached = _tops.get("value")
    if cached is not None and now - _tops["at"] < TOPS_FOR and _tops["store"] is state().store:
        return dict(cached)
    since = now - timedelta(days=7)
    calls = state().store.calls
    value = {"callers": calls.top_numbers(since, now),
             "blocked": calls.top_numbers(since, now, blocked=True)}
    _tops.update(value=value, at=now, store=state().store)
    return dict(value)


def latest_calls() -> dict[str, Any]:
    """The newest calls and what their rows need."""
    rows = state().store.calls.recent(limit=LATEST)
    return {"latest": rows, **row_context(rows, url_for("calls.index"))}


@bp.route("/")
def index() -> str:
    """Show the dashboard."""
    st = state()
    data = overview()
    names = category_names()
    zone = ZoneInfo(st.settings.timezone)
    hour_labels = [f"{(data.hour_start + timedelta(hours=i)).astimezone(zone):%H}h"
                   for i in range(24)]
    day_labels = [f"{(data.day_start + timedelta(days=i)).astimezone(zone):%d/%m}"
                  for i in range(7)]
    charts: dict[str, Any] = {
        "hours": bar_chart(data.hours, hour_labels, title=_("Calls in the last 24 hours"),
                           label_every=4, category_names=names),
        "days": bar_chart(data.days, day_labels, title=_("Calls in the last 7 days"),
                          category_names=names),
    }
    tops = week_tops()
    return render_template(
        "dashboard.html", data=data, charts=charts, names=names,
        lines=st.store.lines.all(), gateways=gateways(),
        direct_listen=str(st.settings.gateway.listen) if not st.settings.lines else None,
        voicemails=st.store.voicemails.recent(limit=5),
        unheard=st.store.voicemails.count(unheard_only=True),
        profiles=profile_names(), tops=tops, last_id=st.store.calls.last_id(),
        tops_status=list_statuses(n for group in tops.values() for n, _count, _name in group),
        call_log=call_log_line(), **latest_calls(),
    )


@bp.route("/live/dashboard")
def live() -> Response:
    """The dashboard's counts and newest calls when a call came or ended (polled)."""
    st = state()
    token = st.store.calls.live_token(utcnow() - ONGOING)
    after = request.args.get("after", "0")
    after_id = int(after) if after.isdigit() else 0

    def build() -> dict[str, Any]:
        data = overview()
        context = latest_calls()
        fresh = [r for r in context["latest"] if r.id > after_id]
        return {
            "after": max([after_id, *(r.id for r in context["latest"])]),
            "parts": {
                "counts": render_template("_dashboard_counts.html", data=data,
                                          names=category_names()),
                "latest": render_template("_dashboard_latest.html",
                                          fresh_ids={r.id for r in fresh}, **context),
            },
            "fresh": len(fresh),
            "announce": _n("{n} new call", "{n} new calls", len(fresh)) if fresh else "",
        }

    return live_answer(token, build)


@bp.route("/burst/profile", methods=["POST"])
def set_profile() -> BaseResponse:
    """Choose what burst mode does in one click: "spoofed" or "published"."""
    name = request.form.get("profile", "")
    back = local_url(request.form.get("back"), url_for("dashboard.index") + "#burst")
    if name not in BURST_PROFILES:
        flash(_("Unknown burst profile {name}.", name=name))
        return redirect(back)
    store = state().store
    current = dict(store.runtime.get("burst"))
    store.runtime.set("burst", {**current, "action": str(BURST_PROFILES[name])})
    flash(_("Burst mode will now do this: {what}", what=profile_names()[name][1]))
    return redirect(back)

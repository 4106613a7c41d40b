"""The dashboard: today's and the week's calls, charts, burst mode, lines, new voicemail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, render_template

from gateway.ops.health import call_log_status
from gateway.screening.ratelimit import BurstState, burst_state
from gateway.store.calls import CATEGORIES
from gateway.store.models import utcnow
from web.charts import bar_chart
from web.helpers import _
from web.state import state

bp = Blueprint("dashboard", __name__)


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


def overview(now: datetime | None = None) -> Overview:
    """Gather the dashboard figures at `now`."""
    st = state()
    store = st.store
    now = now or utcnow()
    zone = ZoneInfo(st.settings.timezone)
    local = now.astimezone(zone)
    week_start = datetime.combine(local.date() - timedelta(days=6), time(0), tzinfo=zone)
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
    return {"pass": _("rang"), "blocked": _("blocked"), "voicemail": _("voicemail"),
            "challenge": _("challenged")}


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
    return render_template(
        "dashboard.html", data=data, charts=charts, names=names,
        lines=st.store.lines.all(),
        voicemails=st.store.voicemails.recent(limit=5),
        unheard=st.store.voicemails.count(unheard_only=True),
        call_log=call_log_line(),
    )

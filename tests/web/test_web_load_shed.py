"""Calls shed under load are counted and visible: `ringfence status`, `/healthz`, `/metrics`
and a dashboard line, from the load file the running gateway writes (issue 10)."""

from __future__ import annotations

from flask.testing import FlaskClient

from gateway.call.process import Heartbeat
from gateway.config import Settings
from gateway.ops.health import (
    collect_metrics,
    collect_status,
    prometheus_text,
    public_status,
    render_text,
)
from gateway.sip.workers import LoadCounters
from gateway.store.status import LOAD_WRITE_SECONDS, read_load
from tests.helpers import Services


def test_shed_calls_show_in_status_metrics_and_on_the_dashboard(
        client: FlaskClient, service: Services, settings: Settings) -> None:
    counters = LoadCounters()
    clock = [100.0]
    beat = Heartbeat(service.store, settings, clock=lambda: clock[0], load=counters.snapshot)
    assert "calls-shed" not in client.get("/").get_data(as_text=True)  # nothing shed yet
    counters.add("invites", 900)
    counters.add("shed", 37)
    counters.add("refused_no_media_slot", 2)
    beat.tick()  # within LOAD_WRITE_SECONDS of the start's write: not yet
    assert read_load(settings.data_dir).count("shed") == 0  # type: ignore[union-attr]
    clock[0] += LOAD_WRITE_SECONDS
    beat.tick()
    report = read_load(settings.data_dir)
    assert report is not None and report.count("shed") == 37

    status = collect_status(settings, service.db)
    assert status["load"]["shed"] == 37 and status["load"]["invites"] == 900
    assert any(w.startswith("load: 37 call(s) shed with 503") for w in status["warnings"])
    assert "37 shed (503), 2 refused (media slots full)" in render_text(status)
    assert public_status(status)["calls_shed"] == 37
    metrics = prometheus_text(collect_metrics(settings, service.db))
    assert "ringfence_shed_total 37" in metrics and "ringfence_invites_total 900" in metrics
    assert "ringfence_refused_no_media_slot_total 2" in metrics
    page = client.get("/").get_data(as_text=True)
    assert 'id="calls-shed"' in page and "37 calls were shed since the gateway started" in page

    beat.stopped()  # a stopped gateway's count stays in status, not on the dashboard
    assert read_load(settings.data_dir).stopped  # type: ignore[union-attr]
    assert "calls-shed" not in client.get("/").get_data(as_text=True)

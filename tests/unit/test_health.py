"""Status, `ringfence status`, Prometheus text, and the `/healthz` and `/metrics` endpoints."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask

from gateway import __version__
from gateway.cli import main
from gateway.config import Settings, load_settings_from_text
from gateway.ops import health
from gateway.ops.health import (
    Metrics,
    collect_metrics,
    collect_status,
    prometheus_text,
    render_text,
)
from gateway.screening.decide import Decision
from gateway.screening.rules import Action
from tests.helpers import Services

pytestmark = pytest.mark.clock

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LINE = """
[[lines]]
name = "home"
registrar = "127.0.0.1:5060"
username = "620"
password = "secret"
"""


def make_settings(folder: Path, extra: str = "") -> Settings:
    text = f'data_dir = "data"\n{extra}'
    (folder / "config.toml").write_text(text, encoding="utf-8")
    return load_settings_from_text(text, folder, source=folder / "config.toml")


def log_call(service: Services, number: str, action: str, ms: float | None,
             at: datetime = NOW) -> None:
    decision = Decision(Action.parse(action), "test", "rule", elapsed_ms=ms)
    service.book.record_call(service.screener.caller(number), decision, at=at, line="home")


def test_status_of_a_missing_database_is_a_problem_and_creates_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    status = collect_status(settings, now=NOW)
    assert not status["ok"]
    assert "ringfence db upgrade" in status["problems"][0]
    assert not (tmp_path / "data" / "ringfence.db").exists()


def test_status_reports_lines_calls_and_voicemail(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, LINE)
    service = Services.open(settings)
    status = collect_status(settings, now=NOW)
    assert not status["ok"]
    assert status["lines"][0]["state"] == "unknown"
    assert status["problems"] == ["line home: unknown (the gateway has not reported this "
                                  "line yet)"]

    service.book.set_line_state("home", "registered", None)
    log_call(service, "0162123456", "reject:603", 1.5, at=NOW - timedelta(hours=2))
    log_call(service, "0612345678", "pass", 2.0, at=NOW - timedelta(days=3))
    status = collect_status(settings, now=NOW)
    assert status["ok"], status["problems"]
    assert status["database"]["schema"] == status["database"]["expected_schema"]
    assert status["last_call"] == (NOW - timedelta(hours=2)).isoformat()
    assert status["calls_24h"] == 1
    assert status["version"] == __version__
    assert status["voicemail"]["bytes"] == 0

    service.book.set_line_state("home", "failed", "403 Forbidden")
    status = collect_status(settings, now=NOW)
    assert status["problems"] == ["line home: failed (403 Forbidden)"]
    assert "line home   FAILED, failed" in render_text(status)


def test_voicemail_near_and_at_the_cap(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "[voicemail]\nmax_total_mb = 1\n")
    service = Services.open(settings)
    service.book.save_voicemail(None, settings.voicemail_dir / "a.wav", 1.0, 950_000)
    status = collect_status(settings, now=NOW)
    assert status["ok"]
    assert status["warnings"] == ["voicemail: 91% of the cap used"]
    service.book.save_voicemail(None, settings.voicemail_dir / "b.wav", 1.0, 100_000)
    status = collect_status(settings, now=NOW)
    assert not status["ok"]
    assert "cap is reached" in status["problems"][0]


def test_low_disk_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    Services.open(settings)
    monkeypatch.setattr(health, "MIN_FREE_BYTES", 1 << 62)
    status = collect_status(settings, now=NOW)
    assert not status["ok"]
    assert status["problems"][0].startswith("disk: only")


def test_a_database_at_another_schema_is_a_problem(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    with service.db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    status = collect_status(settings, now=NOW)
    assert not status["ok"]
    assert "newer than this Ringfence" in status["problems"][0]


def test_cli_status_exit_code_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path, LINE)
    service = Services.open(settings)
    config = str(tmp_path / "config.toml")
    assert main(["--config", config, "status"]) == 1
    assert "PROBLEM" in capsys.readouterr().out
    service.book.set_line_state("home", "registered", None)
    assert main(["--config", config, "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    assert data["lines"][0]["name"] == "home"


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_text_escapes_labels_and_closes_the_histogram() -> None:
    text = prometheus_text(Metrics(
        database_up=True,
        calls_by_action={"reject:603": 3, "pass": 1},
        line_states={'we"ird\\line\n': "failed", "home": "registered"},
        latency_buckets=((0.005, 1), (0.01, 3)),
        latency_count=4, latency_sum_s=0.5, voicemail_bytes=12, voicemail_cap_bytes=100,
        schema="0001",
    ))
    assert 'ringfence_calls_total{action="reject:603"} 3\n' in text
    assert 'ringfence_line_registered{line="home",state="registered"} 1\n' in text
    assert 'ringfence_line_registered{line="we\\"ird\\\\line\\n",state="failed"} 0\n' in text
    assert 'ringfence_screen_duration_seconds_bucket{le="0.01"} 3\n' in text
    assert 'ringfence_screen_duration_seconds_bucket{le="+Inf"} 4\n' in text
    assert "ringfence_screen_duration_seconds_sum 0.5\n" in text
    assert "ringfence_screen_duration_seconds_count 4\n" in text
    # Every sample line is "name{labels} value" and belongs to a declared family.
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z_]+)(\{.*\})? (\S+)", line)
        assert match, line
        name = match.group(1)
        assert name in families or re.sub(r"_(bucket|sum|count)$", "", name) in families
        float(match.group(3).replace("+Inf", "inf"))


def test_collect_metrics_counts_calls_and_buckets_latency(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, LINE)
    service = Services.open(settings)
    log_call(service, "0162123456", "reject:603", 0.8)
    log_call(service, "0162123457", "reject:603", 7.0)
    log_call(service, "0612345678", "pass", 300.0)
    log_call(service, "0612345679", "pass", None)  # logged without a screening time
    metrics = collect_metrics(settings, service.db)
    assert metrics.database_up
    assert metrics.calls_by_action == {"reject:603": 2, "pass": 2}
    assert metrics.line_states == {"home": "unknown"}
    buckets = dict(metrics.latency_buckets)
    assert buckets[0.001] == 1
    assert buckets[0.01] == 2
    assert buckets[0.25] == 2
    assert buckets[0.5] == 3
    assert metrics.latency_count == 3
    assert metrics.latency_sum_s == pytest.approx(0.3078)
    counts = [n for _, n in metrics.latency_buckets]
    assert counts == sorted(counts)  # cumulative


# --------------------------------------------------------------------------- web blueprint


def make_app(settings: Settings) -> Flask:
    from web.health import bp

    app = Flask("test")
    app.register_blueprint(bp, settings=settings)
    return app


def test_healthz_is_200_when_healthy_and_503_with_problems(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, LINE)
    service = Services.open(settings)
    client = make_app(settings).test_client()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["lines"] == {"home": "unknown"}
    assert response.headers["Cache-Control"] == "no-store"
    service.book.set_line_state("home", "registered", None)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    # Nothing that helps an intruder: no paths, no database URL.
    assert str(tmp_path) not in body
    assert "sqlite" not in body


def test_healthz_before_the_database_exists(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    response = make_app(settings).test_client().get("/healthz")
    assert response.status_code == 503
    assert not (tmp_path / "data" / "ringfence.db").exists()


def test_healthz_finds_settings_stored_by_the_app_factory(tmp_path: Path) -> None:
    from web.health import bp

    settings = make_settings(tmp_path)
    Services.open(settings)
    app = Flask("test")
    app.config["RINGFENCE_SETTINGS"] = settings
    app.register_blueprint(bp)
    assert app.test_client().get("/healthz").status_code == 200


def test_healthz_finds_settings_held_by_an_app_state_object(tmp_path: Path) -> None:
    from web.health import PUBLIC_ENDPOINTS, bp

    class State:
        def __init__(self, settings: Settings) -> None:
            self.settings = settings

    settings = make_settings(tmp_path)
    Services.open(settings)
    app = Flask("test")
    app.extensions["ringfence"] = State(settings)
    app.register_blueprint(bp)
    assert app.test_client().get("/healthz").status_code == 200
    assert {rule.endpoint for rule in app.url_map.iter_rules()} >= PUBLIC_ENDPOINTS


def test_metrics_are_off_unless_enabled(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    assert make_app(settings).test_client().get("/metrics").status_code == 404
    enabled = replace(settings, web=replace(settings.web, metrics_enabled=True))
    log_call(service, "0162123456", "reject:603", 1.0)
    response = make_app(enabled).test_client().get("/metrics")
    assert response.status_code == 200
    assert response.content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert 'ringfence_calls_total{action="reject:603"} 1' in response.get_data(as_text=True)


def test_metrics_enabled_is_read_from_the_config_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "[web]\nmetrics_enabled = true\n")
    assert settings.web.metrics_enabled
    assert not make_settings(tmp_path).web.metrics_enabled

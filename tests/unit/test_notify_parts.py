"""Small notify pieces: channel names, alert SMS, burst episodes, config checks, subscriptions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings_from_text
from gateway.feeds.subscriptions import SubscriptionError, parse_list
from gateway.notify.alerts import alert_message
from gateway.notify.channels import AppriseChannel, apprise_channel_name
from gateway.notify.collect import burst_episodes, diff_snapshots
from gateway.notify.digest import sms_length

pytestmark = pytest.mark.clock

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_apprise_channel_names_hide_secrets_and_stay_stable() -> None:
    url = "tgram://123456:SECRETTOKEN/987"
    assert apprise_channel_name(url) == apprise_channel_name(url)
    assert apprise_channel_name(url).startswith("tgram:")
    assert "SECRET" not in apprise_channel_name(url)
    assert AppriseChannel("freemobile://user@key").is_sms
    assert not AppriseChannel("ntfy://topic").is_sms


def test_alert_sms_is_one_gsm7_message() -> None:
    message = alert_message("voicemail", "Nouveau message de 06 12 34 56 78 (Noël) " + "x" * 200,
                            "body")
    assert len(message.sms) == 1 and sms_length(message.sms[0]) <= 160


def test_burst_episodes_merge_and_end() -> None:
    calls = [(T0 + timedelta(minutes=i), f"+3361234560{i}", True, i >= 4) for i in range(6)]
    calls.append((T0 + timedelta(hours=3), "+33612345699", True, False))
    [episode] = burst_episodes(calls, threshold=5, window=timedelta(minutes=10),
                               duration=timedelta(minutes=60))
    assert episode.started_at == T0 + timedelta(minutes=4)
    assert episode.ends_at == T0 + timedelta(minutes=65)
    assert (episode.callers, episode.shielded_calls) == (6, 2)
    assert not episode.ended(T0 + timedelta(minutes=30))
    assert episode.ended(T0 + timedelta(minutes=65))


def test_known_callers_do_not_make_a_burst() -> None:
    calls = [(T0 + timedelta(minutes=i), f"+3361234560{i}", False, False) for i in range(9)]
    assert burst_episodes(calls, threshold=5, window=timedelta(minutes=10),
                          duration=timedelta(minutes=60)) == []


def test_rule_snapshot_diff() -> None:
    before = {"1": {"kind": "withheld", "action": "voicemail", "enabled": True},
              "2": {"kind": "night", "action": "voicemail", "enabled": True}}
    after = {"1": {"kind": "withheld", "action": "reject:603", "enabled": True},
             "3": {"kind": "country", "action": "voicemail", "enabled": False}}
    changes = diff_snapshots(before, {"default_mode": "pass"}, after,
                             {"default_mode": "challenge"})
    assert [c.change for c in changes] == ["added", "removed", "changed", "setting"]
    assert "reject:603" in changes[2].text and "challenge" in changes[3].text


@pytest.mark.parametrize(("toml", "needle"), [
    ("[notify]\nretry_minutes = []\n", "notify.retry_minutes"),
    ("[notify]\nsms_max_parts = 0\n", "notify.sms_max_parts"),
    ('[retention]\ntime = "25:00"\n', "retention.time"),
    ("[subscriptions]\nmax_mb = 0\n", "subscriptions.max_mb"),
    ('[notify.smtp]\nhost = "mail"\n', "sender and recipients"),
])
def test_config_errors_name_the_key(toml: str, needle: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings_from_text(toml, tmp_path)


def test_parse_list_reads_csv_and_plain_lines() -> None:
    data = "\ufeffnumber,label\n+33612345678,friend, with comma\n# comment\n\n0698765432\n"
    assert parse_list(data.encode("utf-8")) == [("+33612345678", "friend, with comma"),
                                                ("0698765432", "")]
    with pytest.raises(SubscriptionError):
        parse_list(b"  <!DOCTYPE html><html>")

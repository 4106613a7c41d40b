"""handle_text(): the sender read like a caller, the text stored before it is answered, 500
when the database does not take it (the sender retries), and screening failing open."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.call.ports import TextEnvironment
from gateway.call.screen import Screener
from gateway.call.text import handle_text
from gateway.config import Settings
from gateway.screening.rules import ListName
from gateway.sip.message import SipRequest
from gateway.sip.text import read_text
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import Services


@dataclass
class FakeText:
    """A TextMessage without SIP: what was answered."""

    request: SipRequest
    answers: list[tuple[int, str, list[tuple[str, str]]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.body = read_text(self.request)
        self.call_id = self.request.call_id

    def answer(self, status: int, reason: str, headers: Any = ()) -> bool:
        self.answers.append((status, reason, list(headers)))
        return True


def text_from(sender: str, body: str = "hello", pai: str | None = None) -> FakeText:
    headers = [("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx"),
               ("From", f"<sip:{sender}@127.0.0.1>;tag=a"), ("To", "<sip:home@127.0.0.1>"),
               ("Call-ID", "t1"), ("CSeq", "1 MESSAGE"), ("Content-Type", "text/plain")]
    if pai:
        headers.append(("P-Asserted-Identity", f"<tel:{pai}>"))
    return FakeText(SipRequest("MESSAGE", "sip:home@127.0.0.1", headers, body.encode()))


@pytest.fixture
def service(tmp_path: Path) -> Services:
    settings = Settings(data_dir=tmp_path, database=f"sqlite:///{tmp_path}/rf.db")
    return Services.open(settings)


def env(service: Services, keeper: Any = None, screener: Any = None) -> TextEnvironment:
    return TextEnvironment(service.settings, screener or service.screener,
                           keeper or service.store.messages, line="home", clock=lambda: NOW)


def test_the_asserted_identity_is_the_sender_as_for_a_call(service: Services) -> None:
    service.store.entries.add(ListName.BLOCK, "+33612345678", kind="exact")
    text = text_from("anything", pai="+33612345678")
    handle_text(text, env(service))  # type: ignore[arg-type]
    assert [a[0] for a in text.answers] == [603]
    row = service.store.messages.recent()[0]
    assert (row.number, row.verdict, row.line, row.at) == ("+33612345678", "refused", "home",
                                                           NOW)


class Unwritable:
    def add(self, *args: object, **kwargs: object) -> str:
        raise OSError("disk full")


def test_a_database_that_does_not_take_the_text_gets_500_so_the_sender_retries(
    service: Services,
) -> None:
    text = text_from("0612345678")
    handle_text(text, env(service, keeper=Unwritable()))  # type: ignore[arg-type]
    [(status, _reason, headers)] = text.answers
    assert status == 500 and ("Retry-After", "60") in headers


class BrokenStore:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("database exploded (test)")


def test_screening_that_fails_accepts_the_text(service: Services) -> None:
    broken = Screener(BrokenStore(), service.settings)  # type: ignore[arg-type]
    decision = broken.screen_text(service.screener.caller("0612345678"), NOW)
    assert (decision.verdict.value, decision.status, decision.reason_code) == (
        "accepted", 202, "text_screening_failed")
    text = text_from("0612345678")
    handle_text(text, env(service, screener=broken))  # type: ignore[arg-type]
    assert [a[0] for a in text.answers] == [202]
    assert service.store.messages.recent()[0].step == "error"


def test_an_accepted_text_wakes_the_forwarder(service: Services) -> None:
    woken: list[datetime] = []
    environment = env(service)
    environment.on_accepted = lambda: woken.append(NOW)
    handle_text(text_from("0612345678"), environment)  # type: ignore[arg-type]
    assert woken == [NOW]

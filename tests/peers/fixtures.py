"""pytest fixtures for SIP integration tests; tests/integration/conftest.py names them for its
folder, and test modules import the helpers (`GatewayFactory`, `line_for`) from here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.call.ports import MediaFactory
from gateway.call.process import Gateway
from gateway.config import GatewayConfig, HostPort, LineConfig, Settings
from tests.helpers import Services
from tests.peers import free_port
from tests.peers.baresip import Baresip
from tests.peers.fakes import FakeService, SilentMedia
from tests.peers.kamailio import Kamailio

__all__ = ["GatewayFactory", "baresip", "fake_service", "kamailio", "line_for", "make_gateway",
           "make_kamailio", "silent_media"]

GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def fake_service() -> FakeService:
    """A screening stand-in; set `.action` to force a decision."""
    return FakeService()


@pytest.fixture
def silent_media() -> MediaFactory:
    """Media that answers but sends nothing (signalling-only tests)."""
    return SilentMedia


@pytest.fixture
def make_kamailio(tmp_path: Path) -> Iterator[Callable[..., Kamailio]]:
    """Start Kamailio instances with options; all stopped at the end."""
    started: list[Kamailio] = []

    def make(**options: object) -> Kamailio:
        kamailio = Kamailio(tmp_path / f"kamailio{len(started)}", **options)  # type: ignore[arg-type]
        started.append(kamailio)
        kamailio.start()
        return kamailio

    try:
        yield make
    finally:
        for kamailio in started:
            kamailio.stop()


@pytest.fixture
def kamailio(make_kamailio: Callable[..., Kamailio]) -> Kamailio:
    """A plain Kamailio (digest auth, no record-routing)."""
    return make_kamailio()


@pytest.fixture
def baresip(tmp_path: Path, kamailio: Kamailio) -> Iterator[Baresip]:
    """baresip with the 'caller' account at `kamailio`."""
    peer = Baresip(tmp_path / "baresip", registrar_port=kamailio.port)
    try:
        peer.start()
        yield peer
    finally:
        peer.stop()


def line_for(kamailio: Kamailio, **overrides: object) -> LineConfig:
    """A [[lines]] entry registering 'home' at `kamailio`."""
    options: dict[str, object] = {
        "name": "home", "registrar": HostPort("127.0.0.1", kamailio.port), "username": "home",
        "password": "homepw", "listen": HostPort("127.0.0.1", free_port()), "expires": 60,
    }
    options.update(overrides)
    return LineConfig(**options)  # type: ignore[arg-type]


@pytest.fixture
def make_gateway(tmp_path: Path, fake_service: FakeService) -> Iterator[GatewayFactory]:
    """Start a Gateway in this process: `make_gateway(lines=(...), media_factory=...)`."""
    started: list[Gateway] = []

    def make(*, lines: tuple[LineConfig, ...] = (), media_factory: MediaFactory | None = None,
             service: object | None = None, max_calls: int = 4, real_media: bool = False,
             t1: float | None = None,
             listen: HostPort | None = None, pass_behaviour: str = "ring",
             redirect_to: str = "", public_address: str = "", user_agent: str = "Ringfence",
             kind: str = "sip", **settings_overrides: object) -> Gateway:
        prompts_dir = None
        if real_media:
            prompts_dir = tmp_path / "prompts"
            make_test_prompts(prompts_dir)
        settings = Settings(
            data_dir=tmp_path / "data", lines=lines, language="en",
            gateway=GatewayConfig(listen=listen or HostPort("127.0.0.1", free_port()),
                                  max_calls=max_calls, prompts_dir=prompts_dir,
                                  pass_behaviour=pass_behaviour,  # type: ignore[arg-type]
                                  redirect_to=redirect_to, public_address=public_address,
                                  user_agent=user_agent, kind=kind),  # type: ignore[arg-type]
            **settings_overrides,  # type: ignore[arg-type]
        )
        chosen = service or fake_service
        if isinstance(chosen, Services):  # the real store behind the real call flow
            screener: Any = chosen.screener
            book: Any = chosen.book
        else:  # the stand-in decides, records and takes line states
            screener = book = chosen
        timing = {} if t1 is None else {"t1": t1}
        if real_media:
            gateway = Gateway(settings, screener, book, line_states=book, backoff_start=0.5,
                              **timing)
        else:
            gateway = Gateway(settings, screener, book, line_states=book,
                              media_factory=media_factory or SilentMedia,
                              prompts=prompt_stub, backoff_start=0.5, **timing)
        started.append(gateway)
        gateway.start()
        return gateway

    try:
        yield make
    finally:
        for gateway in started:
            gateway.stop()


def make_test_prompts(folder: Path, seconds: float = 1.0) -> None:
    """Every prompt as a short loud 1 kHz tone: quick to play and easy to detect."""
    import math

    from gateway.media import audio
    from gateway.prompts import PROMPT_NAMES

    rate = 8000
    samples = [int(12000 * math.sin(2 * math.pi * 1000 * n / rate))
               for n in range(int(seconds * rate))]
    pcm = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
    for language in ("en", "fr"):
        for name in PROMPT_NAMES:
            path = folder / language / f"{name}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            audio.write_wav(path, pcm)


def prompt_stub(name: str) -> Path:
    """Prompts for tests that use SilentMedia (never read)."""
    return Path(f"/nonexistent/{name}.wav")


logging.getLogger("gateway").setLevel(logging.DEBUG)

"""baresip as a scriptable caller: ctrl_tcp (netstring JSON) for commands and events, a tone WAV
as its microphone, sndfile recording what it hears, and `cons` for sending DTMF key presses."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import subprocess
import threading
import time
import wave
from pathlib import Path
from typing import Any

from tests.peers import free_port, require_binary, wait_until

CONFIG = """\
poll_method\t\tepoll
sip_listen\t\t127.0.0.1:{sip_port}
call_local_timeout\t120
call_max_calls\t\t{max_calls}
audio_player\t\talsa,null
audio_source\t\taufile,{tone}
audio_alert\t\talsa,null
audio_level\t\tno
rtp_tos\t\t\t0
rtp_ports\t\t{rtp_low}-{rtp_high}
rtcp_mux\t\tno
jitter_buffer_delay\t5-10
rtp_stats\t\tyes
net_interface\t\t127.0.0.1
module_path\t\t/usr/lib/baresip/modules
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\talsa.so
module\t\t\tsndfile.so
module\t\t\tcons.so
module_app\t\taccount.so
module_app\t\tmenu.so
module_app\t\tctrl_tcp.so
ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}
cons_listen\t\t127.0.0.1:{cons_port}
snd_path\t\t{rundir}/rec
"""


def make_tone(path: Path, seconds: float = 20.0, frequency: int = 440) -> None:
    """A loud sine WAV (8 kHz mono 16 bit) made by sox: the caller's 'voice'."""
    require_binary("sox")
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(path), "synth", str(seconds),
         "sine", str(frequency), "vol", "0.5"],
        check=True, capture_output=True,
    )


class Baresip:
    """One baresip process with an account for `user` at `registrar_port`."""

    def __init__(self, rundir: Path, *, registrar_port: int, user: str = "caller",
                 password: str = "callerpw", codecs: str = "PCMU,PCMA",
                 max_calls: int = 4, register: bool = False) -> None:
        self.binary = require_binary("baresip")
        self.rundir = rundir
        self._choose_ports()
        self.registrar_port = registrar_port
        self.user = user
        self.password = password
        self.codecs = codecs
        self.max_calls = max_calls
        self.register = register  # True: registers like a phone (the owner's), not a caller
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.events: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.lock = threading.Condition()
        self.reader: threading.Thread | None = None

    def _choose_ports(self) -> None:
        # The SIP port's span is 2: baresip binds SIP/TLS on the SIP port + 1.
        self.sip_port = free_port(span=2)
        self.ctrl_port = free_port()
        self.cons_port = free_port()
        self.rtp_low = 20000 + (self.sip_port % 200) * 100

    def start(self, attempts: int = 3) -> None:
        """Write config, start, connect to ctrl_tcp.

        A port found free can be taken before baresip binds it (by any client's ephemeral
        port), so a start that fails with "Address already in use" is tried again on new ports.
        """
        (self.rundir / "rec").mkdir(parents=True, exist_ok=True)
        tone = self.rundir / "tone.wav"
        make_tone(tone)
        for attempt in range(1, attempts + 1):
            log_start = len(self.log_text())
            self._launch(tone)
            try:
                wait_until(self._connect, 10.0, "baresip ctrl_tcp")
            except AssertionError:
                raced = "Address already in use" in self.log_text()[log_start:]
                if not raced or attempt == attempts:
                    raise
                self.stop()
                self._choose_ports()
                continue
            break
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _launch(self, tone: Path) -> None:
        (self.rundir / "config").write_text(CONFIG.format(
            sip_port=self.sip_port, rundir=self.rundir, tone=tone, rtp_low=self.rtp_low,
            rtp_high=self.rtp_low + 99, ctrl_port=self.ctrl_port, cons_port=self.cons_port,
            max_calls=self.max_calls,
        ))
        (self.rundir / "accounts").write_text(
            f"<sip:{self.user}@127.0.0.1:{self.registrar_port};transport=udp>;"
            f"auth_pass={self.password};regint={60 if self.register else 0};"
            f"audio_codecs={self.codecs};answermode=manual\n"
        )
        (self.rundir / "contacts").write_text("")
        log = (self.rundir / "baresip.log").open("ab")
        self.process = subprocess.Popen([self.binary, "-f", str(self.rundir)], stdout=log,
                                        stderr=log, stdin=subprocess.DEVNULL)
        log.close()

    def _connect(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError("baresip exited: " + self.log_text()[-2000:])
        try:
            self.sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=0.2)
        except OSError:
            return False
        self.sock.settimeout(None)
        return True

    def _read(self) -> None:
        sock = self.sock
        assert sock is not None
        buffer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while True:
                colon = buffer.find(b":")
                if colon < 0 or not buffer[:colon].isdigit():
                    break
                length = int(buffer[:colon])
                if len(buffer) < colon + 1 + length + 1:
                    break
                payload = buffer[colon + 1 : colon + 1 + length]
                buffer = buffer[colon + 2 + length :]
                message = json.loads(payload)
                with self.lock:
                    (self.events if message.get("event") else self.responses).append(message)
                    self.lock.notify_all()

    def command(self, command: str, params: str = "") -> None:
        """Send a ctrl_tcp command."""
        assert self.sock is not None
        data = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.sock.sendall(str(len(data)).encode() + b":" + data + b",")

    def dial(self, uri: str) -> None:
        """Place a call."""
        self.command("dial", uri)

    def hangup(self) -> None:
        """Hang up the current call."""
        self.command("hangup")

    def press(self, key: str) -> None:
        """Press a key on the console: during a call, digits go out as RFC 2833 DTMF."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(key.encode(), ("127.0.0.1", self.cons_port))

    def wait_event(self, kind: str, timeout: float = 15.0) -> dict[str, Any]:
        """Wait for an event of type `kind` (e.g. CALL_ESTABLISHED, CALL_CLOSED)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for event in self.events:
                    if event.get("type") == kind:
                        self.events.remove(event)
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no {kind} from baresip in {timeout:.0f} s; events: {self.events}; "
                        f"log: {self.log_text()[-1500:]}"
                    )
                self.lock.wait(remaining)

    def recordings(self, suffix: str = "dec.wav") -> list[Path]:
        """WAV files sndfile wrote (-dec: what baresip heard; -enc: what it sent)."""
        return sorted((self.rundir / "rec").glob(f"*{suffix}"))

    def log_text(self) -> str:
        """baresip's output."""
        path = self.rundir / "baresip.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Quit baresip."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.command("quit")
        if self.process is not None:
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=3)
            self.process = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def wav_rms(path: Path, skip_seconds: float = 0.0) -> float:
    """Root mean square of a 16-bit WAV's samples (0 = silence, 32767 = full scale)."""
    import array
    import math

    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit samples")
        rate = wav.getframerate() * wav.getnchannels()
        frames = wav.readframes(wav.getnframes())
    samples = array.array("h", frames)[int(skip_seconds * rate):]
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def dominant_frequency(path: Path) -> float:
    """Rough dominant frequency by zero crossings (good enough to spot a 440 Hz tone)."""
    import array

    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        samples = array.array("h", wav.readframes(wav.getnframes()))
    loud = [s for s in samples if abs(s) > 200]
    if len(loud) < rate // 10:
        return 0.0
    crossings = sum(1 for a, b in itertools.pairwise(samples) if a < 0 <= b)
    voiced_seconds = len(loud) / rate
    return crossings / voiced_seconds if voiced_seconds else 0.0

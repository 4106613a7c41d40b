"""Render every prompt to WAV (8 kHz mono 16-bit): ``python -m gateway.prompts.generate``.

Spoken prompts come from espeak-ng (``-v fr`` / ``-v en``), resampled with sox when it is
installed (it filters properly before downsampling) or with Python's audioop otherwise, then
trimmed of leading/trailing silence and normalised. ``sit`` and ``beep`` are synthesised by
``gateway.media.audio``. A manifest beside the files records what each was made from, so a second
run only renders what changed (``--force`` renders everything).

Exit status: 0 on success, 2 when espeak-ng is missing or fails or the folder cannot be
written (the message says what to do).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gateway.media import audio
from gateway.prompts import LANGUAGES, PACKAGED_DIR, TEXTS, TONE_PROMPTS

__all__ = ["GenerateError", "generate", "main"]

log = logging.getLogger(__name__)

# Bump when the rendering changes, so existing files are re-rendered.
_RECIPE_VERSION = "1"
_ESPEAK_SPEED = 150  # words per minute: a little slower than espeak's 175, clearer on a phone
_PEAK = 0.7  # normalise speech peaks to -3 dBFS: loud, yet G.711 does not clip it
_EDGE_RMS = 150  # frames quieter than this at the edges are trimmed
_LEAD_IN = 0.15  # seconds of silence before speech, so the first syllable is not cut
_TAIL = 0.25  # seconds of silence after speech: the greeting ends cleanly before the beep
_MANIFEST = ".manifest.json"


class GenerateError(RuntimeError):
    """Rendering failed; the message says why and what to do."""


def _espeak() -> str:
    found = shutil.which("espeak-ng")
    if found is None:
        raise GenerateError(
            "espeak-ng not found on PATH: install it (apt install espeak-ng) to render the "
            "spoken prompts, or put your own WAVs in the prompts folder (see docs/prompts.md)"
        )
    return found


def _speak(text: str, language: str) -> bytes:
    """Render text with espeak-ng and return PCM16 8 kHz mono."""
    espeak = _espeak()
    with tempfile.TemporaryDirectory(prefix="ringfence-tts-") as tmp:
        raw = Path(tmp) / "raw.wav"
        try:
            subprocess.run(
                [espeak, "-v", language, "-s", str(_ESPEAK_SPEED), "-w", str(raw), "--", text],
                check=True,
                capture_output=True,
                timeout=60,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            raise GenerateError(
                f"espeak-ng failed for {language!r}: {stderr.decode(errors='replace').strip()}"
            ) from exc
        sox = shutil.which("sox")
        if sox is not None:
            narrow = Path(tmp) / "8k.wav"
            try:
                subprocess.run(
                    [
                        sox,
                        str(raw),
                        "-r",
                        str(audio.SAMPLE_RATE),
                        "-c",
                        "1",
                        "-b",
                        "16",
                        str(narrow),
                    ],
                    check=True,
                    capture_output=True,
                    timeout=60,
                )
                raw = narrow
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                # sox only improves the filtering; audioop below still resamples.
                log.warning("sox failed (%s); resampling in Python instead", exc)
        return audio.read_wav(raw)


def _trim_and_normalise(pcm: bytes) -> bytes:
    """Cut silent edges, scale peaks to _PEAK, and add a short lead-in and tail."""
    frame = audio.FRAME_BYTES
    frames = [pcm[i : i + frame] for i in range(0, len(pcm), frame)]
    loud = [i for i, f in enumerate(frames) if audio.rms(f) >= _EDGE_RMS]
    if loud:
        pcm = b"".join(frames[loud[0] : loud[-1] + 1])
    pcm = audio.normalise(pcm, _PEAK)
    return audio.silence(_LEAD_IN) + pcm + audio.silence(_TAIL)


def _render(name: str, language: str) -> bytes:
    if name == "sit":
        return audio.sit_tone() + audio.silence(0.1)
    if name == "beep":
        return audio.beep() + audio.silence(0.1)
    speech = _trim_and_normalise(_speak(TEXTS[name][language], language))
    if name == "not_in_service":
        # The tones first (that is what dialers listen for), then the words for humans.
        return audio.sit_tone() + audio.silence(0.3) + speech
    return speech


def _recipe(name: str, language: str) -> str:
    text = TEXTS.get(name, {}).get(language, "")
    digest = hashlib.sha256(
        f"{_RECIPE_VERSION}|{name}|{language}|{_ESPEAK_SPEED}|{text}".encode()
    ).hexdigest()
    return digest[:16]


def _load_manifest(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def generate(out_dir: Path = PACKAGED_DIR, *, force: bool = False) -> list[Path]:
    """Render every prompt in every language into out_dir; return the files written."""
    manifest_path = out_dir / _MANIFEST
    manifest = {} if force else _load_manifest(manifest_path)
    written: list[Path] = []
    # Tones first: they need no espeak-ng, so a box without it still gets SIT and the beep.
    names = list(TONE_PROMPTS) + list(TEXTS)
    try:
        for name in names:
            for language in LANGUAGES:
                target = out_dir / language / f"{name}.wav"
                key = f"{language}/{name}.wav"
                recipe = _recipe(name, language)
                if target.is_file() and manifest.get(key) == recipe:
                    continue
                pcm = _render(name, language)
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".part")
                audio.write_wav(partial, pcm)
                os.replace(partial, target)
                manifest[key] = recipe
                written.append(target)
    finally:
        if written:
            manifest_path.parent.mkdir(parents=True, exist_ok=True)
            manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway.prompts.generate",
        description="Render Ringfence's voice prompts to WAV (8 kHz mono 16-bit).",
    )
    parser.add_argument(
        "--out", type=Path, default=PACKAGED_DIR, help=f"output folder (default: {PACKAGED_DIR})"
    )
    parser.add_argument("--force", action="store_true", help="render even up-to-date files")
    args = parser.parse_args(argv)
    try:
        written = generate(args.out, force=args.force)
    except GenerateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write the prompts to {args.out}: {exc}", file=sys.stderr)
        return 2
    print(f"{len(written)} prompt file(s) written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

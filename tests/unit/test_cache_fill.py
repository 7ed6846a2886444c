"""The CacheFiller's start jitter: a program's downloads wait their random delay, an urgent
job does not wait behind them, and files already cached are not delayed. Real HTTP."""

from __future__ import annotations

import queue
import random
from pathlib import Path
from typing import Any

from agent.cache import ContentCache, open_cache
from agent.cache_fill import CacheFiller, ContentJob, ContentResult
from agent.config import parse_config
from agent.download import Downloader, FetchSettings
from protocol import Media
from tests.helpers import MediaServer, media_doc


def _media(server: MediaServer, name: str, data: bytes) -> Media:
    return Media.model_validate(media_doc(server.add(name, data), data, "image/png"))


def _next(results: queue.Queue[ContentResult]) -> ContentResult:
    return results.get(timeout=10)


def test_program_waits_its_jitter_and_urgent_jobs_go_first(tmp_path: Path) -> None:
    results: queue.Queue[ContentResult] = queue.Queue()

    def post(kind: str, payload: Any) -> None:
        assert kind == "content"
        results.put(payload)

    clock = [0.0]
    cache = ContentCache(
        tmp_path / "cache",
        1 << 30,
        downloader=Downloader(FetchSettings(start_jitter_s=3600.0)),
    )
    filler = CacheFiller(cache, post, rng=random.Random(7), monotonic=lambda: clock[0])
    with MediaServer() as server:
        program = _media(server, "program.png", b"p" * 5000)
        alarm = _media(server, "alarm.png", b"a" * 3000)
        filler.start()
        try:
            filler.submit(ContentJob("ttcs/v1/grp/all/program", "prog-0001", (program,)))
            filler.submit(ContentJob("override:emerg-0001", "emerg-0001", (alarm,)))
            first = _next(results)
            assert (first.doc_id, first.reason) == ("emerg-0001", None)
            assert server.requests_for("program.png") == []  # still waiting its delay
            assert results.empty()

            clock[0] = 3601.0  # past any delay; a job whose files are all here is not delayed
            filler.submit(ContentJob("repair:ttcs/v1/grp/all/program", "emerg-0001", (alarm,)))
            done = {r.doc_id: r for r in (_next(results), _next(results))}
            assert done["prog-0001"].reason is None
            assert done["prog-0001"].transferred == 5000
            assert len(server.requests_for("program.png")) == 1
            assert len(server.requests_for("alarm.png")) == 1  # the repair found it cached
        finally:
            filler.stop()
            cache.close()


def test_fetch_jitter_comes_from_the_configuration(tmp_path: Path) -> None:
    config = parse_config(
        {
            "device_id": "q10-p12-bang-01",
            "cache": {"fetch_jitter_s": 45},
            "paths": {"state_dir": str(tmp_path / "s"), "cache_dir": str(tmp_path / "c")},
        }
    )
    cache = open_cache(config)
    assert cache.fetch_settings.start_jitter_s == 45.0
    default = open_cache(parse_config({"device_id": "q10-p12-bang-01"}))
    assert default.fetch_settings.start_jitter_s == 0.0

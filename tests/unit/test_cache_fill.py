"""agent.cache_fill: CacheFiller's jobs, results, priorities, cancel and stop, against a real
HTTP server (tests.helpers.MediaServer) and the real ContentCache."""

from __future__ import annotations

import hashlib
import queue
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cache import ContentCache, open_cache
from agent.cache_fill import CacheFiller, ContentJob, ContentResult
from agent.config import parse_config
from agent.download import Downloader, FetchSettings
from protocol import Media
from tests.helpers import MediaServer, media_doc, misplaced_files, visible_files, wait_for

PROGRAM = "ttcs/v1/dev/q10-p12-bang-01/program"
POSTER = bytes(range(256)) * 400  # 100 KiB
CHIME = b"RIFF" + b"\x01\x02" * 3000
BIG = hashlib.sha256(b"seed").digest() * 8192  # 256 KiB


class Posted:
    """The director's side of the filler: every event posted, in order."""

    def __init__(self) -> None:
        self.events: queue.Queue[ContentResult] = queue.Queue()

    def __call__(self, result: ContentResult) -> None:
        self.events.put(result)

    def result(self, timeout: float = 15) -> ContentResult:
        payload = self.events.get(timeout=timeout)
        assert isinstance(payload, ContentResult)
        return payload

    def left(self) -> list[ContentResult]:
        found = []
        while not self.events.empty():
            found.append(self.events.get_nowait())
        return found


def media(server: MediaServer, name: str, data: bytes, query: str = "", **declared: Any) -> Media:
    """``data`` served at ``/name``; ``declared`` overrides what the program says of it."""
    fields: dict[str, Any] = {
        "url": server.add(name, data) + query,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "mime": "application/octet-stream",
    }
    return Media.model_validate({**fields, **declared})


def job(doc_id: str, *files: Media, topic: str = PROGRAM) -> ContentJob:
    return ContentJob(topic, doc_id, files)


@pytest.fixture
def server() -> Iterator[MediaServer]:
    with MediaServer() as s:
        yield s


@pytest.fixture
def cache(tmp_path: Path) -> ContentCache:
    # One attempt: a failure is final at once (no back-off sleeps in these tests).
    downloader = Downloader(FetchSettings(connect_timeout_s=5, read_timeout_s=20, attempts=1))
    return ContentCache(tmp_path / "cache", 10 << 20, downloader=downloader)


@pytest.fixture
def posted() -> Posted:
    return Posted()


@pytest.fixture
def filler(cache: ContentCache, posted: Posted) -> Iterator[CacheFiller]:
    f = CacheFiller(cache, posted)
    f.start()
    yield f
    f.stop()


def test_a_job_fetches_every_file_and_posts_one_result(
    server: MediaServer, cache: ContentCache, filler: CacheFiller, posted: Posted
) -> None:
    poster, chime = media(server, "poster.png", POSTER), media(server, "chime.wav", CHIME)
    filler.submit(job("prog-0001", poster, chime))

    result = posted.result()
    assert result == ContentResult(PROGRAM, "prog-0001", None, "", len(POSTER) + len(CHIME))
    assert cache.has(poster.sha256, poster.size) and cache.has(chime.sha256, chime.size)
    assert misplaced_files(cache.root) == []
    assert posted.left() == []


def test_files_already_cached_are_not_fetched_again(
    server: MediaServer, filler: CacheFiller, posted: Posted
) -> None:
    poster = media(server, "poster.png", POSTER)
    filler.submit(job("prog-0001", poster))
    assert posted.result().transferred == len(POSTER)

    filler.submit(job("prog-0002", poster))
    again = posted.result()
    assert (again.doc_id, again.reason, again.transferred) == ("prog-0002", None, 0)
    assert len(server.requests_for("poster.png")) == 1


def test_a_failed_file_ends_the_job_with_its_reason_and_what_was_transferred(
    server: MediaServer, cache: ContentCache, filler: CacheFiller, posted: Posted
) -> None:
    poster = media(server, "poster.png", POSTER)
    missing = media(server, "gone.mp4", CHIME, query="?token=s3cr3t-t0ken")
    server.files.pop("/gone.mp4")  # the program names a file the server no longer has
    never = media(server, "never.wav", CHIME + b"x")
    filler.submit(job("prog-0001", poster, missing, never))

    result = posted.result()
    assert (result.reason, result.transferred) == ("download_failed", len(POSTER))
    assert "HTTP 404" in result.detail
    assert "s3cr3t" not in result.detail  # a URL's query may hold a token: never in an ack
    assert server.requests_for("never.wav") == []  # the job stops at its first failure
    assert cache.has(poster.sha256, poster.size)


def test_content_that_does_not_match_its_hash_is_refused_and_never_visible(
    server: MediaServer, cache: ContentCache, filler: CacheFiller, posted: Posted
) -> None:
    forged = media(server, "poster.png", POSTER, sha256=hashlib.sha256(b"other").hexdigest())
    filler.submit(job("prog-0001", forged))

    result = posted.result()
    assert result.reason == "hash_mismatch"
    assert visible_files(cache.root) == {}


def test_a_file_larger_than_the_quota_is_refused_without_a_request(
    tmp_path: Path, server: MediaServer, posted: Posted
) -> None:
    small = ContentCache(tmp_path / "small", 64 << 10)
    filler = CacheFiller(small, posted)
    filler.start()
    try:
        filler.submit(job("prog-0001", media(server, "poster.png", POSTER)))
        assert posted.result().reason == "cache_full"
    finally:
        filler.stop()
    assert server.served == []


def test_emergency_and_play_now_files_go_before_queued_program_files(
    server: MediaServer, filler: CacheFiller, posted: Posted
) -> None:
    release = server.stall_after(0)  # the worker is busy with the first job until released
    filler.submit(job("prog-0001", media(server, "video.mp4", BIG)))
    wait_for(lambda: server.requests_for("video.mp4"), 10, "the first job's request")
    filler.submit(job("prog-0002", media(server, "poster.png", POSTER)))
    filler.submit(job("emerg-0001", media(server, "siren.wav", CHIME), topic="override:emerg-0001"))
    release.set()

    order = [posted.result().doc_id for _ in range(3)]
    assert order == ["prog-0001", "emerg-0001", "prog-0002"]
    assert [s.path for s in server.served] == ["/video.mp4", "/siren.wav", "/poster.png"]


def test_a_cancelled_job_stops_before_its_next_file_and_posts_nothing(
    server: MediaServer, cache: ContentCache, filler: CacheFiller, posted: Posted
) -> None:
    release = server.stall_after(0)
    video, poster = media(server, "video.mp4", BIG), media(server, "poster.png", POSTER)
    filler.submit(job("prog-0001", video, poster))
    wait_for(lambda: server.requests_for("video.mp4"), 10, "the job's first file")
    filler.cancel("prog-0001")
    release.set()

    # One worker: once a later job's result is in, the cancelled one is over.
    filler.submit(job("prog-0002", media(server, "chime.wav", CHIME)))
    assert posted.result().doc_id == "prog-0002"
    assert posted.left() == []
    assert server.requests_for("poster.png") == []
    assert cache.has(video.sha256, video.size)  # the file under way was finished, verified


def test_a_job_cancelled_while_queued_is_never_fetched(
    server: MediaServer, filler: CacheFiller, posted: Posted
) -> None:
    release = server.stall_after(0)
    filler.submit(job("prog-0001", media(server, "video.mp4", BIG)))
    wait_for(lambda: server.requests_for("video.mp4"), 10, "the first job's request")
    filler.submit(job("prog-0002", media(server, "poster.png", POSTER)))
    filler.cancel("prog-0002")
    filler.submit(job("prog-0003", media(server, "chime.wav", CHIME)))
    release.set()

    assert [posted.result().doc_id for _ in range(2)] == ["prog-0001", "prog-0003"]
    assert posted.left() == []
    assert server.requests_for("poster.png") == []


def test_submitting_a_cancelled_job_again_fetches_it(
    server: MediaServer, filler: CacheFiller, posted: Posted
) -> None:
    filler.cancel("prog-0001")
    filler.submit(job("prog-0001", media(server, "poster.png", POSTER)))
    assert posted.result().doc_id == "prog-0001"


def test_stop_interrupts_a_download_that_resumes_after_the_next_start(
    server: MediaServer, cache: ContentCache, posted: Posted
) -> None:
    filler = CacheFiller(cache, posted)
    filler.start()
    release = server.stall_after(4096)
    video = media(server, "video.mp4", BIG)
    filler.submit(job("prog-0001", video))
    wait_for(lambda: server.sent("video.mp4") >= 4096, 10, "the first bytes of the file")
    filler.stop(timeout=0.05)  # asks; the worker is still blocked in its read
    release.set()
    filler.stop()  # and now it has ended
    assert posted.left() == []  # stopping is not a failure to report
    assert not cache.has(video.sha256, video.size)

    again = CacheFiller(cache, posted)
    again.start()
    try:
        again.submit(job("prog-0001", video))
        result = posted.result()
    finally:
        again.stop()
    assert result.reason is None
    resumed = server.requests_for("video.mp4")[-1]
    assert resumed.status == 206 and resumed.range is not None
    assert 4096 <= int(resumed.range.removeprefix("bytes=").rstrip("-")) < len(BIG)
    assert 0 < result.transferred < len(BIG)
    assert cache.has(video.sha256, video.size) and misplaced_files(cache.root) == []


class BrokenCache(ContentCache):
    """A cache whose disk fails in a way the filler does not expect, for one file."""

    def __init__(self, root: Path, broken: str) -> None:
        super().__init__(root, 10 << 20)
        self.broken = broken

    def ensure(self, media: Media, *args: Any, **kwargs: Any) -> Any:
        if media.sha256 == self.broken:
            raise RuntimeError("I/O error on the card")
        return super().ensure(media, *args, **kwargs)


def test_an_unexpected_error_fails_its_job_and_the_worker_goes_on(
    tmp_path: Path, server: MediaServer, posted: Posted
) -> None:
    poster, chime = media(server, "poster.png", POSTER), media(server, "chime.wav", CHIME)
    filler = CacheFiller(BrokenCache(tmp_path / "cache", poster.sha256), posted)
    filler.start()
    try:
        filler.submit(job("prog-0001", poster))
        filler.submit(job("prog-0002", chime))
        failed, fine = posted.result(), posted.result()
    finally:
        filler.stop()
    assert (failed.doc_id, failed.reason) == ("prog-0001", "download_failed")
    assert "I/O error on the card" in failed.detail
    assert (fine.doc_id, fine.reason, fine.transferred) == ("prog-0002", None, len(CHIME))


# --------------------------------------------------------------------------- start jitter


def _media(server: MediaServer, name: str, data: bytes) -> Media:
    return Media.model_validate(media_doc(server.add(name, data), data, "image/png"))


def _next(results: queue.Queue[ContentResult]) -> ContentResult:
    return results.get(timeout=10)


def test_program_waits_its_jitter_and_urgent_jobs_go_first(tmp_path: Path) -> None:
    results: queue.Queue[ContentResult] = queue.Queue()

    def post(payload: ContentResult) -> None:
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

"""Downloads against a real local HTTP server: verification, size limits, schemes, redirects,
resumption after a cut connection and after a killed process, and the cache around them."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.cache import ContentCache
from agent.download import (
    MAX_RETRY_AFTER_S,
    Downloader,
    DownloadError,
    FetchSettings,
    fetch,
    retry_after,
)
from protocol import Media
from tests.helpers import ROOT, MediaServer, wait_for

SIZE = 1_000_000


def blob(size: int = SIZE, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Sleeps:
    """An injectable sleep that only records the back-off asked for."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def server() -> Iterator[MediaServer]:
    with MediaServer() as s:
        yield s


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def cache(tmp_path: Path, sleeps: Sleeps) -> Iterator[ContentCache]:
    settings = FetchSettings(connect_timeout_s=2, read_timeout_s=2, attempts=4)
    c = ContentCache(tmp_path / "cache", 100 * SIZE, downloader=Downloader(settings, sleeps))
    yield c
    c.close()


def media(url: str, data: bytes, size: int | None = None, digest: str | None = None) -> Media:
    return Media(
        url=url,
        sha256=digest or sha(data),
        size=len(data) if size is None else size,
        mime="video/mp4",
    )


def leftovers(root: Path) -> list[Path]:
    """Every file under the cache (parts included)."""
    return sorted(p for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- the cache


def test_a_verified_download_appears_at_its_hash(server: MediaServer, cache: ContentCache) -> None:
    data = blob()
    item = media(server.add("video.mp4", data), data)
    result = cache.ensure(item)
    assert result is not None
    assert (result.transferred_bytes, result.resumed, result.attempts_used) == (SIZE, False, 1)
    final = cache.path(item.sha256)
    assert final == cache.root / item.sha256[:2] / item.sha256[2:4] / item.sha256
    assert final.read_bytes() == data
    assert leftovers(cache.root) == [final]  # no part left behind
    assert cache.usage() == (SIZE, 1)
    assert cache.ensure(item) is None  # already cached: no request
    assert len(server.served) == 1


def test_hash_mismatch_leaves_nothing_visible(server: MediaServer, cache: ContentCache) -> None:
    data = blob()
    item = media(server.add("video.mp4", data), data, digest=sha(b"what was signed"))
    with pytest.raises(DownloadError) as caught:
        cache.ensure(item)
    assert caught.value.reason == "hash_mismatch"
    assert not cache.path(item.sha256).exists()
    assert leftovers(cache.root) == []  # the bad bytes are gone, not kept for a resume
    assert len(server.served) == 1  # one whole response: no second opinion needed


def test_server_sending_more_than_the_size_is_refused(
    server: MediaServer, cache: ContentCache
) -> None:
    data = blob()
    item = media(server.add("video.mp4", data), data[:1000], size=1000)
    with pytest.raises(DownloadError) as caught:
        cache.ensure(item)
    assert caught.value.reason == "size_mismatch"
    assert "1000000" in caught.value.detail  # refused on the announced length
    assert leftovers(cache.root) == []


def test_a_longer_body_without_length_stops_at_the_first_extra_byte(
    server: MediaServer, tmp_path: Path
) -> None:
    data = blob(4 * SIZE)
    url = server.add("stream.bin", data)
    server.without_length.add("/stream.bin")
    part = tmp_path / "x.part"
    with pytest.raises(DownloadError) as caught:
        fetch(url, part, 100_000, sha(data[:100_000]), chunk_bytes=16384, sleep=Sleeps())
    assert caught.value.reason == "size_mismatch"
    assert "more than 100000" in caught.value.detail
    assert not part.exists()


def test_server_sending_fewer_bytes_is_refused(server: MediaServer, cache: ContentCache) -> None:
    data = blob()
    item = media(server.add("video.mp4", data), data + b"tail", size=SIZE + 4)
    with pytest.raises(DownloadError) as caught:
        cache.ensure(item)
    assert caught.value.reason == "size_mismatch"
    assert leftovers(cache.root) == []


def test_a_short_body_without_length_is_a_size_mismatch(
    server: MediaServer, tmp_path: Path
) -> None:
    """The body ends early with no length to tell a cut from a short file: the resume asks for
    the rest, and the server's answer (416, with the real length) settles it."""
    data = blob()
    url = server.add("short.bin", data)
    server.without_length.add("/short.bin")
    part = tmp_path / "x.part"
    with pytest.raises(DownloadError) as caught:
        fetch(url, part, SIZE + 10, sha(data + bytes(10)), sleep=Sleeps())
    assert caught.value.reason == "size_mismatch"
    assert [s.status for s in server.served] == [200, 416]
    assert not part.exists()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/video.mp4",
        "file:///etc/passwd",
        "rtsp://127.0.0.1/live",
        "http:///no-host",
        "//127.0.0.1/no-scheme",
        "http://127.0.0.1:99999/bad-port",
        "http://127.0.0.1/a b",
    ],
)
def test_only_http_and_https_urls_are_fetched(url: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "x.part", 1, "0" * 64)
    assert caught.value.reason == "bad_url"
    assert not (tmp_path / "x.part").exists()


def test_redirects_are_followed_to_http_only(server: MediaServer, tmp_path: Path) -> None:
    data = blob(10_000)
    server.add("real.bin", data)
    server.redirects["/moved.bin"] = "/real.bin"
    server.redirects["/evil.bin"] = "file:///etc/passwd"
    fetch(server.url("moved.bin"), tmp_path / "a.part", len(data), sha(data))
    assert (tmp_path / "a.part").read_bytes() == data
    with pytest.raises(DownloadError) as caught:
        fetch(server.url("evil.bin"), tmp_path / "b.part", len(data), sha(data))
    assert caught.value.reason == "bad_url"
    assert "redirect" in caught.value.detail


def test_not_found_fails_at_once(server: MediaServer, tmp_path: Path, sleeps: Sleeps) -> None:
    with pytest.raises(DownloadError) as caught:
        fetch(server.url("missing.bin"), tmp_path / "x.part", 10, "0" * 64, sleep=sleeps)
    assert caught.value.reason == "download_failed"
    assert "HTTP 404" in caught.value.detail
    assert len(server.served) == 1
    assert sleeps.calls == []


def test_cannot_connect_is_retried_then_download_failed(tmp_path: Path, sleeps: Sleeps) -> None:
    with MediaServer() as gone:
        url = gone.url("x.bin")
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "x.part", 10, "0" * 64, attempts=3, sleep=sleeps)
    assert caught.value.reason == "download_failed"
    assert "after 3 attempts" in caught.value.detail
    assert len(sleeps.calls) == 2
    assert sleeps.calls[1] > sleeps.calls[0] / 2  # backs off (with jitter)


# --------------------------------------------------------------------------- resuming


def test_a_cut_connection_resumes_with_a_byte_range(
    server: MediaServer, cache: ContentCache, sleeps: Sleeps
) -> None:
    data = blob()
    item = media(server.add("video.mp4", data), data)
    server.cut_after(300_000, times=2)
    result = cache.ensure(item)
    assert result is not None
    assert cache.path(item.sha256).read_bytes() == data
    ranges = [s.range for s in server.requests_for("video.mp4")]
    assert ranges[0] is None
    assert len(ranges) == 3
    assert ranges[1] is not None and ranges[1].startswith("bytes=")
    assert all(s.status == 206 for s in server.requests_for("video.mp4")[1:])
    # What the server really sent: the file once, not twice (nor a chunk again per cut).
    assert SIZE <= server.sent("video.mp4") <= SIZE * 1.01
    assert result.transferred_bytes == server.sent("video.mp4")
    assert (result.resumed, result.attempts_used) == (True, 3)
    assert len(sleeps.calls) == 2
    assert leftovers(cache.root) == [cache.path(item.sha256)]


def test_too_many_cuts_fail_but_keep_the_part_for_later(
    server: MediaServer, cache: ContentCache
) -> None:
    data = blob()
    item = media(server.add("video.mp4", data), data)
    server.cut_after(200_000, times=4)  # as many as the attempts
    with pytest.raises(DownloadError) as caught:
        cache.ensure(item)
    assert caught.value.reason == "download_failed"
    assert not cache.path(item.sha256).exists()
    kept = cache.part_path(item.sha256).stat().st_size
    assert kept >= 200_000
    sent_before = server.sent()
    cache.ensure(item)  # the link is back
    assert cache.path(item.sha256).read_bytes() == data
    assert server.served[-1].range == f"bytes={kept}-"
    assert server.sent() - sent_before == SIZE - kept


def test_a_part_left_by_a_killed_process_is_resumed(
    server: MediaServer, tmp_path: Path, sleeps: Sleeps
) -> None:
    data = blob()
    url = server.add("video.mp4", data)
    cache = ContentCache(tmp_path / "cache", 10 * SIZE, downloader=Downloader(sleep=sleeps))
    item = media(url, data)
    part = cache.part_path(item.sha256)
    release = server.stall_after(256 * 1024)
    script = (
        "import sys; from pathlib import Path; from agent.download import fetch; "
        "fetch(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4])"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, url, str(part), str(SIZE), item.sha256], cwd=ROOT
    )
    try:
        wait_for(
            lambda: part.exists() and part.stat().st_size == 256 * 1024, 10, "a partial download"
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        release.set()
    assert not cache.path(item.sha256).exists()
    result = cache.ensure(item)
    assert result is not None
    assert cache.path(item.sha256).read_bytes() == data
    assert server.served[-1].range == f"bytes={256 * 1024}-"
    assert result.transferred_bytes == SIZE - 256 * 1024
    assert result.resumed
    assert not part.exists()
    cache.close()


def test_a_server_ignoring_ranges_is_read_from_the_start(
    server: MediaServer, cache: ContentCache
) -> None:
    data = blob()
    item = media(server.add("video.mp4", data), data)
    server.honour_ranges = False
    server.cut_after(300_000)
    result = cache.ensure(item)
    assert result is not None
    assert cache.path(item.sha256).read_bytes() == data
    assert [s.status for s in server.served] == [200, 200]
    assert not result.resumed


def test_a_corrupt_part_is_not_trusted(server: MediaServer, cache: ContentCache) -> None:
    """Bytes resumed from an earlier try that do not match: one fresh whole download decides."""
    data = blob()
    item = media(server.add("video.mp4", data), data)
    part = cache.part_path(item.sha256)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # e.g. zeros after a power cut
    result = cache.ensure(item)
    assert result is not None
    assert cache.path(item.sha256).read_bytes() == data
    assert [s.range for s in server.served] == ["bytes=1000-", None]
    assert not result.resumed


def test_a_part_longer_than_the_size_is_discarded(server: MediaServer, cache: ContentCache) -> None:
    data = blob(10_000)
    item = media(server.add("video.mp4", data), data)
    part = cache.part_path(item.sha256)
    part.parent.mkdir(parents=True)
    part.write_bytes(blob(20_000, seed=2))
    assert cache.ensure(item) is not None
    assert cache.path(item.sha256).read_bytes() == data
    assert [s.range for s in server.served] == [None]


def test_a_refused_range_fetches_the_whole_file(server: MediaServer, tmp_path: Path) -> None:
    """A part as long as the file but wrong; 416 for its range: the whole file again."""
    data = blob(10_000)
    url = server.add("video.mp4", data)
    part = tmp_path / "x.part"
    part.write_bytes(data[:5000])
    server.files["/video.mp4"] = data[:5000]  # the server's copy is shorter for a moment
    with pytest.raises(DownloadError) as caught:
        fetch(url, part, len(data), sha(data), sleep=Sleeps())
    assert caught.value.reason == "size_mismatch"  # 416 with the real length: 5000
    server.files["/video.mp4"] = data
    part.write_bytes(data[:5000])
    fetch(url, part, len(data), sha(data), sleep=Sleeps())
    assert part.read_bytes() == data


def test_a_busy_server_is_retried(server: MediaServer, cache: ContentCache, sleeps: Sleeps) -> None:
    data = blob(10_000)
    item = media(server.add("video.mp4", data), data)
    server.fail_with(503, times=2)
    result = cache.ensure(item)
    assert result is not None and result.attempts_used == 3
    assert [s.status for s in server.served] == [503, 503, 200]
    assert len(sleeps.calls) == 2


def test_cancel_stops_and_keeps_the_part(server: MediaServer, tmp_path: Path) -> None:
    data = blob()
    url = server.add("video.mp4", data)
    release = server.stall_after(128 * 1024)
    cancel = threading.Event()
    part = tmp_path / "x.part"
    errors: list[DownloadError] = []

    def run() -> None:
        try:
            fetch(url, part, SIZE, sha(data), cancel=cancel, chunk_bytes=16384)
        except DownloadError as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_for(lambda: part.exists() and part.stat().st_size == 128 * 1024, 10, "bytes")
    cancel.set()
    release.set()
    worker.join(10)
    assert not worker.is_alive()
    assert [e.detail for e in errors] == ["cancelled"]
    assert part.stat().st_size >= 128 * 1024


# --------------------------------------------------------------------------- room


def test_ensure_evicts_the_least_recently_used_but_never_what_is_kept(
    server: MediaServer, tmp_path: Path
) -> None:
    files = [blob(300_000, seed=n) for n in range(4)]
    items = [media(server.add(f"f{n}.bin", d), d) for n, d in enumerate(files)]
    cache = ContentCache(tmp_path / "cache", 1_000_000, downloader=Downloader(sleep=Sleeps()))
    for n, item in enumerate(items[:3]):
        cache.ensure(item)
        t = 1_800_000_000 + n
        os.utime(cache.path(item.sha256), (t, t))
    cache.set_keep({items[0].sha256})  # oldest, but a live program shows it
    cache.ensure(items[3])
    assert not cache.has(items[1].sha256, 300_000)  # the oldest not kept went
    assert cache.has(items[0].sha256, 300_000)
    assert cache.has(items[2].sha256, 300_000)
    assert cache.has(items[3].sha256, 300_000)
    cache.close()


def test_cache_full_evicts_nothing_and_downloads_nothing(
    server: MediaServer, tmp_path: Path
) -> None:
    files = [blob(400_000, seed=n) for n in range(3)]
    items = [media(server.add(f"f{n}.bin", d), d) for n, d in enumerate(files)]
    cache = ContentCache(tmp_path / "cache", 1_000_000, downloader=Downloader(sleep=Sleeps()))
    cache.ensure(items[0])
    cache.ensure(items[1])
    requests_before = len(server.served)
    with pytest.raises(DownloadError) as caught:
        cache.ensure(items[2], keep={items[0].sha256, items[1].sha256})
    assert caught.value.reason == "cache_full"
    assert len(server.served) == requests_before
    assert cache.usage() == (800_000, 2)
    cache.close()


def test_retry_after_is_obeyed(server: MediaServer, tmp_path: Path) -> None:
    """A busy server's Retry-After (seconds or an HTTP date) sets the wait, at least that long
    and spread over a quarter more; bounded; a 500's header is not a request to wait."""
    data = blob(10_000)
    url = server.add("video.mp4", data)
    server.fail_with(503, retry_after="120")
    server.fail_with(429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")  # in the past: no wait
    server.fail_with(503, retry_after="86400")
    server.fail_with(500, retry_after="300")
    sleeps = Sleeps()
    part = tmp_path / "x.part"
    result = fetch(url, part, len(data), sha(data), attempts=5, sleep=sleeps)
    assert part.read_bytes() == data and result.attempts_used == 5
    assert [s.status for s in server.served] == [503, 429, 503, 500, 200]
    first, second, third, fourth = sleeps.calls
    assert 120 <= first <= 150
    assert second <= 2.0  # the ordinary back-off (2 s, jittered)
    assert MAX_RETRY_AFTER_S <= third <= MAX_RETRY_AFTER_S * 1.25
    assert fourth <= 8.0


def test_retry_after_values() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert retry_after("30", now) == 30.0
    assert retry_after("Thu, 03 Dec 2026 12:01:30 GMT", now) == 90.0
    assert retry_after("Thu, 03 Dec 2026 11:00:00 GMT", now) == 0.0
    assert retry_after("99999999", now) == MAX_RETRY_AFTER_S
    assert retry_after("soon", now) is None
    assert retry_after("-5", now) is None
    assert retry_after(None, now) is None

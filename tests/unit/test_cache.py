"""agent.cache: the hash-addressed layout, LRU eviction with a keep-set, verification, room
checks before a download, the ``[cache]`` configuration and ``ttcs-agent cache ls|verify|gc``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from agent.cache import PARTIAL_DIR, STALE_PART_S, ContentCache, Progress
from agent.cli import main
from agent.config import ConfigError, parse_config
from agent.download import DownloadError
from protocol import Media

T0 = 1_795_500_000.0  # 2026-11-24T06:00:00Z
NOWHERE = "http://127.0.0.1:9/never-asked.bin"  # the discard port: nothing may be fetched


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(cache: ContentCache, data: bytes, last_used: float = T0) -> str:
    """Place a (verified) file in the cache as a finished download would."""
    digest = sha(data)
    path = cache.path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (last_used, last_used))
    return digest


def media(data: bytes, size: int | None = None) -> Media:
    return Media(
        url=NOWHERE, sha256=sha(data), size=len(data) if size is None else size, mime="image/png"
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(tmp_path: Path, clock: Clock) -> ContentCache:
    return ContentCache(tmp_path / "cache", 1000, clock=clock)


# --------------------------------------------------------------------------- layout


def test_path_fans_out_by_the_first_hex_digits(cache: ContentCache) -> None:
    digest = sha(b"x")
    assert cache.path(digest) == cache.root / digest[:2] / digest[2:4] / digest
    assert cache.part_path(digest) == cache.root / PARTIAL_DIR / f"{digest}.part"


@pytest.mark.parametrize("bad", ["A" * 64, "ab", "../" + "a" * 61, "g" * 64, ""])
def test_path_refuses_what_is_not_a_sha256(cache: ContentCache, bad: str) -> None:
    with pytest.raises(ValueError):
        cache.path(bad)
    with pytest.raises(ValueError):
        cache.part_path(bad)


def test_has_checks_presence_and_size(cache: ContentCache) -> None:
    digest = put(cache, b"hello")
    assert cache.has(digest, 5)
    assert not cache.has(digest, 6)
    assert not cache.has(sha(b"other"), 5)


def test_usage_and_items_count_only_cached_files(cache: ContentCache) -> None:
    a = put(cache, b"a" * 10, T0 - 20)
    b = put(cache, b"b" * 30, T0 - 10)
    # Things that are not cached files: a download in progress, strays, a misplaced file.
    (cache.root / PARTIAL_DIR).mkdir()
    (cache.root / PARTIAL_DIR / f"{sha(b'c')}.part").write_bytes(b"c" * 100)
    (cache.root / "README").write_text("not content")
    (cache.root / a[:2] / a[2:4] / "notes.txt").write_text("stray")
    misplaced = sha(b"m")
    (cache.root / "00" / "00").mkdir(parents=True)
    (cache.root / "00" / "00" / misplaced).write_bytes(b"m")
    assert cache.usage() == (40, 2)
    assert [(i.sha256, i.size, i.last_used) for i in cache.items()] == [
        (a, 10, T0 - 20),
        (b, 30, T0 - 10),
    ]


def test_an_empty_or_missing_cache_is_empty(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "not-yet", 1000)
    assert cache.usage() == (0, 0)
    assert cache.items() == []
    assert cache.gc() == []
    assert cache.verify() == []
    assert cache.disk_free_bytes() > 0


def test_touch_makes_an_item_the_most_recently_used(cache: ContentCache, clock: Clock) -> None:
    a = put(cache, b"a", T0 - 30)
    b = put(cache, b"b", T0 - 20)
    assert [i.sha256 for i in cache.items()] == [a, b]
    clock.now = T0 + 5
    assert cache.touch(a)
    assert [i.sha256 for i in cache.items()] == [b, a]
    assert cache.items()[-1].last_used == T0 + 5
    assert not cache.touch(sha(b"absent"))


# --------------------------------------------------------------------------- gc


def test_gc_evicts_least_recently_used_not_kept_until_under_quota(cache: ContentCache) -> None:
    old, mid, new, newest = (put(cache, bytes([n]) * 300, T0 - 40 + n) for n in range(4))
    evicted = cache.gc(keep={old})  # 1200 bytes, quota 1000
    assert evicted == [mid]
    assert cache.usage() == (900, 3)
    assert cache.has(old, 300) and cache.has(new, 300) and cache.has(newest, 300)


def test_gc_honours_the_directors_keep_set_and_a_target(cache: ContentCache) -> None:
    items = [put(cache, bytes([n]) * 100, T0 - 40 + n) for n in range(4)]
    cache.set_keep({items[0], items[2]})
    assert cache.gc(target_bytes=0) == [items[1], items[3]]
    assert [i.sha256 for i in cache.items()] == [items[0], items[2]]


def test_gc_under_quota_evicts_nothing(cache: ContentCache) -> None:
    put(cache, b"a" * 500)
    assert cache.gc() == []
    assert cache.usage() == (500, 1)


def test_gc_removes_emptied_fan_out_folders(cache: ContentCache) -> None:
    digest = put(cache, b"a" * 10)
    assert cache.gc(target_bytes=0) == [digest]
    assert not (cache.root / digest[:2]).exists()


def test_gc_drops_partial_downloads_untouched_for_a_day(cache: ContentCache) -> None:
    folder = cache.root / PARTIAL_DIR
    folder.mkdir(parents=True)
    stale, fresh = folder / f"{sha(b's')}.part", folder / f"{sha(b'f')}.part"
    stale.write_bytes(b"s")
    fresh.write_bytes(b"f")
    os.utime(stale, (T0 - STALE_PART_S - 1,) * 2)
    os.utime(fresh, (T0 - 60,) * 2)
    cache.gc()
    assert not stale.exists()
    assert fresh.exists()  # may still be resumed


# --------------------------------------------------------------------------- verify


def test_verify_finds_and_removes_a_corrupted_file(cache: ContentCache) -> None:
    good = put(cache, b"good" * 10, T0 - 2)
    bad = put(cache, b"bad!" * 10, T0 - 1)
    with cache.path(bad).open("r+b") as fh:
        fh.write(b"X")  # one flipped byte, e.g. a failing SD card
    seen: list[Progress] = []
    assert cache.verify(seen.append) == [bad]
    assert not cache.path(bad).exists()
    assert cache.has(good, 40)
    assert seen[-1] == Progress(80, 80, 2, 2)


def test_verify_reports_progress_every_mib(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", 1 << 30)
    put(cache, b"\1" * (3 << 20))
    put(cache, b"\2" * 10)
    seen: list[Progress] = []
    assert cache.verify(seen.append) == []
    done = [p.bytes_done for p in seen]
    assert done == sorted(done)
    assert len(seen) >= 5  # 3 MiB in steps, plus one per file
    assert seen[-1] == Progress((3 << 20) + 10, (3 << 20) + 10, 2, 2)


# --------------------------------------------------------------------------- room before a download


def test_already_cached_content_is_only_touched(cache: ContentCache, clock: Clock) -> None:
    data = b"cached"
    put(cache, data, T0 - 100)
    assert cache.ensure(media(data)) is None  # NOWHERE was not asked
    assert cache.items()[0].last_used == T0


def test_cache_full_when_kept_content_leaves_no_room(cache: ContentCache) -> None:
    kept = put(cache, b"k" * 600)
    cache.set_keep({kept})
    with pytest.raises(DownloadError) as caught:
        cache.ensure(media(b"n" * 500))
    assert caught.value.reason == "cache_full"
    assert cache.has(kept, 600)  # nothing evicted for a download that cannot fit anyway


def test_cache_full_for_a_file_larger_than_the_quota(cache: ContentCache) -> None:
    other = put(cache, b"o" * 10)
    with pytest.raises(DownloadError) as caught:
        cache.ensure(media(b"big", size=1001))
    assert caught.value.reason == "cache_full"
    assert cache.has(other, 10)


def test_cache_full_when_the_disk_would_fill(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", 1 << 40, min_free_bytes=1 << 60)
    with pytest.raises(DownloadError) as caught:
        cache.ensure(media(b"n" * 10))
    assert caught.value.reason == "cache_full"
    assert "free on disk" in caught.value.detail


# --------------------------------------------------------------------------- configuration


def test_cache_configuration_defaults_and_limits() -> None:
    config = parse_config({"device_id": "q10-p12-bang-01"})
    assert config.cache.quota_bytes == 2 * 1024**3
    assert (config.cache.connect_timeout_s, config.cache.read_timeout_s) == (10, 30)
    with pytest.raises(ConfigError, match=r"cache\.quota_bytes"):
        parse_config({"device_id": "q10-p12-bang-01", "cache": {"quota_bytes": 1000}})
    with pytest.raises(ConfigError, match=r"cache\.quota_bytes"):
        parse_config({"device_id": "q10-p12-bang-01", "cache": {"quota_bytes": "2G"}})


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        'device_id = "q10-p12-bang-01"\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\ncache_dir = "{tmp_path / "cache"}"\n'
        "[cache]\nquota_bytes = 1048576\n"
    )
    return path


def test_cli_cache_ls(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = ContentCache(tmp_path / "cache", 1 << 20)
    a = put(cache, b"a" * 10, T0)
    b = put(cache, b"b" * 20, T0 - 60)
    assert main(["--config", str(config_file), "cache", "ls", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["bytes"] == 30 and listing["items"] == 2
    assert listing["quota_bytes"] == 1 << 20
    assert listing["entries"] == [
        {"sha256": b, "size": 20, "last_used": "2026-11-24T05:59:00Z"},
        {"sha256": a, "size": 10, "last_used": "2026-11-24T06:00:00Z"},
    ]
    assert main(["cache", "ls", "--config", str(config_file)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(b) and out[1].startswith(a)
    assert out[-1].startswith("2 files, 30 B of the 1.0 MB quota")


def test_cli_cache_verify(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = ContentCache(tmp_path / "cache", 1 << 20)
    good = put(cache, b"g" * 100)
    assert main(["--config", str(config_file), "cache", "verify"]) == 0
    captured = capsys.readouterr()
    assert "all 1 files match" in captured.out
    assert captured.err == ""  # no bar when stderr is not a terminal
    bad = put(cache, b"b" * 100)
    cache.path(bad).write_bytes(b"tampered")
    assert main(["--config", str(config_file), "cache", "verify", "--progress"]) == 1
    captured = capsys.readouterr()
    assert f"damaged, removed: {bad}" in captured.out
    assert "verifying [" in captured.err and "100%" in captured.err
    assert captured.err.endswith("\n")
    assert cache.has(good, 100) and not cache.path(bad).exists()


def test_cli_cache_gc_needs_the_running_agent(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config_file), "cache", "gc"]) == 3
    assert "not running" in capsys.readouterr().err

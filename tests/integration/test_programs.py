"""Programs against a real Mosquitto, a real HTTP media server and a real agent process: a
pushed program's media is downloaded, verified and cached before it goes live (ack ``done``,
now-playing in ``ttcs-agent status``); content that does not match its declared hash or size
fails the program, keeps the old one live and never becomes visible in the cache; a download
cut off mid-way resumes with a byte range instead of starting over."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from controlplane.keys import SigningKey
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    MediaServer,
    agent_errors,
    agent_status,
    cache_path,
    media_doc,
    program,
    sha256_hex,
    visible_files,
    wait_for,
)

DEV = "q10-p12-bang-01"
PROGRAM_TOPIC = f"{PREFIX}/dev/{DEV}/program"


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def text_bulletin(bulletin_id: str) -> dict[str, Any]:
    return {
        "id": bulletin_id,
        "title": "Thông báo của phường",
        "screen": {"kind": "text", "text": "Lịch tiêm chủng thứ Bảy, 7 giờ"},
    }


def image_bulletin(bulletin_id: str, media: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": bulletin_id,
        "title": "Bản đồ điểm tiêm chủng",
        "screen": {"kind": "image", "media": media, "duration_ms": 15000},
    }


@pytest.fixture
def media() -> Iterator[MediaServer]:
    with MediaServer() as server:
        yield server


@pytest.fixture
def listener(broker: Broker, agent: AgentProcess) -> Iterator[Listener]:
    with Listener(broker, [f"{PREFIX}/dev/+/ack"]) as lst:
        yield lst
    assert agent_errors(agent) == [], "the agent logged errors"


def push(listener: Listener, key: SigningKey, version: int, bulletins: list[dict[str, Any]]) -> str:
    topic, payload, doc = program(key, version, bulletins)
    assert topic == PROGRAM_TOPIC
    listener.publish(topic, payload, retain=True)
    return str(doc["id"])


def outcome(listener: Listener, doc_id: str, timeout: float = 20) -> dict[str, Any]:
    """Wait for the final ack of a program (``done`` or ``failed``), after its ``accepted``."""

    def final() -> dict[str, Any] | None:
        for ack in listener.acks(doc_id):
            if ack["status"] in ("done", "failed", "rejected"):
                return ack
        return None

    ack: dict[str, Any] = wait_for(final, timeout, f"the outcome of program {doc_id}")
    statuses = [a["status"] for a in listener.acks(doc_id)]
    assert statuses[0] == "accepted", f"{doc_id}: acks {statuses}"
    return ack


def test_program_push_downloads_verifies_and_goes_live(
    broker: Broker,
    device: Device,
    agent: AgentProcess,
    signing_key: SigningKey,
    media: MediaServer,
    listener: Listener,
) -> None:
    image = blob(300_000, seed=1)
    audio = blob(120_000, seed=2)
    image_media = media_doc(media.add("img/so-do.png", image), image, "image/png")
    audio_media = media_doc(media.add("audio/loa.mp3", audio), audio, "audio/mpeg")
    bulletins = [
        image_bulletin("tb-anh-01", image_media),
        {
            "id": "tb-loa-01",
            "title": "Thông báo phát loa",
            "speaker": {"kind": "audio", "media": audio_media, "chime": False},
        },
        text_bulletin("tb-chu-01"),
    ]
    doc_id = push(listener, signing_key, 7, bulletins)

    ack = outcome(listener, doc_id)
    assert ack["status"] == "done", ack
    statuses = [a["status"] for a in listener.acks(doc_id)]
    assert statuses == ["accepted", "done"], statuses
    assert "2 files to fetch" in listener.acks(doc_id)[0]["detail"]

    status = agent_status(device, cli=True)
    assert status["programs"] == {PROGRAM_TOPIC: 7}
    assert status["now"]["screen"] == "tb-anh-01", "the rotation's first bulletin is on screen"
    assert status["cache"]["items"] == 2
    assert status["cache"]["bytes"] == len(image) + len(audio)
    for data in (image, audio):
        path = cache_path(device.cache_dir, sha256_hex(data))
        assert path.read_bytes() == data, f"{path} is not the verified content"
    assert len(visible_files(device.cache_dir)) == 2
    assert len(media.requests_for("img/so-do.png")) == 1
    assert len(media.requests_for("audio/loa.mp3")) == 1


def test_mismatched_content_fails_and_the_old_program_stays_live(
    broker: Broker,
    device: Device,
    agent: AgentProcess,
    signing_key: SigningKey,
    media: MediaServer,
    listener: Listener,
) -> None:
    old = push(listener, signing_key, 1, [text_bulletin("tb-cu-01"), text_bulletin("tb-cu-02")])
    assert outcome(listener, old)["status"] == "done"
    wait_for(
        lambda: agent_status(device)["now"]["screen"] == "tb-cu-01", 5, "the old program to play"
    )

    # Served bytes that are not what the program signed: the declared sha256 is another's.
    tampered = blob(200_000, seed=3)
    declared = sha256_hex(blob(200_000, seed=4))
    bad_hash = media_doc(
        media.add("img/tampered.png", tampered), tampered, "image/png", sha256=declared
    )
    # The right hash, but the server's file is longer than the size the program signed.
    longer = blob(150_000, seed=5)
    bad_size = media_doc(
        media.add("img/longer.png", longer), longer, "image/png", size=len(longer) - 1000
    )
    good = blob(50_000, seed=6)
    good_media = media_doc(media.add("img/good.png", good), good, "image/png")

    expectations = [(2, bad_hash, "hash_mismatch"), (3, bad_size, "size_mismatch")]
    for version, bad, reason in expectations:
        doc_id = push(
            listener,
            signing_key,
            version,
            [image_bulletin("tb-tot-01", good_media), image_bulletin(f"tb-xau-{version}", bad)],
        )
        ack = outcome(listener, doc_id)
        assert (ack["status"], ack["reason"]) == ("failed", reason), ack

        status = agent_status(device, cli=True)
        assert status["programs"] == {PROGRAM_TOPIC: 1}, "the failed program went live"
        assert status["now"]["screen"] in ("tb-cu-01", "tb-cu-02")

    # The bad bytes never became visible: not at the declared hash, not at their own hash,
    # not anywhere outside the partial-download folder; and their parts were thrown away.
    for digest in (declared, sha256_hex(tampered), bad_size["sha256"], sha256_hex(longer)):
        assert not cache_path(device.cache_dir, digest).exists()
    visible = visible_files(device.cache_dir)
    assert visible == {cache_path(device.cache_dir, sha256_hex(good)): good}, sorted(visible)
    partial = device.cache_dir / ".partial"
    leftover = sorted(p.name for p in partial.iterdir()) if partial.exists() else []
    assert leftover == [], f"parts of rejected content were kept: {leftover}"

    # A failure blocks nothing: the next good version goes live.
    fixed = push(listener, signing_key, 4, [image_bulletin("tb-tot-01", good_media)])
    assert outcome(listener, fixed)["status"] == "done"
    status = agent_status(device)
    assert status["programs"] == {PROGRAM_TOPIC: 4}
    assert status["now"]["screen"] == "tb-tot-01"


def test_a_cut_download_resumes_with_a_byte_range(
    broker: Broker,
    device: Device,
    agent: AgentProcess,
    signing_key: SigningKey,
    media: MediaServer,
    listener: Listener,
) -> None:
    size = 3_000_000
    video = blob(size, seed=7)
    url = media.add("video/tiem-chung.mp4", video)
    cut_at = 1_234_567
    media.cut_after(cut_at)  # the first response dies part-way
    doc_id = push(
        listener,
        signing_key,
        1,
        [
            {
                "id": "tb-video-01",
                "title": "Hướng dẫn tiêm chủng",
                "screen": {
                    "kind": "video",
                    "media": media_doc(url, video, "video/mp4"),
                    "duration_ms": 60000,
                },
            }
        ],
    )
    ack = outcome(listener, doc_id, timeout=30)
    assert ack["status"] == "done", ack

    served = media.requests_for("video/tiem-chung.mp4")
    assert [s.status for s in served] == [200, 206], served
    assert served[0].range is None and served[0].bytes_sent == cut_at
    match = re.fullmatch(r"bytes=(\d+)-", served[1].range or "")
    assert match is not None, f"the second request asked for {served[1].range!r}"
    assert int(match[1]) == cut_at, "the resume did not start where the cut left off"
    total = media.sent("video/tiem-chung.mp4")
    assert total <= size * 1.01 + 4096, f"{total} bytes sent for a {size}-byte file"
    fetched = re.search(r"\((\d+) bytes fetched\)", ack["detail"])
    assert fetched is not None and int(fetched[1]) <= size * 1.01 + 4096, ack["detail"]

    assert cache_path(device.cache_dir, sha256_hex(video)).read_bytes() == video
    status = agent_status(device, cli=True)
    assert status["programs"] == {PROGRAM_TOPIC: 1}
    assert status["now"]["screen"] == "tb-video-01"


def test_device_and_group_programs_merge(
    broker: Broker,
    device: Device,
    agent: AgentProcess,
    signing_key: SigningKey,
    media: MediaServer,
    listener: Listener,
) -> None:
    district = f"{PREFIX}/grp/q10/program"
    quan = {**text_bulletin("tb-quan-01"), "screen": {"kind": "text", "text": "Quận 10"}}
    quan["screen"]["duration_ms"] = 1000
    topic, payload, doc = program(signing_key, 5, [quan], target="grp:q10")
    assert topic == district
    listener.publish(topic, payload, retain=True)
    assert outcome(listener, doc["id"])["status"] == "done"
    assert agent_status(device)["now"]["screen"] == "tb-quan-01"

    phuong = {**text_bulletin("tb-phuong-01"), "screen": {"kind": "text", "text": "Phường 12"}}
    phuong["screen"]["duration_ms"] = 1000
    own = push(listener, signing_key, 1, [phuong])
    assert outcome(listener, own)["status"] == "done"
    status = agent_status(device, cli=True)
    assert status["programs"] == {district: 5, PROGRAM_TOPIC: 1}

    # Both are in force: the rotation goes through the device's and the district's bulletins.
    def showing(bulletin_id: str) -> bool:
        return bool(agent_status(device)["now"]["screen"] == bulletin_id)

    for _ in range(2):
        for bulletin_id in ("tb-phuong-01", "tb-quan-01"):
            wait_for(partial(showing, bulletin_id), 4, f"{bulletin_id} on screen")


def test_a_newer_version_supersedes_a_pending_one(
    broker: Broker,
    device: Device,
    agent: AgentProcess,
    signing_key: SigningKey,
    media: MediaServer,
    listener: Listener,
) -> None:
    old = push(listener, signing_key, 1, [text_bulletin("tb-cu-01")])
    assert outcome(listener, old)["status"] == "done"

    slow = blob(400_000, seed=8)
    slow_media = media_doc(media.add("img/cham.png", slow), slow, "image/png")
    release = media.stall_after(100_000)
    pending = push(listener, signing_key, 2, [image_bulletin("tb-cho-01", slow_media)])
    wait_for(
        lambda: any(s.bytes_sent == 100_000 for s in media.requests_for("img/cham.png")),
        10,
        "the download to stall",
    )
    assert agent_status(device)["programs"] == {PROGRAM_TOPIC: 1}

    fresh = blob(50_000, seed=9)
    fresh_media = media_doc(media.add("img/moi.png", fresh), fresh, "image/png")
    newer = push(listener, signing_key, 3, [image_bulletin("tb-moi-01", fresh_media)])
    superseded = outcome(listener, pending)
    assert (superseded["status"], superseded["reason"]) == ("failed", "superseded"), superseded
    release.set()
    assert outcome(listener, newer)["status"] == "done"
    status = agent_status(device)
    assert status["programs"] == {PROGRAM_TOPIC: 3}
    assert status["now"]["screen"] == "tb-moi-01"
    assert [a["status"] for a in listener.acks(pending)] == ["accepted", "failed"]

"""CAP resources → bulletin media, fetched from a real local HTTP server, hashed and published."""

from __future__ import annotations

import base64
import hashlib
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from controlplane.cap import CapSettings, Ledger, Plan, plan_alert
from controlplane.cap.parse import Resource
from controlplane.cap.resources import ResourceError, media_mime, resource_bytes
from tests.unit.controlplane.conftest import NOW, MediaShelf, cap_file, make_settings

AUDIO = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 12  # an MP3's first bytes


def png(width: int = 2, height: int = 2) -> bytes:
    """A real PNG (red pixels), written by hand: signature, IHDR, IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


IMAGE = png()


class _Files(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Files.hits.append(self.path)
        body = _Files.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if not self.path.startswith("/stream"):  # /stream*: no length, ends when closed
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def media_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    _Files.files = {
        "/ban-tin.mp3": AUDIO,
        "/big.mp3": b"\x00" * 8192,
        "/stream-big.mp3": b"\x00" * 8192,
    }
    _Files.hits = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def document(
    media: str,
    audio_path: str = "/ban-tin.mp3",
    size: int | None = len(AUDIO),
    sha1: str | None = None,
    image_b64: str | None = None,
) -> bytes:
    doc = cap_file("alert-resources.xml")
    doc = doc.replace(b"@MEDIA@/ban-tin.mp3", (media + audio_path).encode())
    doc = doc.replace(b"@AUDIO_SHA1@", (sha1 or hashlib.sha1(AUDIO).hexdigest()).encode())
    doc = doc.replace(
        b"@IMAGE_B64@", (image_b64 or base64.encodebytes(IMAGE).decode("ascii")).encode()
    )
    if size is None:
        return doc.replace(b"<size>@AUDIO_SIZE@</size>", b"")
    return doc.replace(b"@AUDIO_SIZE@", str(size).encode())


def run(doc: bytes, shelf: MediaShelf | None, settings: CapSettings | None = None) -> Plan:
    with Ledger.open(":memory:") as ledger:
        return plan_alert(doc, settings or make_settings(), ledger, NOW, shelf)


def test_audio_by_uri_and_an_inline_image_become_hash_addressed_media(
    media_base: str, shelf: MediaShelf
) -> None:
    p = run(document(media_base), shelf)
    (cmd,) = p.commands
    assert cmd.type == "play.now"  # Moderate
    bulletin = cmd.body["bulletin"]
    speaker, screen = bulletin["speaker"], bulletin["screen"]
    assert speaker["kind"] == "audio"
    assert speaker["media"] == {
        "url": f"https://media.q10.example.vn/{hashlib.sha256(AUDIO).hexdigest()}",
        "sha256": hashlib.sha256(AUDIO).hexdigest(),
        "size": len(AUDIO),
        "mime": "audio/mpeg",
    }
    assert screen["kind"] == "image"
    assert screen["media"]["sha256"] == hashlib.sha256(IMAGE).hexdigest()
    assert screen["media"]["mime"] == "image/png"
    assert screen["text"].startswith("Đỉnh triều 1,75 m")  # kept for the emergency card
    assert shelf.files == {
        hashlib.sha256(AUDIO).hexdigest(): AUDIO,
        hashlib.sha256(IMAGE).hexdigest(): IMAGE,
    }
    assert _Files.hits == ["/ban-tin.mp3"]
    assert p.notes == ()


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"sha1": "0" * 40}, "its SHA-1 does not match the alert's digest"),
        ({"size": 17}, f"{len(AUDIO)} bytes, but the alert declares size 17"),
        ({"audio_path": "/missing.mp3"}, "answered HTTP 404"),
        ({"audio_path": "/big.mp3", "size": None}, "is 8192 bytes, over the limit 4096"),
        ({"audio_path": "/stream-big.mp3", "size": None}, "is over the limit of 4096 bytes"),
        ({"size": 1_000_000}, "declared size 1000000 bytes is over the limit 4096"),
    ],
)
def test_an_unusable_resource_leaves_speech_in_its_place(
    media_base: str, shelf: MediaShelf, kwargs: dict[str, Any], why: str
) -> None:
    settings = make_settings(max_resource_bytes=4096)
    p = run(document(media_base, **kwargs), shelf, settings)
    (cmd,) = p.commands  # a broken attachment never holds the warning back
    assert cmd.body["bulletin"]["speaker"]["kind"] == "tts"
    assert cmd.body["bulletin"]["screen"]["kind"] == "image"
    assert any(why in note for note in p.notes), p.notes
    assert hashlib.sha256(AUDIO).hexdigest() not in shelf.files


def test_an_emergency_does_not_wait_for_files_unless_configured(
    media_base: str, shelf: MediaShelf
) -> None:
    doc = document(media_base).replace(b"<severity>Moderate", b"<severity>Extreme")
    (cmd,) = run(doc, shelf).commands
    assert cmd.type == "emergency.start"
    assert cmd.body["bulletin"]["speaker"]["kind"] == "tts"
    assert cmd.body["bulletin"]["screen"]["kind"] == "text"
    assert _Files.hits == [] and shelf.files == {}
    (cmd,) = run(doc, shelf, make_settings(media_in_emergencies=True)).commands
    assert cmd.body["bulletin"]["speaker"]["kind"] == "audio"


def test_without_a_publisher_resources_are_left_out(media_base: str) -> None:
    p = run(document(media_base), None)
    assert p.commands[0].body["bulletin"]["speaker"]["kind"] == "tts"
    assert any("no media publisher" in note for note in p.notes)
    assert _Files.hits == []


def test_resource_bytes_checks_inline_files() -> None:
    def inline(text: str, mime: str = "image/png") -> Resource:
        return Resource("map", mime, None, None, text, None)

    assert resource_bytes(inline(base64.b64encode(IMAGE).decode()), 4096, 5) == IMAGE
    with pytest.raises(ResourceError, match="not base64"):
        resource_bytes(inline("*** not base64 ***"), 4096, 5)
    with pytest.raises(ResourceError, match="over the limit"):
        resource_bytes(inline(base64.b64encode(b"x" * 5000).decode()), 4096, 5)
    with pytest.raises(ResourceError, match="not an http"):
        resource_bytes(Resource("x", "audio/mpeg", None, "file:///etc/passwd", None, None), 4096, 5)
    assert media_mime(inline("", "Audio/MPEG; rate=44100")) == "audio/mpeg"
    assert media_mime(inline("", "not a mime")) is None

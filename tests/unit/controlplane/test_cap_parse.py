"""CAP 1.2 parsing: every element we read, and every bad document refused with nothing planned."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from lxml import etree

from controlplane.cap.parse import (
    DEFAULT_MAX_BYTES,
    Certainty,
    MsgType,
    Scope,
    Severity,
    Status,
    Urgency,
    parse_alert,
    read_alert,
    read_document,
    safe_parser,
)
from controlplane.cap.refusal import Refused
from tests.unit.controlplane.conftest import KTTV, cap_file


def test_every_element_of_an_alert_is_read() -> None:
    alert = parse_alert(cap_file("alert-flood.xml"))
    assert alert.identifier == "KTTV-2026-1126-001"
    assert alert.sender == KTTV
    assert alert.sent == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)  # +07:00 made UTC
    assert (alert.status, alert.msg_type, alert.scope) == (
        Status.ACTUAL,
        MsgType.ALERT,
        Scope.PUBLIC,
    )
    assert alert.references == ()
    en, vi = alert.infos
    assert (en.language, vi.language) == ("en-US", "vi-VN")
    assert vi.categories == ("Met",)
    assert vi.event == "Lũ quét"
    assert (vi.urgency, vi.severity, vi.certainty) == (
        Urgency.IMMEDIATE,
        Severity.SEVERE,
        Certainty.OBSERVED,
    )
    assert vi.onset == datetime(2026, 11, 26, 6, 30, tzinfo=UTC)
    assert vi.expires == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert vi.headline == "Cảnh báo lũ quét tại Quận 10 và Quận 1"
    assert vi.description is not None and vi.description.startswith("Mưa lớn 120 mm")
    assert vi.instruction == "Di chuyển lên tầng cao. Không đi qua đường ngập."
    ward, circle = vi.areas
    assert ward.description == "Phường 12, Quận 10"
    assert ward.geocodes == (("VN-DVHC", "27175"),)
    assert ward.polygons == () and ward.circles == ()
    assert circle.circles[0].lat == 10.7769
    assert circle.circles[0].lon == 106.7009
    assert circle.circles[0].radius_km == 1.0


def test_references_polygons_and_several_categories_are_read() -> None:
    update = parse_alert(cap_file("update-flood.xml"))
    assert update.msg_type == MsgType.UPDATE
    (ref,) = update.references
    assert (ref.sender, ref.identifier, ref.sent) == (
        KTTV,
        "KTTV-2026-1126-001",
        "2026-11-26T13:00:00+07:00",
    )
    (info,) = update.infos
    assert info.categories == ("Met", "Safety")
    assert info.onset is None
    (area,) = info.areas
    assert area.polygons[0][0] == (10.765, 106.660)  # CAP's own order: lat, lon
    assert len(area.polygons[0]) == 5
    cancel = parse_alert(cap_file("cancel-flood.xml"))
    assert [r.identifier for r in cancel.references] == [
        "KTTV-2026-1126-001",
        "KTTV-2026-1126-002",
    ]


def test_a_missing_language_is_the_schema_default() -> None:
    storm = parse_alert(cap_file("alert-storm-priority.xml"))
    assert [i.language for i in storm.infos] == ["en-US", "fr-FR"]


def test_resources_are_read() -> None:
    doc = (
        cap_file("alert-resources.xml")
        .replace(b"@MEDIA@", b"http://127.0.0.1:9")
        .replace(b"@AUDIO_SIZE@", b"42")
        .replace(b"@AUDIO_SHA1@", b"A" * 40)
        .replace(b"@IMAGE_B64@", b"aGVsbG8=")
    )
    audio, image = parse_alert(doc).infos[0].resources
    assert (audio.description, audio.mime, audio.size) == ("Bản tin âm thanh", "audio/mpeg", 42)
    assert audio.uri == "http://127.0.0.1:9/ban-tin.mp3"
    assert audio.digest == "a" * 40  # hex, compared in lower case
    assert (image.mime, image.deref, image.uri) == ("image/png", "aGVsbG8=", None)


# --------------------------------------------------------------------------- refused


def _refused(doc: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, str]:
    with pytest.raises(Refused) as caught:
        read_alert(read_document(doc, max_bytes))
    return caught.value.refusal.code, caught.value.refusal.message


@pytest.mark.parametrize(
    ("name", "code", "fragment"),
    [
        ("bad-not-well-formed.xml", "malformed", "not well-formed XML"),
        ("bad-billion-laughs.xml", "doctype", "DOCTYPE is not allowed"),
        ("bad-xxe-file.xml", "doctype", "DOCTYPE is not allowed"),
        ("bad-doctype.xml", "doctype", "no DTDs, no entities"),
        ("bad-cap11.xml", "wrong_namespace", "CAP 1.1 alert; only CAP 1.2"),
        ("bad-no-namespace.xml", "wrong_namespace", "root element is 'alert'"),
        ("bad-status.xml", "invalid", "cap:status"),
        ("bad-open-polygon.xml", "invalid", "info[1].area[1].polygon[0]: a polygon's first"),
        ("bad-identifier.xml", "invalid", "identifier: 'KTTV 2026,001' must not contain"),
    ],
)
def test_a_bad_document_is_refused_with_what_is_wrong(name: str, code: str, fragment: str) -> None:
    got_code, message = _refused(cap_file(name))
    assert got_code == code
    assert fragment in message
    assert "root:" not in message  # nothing of /etc/passwd ever shows


def test_the_schema_message_names_the_bad_value() -> None:
    _, message = _refused(cap_file("bad-status.xml"))
    assert message.startswith("not valid CAP 1.2: line 7: Element 'cap:status'")
    assert "'Real' is not an element of the set" in message


def test_an_oversized_document_is_refused_before_parsing() -> None:
    base = cap_file("alert-flood.xml")
    filler = b"M" * (1024 * 1024)
    big = base.replace(b"<note>", b"").replace(
        b"<scope>Public</scope>", b"<scope>Public</scope><note>" + filler + b"</note>"
    )
    code, message = _refused(big)
    assert code == "too_large"
    assert f"{len(big)} bytes; the limit is 1048576" in message
    code, _ = _refused(base, max_bytes=2048)
    assert code == "too_large"


def test_a_utf16_doctype_is_refused_too() -> None:
    doc = cap_file("bad-billion-laughs.xml").decode("utf-8")
    utf16 = doc.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    assert _refused(utf16)[0] == "doctype"


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        (b"<references>canhbao@kttv.gov.vn,KTTV-2026-1126-001,", b"<references>", "references:"),
        (b"10.765,106.660 10.765,106.668", b"10.765;106.660 10.765,106.668", "'lat,lon' pair"),
        (b"10.765,106.668 10.775", b"10.765,196.668 10.775", "outside WGS 84"),
        (b"<event>L\xc5\xa9 qu\xc3\xa9t</event>", b"<event> </event>", "event: must not be empty"),
    ],
)
def test_rules_beyond_the_schema_are_checked(old: bytes, new: bytes, fragment: str) -> None:
    doc = cap_file("update-flood.xml")
    assert old in doc
    code, message = _refused(doc.replace(old, new))
    assert code == "invalid"
    assert fragment in message


def test_a_bad_circle_is_refused() -> None:
    doc = cap_file("alert-flood.xml").replace(b"106.7009 1.0", b"106.7009 km")
    code, message = _refused(doc)
    assert (code, "radius 'km' is not a number" in message) == ("invalid", True)


# --------------------------------------------------------------------------- no network, ever


class _Counter(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Counter.hits.append(self.path)
        body = b'<!ENTITY secret "pwned">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def http_host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    _Counter.hits = []
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_an_external_entity_over_http_is_refused_and_never_fetched(http_host: str) -> None:
    doc = cap_file("bad-xxe-http.xml").replace(b"@HOST@", http_host.encode())
    assert _refused(doc)[0] == "doctype"
    # Even past the DOCTYPE check, the parser itself fetches nothing and expands nothing.
    root = etree.fromstring(doc, safe_parser())
    assert b"pwned" not in etree.tostring(root)
    assert _Counter.hits == []


def test_the_parser_itself_expands_no_file_entity() -> None:
    root = etree.fromstring(cap_file("bad-xxe-file.xml"), safe_parser())
    assert b"root:" not in etree.tostring(root)


def test_read_document_returns_the_validated_alert() -> None:
    root = read_document(cap_file("alert-flood.xml"))
    assert root.tag == "{urn:oasis:names:tc:emergency:cap:1.2}alert"

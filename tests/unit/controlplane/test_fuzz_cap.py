"""Fuzzing the CAP 1.2 parser (``controlplane.cap.parse.parse_alert``).

The valid alerts of tests/data/cap are changed element by element (text replaced, element
dropped, doubled or moved, a DOCTYPE or an entity put in) and byte by byte. Parsing raises
``Refused`` and nothing else, and an alert it returns keeps the rules of CAP 1.2 that the
rest of the intake relies on, checked again here on the XML itself.
"""

from __future__ import annotations

import contextlib
import copy
import re
from datetime import datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from controlplane.cap.parse import CAP_NS, Alert, parse_alert
from controlplane.cap.refusal import Refused
from tests import fuzzing
from tests.unit.controlplane.conftest import cap_file

NAME = "CAP 1.2 parser"
SAMPLES = [
    cap_file(name)
    for name in (
        "alert-flood.xml",
        "alert-storm-priority.xml",
        "alert-two-areas.xml",
        "cancel-flood.xml",
        "update-flood.xml",
    )
] + [
    cap_file("alert-resources.xml")  # a template: its resources filled in
    .replace(b"@MEDIA@", b"http://127.0.0.1:9")
    .replace(b"@AUDIO_SIZE@", b"42")
    .replace(b"@AUDIO_SHA1@", b"A" * 40)
    .replace(b"@IMAGE_B64@", b"aGVsbG8=")
]
TEXTS = st.text(max_size=30) | st.sampled_from(
    [
        "",
        " ",
        "Actual",
        "Exercise",
        "Alert",
        "Cancel",
        "Public",
        "Immediate",
        "Extreme",
        "Observed",
        "2026-11-26T13:00:00+07:00",
        "2026-11-26T13:00:00",
        "2026-13-45T25:61:00+07:00",
        "10.7,106.7 10.8,106.7 10.8,106.8 10.7,106.7",
        "10.7,106.7 10.8,106.7 10.8,106.8",
        "91,0 0,0 1,1 91,0",
        "10.7769,106.7009 1.0",
        "10.7769,106.7009 -1",
        "nan,nan 1",
        "a b,c,2026-11-26T13:00:00+07:00",
        "KTTV-2026 1126",
        "&amp;",
        "1e999",
    ]
)
DANGERS = [
    b'<!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    b'<!DOCTYPE alert SYSTEM "http://127.0.0.1:9/cap.dtd">',
    b"<?xml-stylesheet href='x'?>",
    b"\xef\xbb\xbf",
]


@st.composite
def tree_mutations(draw: st.DrawFn) -> bytes:
    root = etree.fromstring(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        elements = [el for el in root.iter() if isinstance(el.tag, str)]
        el = draw(st.sampled_from(elements))
        action = draw(st.sampled_from(["text", "text", "text", "drop", "double", "move", "rename"]))
        parent = el.getparent()
        if action == "text":
            with contextlib.suppress(ValueError):  # lxml refuses text XML cannot hold
                el.text = draw(TEXTS)
        elif action == "drop" and parent is not None:
            parent.remove(el)
        elif action == "double" and parent is not None:
            parent.insert(parent.index(el), copy.deepcopy(el))
        elif action == "move" and parent is not None:
            parent.remove(el)
            parent.insert(draw(st.integers(min_value=0, max_value=len(parent))), el)
        elif action == "rename":
            el.tag = draw(
                st.sampled_from(
                    [
                        f"{{{CAP_NS}}}info",
                        f"{{{CAP_NS}}}polygon",
                        "{urn:oasis:names:tc:emergency:cap:1.1}alert",
                        "alert",
                    ]
                )
            )
    data = etree.tostring(root, xml_declaration=draw(st.booleans()), encoding="UTF-8")
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        data = draw(st.sampled_from(DANGERS)) + data
    return bytes(data)


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not data:
            break
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        action = draw(st.sampled_from(["set", "delete", "insert", "truncate"]))
        if action == "set":
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif action == "delete":
            del data[at : at + draw(st.integers(min_value=1, max_value=16))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from(DANGERS))
        else:
            del data[at:]
    return bytes(data)


RESTRICTED = re.compile(r"[\s,<&]")


def alert_problems(alert: Alert, data: bytes) -> list[str]:
    """Rules of CAP 1.2 an accepted alert must keep, checked on the alert and its XML."""
    out = []
    if b"<!DOCTYPE" in data:
        out.append("a DOCTYPE was accepted")
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    if root.tag != f"{{{CAP_NS}}}alert":
        out.append(f"root {root.tag}")
    for field in ("identifier", "sender"):
        value: str = getattr(alert, field)
        if not value or RESTRICTED.search(value):
            out.append(field)
    moments: list[Any] = [alert.sent]
    for info in alert.infos:
        moments += [info.effective, info.onset, info.expires]
        for area in info.areas:
            for polygon in area.polygons:
                if len(polygon) < 4 or polygon[0] != polygon[-1]:
                    out.append("an open polygon")
                points = list(polygon)
                points += [(c.lat, c.lon) for c in area.circles]
                if not all(-90 <= lat <= 90 and -180 <= lon <= 180 for lat, lon in points):
                    out.append("a point outside WGS 84")
            if not all(0 <= c.radius_km <= 20_000 for c in area.circles):
                out.append("a radius")
    if not all(m is None or (isinstance(m, datetime) and m.tzinfo) for m in moments):
        out.append("a time without a zone")
    return out


def parse_and_check(data: bytes) -> None:
    try:
        alert = parse_alert(data)
    except Refused as exc:
        assert exc.refusal.code in {
            "too_large",
            "malformed",
            "doctype",
            "wrong_namespace",
            "invalid",
        }
        return
    fuzzing.accepted(NAME)
    assert alert_problems(alert, data) == [], (alert_problems(alert, data), data[:500])


@fuzzing.fuzz_settings(200)
@given(data=tree_mutations())
@fuzzing.target(NAME)
def test_cap_tree_mutations(data: bytes) -> None:
    parse_and_check(data)


@fuzzing.fuzz_settings(80)
@given(data=byte_mutations())
@fuzzing.target(NAME)
def test_cap_byte_mutations(data: bytes) -> None:
    parse_and_check(data)


@fuzzing.fuzz_settings(60)
@given(data=st.binary(max_size=400))
@fuzzing.target(NAME)
def test_cap_arbitrary_bytes(data: bytes) -> None:
    parse_and_check(data)


def test_cap_samples_are_accepted() -> None:
    """The oracle's other side: every sample parses and keeps the rules."""
    for data in SAMPLES:
        assert alert_problems(parse_alert(data), data) == []


def test_cap_memory_stayed_bounded() -> None:
    fuzzing.check_memory(NAME)

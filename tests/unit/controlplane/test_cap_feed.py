"""Atom and RSS feeds of CAP alerts → alert links; resource files stored by their hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from controlplane.cap.feed import FeedError, alert_links
from controlplane.media import MediaFolder

ATOM = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>KTTV</title>
  <entry><id>1</id><link rel="alternate" href="https://kttv.example/1.html"/>
    <link rel="alternate" type="application/cap+xml" href="/cap/1.xml"/></entry>
  <entry><id>2</id><link href="cap/2.xml"/></entry>
  <entry><id>3</id><link href="file:///etc/passwd"/></entry>
</feed>"""

RSS = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>PCTT</title>
  <item><title>a</title><link>https://pctt.example/a.xml</link></item>
  <item><title>b</title><enclosure url="https://pctt.example/b.xml" type="application/cap+xml"/>
    <link>https://pctt.example/b.html</link></item>
</channel></rss>"""


def test_an_atom_feed_gives_its_cap_links_resolved_against_the_feed() -> None:
    assert alert_links(ATOM, "https://kttv.example/feeds/atom.xml") == [
        "https://kttv.example/cap/1.xml",
        "https://kttv.example/feeds/cap/2.xml",
    ]


def test_an_rss_feed_gives_enclosures_before_links() -> None:
    assert alert_links(RSS, "https://pctt.example/rss") == [
        "https://pctt.example/a.xml",
        "https://pctt.example/b.xml",
    ]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY a "b">]><feed/>', "DOCTYPE"),
        (b"<feed", "not well-formed"),
        (b"<html/>", "neither an Atom feed nor RSS"),
    ],
)
def test_a_bad_feed_is_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(FeedError, match=fragment):
        alert_links(data, "https://kttv.example/feed")


def test_media_is_stored_once_by_its_hash_and_a_dry_run_stores_nothing(tmp_path: Path) -> None:
    data = b"\x89PNG not really"
    digest = hashlib.sha256(data).hexdigest()
    dry = MediaFolder(tmp_path / "media", "https://media.example/cap/", store=False)(
        data, "image/png"
    )
    assert not (tmp_path / "media").exists()
    media = MediaFolder(tmp_path / "media", "https://media.example/cap/")(data, "image/png")
    assert media == dry
    assert media.url == f"https://media.example/cap/{digest}" and media.size == len(data)
    assert (tmp_path / "media" / digest).read_bytes() == data
    assert [p.name for p in (tmp_path / "media").iterdir()] == [digest]

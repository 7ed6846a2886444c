"""Atom and RSS feeds of CAP alerts → the links of their alerts (``ttcs-control cap watch``).

A feed is parsed with the same hardened parser as alerts (no DTD, no entities, no network) and
refused with a DOCTYPE. An Atom ``entry`` gives its ``link`` of type ``application/cap+xml``
(else its first ``link``); an RSS ``item`` its ``enclosure`` or ``link``. Only http(s) links,
resolved against the feed's URL, in the order of the feed.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from lxml import etree

from controlplane.cap.parse import _has_doctype, safe_parser

ATOM = "{http://www.w3.org/2005/Atom}"
CAP_MIME = "application/cap+xml"


class FeedError(Exception):
    """A feed that cannot be read; the message says why."""


def alert_links(data: bytes, feed_url: str) -> list[str]:
    """The alert URLs of an Atom or RSS feed, oldest entries last as the feed lists them."""
    if _has_doctype(data):
        raise FeedError("a DOCTYPE is not allowed in a feed")
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise FeedError(f"not well-formed XML: {exc}") from None
    links: list[str] = []
    if root.tag == f"{ATOM}feed":
        for entry in root.iter(f"{ATOM}entry"):
            found = entry.findall(f"{ATOM}link")
            cap = [a for a in found if a.get("type") == CAP_MIME] or found[:1]
            links += [str(a.get("href")) for a in cap if a.get("href")]
    elif root.tag == "rss":
        for item in root.iter("item"):
            enclosure = item.find("enclosure")
            link = item.find("link")
            if enclosure is not None and enclosure.get("url"):
                links.append(str(enclosure.get("url")))
            elif link is not None and link.text:
                links.append(link.text.strip())
    else:
        raise FeedError(f"neither an Atom feed nor RSS (root element {root.tag!r})")
    resolved = [urljoin(feed_url, link) for link in links]
    return [u for u in resolved if urlsplit(u).scheme in ("http", "https")]

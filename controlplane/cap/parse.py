"""CAP 1.2 documents: hardened parsing, validation against the OASIS schema, and typed reading.

A document is refused (``Refused``), in this order, when it is larger than the configured
limit, holds a DOCTYPE (so no entity and no DTD is ever expanded or fetched), is not
well-formed, is not a CAP 1.2 ``alert``, does not validate against ``schema/CAP-v1.2.xsd``, or
breaks a rule of the standard that the schema cannot express (spaces in ``identifier``, an open
polygon, …). Only this module imports lxml's parser; ``read_alert`` turns a validated element
into frozen dataclasses, so nothing downstream touches XML.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from importlib import resources

from lxml import etree

from controlplane.cap.refusal import Refused

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"cap": CAP_NS}
DEFAULT_MAX_BYTES = 1024 * 1024
_ALERT = f"{{{CAP_NS}}}alert"
# CAP 1.2, identifier and sender: "MUST NOT include spaces, commas or restricted characters".
_RESTRICTED = re.compile(r"[\s,<&]")
_DOCTYPE = "<!DOCTYPE"
_LINE = re.compile(r"^(.*), line (\d+)$", re.DOTALL)
_OTHER_CAP = re.compile(r"^\{urn:oasis:names:tc:emergency:cap:(1\.[01])\}alert$")


class Status(StrEnum):
    """``status``: who the alert is for."""

    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    SYSTEM = "System"
    TEST = "Test"
    DRAFT = "Draft"


class MsgType(StrEnum):
    """``msgType``: what the alert does to earlier ones."""

    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"
    ACK = "Ack"
    ERROR = "Error"


class Scope(StrEnum):
    """``scope``: who may receive the alert."""

    PUBLIC = "Public"
    RESTRICTED = "Restricted"
    PRIVATE = "Private"


class Urgency(StrEnum):
    IMMEDIATE = "Immediate"
    EXPECTED = "Expected"
    FUTURE = "Future"
    PAST = "Past"
    UNKNOWN = "Unknown"


class Severity(StrEnum):
    EXTREME = "Extreme"
    SEVERE = "Severe"
    MODERATE = "Moderate"
    MINOR = "Minor"
    UNKNOWN = "Unknown"


class Certainty(StrEnum):
    OBSERVED = "Observed"
    LIKELY = "Likely"
    POSSIBLE = "Possible"
    UNLIKELY = "Unlikely"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class Reference:
    """One ``sender,identifier,sent`` triple of ``references``."""

    sender: str
    identifier: str
    sent: str


@dataclass(frozen=True)
class Resource:
    """A ``resource``: a file by ``uri`` or inline (``derefUri``, base64)."""

    description: str
    mime: str
    size: int | None
    uri: str | None
    deref: str | None
    digest: str | None  # SHA-1, hex, in CAP 1.2


@dataclass(frozen=True)
class Circle:
    """A ``circle``: centre (WGS 84) and radius in kilometres."""

    lat: float
    lon: float
    radius_km: float


Point = tuple[float, float]  # (lat, lon), CAP's own order


@dataclass(frozen=True)
class Area:
    """An ``area``: its description and whatever locates it."""

    description: str
    polygons: tuple[tuple[Point, ...], ...]
    circles: tuple[Circle, ...]
    geocodes: tuple[tuple[str, str], ...]  # (valueName, value)


@dataclass(frozen=True)
class Info:
    """One ``info`` block: the alert in one language."""

    language: str
    categories: tuple[str, ...]
    event: str
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    effective: datetime | None
    onset: datetime | None
    expires: datetime | None
    headline: str | None
    description: str | None
    instruction: str | None
    resources: tuple[Resource, ...]
    areas: tuple[Area, ...]


@dataclass(frozen=True)
class Alert:
    """A CAP 1.2 ``alert`` as read from a valid document."""

    identifier: str
    sender: str
    sent: datetime
    status: Status
    msg_type: MsgType
    scope: Scope
    references: tuple[Reference, ...]
    infos: tuple[Info, ...]


# --------------------------------------------------------------------------- the document


def _parser() -> etree.XMLParser:
    # No entity is substituted, no DTD loaded, nothing fetched from the network, and libxml2's
    # own limits on text and depth stay on (huge_tree=False). A DOCTYPE is refused anyway.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_pis=True,
    )


# One parser per thread: lxml parsers keep state and are not safe to share between threads.
_local = threading.local()


def safe_parser() -> etree.XMLParser:
    """This thread's hardened parser (also handed to the XML Signature verifier)."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = _parser()
    return parser


@cache
def _schema() -> etree.XMLSchema:
    source = resources.files("controlplane.cap").joinpath("schema", "CAP-v1.2.xsd").read_bytes()
    return etree.XMLSchema(etree.fromstring(source, _parser()))


# The one XMLSchema object keeps the error log of its last validation: one validation at a time.
_schema_lock = threading.Lock()


def _has_doctype(data: bytes) -> bool:
    # Checked on the bytes, before libxml2 sees the internal subset (where a billion-laughs
    # document does its damage), in UTF-8/ASCII and both UTF-16 byte orders. The parsed
    # tree's docinfo is checked again afterwards for any other encoding.
    return any(
        _DOCTYPE.encode(encoding) in data for encoding in ("ascii", "utf-16-le", "utf-16-be")
    )


def _readable(message: str) -> str:
    return message.replace(f"{{{CAP_NS}}}", "cap:").replace(f"{{{DSIG_NS}}}", "ds:")


def read_document(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse and validate a CAP 1.2 document; its root ``alert`` element, or ``Refused``."""
    if len(data) > max_bytes:
        raise Refused("too_large", f"the document is {len(data)} bytes; the limit is {max_bytes}")
    if _has_doctype(data):
        raise Refused("doctype", "a DOCTYPE is not allowed in a CAP alert (no DTDs, no entities)")
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise Refused("malformed", f"not well-formed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise Refused("doctype", "a DOCTYPE is not allowed in a CAP alert (no DTDs, no entities)")
    if root.tag != _ALERT:
        other = _OTHER_CAP.match(str(root.tag))
        if other:
            raise Refused(
                "wrong_namespace", f"this is a CAP {other.group(1)} alert; only CAP 1.2 is read"
            )
        raise Refused(
            "wrong_namespace",
            f"the root element is {_readable(str(root.tag))!r}, not a CAP 1.2 alert "
            f"({{{CAP_NS}}}alert)",
        )
    schema = _schema()
    try:
        with _schema_lock:
            schema.assertValid(root)
    except etree.DocumentInvalid as exc:
        # libxml2's first error, "Element '{ns}status': … , line 7", told line first.
        text = _readable(str(exc))
        where = _LINE.match(text)
        if where:
            text = f"line {where.group(2)}: {where.group(1)}"
        raise Refused("invalid", f"not valid CAP 1.2: {text}") from None
    return root


def parse_alert(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Alert:
    """``read_alert(read_document(data))``: for callers that do not check signatures."""
    return read_alert(read_document(data, max_bytes))


def has_signature(root: etree._Element) -> bool:
    """Whether the alert carries an XML Signature (``ds:Signature``, a child of ``alert``)."""
    return root.find(f"{{{DSIG_NS}}}Signature") is not None


# --------------------------------------------------------------------------- reading


def read_alert(root: etree._Element) -> Alert:
    """The typed alert of a validated ``alert`` element; ``Refused`` (``invalid``) on rules of
    the standard that the schema does not express."""
    identifier = _token(_text(root, "cap:identifier"), "identifier")
    sender = _token(_text(root, "cap:sender"), "sender")
    return Alert(
        identifier=identifier,
        sender=sender,
        sent=_time(_text(root, "cap:sent"), "sent"),
        status=Status(_text(root, "cap:status")),
        msg_type=MsgType(_text(root, "cap:msgType")),
        scope=Scope(_text(root, "cap:scope")),
        references=_references(_optional(root, "cap:references")),
        infos=tuple(_info(el, f"info[{i}]") for i, el in enumerate(root.iterfind("cap:info", NS))),
    )


def _info(el: etree._Element, where: str) -> Info:
    return Info(
        language=_optional(el, "cap:language") or "en-US",  # the schema's default
        categories=tuple(_strip(c.text) for c in el.iterfind("cap:category", NS)),
        event=_required(el, "cap:event", f"{where}.event"),
        urgency=Urgency(_text(el, "cap:urgency")),
        severity=Severity(_text(el, "cap:severity")),
        certainty=Certainty(_text(el, "cap:certainty")),
        effective=_maybe_time(el, "cap:effective", f"{where}.effective"),
        onset=_maybe_time(el, "cap:onset", f"{where}.onset"),
        expires=_maybe_time(el, "cap:expires", f"{where}.expires"),
        headline=_optional(el, "cap:headline"),
        description=_optional(el, "cap:description"),
        instruction=_optional(el, "cap:instruction"),
        resources=tuple(_resource(r) for r in el.iterfind("cap:resource", NS)),
        areas=tuple(
            _area(a, f"{where}.area[{i}]") for i, a in enumerate(el.iterfind("cap:area", NS))
        ),
    )


def _resource(el: etree._Element) -> Resource:
    size = _optional(el, "cap:size")
    return Resource(
        description=_text(el, "cap:resourceDesc"),
        mime=_text(el, "cap:mimeType").lower(),
        size=int(size) if size is not None else None,
        uri=_optional(el, "cap:uri"),
        deref=_optional(el, "cap:derefUri"),
        digest=(_optional(el, "cap:digest") or "").lower() or None,
    )


def _area(el: etree._Element, where: str) -> Area:
    return Area(
        description=_text(el, "cap:areaDesc"),
        polygons=tuple(
            _polygon(_strip(p.text), f"{where}.polygon[{i}]")
            for i, p in enumerate(el.iterfind("cap:polygon", NS))
        ),
        circles=tuple(
            _circle(_strip(c.text), f"{where}.circle[{i}]")
            for i, c in enumerate(el.iterfind("cap:circle", NS))
        ),
        geocodes=tuple(
            (_text(g, "cap:valueName"), _text(g, "cap:value"))
            for g in el.iterfind("cap:geocode", NS)
        ),
    )


def _point(pair: str, where: str) -> Point:
    lat_s, comma, lon_s = pair.partition(",")
    try:
        if not comma:
            raise ValueError
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise Refused("invalid", f"{where}: {pair!r} is not a 'lat,lon' pair") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise Refused("invalid", f"{where}: {pair!r} is outside WGS 84 (lat ±90, lon ±180)")
    return lat, lon


def _polygon(text: str, where: str) -> tuple[Point, ...]:
    points = tuple(_point(pair, where) for pair in text.split())
    if len(points) < 4:
        raise Refused(
            "invalid", f"{where}: a polygon needs at least 4 points, this has {len(points)}"
        )
    if points[0] != points[-1]:
        raise Refused("invalid", f"{where}: a polygon's first and last points must be the same")
    return points


def _circle(text: str, where: str) -> Circle:
    parts = text.split()
    if len(parts) != 2:
        raise Refused("invalid", f"{where}: {text!r} is not 'lat,lon radius_km'")
    lat, lon = _point(parts[0], where)
    try:
        radius = float(parts[1])
    except ValueError:
        raise Refused("invalid", f"{where}: radius {parts[1]!r} is not a number") from None
    if not 0 <= radius <= 20_000:
        raise Refused("invalid", f"{where}: radius {parts[1]} km is out of range")
    return Circle(lat, lon, radius)


def _references(text: str | None) -> tuple[Reference, ...]:
    if text is None:
        return ()
    refs = []
    for triple in text.split():
        parts = triple.split(",")
        if len(parts) != 3 or not all(parts):
            raise Refused("invalid", f"references: {triple!r} is not 'sender,identifier,sent'")
        _time(parts[2], "references")
        refs.append(Reference(parts[0], parts[1], parts[2]))
    return tuple(refs)


def _strip(text: str | None) -> str:
    return (text or "").strip()


def _text(el: etree._Element, path: str) -> str:
    # Elements that the schema requires; their text may still be empty.
    return _strip(el.findtext(path, namespaces=NS))


def _optional(el: etree._Element, path: str) -> str | None:
    return _text(el, path) or None


def _required(el: etree._Element, path: str, where: str) -> str:
    value = _text(el, path)
    if not value:
        raise Refused("invalid", f"{where}: must not be empty")
    return value


def _token(value: str, where: str) -> str:
    if not value:
        raise Refused("invalid", f"{where}: must not be empty")
    if _RESTRICTED.search(value):
        raise Refused("invalid", f"{where}: {value!r} must not contain spaces, commas, < or &")
    return value


def _time(value: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Refused("invalid", f"{where}: {value!r} is not a CAP date and time") from None
    if moment.tzinfo is None:
        raise Refused("invalid", f"{where}: {value!r} has no time zone offset")
    return moment.astimezone(UTC)


def _maybe_time(el: etree._Element, path: str, where: str) -> datetime | None:
    value = _optional(el, path)
    return _time(value, where) if value is not None else None

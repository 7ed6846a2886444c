"""CAP ``resource`` files → bulletin media (the only module of the package that uses requests).

Devices fetch only hash-addressed media (``sha256`` and ``size`` signed in the command), while
CAP 1.2 gives a ``uri`` (or the file inline, base64, in ``derefUri``) and at most a SHA-1
``digest``. So the control plane takes the file itself, within ``max_resource_bytes``, checks
the declared ``size`` and ``digest`` when there are any, and hands the bytes to the caller's
``publish_media(data, mime) -> Media``, which stores them where devices fetch program content
and returns their ``Media`` (url, sha256, size, mime).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable

import requests

from controlplane.cap.parse import Resource
from protocol import Media

PublishMedia = Callable[[bytes, str], Media]
"""Store a file where devices fetch content; return its ``Media``. Supplied by the caller."""

_MIME = re.compile(r"^[a-z]+/[A-Za-z0-9.+-]+$")  # what a Media's mime may be
_CHUNK = 64 * 1024


class ResourceError(Exception):
    """A resource that cannot be used; the message says why."""


def media_mime(resource: Resource) -> str | None:
    """The resource's MIME type without parameters, if a Media can carry it."""
    mime = resource.mime.split(";", 1)[0].strip().lower()
    return mime if _MIME.match(mime) else None


def resource_bytes(resource: Resource, max_bytes: int, timeout_s: float) -> bytes:
    """The resource's file, from ``derefUri`` or its http(s) ``uri``, checked; else
    ``ResourceError``."""
    if resource.size is not None and resource.size > max_bytes:
        raise ResourceError(f"declared size {resource.size} bytes is over the limit {max_bytes}")
    if resource.deref is not None:
        data = _inline(resource.deref, max_bytes)
    elif resource.uri is not None:
        data = _download(resource.uri, max_bytes, timeout_s)
    else:
        raise ResourceError("neither uri nor derefUri")
    if resource.size is not None and resource.size != len(data):
        raise ResourceError(f"{len(data)} bytes, but the alert declares size {resource.size}")
    if resource.digest is not None and hashlib.sha1(data).hexdigest() != resource.digest:  # noqa: S324 - CAP 1.2's digest is SHA-1; checked, not trusted
        raise ResourceError("its SHA-1 does not match the alert's digest")
    return data


def _inline(text: str, max_bytes: int) -> bytes:
    compact = "".join(text.split())
    if len(compact) * 3 // 4 > max_bytes + 2:  # checked before decoding anything
        raise ResourceError(f"derefUri is over the limit of {max_bytes} bytes")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ResourceError("derefUri is not base64") from None
    if len(data) > max_bytes:
        raise ResourceError(f"derefUri is over the limit of {max_bytes} bytes")
    return data


def _download(uri: str, max_bytes: int, timeout_s: float) -> bytes:
    if not uri.lower().startswith(("http://", "https://")):
        raise ResourceError(f"{uri!r} is not an http(s) URI")
    try:
        with requests.get(uri, stream=True, timeout=timeout_s) as response:
            if response.status_code != 200:
                raise ResourceError(f"{uri} answered HTTP {response.status_code}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ResourceError(f"{uri} is {declared} bytes, over the limit {max_bytes}")
            body = bytearray()
            for chunk in response.iter_content(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise ResourceError(f"{uri} is over the limit of {max_bytes} bytes")
            return bytes(body)
    except requests.RequestException as exc:
        raise ResourceError(f"cannot fetch {uri}: {type(exc).__name__}") from None

"""The eleven checks of PROTOCOL.md, in order; the first failure decides the reason.

Checks 1–9 depend only on the bytes, the trusted keys, the device identity and the clock.
Checks 10 (duplicate) and 11 (stale) ask the store, through the small ``History`` interface.
Nothing here executes anything or changes any state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from protocol import (
    DOC_ID_RE,
    Envelope,
    ProgramBody,
    Topics,
    describe_error,
    find_float,
    parse_time,
)
from protocol.signing import signature_valid

FUTURE_SKEW = timedelta(seconds=300)
MAX_DETAIL = 200
# Documents of the protocol nest about 7 levels deep. A fixed limit keeps every later step
# (canonical JSON for the signature, the float scan) far from Python's recursion limit, which a
# crafted payload could otherwise hit after json.loads succeeded, whatever its signature.
MAX_DEPTH = 32
# JSON may escape a lone surrogate (\ud800); such a string is not Unicode text and has no
# UTF-8 form, so it cannot be part of a signing input.
_SURROGATE = re.compile("[\ud800-\udfff]")


class History(Protocol):
    """What the verifier needs to know about documents already handled."""

    def seen(self, doc_id: str) -> bool: ...

    def program_version(self, topic: str) -> int | None: ...


@dataclass(frozen=True)
class Rejection:
    """Why a document was refused: a reason code of PROTOCOL.md and a detail for people."""

    reason: str
    detail: str
    doc_id: str | None


@dataclass(frozen=True)
class Accepted:
    """A document that passed every check."""

    envelope: Envelope
    topic: str


def _not_text_json(value: Any) -> str | None:
    """Why parsed JSON cannot be a document (too deep, not Unicode text), without recursing."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "a string holds a lone surrogate, which is not UTF-8 text"
            continue
        if isinstance(item, dict):
            children: Iterable[Any] = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        stack.extend((child, depth + 1) for child in children)
    return None


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


class Verifier:
    """Verifies inbound documents for one device."""

    def __init__(
        self,
        device_id: str,
        groups: Iterable[str],
        keys: dict[str, Ed25519PublicKey],
        topics: Topics,
        history: History,
        clock: Callable[[], datetime],
        max_payload_bytes: int = 262144,
    ) -> None:
        self.device_id = device_id
        self.groups = frozenset(groups)
        self.keys = dict(keys)
        self.topics = topics
        self.history = history
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes

    def set_keys(self, keys: dict[str, Ed25519PublicKey]) -> None:
        self.keys = dict(keys)

    def verify(self, topic: str, payload: bytes) -> Accepted | Rejection:
        """Run the checks in the order of PROTOCOL.md."""
        result = self._check(topic, payload)
        if isinstance(result, Rejection) and len(result.detail) > MAX_DETAIL:
            # Details quote unauthenticated input: keep acks and log lines small.
            return Rejection(result.reason, result.detail[:MAX_DETAIL] + "…", result.doc_id)
        return result

    def _check(self, topic: str, payload: bytes) -> Accepted | Rejection:
        # 1. size
        if len(payload) > self.max_payload_bytes:
            return Rejection("too_large", f"{len(payload)} bytes > {self.max_payload_bytes}", None)
        # 2. UTF-8 JSON object
        try:
            doc = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return Rejection("malformed", f"not UTF-8 JSON: {exc}"[:200], None)
        if not isinstance(doc, dict):
            return Rejection("malformed", "not a JSON object", None)
        problem = _not_text_json(doc)
        if problem:
            return Rejection("malformed", problem, None)
        raw_id = doc.get("id")
        doc_id = raw_id if isinstance(raw_id, str) and DOC_ID_RE.match(raw_id) else None
        # 3. version
        if doc.get("v") != 1 or isinstance(doc.get("v"), bool):
            return Rejection("unsupported_version", f"v={doc.get('v')!r}", doc_id)
        # 4. key
        kid = doc.get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            return Rejection("unknown_key", f"kid={str(kid)[:64]!r} is not trusted", doc_id)
        # 5. signature
        if not signature_valid(doc, key):
            return Rejection("bad_signature", f"signature does not verify with kid={kid}", doc_id)
        # 6. schema
        where = find_float(doc)
        if where:
            return Rejection("invalid", f"{where}: floating-point numbers are not allowed", doc_id)
        try:
            env = Envelope.model_validate(doc)
        except ValidationError as exc:
            return Rejection("invalid", describe_error(exc), doc_id)
        # 7. target and topic
        arrived = self.topics.parse_inbound(topic)
        leaf = "program" if env.is_program else "cmd"
        if not self._addressed_to_me(env.target):
            return Rejection(
                "wrong_target", f"{env.target} is not this device or its groups", env.id
            )
        if arrived != (env.target, leaf):
            return Rejection(
                "wrong_target", f"{env.type} for {env.target} arrived on {topic}", env.id
            )
        # 8. from the future
        now = self.clock()
        if parse_time(env.issued_at) > now + FUTURE_SKEW:
            return Rejection(
                "from_future", f"issued_at {env.issued_at} is ahead of the clock", env.id
            )
        # 9. expired
        if env.expires_at is not None and parse_time(env.expires_at) <= now:
            return Rejection("expired", f"expired at {env.expires_at}", env.id)
        # 10. duplicate
        if self.history.seen(env.id):
            return Rejection("duplicate", "already handled", env.id)
        # 11. stale program
        if isinstance(env.body, ProgramBody):
            last = self.history.program_version(topic)
            if last is not None and env.body.version <= last:
                return Rejection("stale", f"version {env.body.version} <= applied {last}", env.id)
        return Accepted(env, topic)

    def _addressed_to_me(self, target: str) -> bool:
        kind, _, name = target.partition(":")
        return (kind == "dev" and name == self.device_id) or (kind == "grp" and name in self.groups)

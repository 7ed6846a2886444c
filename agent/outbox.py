"""What the device says: acks and events, written to the store's outbox in one transaction
with the state change they report. The courier later hands them to the broker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from agent.logs import Redactor
from agent.store import Settings, Store
from protocol import Ack, Event, Status, Topics, format_time

Seen = tuple[str, float]
Message = tuple[str, str, bytes, int]  # (kind, topic, payload, qos)


class Outbox:
    """Writes a device's acks and events (any thread that owns the store's writes)."""

    def __init__(
        self,
        store: Store,
        topics: Topics,
        device_id: str,
        clock: Callable[[], datetime],
        redactor: Redactor,
    ) -> None:
        self.store = store
        self.topics = topics
        self.device_id = device_id
        self.clock = clock
        self.redactor = redactor
        # Called once an ack is durable (the director hands it to the link at once, before
        # the work that follows it, such as the playback reconcile and its play-log writes).
        self.after_ack: Callable[[], None] | None = None

    def topic(self, leaf: str) -> str:
        """This device's ``dev/{device}/{leaf}`` topic."""
        return self.topics.dev(self.device_id, leaf)

    def ack(
        self,
        doc_id: str | None,
        status: Status,
        reason: str | None = None,
        detail: str = "",
        *,
        topic: str | None = None,
        seen: Seen | None = None,
        settings: Settings | None = None,
        extra: list[Message] | None = None,
        **changes: Any,
    ) -> Ack:
        """Write an ack (with any state change it reports) to the outbox in one transaction.

        ``changes`` are further ``Store.record`` arguments (programs going live, play-log
        entries, for example); ``extra`` messages (a screenshot, logs) leave with the ack.
        """
        ack = Ack(
            cmd=doc_id,
            status=status,
            reason=reason,
            detail=detail[:500],
            at=format_time(self.clock()),
            topic=topic if doc_id is None else None,
        )
        messages = [*(extra or []), ("ack", self.topic("ack"), ack.payload(), 1)]
        self.store.record(
            seen=seen,
            settings=settings,
            messages=messages,
            now=self.clock().timestamp(),
            **changes,
        )
        if self.after_ack is not None:
            self.after_ack()
        return ack

    def event(self, severity: str, code: str, detail: str) -> None:
        """Queue an event for a person's attention (secrets redacted, detail bounded)."""
        event = Event(
            at=format_time(self.clock()),
            severity="error" if severity == "error" else "warning",
            code=code,
            detail=self.redactor(detail)[:1000],
        )
        now = self.clock().timestamp()
        self.store.enqueue("event", self.topic("event"), event.payload(), 1, now)

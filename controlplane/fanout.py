"""The operator's fan-out view: who a command went to, what each device answered, and who did not.

The members of a target come from the retained ``state`` topics (a device names its groups in
its birth message) or, with ``--db``, from the control plane's store, which also knows the
groups of devices now offline (their retained state is the last will, which names none). Their
last-seen time is the retained ``status`` (``at``) or the store's ``last_seen_ms``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from controlplane.errors import ControlError
from controlplane.session import json_object
from protocol import format_time

COUNTED = ("done", "failed", "rejected", "duplicate")
_BAR = 24


@dataclass
class Member:
    """A device the target reaches, as last seen."""

    device: str
    online: bool | None = None
    last_seen: str | None = None


def store_members(url: str, target: str) -> dict[str, Member]:
    """The devices of ``target`` the control plane's store knows, online or not."""
    # Imported here: a send without --db does not load the database stack.
    from controlplane.db import DatabaseError
    from controlplane.migrations import SchemaError
    from controlplane.store import Store

    kind, name = target.split(":", 1)
    members: dict[str, Member] = {}
    try:
        with Store.open(url) as store, store.db.transaction() as tx:
            rows = tx.rows("SELECT device, groups, online, last_seen_ms FROM devices")
    except (DatabaseError, SchemaError, ValueError) as exc:
        raise ControlError(f"cannot read the store: {exc}") from None
    for device, groups, online, last_seen_ms in rows:
        named = json.loads(groups) if groups else []
        if (kind == "dev" and device == name) or (kind == "grp" and name in named):
            seen = format_time(int(last_seen_ms) / 1000) if last_seen_ms else None
            members[device] = Member(device, None if online is None else bool(online), seen)
    return members


class FanOut:
    """The answers to one command from the devices of its target, as they arrive."""

    def __init__(
        self, doc_id: str, target: str, members: Mapping[str, Member] | None = None
    ) -> None:
        self.doc_id = doc_id
        self.kind, self.name = target.split(":", 1)
        self.members: dict[str, Member] = dict(members or {})
        if self.kind == "dev":
            self.members.setdefault(self.name, Member(self.name))
        self.finals: dict[str, str] = {}
        self.acks: dict[str, dict[str, Any]] = {}
        self._status_at: dict[str, str] = {}  # any device's retained status, member or not yet

    def take(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        """Read one message; return the ack if it is one of this command's."""
        device, leaf = topic.split("/")[-2:]
        data = json_object(payload)
        if data is None:
            return None
        if leaf == "state":
            groups = data.get("groups")
            if self.kind == "grp" and isinstance(groups, list) and self.name in groups:
                member = self.members.setdefault(device, Member(device))
                member.online = data.get("online") is True
            elif device in self.members and data.get("online") is False:
                self.members[device].online = False  # the last will of a member
        elif leaf == "status" and isinstance(data.get("at"), str):
            self._status_at[device] = str(data["at"])
        elif leaf == "ack" and data.get("cmd") == self.doc_id:
            status = str(data.get("status"))
            self.acks[device] = data
            if status in COUNTED:
                # The first final ack counts: a later "duplicate" (a redelivery) keeps "done".
                self.finals.setdefault(device, status)
            self.members.setdefault(device, Member(device))
            return data
        return None

    def last_seen(self, device: str) -> str | None:
        """When ``device`` was last seen: its retained status, else what the store said."""
        return self._status_at.get(device) or self.members[device].last_seen

    def waiting(self) -> list[str]:
        """The members that have not answered finally, by id."""
        return sorted(set(self.members) - set(self.finals))

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(COUNTED, 0)
        for status in self.finals.values():
            counts[status] += 1
        counts["waiting"] = len(self.waiting())
        return counts

    def complete(self) -> bool:
        return bool(self.members) and not self.waiting()

    def progress(self, elapsed_s: float) -> str:
        """One line: a bar of the answered share and the counts."""
        return progress_line([self], elapsed_s)

    def unanswered_table(self) -> list[str]:
        """The devices that did not answer, with whether they are online and when last seen."""
        rows = [("DEVICE", "ONLINE", "LAST SEEN")]
        for device in self.waiting():
            m = self.members[device]
            online = "?" if m.online is None else ("yes" if m.online else "NO")
            rows.append((device, online, self.last_seen(device) or "never"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "cmd": self.doc_id,
            "target": f"{self.kind}:{self.name}",
            "counts": self.counts(),
            "acks": {
                d: {k: a.get(k) for k in ("status", "reason", "detail", "at")}
                for d, a in sorted(self.acks.items())
            },
            "unanswered": [
                {
                    "device": d,
                    "online": self.members[d].online,
                    "last_seen": self.last_seen(d),
                }
                for d in self.waiting()
            ],
        }


def progress_line(fans: list[FanOut], elapsed_s: float) -> str:
    """One line for one or more commands: a bar of the answered share and the counts."""
    c = dict.fromkeys((*COUNTED, "waiting"), 0)
    total = 0
    for fan in fans:
        for key, value in fan.counts().items():
            c[key] += value
        total += len(fan.members)
    filled = round(_BAR * (total - c["waiting"]) / total) if total else 0
    return (
        f"[{'#' * filled}{'.' * (_BAR - filled)}] {c['done']} done, {c['failed']} failed, "
        f"{c['rejected']} rejected, {c['waiting']} waiting of {total} ({elapsed_s:.1f} s)"
    )


class Progress:
    """The live progress line on stderr: redrawn in place on a terminal; elsewhere (a log, a
    pipe) a line when the counts change, at most once a second."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.tty = out.isatty()
        self._last = ""
        self._at = -1.0

    def show(self, line: str, elapsed_s: float, final: bool = False) -> None:
        """Show ``line`` (``progress_line``: the counts, then the elapsed time in brackets)."""
        counts = line.rsplit(" (", 1)[0]
        if self.tty:
            self.out.write(f"\r{line}\x1b[K" + ("\n" if final else ""))
        elif final or (counts != self._last and elapsed_s - self._at >= 1.0):
            self.out.write(line + "\n")
            self._at = elapsed_s
        else:
            return
        self._last = counts
        self.out.flush()

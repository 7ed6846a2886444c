"""``plan_alert``: a CAP document in, exactly what to send to whom out (or why nothing).

Planning sends nothing and records nothing. The caller signs and publishes the plan's
commands, in order, on one MQTT connection (per topic, QoS 1 keeps that order, which an
Update relies on: the new emergency starts before the old one stops), then calls
``Ledger.record(plan, now)``. The steps and their refusals, in order, are in ``docs/cap.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from controlplane.cap.areas import groups_for_areas
from controlplane.cap.ledger import LedgerView, Started
from controlplane.cap.mapping import alert_key, bulletin_of, chosen_infos, command_id, level_of
from controlplane.cap.parse import (
    Alert,
    MsgType,
    Resource,
    Scope,
    Status,
    read_alert,
    read_document,
)
from controlplane.cap.refusal import Refusal, Refused
from controlplane.cap.resources import PublishMedia, ResourceError, media_mime, resource_bytes
from controlplane.cap.settings import CapSettings
from controlplane.cap.trust import authenticate
from protocol import (
    BODY_MODELS,
    Bulletin,
    EmergencyStartBody,
    EmergencyStopBody,
    Level,
    Media,
    PlayNowBody,
    PlayStopBody,
    describe_error,
    format_time,
)

_DRILLS = (Status.EXERCISE, Status.TEST)
# What ends each kind of start (a play.stop is a v1 extension: older devices reject it).
_STOPS = {"emergency.start": "emergency.stop", "play.now": "play.stop"}


@dataclass(frozen=True)
class Command:
    """One command to sign and publish: ``make_document(key, type, target, body, …)``.

    ``id`` is stable (derived from the alert) and must be used as the document id; the
    envelope's ``expires_at`` is ``expires_at``. ``info`` is the index of the CAP info it
    carries; ``stops`` is, for an ``emergency.stop`` or a ``play.stop``, the start it ends.
    """

    id: str
    type: str
    target: str
    body: dict[str, Any]
    expires_at: datetime
    info: int | None = None
    stops: str | None = None

    def ttl_s(self, now: datetime) -> int:
        """Whole seconds from ``now`` to ``expires_at`` (at least 1), for ``make_document``."""
        return max(1, math.floor((self.expires_at - now).total_seconds()))

    def describe(self) -> str:
        """One line for an operator."""
        if self.stops is not None:
            what = f"ends {self.stops}"
        else:
            what = str(self.body["bulletin"]["title"])
        return f"{self.type} {self.target} {self.id} until {format_time(self.expires_at)}: {what}"


@dataclass(frozen=True)
class Plan:
    """What an alert leads to: commands (maybe none), or a refusal; and notes on what was left
    out and why (an expired info, an unusable resource, a start not stopped)."""

    now: datetime
    alert: Alert | None = None
    commands: tuple[Command, ...] = ()
    refusal: Refusal | None = None
    notes: tuple[str, ...] = ()
    signed_by: str | None = None
    keep_until: datetime | None = None  # how long the ledger must remember the alert

    @property
    def refused(self) -> bool:
        return self.refusal is not None

    def describe(self) -> list[str]:
        """Lines for an operator: the alert, then each command or the refusal, then notes."""
        lines = []
        if self.alert is not None:
            a = self.alert
            signed = f", signed by {self.signed_by}" if self.signed_by else ""
            lines.append(f"{a.msg_type} {a.identifier} from {a.sender} ({a.status}{signed})")
        if self.refusal is not None:
            lines.append(f"refused: {self.refusal}")
        lines += [cmd.describe() for cmd in self.commands]
        lines += [f"note: {note}" for note in self.notes]
        return lines


def plan_alert(
    document: bytes,
    settings: CapSettings,
    ledger: LedgerView,
    now: datetime,
    publish_media: PublishMedia | None = None,
) -> Plan:
    """Plan what ``document`` (a CAP 1.2 alert, as received) leads to, at ``now`` (aware).

    ``publish_media(data, mime) -> Media`` stores a resource's file where devices fetch
    content; without it, resources are left out (noted) and texts are used.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (UTC)")
    try:
        root = read_document(document, settings.max_document_bytes)
        trusted = authenticate(root, settings, now)
        alert = read_alert(trusted.root)
    except Refused as exc:
        return Plan(now, refusal=exc.refusal)
    planner = _Planner(alert, settings, ledger, now, publish_media)
    try:
        commands = planner.commands()
    except Refused as exc:
        return Plan(
            now, alert, refusal=exc.refusal, notes=tuple(planner.notes), signed_by=trusted.signed_by
        )
    return Plan(
        now,
        alert,
        commands=tuple(commands),
        notes=tuple(planner.notes),
        signed_by=trusted.signed_by,
        keep_until=planner.keep_until(),
    )


class _Planner:
    """The steps after parsing and trust, for one alert."""

    def __init__(
        self,
        alert: Alert,
        settings: CapSettings,
        ledger: LedgerView,
        now: datetime,
        publish_media: PublishMedia | None,
    ) -> None:
        self.alert = alert
        self.settings = settings
        self.ledger = ledger
        self.now = now
        self.publish_media = publish_media
        self.notes: list[str] = []
        self.key = alert_key(alert.sender, alert.identifier)
        self.drill_groups = {g.id for g in settings.areas.groups if g.drill}

    def keep_until(self) -> datetime:
        """How long the ledger must remember the alert: a day past its last expiry."""
        ends = [self._expiry(i) for i in range(len(self.alert.infos))] or [self.alert.sent]
        return max(max(ends), self.now) + timedelta(days=1)

    # ------------------------------------------------------------------ steps

    def commands(self) -> list[Command]:
        alert = self.alert
        if alert.status in (Status.SYSTEM, Status.DRAFT):
            raise Refused("not_actual", f"status {alert.status}: never broadcast")
        if alert.scope != Scope.PUBLIC:
            raise Refused("not_public", f"scope {alert.scope}: not for public loudspeakers")
        if alert.msg_type in (MsgType.ACK, MsgType.ERROR):
            raise Refused("not_actionable", f"msgType {alert.msg_type}: nothing to broadcast")
        if self.ledger.seen(alert.sender, alert.identifier):
            raise Refused(
                "duplicate", f"alert {alert.identifier!r} of {alert.sender!r} was acted on already"
            )
        successors = self.ledger.successors(alert.sender, alert.identifier)
        if successors:
            raise Refused(
                "superseded",
                f"alert {alert.identifier!r} was already replaced by {successors[0].msg_type} "
                f"{successors[0].identifier!r} (it arrived after it)",
            )
        stops = self._stops() if alert.msg_type != MsgType.ALERT else []
        if alert.msg_type == MsgType.CANCEL:
            if not stops:
                self.notes.append("nothing that it references is in force: nothing to stop")
            return stops
        try:
            starts = self._starts()
        except Refused:
            if not stops:
                raise
            # An Update that is not broadcast itself (expired, downgraded, elsewhere) still
            # ends the emergency it replaces.
            return stops
        # Start before stop: the new emergency takes over at once (the most recent one wins on
        # the device), so there is neither a silent gap nor two sirens one after the other.
        return starts + stops

    def _references(self) -> list[tuple[str, str]]:
        refs = []
        for ref in self.alert.references:
            if ref.sender != self.alert.sender:
                # One trusted feed never ends another's alerts.
                self.notes.append(f"reference to {ref.sender}'s {ref.identifier!r} ignored")
                continue
            refs.append((ref.sender, ref.identifier))
        return list(dict.fromkeys(refs))

    def _stops(self) -> list[Command]:
        refs = self._references()
        for sender, identifier in refs:
            cancels = [
                s for s in self.ledger.successors(sender, identifier) if s.msg_type == "Cancel"
            ]
            if cancels and self.alert.msg_type == MsgType.UPDATE:
                # The chain has ended: an Update that arrives after it restarts nothing.
                raise Refused(
                    "superseded",
                    f"{identifier!r}, which it updates, was cancelled by {cancels[0].identifier!r}",
                )
        known = [ref for ref in refs if self.ledger.seen(*ref)]
        if self.alert.msg_type == MsgType.UPDATE and not known:
            self.notes.append("it references no alert acted on here: planned as a new alert")
        stops = []
        for sender, identifier in known:
            for started in self.ledger.started(sender, identifier):
                stop = self._stop(identifier, started)
                if stop is not None:
                    stops.append(stop)
        return stops

    def _stop(self, identifier: str, started: Started) -> Command | None:
        """The ``emergency.stop`` of an ``emergency.start``, the ``play.stop`` of a
        ``play.now``, or None when it has ended already or must not be ended."""
        expires_at = started.expires_at
        if started.type not in _STOPS:
            self.notes.append(f"{started.type} {started.id} of {identifier!r} cannot be withdrawn")
            return None
        if started.stopped_by is not None or expires_at <= self.now:
            return None  # ended already
        group = started.target.removeprefix("grp:")
        if self.alert.status != Status.ACTUAL and group not in self.drill_groups:
            self.notes.append(
                f"{self.alert.status} message: {started.target} is not a drill group, "
                f"its {started.type} {started.id} is not stopped"
            )
            return None
        kind = _STOPS[started.type]
        stop: EmergencyStopBody | PlayStopBody
        if kind == "emergency.stop":
            stop = EmergencyStopBody(ref=started.id)
        else:
            stop = PlayStopBody(ref=started.id)
        body = stop.model_dump(mode="json", exclude_none=True)
        return Command(
            id=command_id("stop", self.key, started.id),
            type=kind,
            target=started.target,
            body=body,
            expires_at=expires_at,
            stops=started.id,
        )

    def _expiry(self, index: int) -> datetime:
        info = self.alert.infos[index]
        if info.expires is not None:
            return info.expires
        return self.alert.sent + timedelta(seconds=self.settings.default_duration_s)

    def _starts(self) -> list[Command]:
        """One start per group: the highest level among the infos that reach it, then the
        first in the document."""
        candidates: list[tuple[int, Level, list[str]]] = []
        reasons: list[Refusal] = []
        for index in chosen_infos(self.alert):
            try:
                candidates.append(self._candidate(index))
            except Refused as exc:
                reasons.append(exc.refusal)
                self.notes.append(f"info[{index}] not broadcast: {exc.refusal.message}")
        if not candidates:
            if not reasons:
                raise Refused("not_actionable", "the alert has no info to broadcast")
            first = reasons[0]
            raise Refused(first.code, "; ".join(dict.fromkeys(r.message for r in reasons)))
        chosen: dict[str, tuple[int, Level]] = {}
        for index, level, groups in sorted(candidates, key=lambda c: (-c[1].rank, c[0])):
            for group in groups:
                chosen.setdefault(group, (index, level))
        bulletins = {index: self._bulletin(index, level) for index, level in set(chosen.values())}
        order = [g.id for g in self.settings.areas.groups]
        return [
            self._start(group, index, level, bulletins[index])
            for group, (index, level) in sorted(chosen.items(), key=lambda kv: order.index(kv[0]))
        ]

    def _candidate(self, index: int) -> tuple[int, Level, list[str]]:
        info = self.alert.infos[index]
        level = level_of(info)
        if level is None:
            raise Refused(
                "below_threshold",
                f"severity {info.severity}: not broadcast automatically (only Extreme, Severe "
                f"and Moderate are)",
            )
        expiry = self._expiry(index)
        if expiry <= self.now:
            raise Refused("expired", f"expired at {format_time(expiry)}")
        groups = groups_for_areas(info.areas, self.settings.areas)
        if not groups:
            areas = "; ".join(a.description for a in info.areas) or "no area"
            raise Refused("not_our_area", f"no configured group is in its area ({areas})")
        if self.alert.status in _DRILLS:
            drills = [g for g in groups if g in self.drill_groups]
            if not drills:
                raise Refused(
                    "drill_only",
                    f"status {self.alert.status}: sent only to groups marked drill = true, and "
                    f"none of its {len(groups)} group(s) is",
                )
            groups = drills
        return index, level, groups

    def _bulletin(self, index: int, level: Level) -> Bulletin:
        image = audio = None
        info = self.alert.infos[index]
        if info.resources and level == Level.EMERGENCY and not self.settings.media_in_emergencies:
            self.notes.append(
                f"info[{index}]: resources not used for an emergency (media_in_emergencies is "
                f"false): it starts at once with speech and text"
            )
        elif info.resources:
            image = self._media(index, "image/")
            audio = self._media(index, "audio/")
        try:
            return bulletin_of(self.alert, index, level, self.settings, image=image, audio=audio)
        except ValidationError as exc:
            raise Refused("invalid", f"info[{index}]: {describe_error(exc)}") from None

    def _media(self, index: int, kind: str) -> Media | None:
        """The first resource of that kind that can be fetched, checked and published."""
        for n, resource in enumerate(self.alert.infos[index].resources):
            mime = media_mime(resource)
            if mime is None or not mime.startswith(kind):
                continue
            where = f"info[{index}].resource[{n}] ({resource.description})"
            if self.publish_media is None:
                self.notes.append(f"{where} not used: no media publisher")
                return None
            media = self._publish(resource, mime, where)
            if media is not None:
                return media
        return None

    def _publish(self, resource: Resource, mime: str, where: str) -> Media | None:
        assert self.publish_media is not None
        try:
            data = resource_bytes(
                resource, self.settings.max_resource_bytes, self.settings.resource_timeout_s
            )
        except ResourceError as exc:
            # A broken attachment never holds a warning back: it goes out as text and speech.
            self.notes.append(f"{where} not used: {exc}")
            return None
        return self.publish_media(data, mime)

    def _start(self, group: str, index: int, level: Level, bulletin: Bulletin) -> Command:
        kind = "emergency.start" if level == Level.EMERGENCY else "play.now"
        body_model: EmergencyStartBody | PlayNowBody
        if kind == "emergency.start":
            body_model = EmergencyStartBody(
                bulletin=bulletin, repeat_every_s=self.settings.repeat_every_s
            )
        else:
            body_model = PlayNowBody(bulletin=bulletin, repeat=self.settings.priority_repeat)
        body = body_model.model_dump(mode="json", exclude_none=True)
        try:
            # The devices' own schema check, so that nothing is planned that they all reject.
            BODY_MODELS[kind].model_validate(body)
        except ValidationError as exc:
            raise Refused("invalid", f"{kind}: body.{describe_error(exc)}") from None
        return Command(
            id=command_id("start", self.key, str(index), group, kind),
            type=kind,
            target=f"grp:{group}",
            body=body,
            expires_at=self._expiry(index),
            info=index,
        )

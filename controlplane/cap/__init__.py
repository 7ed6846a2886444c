"""CAP 1.2 alerts from trusted feeds → signed commands for the ward screens and loudspeakers.

The API for the control plane's commands (``ttcs-control cap …``)::

    settings = load_settings(Path("/etc/ttcs-control/control.toml"))
    with Ledger.open("postgresql://ttcs@db.q10/ttcs") as ledger:  # the control plane's store
        now = datetime.now(UTC)
        plan = plan_alert(xml_bytes, settings, ledger, now, publish_media)
        if plan.refused:
            print(plan.refusal)               # nothing is sent
        else:
            for cmd in plan.commands:         # in order, on one connection
                publish(make_document(key, cmd.type, cmd.target, cmd.body,
                                      ttl_s=cmd.ttl_s(now), doc_id=cmd.id))
            ledger.record(plan, now)

Modules: ``parse`` (hardened parsing, the OASIS schema, typed reading), ``trust`` (allowlist,
XML Signature), ``areas`` (areas → groups), ``mapping`` (levels, texts, ids, bulletins),
``resources`` (resource files → media), ``ledger`` (acted-on alerts, what they started),
``plan`` (all of it, in order), ``settings``. The rules are in ``docs/cap.md``.
"""

from controlplane.cap.ledger import Ledger, LedgerError, LedgerView, Started, Successor
from controlplane.cap.parse import Alert, Area, Info, Resource, parse_alert
from controlplane.cap.plan import Command, Plan, plan_alert
from controlplane.cap.refusal import Refusal
from controlplane.cap.resources import PublishMedia
from controlplane.cap.settings import (
    AreaGroup,
    AreaMap,
    CapConfigError,
    CapSettings,
    SenderPolicy,
    load_areas,
    load_settings,
)

__all__ = [
    "Alert",
    "Area",
    "AreaGroup",
    "AreaMap",
    "CapConfigError",
    "CapSettings",
    "Command",
    "Info",
    "Ledger",
    "LedgerError",
    "LedgerView",
    "Plan",
    "PublishMedia",
    "Refusal",
    "Resource",
    "SenderPolicy",
    "Started",
    "Successor",
    "load_areas",
    "load_settings",
    "parse_alert",
    "plan_alert",
]

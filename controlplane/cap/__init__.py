"""CAP 1.2 alerts from trusted feeds → signed commands for the ward screens and loudspeakers.

Modules: ``parse`` (hardened parsing, the OASIS schema, typed reading), ``trust`` (allowlist,
XML Signature), ``settings``. The rules are in ``docs/cap.md``.
"""

from controlplane.cap.parse import Alert, Area, Info, Resource, parse_alert
from controlplane.cap.refusal import Refusal
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
    "Info",
    "Refusal",
    "Resource",
    "SenderPolicy",
    "load_areas",
    "load_settings",
    "parse_alert",
]

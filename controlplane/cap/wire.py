"""The wire-protocol models that the CAP intake builds, from one place.

They live in ``agent.protocol`` today and will move to a layer shared by the agent and the
control plane; only this import then changes.
"""

from agent.protocol import (
    BODY_MODELS,
    DOC_ID_RE,
    IDENT_RE,
    Bulletin,
    EmergencyStartBody,
    EmergencyStopBody,
    Level,
    Media,
    PlayNowBody,
    ScreenPart,
    SpeakerPart,
    describe_error,
    format_time,
    parse_time,
)

__all__ = [
    "BODY_MODELS",
    "DOC_ID_RE",
    "IDENT_RE",
    "Bulletin",
    "EmergencyStartBody",
    "EmergencyStopBody",
    "Level",
    "Media",
    "PlayNowBody",
    "ScreenPart",
    "SpeakerPart",
    "describe_error",
    "format_time",
    "parse_time",
]

"""Why an alert is not acted on: a short code for programs and a message for people."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    """An alert that is not acted on: nothing is sent for it.

    ``code`` is one of the codes listed in ``docs/cap.md`` (``too_large``, ``malformed``,
    ``doctype``, ``wrong_namespace``, ``invalid``, ``unknown_sender``, ``unsigned``,
    ``bad_signature``, ``not_actual``, ``not_public``, ``not_actionable``, ``duplicate``,
    ``expired``, ``below_threshold``, ``not_our_area``, ``drill_only``); ``message`` says what
    is wrong in words an operator can act on.
    """

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class Refused(Exception):
    """Raised inside the package when an alert must be refused; carries the ``Refusal``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.refusal = Refusal(code, message)

"""The one error the operators' commands raise for a mistake in what was asked."""

from __future__ import annotations


class ControlError(Exception):
    """A mistake in what the operator asked for; the message says what to fix."""

"""CAP 1.2 alerts from trusted feeds → signed commands for the ward screens and loudspeakers.

The rules are in ``docs/cap.md``; ``schema/`` holds the OASIS CAP 1.2 schema.
"""

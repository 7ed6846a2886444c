"""ttcs-agent: the edge agent for ward screens and loudspeakers (grassroots information system)."""

__version__ = "0.1.0"

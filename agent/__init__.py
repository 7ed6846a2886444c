"""ttcs-agent: the edge agent for ward screens and loudspeakers (grassroots information system).

The device daemon, in the order a document travels: ``protocol.link`` (MQTT, in the bottom
layer) → ``verify`` (the eleven checks) → ``director`` (routes, answers, exactly once with
``store`` and ``outbox``) → ``conductor`` (the one owner of playback: ``intake`` for programs,
``waiting`` for overrides fetching files, device controls) → ``stage`` (``arbiter`` decides what
shows, ``loudspeakers`` and ``turns`` what speaks) → the players (``players`` builds them from
the configuration). Around them: ``cache``, ``download`` and ``cache_fill`` (content),
``playlog`` (proof of play), ``courier`` (outbox → broker), ``events`` (the director's typed
inbox), ``control_socket`` and ``local_requests`` (the technician's requests), ``cli`` and
``technician`` (the ``ttcs-agent`` commands), ``daemon`` (wiring and start-up), ``config``.
"""

__version__ = "0.1.0"

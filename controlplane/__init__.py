"""The server side: the district operators' control plane. Nothing in this package runs on a
device, and it imports only the shared ``protocol`` layer, never the daemon (``agent``).

The ``ttcs-control`` command line is ``cli`` (arguments, ``main``); each command lives with
its concern: ``keys`` (signing keys, signed documents, device configurations: ``keygen``,
``provision``), ``session`` (a short MQTT session on ``protocol.link``), ``send`` (sign,
publish and follow the acks: ``send``, ``program push``) with ``fanout`` (live progress, who
did not answer), ``emergency`` (``emergency start``/``stop``), ``follow`` (a synchronized
``play.now`` followed to each device's start), ``fleet`` (``fleet`` and ``watch``),
``cap_intake`` (``cap send``, ``cap watch``; resource files in ``media``),
``playlog_files`` (``collect`` into and ``report`` from JSON-lines files, pure helpers in
``files_report``). It keeps what the fleet reports (devices and their last state and status,
acks, events, playlogs) and what was sent to it in one database, SQLite by default and
PostgreSQL at scale (``store``, on ``db`` and ``migrations``; device messages are read by
``ingest``); collectors fill it from the broker, several at once on MQTT 5 shared
subscriptions (``collect``); reports are SQL over it (``report``). The CAP 1.2 alert intake
(``cap``) turns alerts from trusted feeds into the signed commands of wire protocol v1.
"""

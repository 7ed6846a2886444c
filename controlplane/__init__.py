"""The server side: the district operators' control plane. Nothing in this package runs on a
device.

It keeps what the fleet reports (devices and their last state and status, acks, events,
playlogs) and what was sent to it in one database, SQLite by default and PostgreSQL at scale
(``controlplane.store``); collectors fill it from the broker, several at once on MQTT 5 shared
subscriptions (``controlplane.collect``); reports are SQL over it (``controlplane.report``).
The CAP 1.2 alert intake (``controlplane.cap``) turns alerts from trusted feeds into the
signed commands of wire protocol v1.
"""

"""The server side: the district operators' control plane. It keeps what the fleet reports
(devices and their last state and status, acks, events, playlogs) and what was sent to it
(signed commands and programs) in one database, SQLite by default and PostgreSQL at scale
(``controlplane.store``); collectors fill it from the broker, several at once on MQTT 5 shared
subscriptions (``controlplane.collect``); reports are SQL over it (``controlplane.report``).
It speaks the agent's own wire protocol (``agent.protocol``) so the two cannot disagree.
"""

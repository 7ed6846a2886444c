"""The fleet simulator: many devices, each the agent's own protocol stack, on one machine.

Not part of the device package (``setup.cfg`` installs only ``protocol``, ``agent``,
``player`` and ``controlplane``). ``make fleet`` runs ``python -m fleetsim``; see
``docs/fleet.md``.
"""

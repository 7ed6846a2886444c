"""The server side: the operators' control plane.

Everything the district or city runs to drive the ward screens and loudspeakers lives here, one
module per concern: today the CAP 1.2 alert intake (``controlplane.cap``), which turns alerts
from trusted feeds into the signed commands of wire protocol v1; the keys, provisioning, fleet
and play-log tools of ``ttcs-control`` move here next. Nothing in this package runs on a device.
"""

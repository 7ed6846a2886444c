"""What the screen's video and the speaker's audio share of libVLC: binding entry points with
our own ctypes prototypes, its player events, and creating an instance with explicit options.

Our own prototypes because python-vlc's are unusable for some jobs (it declares the video chroma
``c_char_p``, leaves the union out of its track structure, and memoizes every player's event
manager in a global dict for ever), and python-vlc's ``from_param`` still passes the native
pointers of its ``MediaPlayer`` and ``Media`` objects.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import Any

import vlc

# libVLC player events (LibVLC 3.0 numbering).
END_REACHED = 265  # libvlc_MediaPlayerEndReached
ENCOUNTERED_ERROR = 266  # libvlc_MediaPlayerEncounteredError

EventCb = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_int), ctypes.c_void_p)  # event.type

# The entry points that attach event handlers without python-vlc's event manager.
EVENT_PROTOTYPES: dict[str, Any] = {
    "libvlc_media_player_event_manager": ctypes.CFUNCTYPE(ctypes.c_void_p, vlc.MediaPlayer),
    "libvlc_event_attach": ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.c_void_p, ctypes.c_int, EventCb, ctypes.c_void_p
    ),
    "libvlc_event_detach": ctypes.CFUNCTYPE(
        None, ctypes.c_void_p, ctypes.c_int, EventCb, ctypes.c_void_p
    ),
}


def bind(prototypes: Mapping[str, Any], error: type[Exception]) -> dict[str, Any]:
    """libVLC's functions ``prototypes`` names, bound with those prototypes (and the events')."""
    dll = vlc.dll
    if dll is None:
        raise error("libVLC is not installed (python-vlc found no libvlc)")
    wanted = {**EVENT_PROTOTYPES, **prototypes}
    return {name: proto((name, dll)) for name, proto in wanted.items()}


def instance(args: Sequence[str], error: type[Exception]) -> Any:
    """A ``vlc.Instance`` with exactly ``args`` (headless libVLC must never guess an output)."""
    created = vlc.Instance(list(args))
    if created is None:
        raise error(f"libVLC refused its options: {' '.join(args)}")
    return created

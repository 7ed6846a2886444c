"""Video files decoded by libVLC into memory, one BGRA frame at a time, for the screen renderer.

This is the only screen-side module that imports ``vlc``; it does not import pygame. libVLC
decodes into a buffer of ours through its video callbacks (the ``vmem`` output), at a size that
fits the caller's box; the renderer takes the latest :class:`Frame` whenever it draws.

Measured with libVLC 3.0: with no audio output in use it paces by the system clock, so a clip
ends after its length (the end event comes as its last frame is shown); the format callback's own
size is the decoder's padded buffer (320×180 arrives as 320×192), so the visible size comes from
the media's track; a clip without video, or a file libVLC cannot read, ends or fails within a
fraction of a second. A looping clip is restarted at its end rather than given ``:input-repeat``,
which repeats a file without video for ever without a word; the restart costs no more than one
frame interval.

Threads: the video callbacks and the event callbacks run on libVLC's own threads. They take only
this module's short locks and never call libVLC's player functions (libVLC is not reentrant:
``stop`` from an event callback deadlocks). :meth:`VideoClip.stop` is the one call that may be
made from anywhere, including from ``on_end``: on a libVLC thread it hands the teardown to a
helper thread instead of waiting for itself.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vlc

from player.libvlc import ENCOUNTERED_ERROR, END_REACHED, EventCb, bind, instance

log = logging.getLogger(__name__)

CHROMA = b"RV32"  # 32-bit RGB; in memory (little-endian) the bytes are B, G, R, A
# Any width works (measured); a multiple of 8 keeps the row pitch (width * 4) a multiple of 32
# bytes, as libVLC recommends for its optimized converters.
WIDTH_MULTIPLE = 8
_LINE_MULTIPLE = 32  # buffers get whole 32-line blocks, as libVLC asks
_ALIGN = 32  # libVLC wants plane addresses aligned on 32 bytes
_RELEASE_WAIT = 5.0  # seconds VideoEngine.close() waits for a clip released on a helper thread

# libVLC's orientations 4..7 (left-top … right-bottom) swap the picture's axes.
_TRANSPOSED_ORIENTATIONS = frozenset({4, 5, 6, 7})

# Our own prototypes and structures, where python-vlc's are unusable: it declares the format
# callback's chroma as ``c_char_p`` (ctypes hands Python a copy, so the callback could not write
# the chroma it wants), lays out libvlc_media_track_t without its union (so ``video`` reads the
# wrong field), and memoizes every player's event manager in a global dict for ever.
_UIntPtr = ctypes.POINTER(ctypes.c_uint)
_FormatCb = ctypes.CFUNCTYPE(
    ctypes.c_uint,
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.c_void_p,
    _UIntPtr,
    _UIntPtr,
    _UIntPtr,
    _UIntPtr,
)
_CleanupCb = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_LockCb = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p))
_DisplayCb = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class _VideoTrack(ctypes.Structure):
    """The head of libvlc_video_track_t (LibVLC 3.0)."""

    _fields_ = (
        ("height", ctypes.c_uint),
        ("width", ctypes.c_uint),
        ("sar_num", ctypes.c_uint),
        ("sar_den", ctypes.c_uint),
        ("frame_rate_num", ctypes.c_uint),
        ("frame_rate_den", ctypes.c_uint),
        ("orientation", ctypes.c_int),
    )


class _Track(ctypes.Structure):
    """The head of libvlc_media_track_t (LibVLC 3.0), up to its audio/video/subtitle union."""

    _fields_ = (
        ("codec", ctypes.c_uint32),
        ("original_fourcc", ctypes.c_uint32),
        ("id", ctypes.c_int),
        ("type", ctypes.c_int),
        ("profile", ctypes.c_int),
        ("level", ctypes.c_int),
        ("details", ctypes.c_void_p),  # the union: here a libvlc_video_track_t *
    )


_TRACK_VIDEO = 1  # libvlc_track_video
_TrackArray = ctypes.POINTER(ctypes.POINTER(_Track))

# Marks the libVLC threads that run our event handlers, so that stop() knows not to wait there.
_on_libvlc_thread = threading.local()


class VideoError(RuntimeError):
    """libVLC is missing, or a clip could not be opened or started."""


@dataclass(frozen=True)
class Frame:
    """One decoded picture: BGRA bytes (libVLC chroma ``RV32``), row pitch ``width * 4``."""

    data: bytes
    width: int
    height: int
    serial: int  # increases with each picture libVLC delivers (it may deliver one twice)


def fit_inside(source: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest size inside ``box`` with ``source``'s aspect ratio and a width libVLC likes.

    The width is rounded down to a multiple of :data:`WIDTH_MULTIPLE`, the height follows it, so
    the aspect ratio is kept to within a few pixels: 320×180 in 800×800 gives 800×450.
    """
    src_w, src_h = source
    box_w, box_h = box
    if min(src_w, src_h, box_w, box_h) <= 0:
        raise ValueError(f"sizes must be positive: source {source}, box {box}")
    scale = min(box_w / src_w, box_h / src_h)
    width = max(WIDTH_MULTIPLE, int(src_w * scale + 1e-6) // WIDTH_MULTIPLE * WIDTH_MULTIPLE)
    height = max(1, min(box_h, round(width * src_h / src_w)))
    return width, height


@dataclass(frozen=True)
class _Bindings:
    """libVLC entry points bound with our own prototypes."""

    set_callbacks: Any
    set_format_callbacks: Any
    event_manager: Any
    event_attach: Any
    event_detach: Any
    tracks_get: Any
    tracks_release: Any


@functools.cache
def _bindings() -> _Bindings:
    player, media = vlc.MediaPlayer, vlc.Media  # their from_param passes the native pointer
    c_uint, c_void_p = ctypes.c_uint, ctypes.c_void_p
    prototypes: dict[str, Any] = {
        "libvlc_video_set_callbacks": ctypes.CFUNCTYPE(
            None, player, _LockCb, c_void_p, _DisplayCb, c_void_p
        ),
        "libvlc_video_set_format_callbacks": ctypes.CFUNCTYPE(None, player, _FormatCb, _CleanupCb),
        "libvlc_media_tracks_get": ctypes.CFUNCTYPE(c_uint, media, ctypes.POINTER(_TrackArray)),
        "libvlc_media_tracks_release": ctypes.CFUNCTYPE(None, _TrackArray, c_uint),
    }
    bound = bind(prototypes, VideoError)
    return _Bindings(
        set_callbacks=bound["libvlc_video_set_callbacks"],
        set_format_callbacks=bound["libvlc_video_set_format_callbacks"],
        event_manager=bound["libvlc_media_player_event_manager"],
        event_attach=bound["libvlc_event_attach"],
        event_detach=bound["libvlc_event_detach"],
        tracks_get=bound["libvlc_media_tracks_get"],
        tracks_release=bound["libvlc_media_tracks_release"],
    )


class VideoEngine:
    """Owns the process's one ``vlc.Instance`` and opens clips on it.

    The video output is always libVLC's memory output (``vmem``, driven by our callbacks);
    ``aout`` names the audio output (``adummy``, ``alsa``, ``afile`` with ``extra_args`` such as
    ``--audiofile-file=F``), since headless libVLC must never guess one.
    """

    def __init__(self, aout: str = "adummy", extra_args: Sequence[str] = ()) -> None:
        args = [
            "--quiet",
            "--no-xlib",
            "--vout=vmem",
            f"--aout={aout}",
            "--no-video-title-show",
            "--no-osd",
            "--no-spu",
            "--no-sub-autodetect-file",
            "--no-snapshot-preview",
            "--no-stats",
            *extra_args,
        ]
        self._bindings = _bindings()
        self._instance: Any = instance(args, VideoError)
        self._lock = threading.Lock()
        self._clips: set[VideoClip] = set()
        self._closed = False

    def open(
        self,
        path: Path,
        box: tuple[int, int],
        sound: bool = False,
        loop: bool = False,
        on_end: Callable[[], None] | None = None,
    ) -> VideoClip:
        """Prepare ``path`` for playback into frames that fit ``box``; :meth:`VideoClip.start`
        plays it, muted unless ``sound``, over and over if ``loop``.

        ``on_end`` is called once, from a libVLC thread, when the clip ends or fails (never after
        :meth:`VideoClip.stop`); it must not block and must not call :meth:`close`.
        """
        if box[0] < WIDTH_MULTIPLE or box[1] < 1:
            raise ValueError(f"box too small for video: {box}")
        with self._lock:
            if self._closed:
                raise VideoError("the video engine is closed")
            clip = VideoClip(self, path, box, sound=sound, loop=loop, on_end=on_end)
            self._clips.add(clip)
        return clip

    def close(self) -> None:
        """Stop every clip still open and release libVLC; idempotent. Not from ``on_end``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            clips = list(self._clips)
        for clip in clips:
            clip.stop()
        if not getattr(_on_libvlc_thread, "active", False):  # there, waiting would deadlock
            for clip in clips:
                if not clip._released.wait(_RELEASE_WAIT):
                    log.error("video clip %s was not released in %.0f s", clip.path, _RELEASE_WAIT)
        self._instance.release()

    def _forget(self, clip: VideoClip) -> None:
        with self._lock:
            self._clips.discard(clip)


class VideoClip:
    """One video file playing into memory; create it with :meth:`VideoEngine.open`."""

    def __init__(
        self,
        engine: VideoEngine,
        path: Path,
        box: tuple[int, int],
        sound: bool,
        loop: bool,
        on_end: Callable[[], None] | None,
    ) -> None:
        self.path = path
        self.box = box
        self.loop = loop
        self._engine = engine
        self._on_end = on_end
        self._lock = threading.Lock()  # guards the fields below; never held across libVLC calls
        self._control = threading.Lock()  # serializes stop/play/release; libVLC never takes it
        self._frame: Frame | None = None
        self._serial = 0
        self._ended = False
        self._error: str | None = None
        self._source_size: tuple[int, int] | None = None
        self._size = (0, 0)
        self._buffer: ctypes.Array[ctypes.c_char] | None = None
        self._plane = 0  # the 32-byte aligned address inside _buffer
        self._started = False
        self._stopping = False
        self._finished = False  # on_end has been called
        self._released = threading.Event()  # the player is gone: no callback will come

        instance = engine._instance
        self._media: Any = instance.media_new_path(str(path))
        if self._media is None:
            raise VideoError(f"libVLC cannot open {path}")
        if not sound:
            self._media.add_option(":no-audio")
        self._player: Any = instance.media_player_new()
        self._player.set_media(self._media)

        # ctypes callbacks must outlive the player: keep them on the clip.
        self._bindings = engine._bindings
        self._format_cb = _FormatCb(self._on_format)
        self._cleanup_cb = _CleanupCb(self._on_cleanup)
        self._lock_cb = _LockCb(self._on_lock)
        self._display_cb = _DisplayCb(self._on_display)
        self._event_cb = EventCb(self._on_event)
        self._bindings.set_format_callbacks(self._player, self._format_cb, self._cleanup_cb)
        self._bindings.set_callbacks(self._player, self._lock_cb, None, self._display_cb, None)
        self._events = self._bindings.event_manager(self._player)
        for event in (END_REACHED, ENCOUNTERED_ERROR):
            if self._bindings.event_attach(self._events, event, self._event_cb, None) != 0:
                raise VideoError("libVLC could not attach an event handler")

    # -- the renderer's side --------------------------------------------------------------

    def start(self) -> None:
        """Begin playback; raises :class:`VideoError` if libVLC cannot start it."""
        if not self.path.is_file():
            self.stop()
            raise VideoError(f"no such video file: {self.path}")
        with self._control:
            with self._lock:
                if self._stopping:
                    raise VideoError(f"{self.path.name}: clip already stopped")
                if self._started:
                    return
                self._started = True
            failed = self._player.play() != 0
        if failed:
            self.stop()
            raise VideoError(f"libVLC could not start {self.path.name}")

    def frame(self) -> Frame | None:
        """The latest decoded frame (copied out of libVLC's buffer when it was shown), or None."""
        with self._lock:
            return self._frame

    @property
    def ended(self) -> bool:
        """Whether the clip played to its end; never true for a looping clip."""
        with self._lock:
            return self._ended

    @property
    def error(self) -> str | None:
        """Why libVLC could not play the file (unreadable, undecodable, no video), if it failed."""
        with self._lock:
            return self._error

    @property
    def source_size(self) -> tuple[int, int] | None:
        """The video's display size (square pixels), once libVLC has opened its video output."""
        with self._lock:
            return self._source_size

    def stop(self) -> None:
        """Stop playback and release the player; idempotent, safe from any thread.

        No frame arrives after it returns. From a libVLC thread (e.g. inside ``on_end``) the
        release happens on a helper thread, since libVLC cannot stop itself from its own thread.
        """
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        if getattr(_on_libvlc_thread, "active", False):
            threading.Thread(target=self._release, name="video-release", daemon=True).start()
        else:
            self._release()

    def _release(self) -> None:
        with self._control:
            self._player.stop()  # returns once libVLC's decoder and output threads are gone
            for event in (END_REACHED, ENCOUNTERED_ERROR):
                self._bindings.event_detach(self._events, event, self._event_cb, None)
            self._player.release()
            self._media.release()
        self._released.set()
        self._engine._forget(self)

    # -- libVLC's video callbacks (its output thread) -------------------------------------

    def _on_format(
        self,
        opaque: Any,
        chroma: int,
        width: Any,
        height: Any,
        pitches: Any,
        lines: Any,
    ) -> int:
        """Choose RV32 at a size that fits the box; allocate the buffer libVLC decodes into."""
        try:
            # The callback's own width and height are the decoder's buffer, often padded to a
            # multiple of 16 lines (180 -> 192, 1080 -> 1088): the track knows the visible size.
            source = self._track_size() or (int(width[0]), int(height[0]))
            out_w, out_h = fit_inside(source, self.box)
            pitch = out_w * 4
            rows = -(-out_h // _LINE_MULTIPLE) * _LINE_MULTIPLE
            buffer = ctypes.create_string_buffer(pitch * rows + _ALIGN)
            plane = -(-ctypes.addressof(buffer) // _ALIGN) * _ALIGN
            ctypes.memmove(chroma, CHROMA, len(CHROMA))
            width[0], height[0] = out_w, out_h
            pitches[0], lines[0] = pitch, rows
            with self._lock:
                self._buffer, self._plane = buffer, plane
                self._size = (out_w, out_h)
                self._source_size = source
            return 1
        except Exception as exc:  # an exception must not cross into C
            with self._lock:
                self._error = f"video format setup failed: {exc}"
            return 0

    def _track_size(self) -> tuple[int, int] | None:
        """The first video track's visible size in square pixels, as the demuxer reported it."""
        tracks = _TrackArray()
        count = int(self._bindings.tracks_get(self._media, ctypes.byref(tracks)))
        try:
            for i in range(count):
                track = tracks[i].contents
                if track.type != _TRACK_VIDEO or not track.details:
                    continue
                video = ctypes.cast(track.details, ctypes.POINTER(_VideoTrack)).contents
                width, height = int(video.width), int(video.height)
                if width <= 0 or height <= 0:
                    continue
                if video.sar_num and video.sar_den:
                    width = round(width * video.sar_num / video.sar_den)
                if video.orientation in _TRANSPOSED_ORIENTATIONS:
                    width, height = height, width
                return width, height
            return None
        finally:
            if count:
                self._bindings.tracks_release(tracks, count)

    def _on_cleanup(self, opaque: Any) -> None:
        """libVLC closed its output (it may open another with a new format)."""

    def _on_lock(self, opaque: Any, planes: Any) -> int | None:
        """Hand libVLC our buffer to draw the next picture into."""
        with self._lock:
            planes[0] = self._plane
        return None

    def _on_display(self, opaque: Any, picture: Any) -> None:
        """The picture in the buffer is due now: copy it out as the latest frame."""
        with self._lock:
            if self._stopping or not self._plane:
                return
            width, height = self._size
            data = ctypes.string_at(self._plane, width * height * 4)
            self._serial += 1
            self._frame = Frame(data, width, height, self._serial)

    # -- libVLC's events (its input thread: no libVLC calls here) --------------------------

    def _on_event(self, event: Any, data: Any) -> None:
        """libVLC reports the end or a failure (from its input thread, which must not wait)."""
        if event[0] == END_REACHED:
            self._on_end_reached()
        elif event[0] == ENCOUNTERED_ERROR:
            self._on_vlc_error()

    def _on_end_reached(self) -> None:
        with self._lock:
            if self._serial == 0 and self._error is None:
                self._error = f"no video in {self.path.name}"
            restart = self.loop and self._error is None and not self._stopping
            # (A clip that showed no picture is an error, so a broken file cannot loop for ever.)
            if not restart:
                self._ended = self._error is None
        if restart:  # from a helper thread: libVLC cannot restart itself from this one
            threading.Thread(target=self._restart, name="video-restart", daemon=True).start()
        else:
            self._finish()

    def _on_vlc_error(self) -> None:
        with self._lock:
            if self._error is None:
                self._error = f"libVLC could not play {self.path.name}"
        self._finish()

    def _restart(self) -> None:
        with self._control:
            with self._lock:
                if self._stopping:
                    return
            self._player.stop()
            failed = self._player.play() != 0
        if failed:
            with self._lock:
                self._error = f"libVLC could not restart {self.path.name}"
            self._finish()

    def _finish(self) -> None:
        """Call ``on_end`` once, marked as running on a libVLC thread."""
        with self._lock:
            if self._finished or self._stopping:
                return
            self._finished = True
        if self._on_end is None:
            return
        _on_libvlc_thread.active = True
        try:
            self._on_end()
        except Exception:  # it must not cross into C
            log.exception("on_end of video clip %s failed", self.path)
        finally:
            _on_libvlc_thread.active = False

"""Audio files and live streams decoded by libVLC into raw PCM for our own audio output.

The whole speaker pipeline runs at one format, Piper's: signed 16-bit little-endian, mono,
22,050 Hz (:data:`RATE`). libVLC converts to it itself (``libvlc_audio_set_format("S16N", …)``)
and hands every block to our play callback (its ``amem`` output); the callback fills a bounded
buffer that the output pulls from with :meth:`AudioSource.read`.

Measured with libVLC 3.0.24 (Debian 12):

- libVLC paces ``amem`` by its own clock: it delivers about one second at once, then keeps
  about 1.1 s ahead of real time in 50 ms blocks, so 6 s of WAV "ends" after ~5 s. It is not a
  decoder that runs as fast as it is read: when the play callback blocks longer than that lead,
  libVLC throws away late blocks to catch up (a reader at half speed got 5.0 s of a 6 s file).
  So a file is paced by pausing the player when the buffer is nearly full and resuming it when
  half empty (a paused input also pauses libVLC's clock: nothing is lost); the callback's bounded
  wait is only the backstop. A live source is never paused: when its reader falls behind the
  oldest PCM is dropped, so latency stays bounded and libVLC never stalls.
- First PCM comes 10-70 ms after start for a local file, ~0.65 s for an HTTP stream (libVLC's
  network caching). A stream cut by its server ends (``EndReached``) within 0.05-0.16 s, while
  our buffer still holds about a second for the reader; a stream that stays connected but goes
  quiet never ends by itself, hence ``stall_timeout``. An attempt on an Icecast-like mount
  (HTTP/1.0, no length) costs two GETs: the newer access module asks with ``Range: bytes=0-``,
  then the older one with ``Icy-MetaData: 1``; at a cut libVLC itself asks once more.
- A missing, unreadable or undecodable file, and a refused connection, usually end with
  ``EndReached`` and not a single sample rather than ``EncounteredError``: no audio at all
  counts as a failure. The ``flush`` callback also arrives at every normal end, after ``drain``,
  while our buffer still holds the tail: flushes are ignored, never applied to our buffer.
- Debian's libVLC has no live555 module, so ``rtsp://`` fails there (reported, retried if live).
- A ``.m3u``/``.pls`` link (as Icecast hands out) plays nothing itself: libVLC only lists its
  entries as sub-items, so the first entry is opened instead. HLS (``.m3u8``) plays directly.

Threads: each source has one supervisor thread that alone calls libVLC's player functions
(create, play, pause, stop, release), reconnects live sources and calls ``on_state``. libVLC's
own threads run our play and event callbacks, which only touch this module's buffer and queue,
never libVLC (it is not reentrant: ``stop`` from an event callback deadlocks).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import vlc

from player.libvlc import ENCOUNTERED_ERROR, END_REACHED, EventCb, bind, instance
from player.output import RATE, SAMPLE_BYTES

log = logging.getLogger(__name__)

CHANNELS = 1  # RATE and SAMPLE_BYTES: the speaker pipeline's one format (player.output)
BYTES_PER_SECOND = RATE * CHANNELS * SAMPLE_BYTES

State = Literal["connecting", "playing", "reconnecting", "ended", "failed", "stopped"]
StateListener = Callable[[str, str], None]  # ("gone" | "back", detail)

_FORMAT = b"S16N"  # native-endian: little-endian on every board we run on (checked below)
_WAIT_SLICE = 0.1  # s: the longest any of our waits goes without looking at stop()
_JOIN_WAIT = 5.0  # s: how long stop() and close() wait for a supervisor thread to finish
_SUBITEM_DEPTH = 3  # playlists that point at playlists, at most this deep

_EVENTS = {END_REACHED: "end", ENCOUNTERED_ERROR: "error"}

# Our own prototypes, as in player/video.py: python-vlc memoizes every player's event manager in
# a global dict for ever, so events are attached through these instead.
_PlayCb = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int64)
_PtsCb = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)  # pause, resume, flush
_DrainCb = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

# Marks the threads that run our libVLC callbacks, so that stop() knows not to wait there.
_on_libvlc_thread = threading.local()


class AudioDecodeError(Exception):
    """libVLC is missing or refused its options, or the engine is closed."""


@dataclass(frozen=True)
class _Bindings:
    """libVLC entry points bound with our own prototypes."""

    set_callbacks: Any
    set_format: Any
    event_manager: Any
    event_attach: Any
    event_detach: Any


@functools.cache
def _bindings() -> _Bindings:
    player = vlc.MediaPlayer  # its from_param passes the native pointer
    c_uint, c_void_p = ctypes.c_uint, ctypes.c_void_p
    prototypes: dict[str, Any] = {
        "libvlc_audio_set_callbacks": ctypes.CFUNCTYPE(
            None, player, _PlayCb, _PtsCb, _PtsCb, _PtsCb, _DrainCb, c_void_p
        ),
        "libvlc_audio_set_format": ctypes.CFUNCTYPE(None, player, ctypes.c_char_p, c_uint, c_uint),
    }
    bound = bind(prototypes, AudioDecodeError)
    return _Bindings(
        set_callbacks=bound["libvlc_audio_set_callbacks"],
        set_format=bound["libvlc_audio_set_format"],
        event_manager=bound["libvlc_media_player_event_manager"],
        event_attach=bound["libvlc_event_attach"],
        event_detach=bound["libvlc_event_detach"],
    )


def is_url(source: str) -> bool:
    """Whether ``source`` is a URL (``scheme://…``) rather than a file path."""
    return bool(_URL.match(source))


def display_name(source: str) -> str:
    """``source`` fit for logs and events: a URL loses any user name and password."""
    if not is_url(source):
        return source
    parts = urlsplit(source)
    if parts.username is None and parts.password is None:
        return source
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class AudioEngine:
    """Owns one ``vlc.Instance`` for audio and opens sources on it.

    The audio output is always libVLC's memory output (``amem``, driven by our callbacks) and
    video is never decoded; ``extra_args`` adds libVLC options (e.g. ``--network-caching=500``).
    """

    def __init__(self, extra_args: Sequence[str] = ()) -> None:
        if sys.byteorder != "little":  # "S16N" is native-endian; the pipeline is S16LE
            raise AudioDecodeError("libVLC's S16N is not little-endian on this machine")
        args = [
            "--quiet",
            "--no-xlib",
            "--aout=amem",
            "--no-video",
            "--vout=dummy",
            "--no-spu",
            "--no-osd",
            "--no-stats",
            "--no-sub-autodetect-file",
            "--no-metadata-network-access",
            # Lua scripts only scrape web sites (YouTube, Dailymotion …): fewer parsers of
            # untrusted input on a device in a public square.
            "--no-lua",
            *extra_args,
        ]
        self._bindings = _bindings()
        self._instance: Any = instance(args, AudioDecodeError)
        self._lock = threading.Lock()
        self._sources: set[AudioSource] = set()
        self._closed = False

    def open(
        self,
        source: str,
        *,
        live: bool = False,
        on_state: StateListener | None = None,
        buffer_seconds: float = 2.0,
        stall_timeout: float = 10.0,
        reconnect_delays: tuple[float, float] = (0.5, 10.0),
        give_up_after: float | None = None,
    ) -> AudioSource:
        """Prepare ``source`` (a file path, or an http(s)/rtsp/rtmp/HLS URL) for decoding;
        :meth:`AudioSource.start` starts it.

        A ``live`` source is reconnected when it ends or fails, after ``reconnect_delays[0]``
        seconds, doubling up to ``reconnect_delays[1]``, until :meth:`AudioSource.stop` (or
        until ``give_up_after`` seconds without audio, if given). ``on_state`` is called with
        ``("gone", detail)`` when a live source that played drops and ``("back", detail)`` when it
        plays again; it runs on the source's own thread (never a libVLC one) and must not block.
        ``buffer_seconds`` bounds the PCM held for the reader; ``stall_timeout`` is how long a
        source may deliver nothing (while it is not held back by a full buffer) before it counts
        as failed.
        """
        if not source:
            raise ValueError("empty audio source")
        if buffer_seconds < 0.5 or stall_timeout <= 0:
            raise ValueError("buffer_seconds must be >= 0.5 and stall_timeout > 0")
        first_delay, max_delay = reconnect_delays
        if not 0 < first_delay <= max_delay:
            raise ValueError(f"bad reconnect_delays: {reconnect_delays}")
        with self._lock:
            if self._closed:
                raise AudioDecodeError("the audio engine is closed")
            opened = AudioSource(
                self,
                source,
                live=live,
                on_state=on_state,
                buffer_seconds=buffer_seconds,
                stall_timeout=stall_timeout,
                reconnect_delays=(first_delay, max_delay),
                give_up_after=give_up_after,
            )
            self._sources.add(opened)
        return opened

    def close(self) -> None:
        """Stop every source still open and release libVLC; idempotent.

        Not from ``on_state`` or any other code running on a source's thread.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sources = list(self._sources)
        for opened in sources:
            opened.stop()
        for opened in sources:
            if not opened._finished.wait(_JOIN_WAIT):
                log.error("audio source %s did not finish in %.0f s", opened.name, _JOIN_WAIT)
                return  # releasing the instance under a live player would crash libVLC
        self._instance.release()

    def _forget(self, opened: AudioSource) -> None:
        with self._lock:
            self._sources.discard(opened)


class _Attempt:
    """One libVLC player playing the source once; a live source makes a new one per reconnect.

    Its callbacks post to the source and never call libVLC. Each attempt has its own callbacks
    (kept here: they must outlive the player), so a late event of an old attempt is recognised.
    """

    def __init__(self, owner: AudioSource, mrl: str, depth: int) -> None:
        self.owner = owner
        self.mrl = mrl
        self.depth = depth  # how many playlists led here
        self.started = time.monotonic()
        self.cancelled = False  # guarded by owner._cond: the play callback must return now
        self.pcm_bytes = 0  # guarded by owner._cond
        self.play_cb = _PlayCb(self._on_play)
        self.pause_cb = _PtsCb(self._on_pts)
        self.resume_cb = _PtsCb(self._on_pts)
        self.flush_cb = _PtsCb(self._on_pts)
        self.drain_cb = _DrainCb(self._on_drain)
        self.event_cb = EventCb(self._on_event)
        self.media: Any = None
        self.player: Any = None
        self.events: Any = None
        self.paused = False  # what the supervisor last asked libVLC for

    def _on_play(self, opaque: Any, samples: Any, count: int, pts: int) -> None:
        """libVLC's decoder thread: ``count`` samples of S16LE mono 22,050 Hz are due."""
        _on_libvlc_thread.active = True
        try:
            self.owner._deliver(self, ctypes.string_at(samples, count * CHANNELS * SAMPLE_BYTES))
        except Exception:  # an exception must not cross into C
            log.exception("audio play callback of %s failed", self.owner.name)
        finally:
            _on_libvlc_thread.active = False

    def _on_pts(self, opaque: Any, pts: int) -> None:
        """pause, resume and flush: nothing to do. A flush comes at every normal end, after
        drain, while the reader still has the tail to play; and we never seek."""

    def _on_drain(self, opaque: Any) -> None:
        """End of stream: the PCM already delivered stays for the reader; EndReached follows."""

    def _on_event(self, event: Any, data: Any) -> None:
        """libVLC's input thread: the player ended or failed. Only posts; no libVLC calls."""
        kind = _EVENTS.get(int(event[0]))
        if kind is not None:
            self.owner._post(self, kind)


class AudioSource:
    """One file or stream decoded to S16LE mono 22,050 Hz PCM; create it with
    :meth:`AudioEngine.open`, then :meth:`start` it and :meth:`read` its PCM."""

    def __init__(
        self,
        engine: AudioEngine,
        source: str,
        *,
        live: bool,
        on_state: StateListener | None,
        buffer_seconds: float,
        stall_timeout: float,
        reconnect_delays: tuple[float, float],
        give_up_after: float | None,
    ) -> None:
        self.source = source
        self.name = display_name(source)
        self.live = live
        self._engine = engine
        self._on_state = on_state
        self._stall_timeout = stall_timeout
        self._delays = reconnect_delays
        self._give_up_after = give_up_after
        # Whole samples only, so that a dropped head never splits one.
        self._capacity = int(buffer_seconds * RATE) * SAMPLE_BYTES
        self._pause_at = self._capacity * 3 // 4
        self._resume_at = self._capacity // 2

        self._cond = threading.Condition()  # guards the fields below; never held over libVLC
        self._buffer = bytearray()
        self._attempt: _Attempt | None = None
        self._state: State = "connecting"
        self._error: str | None = None
        self._eof = False  # no more PCM will be added
        self._stopping = False
        self._want_pause = False  # a file's buffer is nearly full: the supervisor pauses
        self._last_progress = time.monotonic()
        self._dropped = 0
        self._thread: threading.Thread | None = None
        self._gone_at: float | None = None  # the supervisor's: when a live source dropped
        self._events: queue.SimpleQueue[tuple[_Attempt | None, str]] = queue.SimpleQueue()
        self._finished = threading.Event()  # the supervisor is done: no player is left

    # -- the reader's side ----------------------------------------------------------------

    def start(self) -> None:
        """Start decoding on the source's own thread; idempotent. Failures show in
        :attr:`error` and :attr:`state`, and :meth:`read` then returns None."""
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(
                target=self._supervise, name=f"vlcaudio {self.name}"[:60], daemon=True
            )
        self._thread.start()

    def read(self, max_bytes: int, timeout: float) -> bytes | None:
        """Up to ``max_bytes`` of PCM (whole samples), waiting at most ``timeout`` seconds.

        Returns ``b""`` when nothing arrived in time (also while a live source reconnects),
        None once the source has ended, failed or been stopped and its buffer is empty (after
        :meth:`stop`, at once).
        """
        if max_bytes < SAMPLE_BYTES:
            raise ValueError(f"max_bytes must be at least {SAMPLE_BYTES}")
        size = max_bytes - max_bytes % SAMPLE_BYTES
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._stopping:
                    return None
                if self._buffer:
                    data = bytes(self._buffer[:size])
                    del self._buffer[:size]
                    if self._want_pause and len(self._buffer) <= self._resume_at:
                        self._want_pause = False
                        self._events.put((self._attempt, "flow"))
                    self._cond.notify_all()  # a play callback may wait for room
                    return data
                if self._eof:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return b""
                self._cond.wait(remaining)

    @property
    def error(self) -> str | None:
        """Why the source is not playing: its failure, or a live source's latest drop."""
        with self._cond:
            return self._error

    @property
    def state(self) -> str:
        """``connecting``, ``playing``, ``reconnecting`` (live only), ``ended`` (the last PCM
        is delivered; the reader may still have some to read), ``failed`` or ``stopped``."""
        with self._cond:
            return self._state

    @property
    def buffered_bytes(self) -> int:
        """PCM waiting for the reader."""
        with self._cond:
            return len(self._buffer)

    @property
    def dropped_bytes(self) -> int:
        """PCM of a live source thrown away because the reader fell behind."""
        with self._cond:
            return self._dropped

    def stop(self) -> None:
        """Stop decoding, and reconnecting; idempotent, prompt, safe from any thread.

        Any waiting :meth:`read` returns None at once. Unless called on the source's own
        thread (from ``on_state``) or a libVLC one, it returns after the player is released.
        """
        with self._cond:
            first = not self._stopping
            self._stopping = True
            if self._state not in ("ended", "failed"):
                self._state = "stopped"
            if self._attempt is not None:
                self._attempt.cancelled = True  # a play callback waiting for room returns
            self._buffer.clear()
            self._cond.notify_all()
            thread = self._thread
        if first:
            self._events.put((None, "stop"))
        if thread is None:
            self._finish()
            return
        if thread is threading.current_thread() or getattr(_on_libvlc_thread, "active", False):
            return  # waiting here would wait for ourselves
        thread.join(_JOIN_WAIT)
        if thread.is_alive():
            log.error("audio source %s did not stop in %.0f s", self.name, _JOIN_WAIT)

    # -- the libVLC callbacks' side (their threads: post and return) -----------------------

    def _deliver(self, attempt: _Attempt, data: bytes) -> None:
        """Add PCM from ``attempt``'s play callback, waiting for room if the source is a file."""
        with self._cond:
            if attempt.cancelled or attempt is not self._attempt:
                return
            if self.live:
                overflow = len(self._buffer) + len(data) - self._capacity
                if overflow > 0:
                    overflow += overflow % SAMPLE_BYTES
                    del self._buffer[:overflow]
                    self._dropped += overflow
            else:
                # Pausing the player keeps it below this; the wait is only the backstop.
                while len(self._buffer) + len(data) > self._capacity:
                    self._last_progress = time.monotonic()  # held back: not a stall
                    self._cond.wait(_WAIT_SLICE)
                    if attempt.cancelled:
                        return
                if not self._want_pause and len(self._buffer) + len(data) >= self._pause_at:
                    self._want_pause = True
                    self._events.put((attempt, "flow"))
            first = attempt.pcm_bytes == 0
            attempt.pcm_bytes += len(data)
            self._buffer += data
            self._last_progress = time.monotonic()
            self._cond.notify_all()
        if first:
            self._events.put((attempt, "pcm"))

    def _post(self, attempt: _Attempt, kind: str) -> None:
        self._events.put((attempt, kind))

    # -- the supervisor (the source's own thread: the only caller of player functions) -----

    def _supervise(self) -> None:
        try:
            self._run()
        except Exception as exc:
            log.exception("audio source %s failed", self.name)
            self._end("failed", f"internal error: {exc}")
        finally:
            with self._cond:
                attempt, self._attempt = self._attempt, None
            if attempt is not None:
                self._release(attempt)
            self._finish()

    def _run(self) -> None:
        if not is_url(self.source) and not os.path.isfile(self.source):
            self._end("failed", "no such file")
            return
        mrl, depth = self.source, 0
        delay = self._delays[0]
        silent_since = time.monotonic()  # for give_up_after: since audio last flowed
        while True:
            attempt = self._launch(mrl, depth)
            outcome, reason = self._watch(attempt)
            with self._cond:
                attempt.cancelled = True
                self._attempt = None
                self._cond.notify_all()
                played = attempt.pcm_bytes > 0
            next_mrl = self._first_subitem(attempt) if not played and outcome == "end" else None
            self._release(attempt)
            if outcome == "stop":
                return
            if played:
                silent_since = time.monotonic()
            if next_mrl is not None and depth < _SUBITEM_DEPTH:
                log.info("audio source %s: a playlist; opening its first entry", self.name)
                mrl, depth = next_mrl, depth + 1
                continue
            if not self.live:
                if played and outcome == "end":
                    self._end("ended", None)
                else:
                    self._end("failed", reason)
                return
            mrl, depth = self.source, 0  # a playlist is read again: its entries may change
            if played:
                delay = self._delays[0]
                self._gone_at = time.monotonic()
                self._notify("gone", f"{self.name}: {reason}")
            if self._give_up_after is not None:
                silent = time.monotonic() - silent_since
                if silent >= self._give_up_after:
                    self._end("failed", f"{reason}; gave up after {silent:.1f} s without audio")
                    return
            with self._cond:
                if self._stopping:
                    return
                self._state = "reconnecting"
                self._error = f"{self.name}: {reason}"
            log.warning("audio source %s: %s; retrying in %.1f s", self.name, reason, delay)
            if self._sleep(delay):
                return
            delay = min(delay * 2, self._delays[1])

    def _launch(self, mrl: str, depth: int) -> _Attempt:
        """A new player for ``mrl``, started; its failures come back as events."""
        attempt = _Attempt(self, mrl, depth)
        with self._cond:
            # Current from here on, so that _supervise releases it whatever happens next.
            attempt.cancelled = self._stopping
            self._attempt = attempt
            self._want_pause = False
            self._last_progress = time.monotonic()
        bindings = self._engine._bindings
        instance = self._engine._instance
        media = instance.media_new_location(mrl) if is_url(mrl) else instance.media_new_path(mrl)
        if media is None:
            self._post(attempt, "error")
            return attempt
        attempt.media = media
        attempt.player = player = instance.media_player_new()
        player.set_media(media)
        bindings.set_callbacks(
            player,
            attempt.play_cb,
            attempt.pause_cb,
            attempt.resume_cb,
            attempt.flush_cb,
            attempt.drain_cb,
            None,
        )
        bindings.set_format(player, _FORMAT, RATE, CHANNELS)
        attempt.events = bindings.event_manager(player)
        for event in _EVENTS:
            if bindings.event_attach(attempt.events, event, attempt.event_cb, None) != 0:
                raise AudioDecodeError("libVLC could not attach an event handler")
        if player.play() != 0:
            self._post(attempt, "error")
        return attempt

    def _watch(self, attempt: _Attempt) -> tuple[str, str]:
        """Follow ``attempt`` until it ends: ("end" | "error" | "stall" | "stop", reason)."""
        while True:
            try:
                target, kind = self._events.get(timeout=_WAIT_SLICE)
            except queue.Empty:
                target, kind = attempt, "tick"
            if kind == "stop":
                return "stop", "stopped"
            if target is not attempt:
                continue  # a late event of an earlier attempt
            if kind == "pcm":
                self._on_first_pcm(attempt)
            elif kind == "flow":
                self._apply_flow(attempt)
            elif kind == "end":
                with self._cond:
                    played = attempt.pcm_bytes > 0
                if played:
                    return "end", "the stream ended" if self.live else "ended"
                return "end", "no audio (unreachable, unreadable, or no sound in it)"
            elif kind == "error":
                return "error", "libVLC could not play it"
            elif kind == "tick":
                with self._cond:
                    if self._stopping:
                        return "stop", "stopped"
                    idle = time.monotonic() - self._last_progress
                    held = attempt.paused
                if not held and idle > self._stall_timeout:
                    return "stall", f"no audio for {idle:.1f} s"

    def _on_first_pcm(self, attempt: _Attempt) -> None:
        with self._cond:
            if self._stopping:
                return
            self._state = "playing"
            self._error = None
        if self._gone_at is not None:
            outage = time.monotonic() - self._gone_at
            self._gone_at = None
            self._notify("back", f"{self.name}: playing again after {outage:.1f} s")
        log.info(
            "audio source %s playing (first PCM after %.2f s)",
            self.name,
            time.monotonic() - attempt.started,
        )

    def _apply_flow(self, attempt: _Attempt) -> None:
        """Pause or resume a file's player as its buffer fills up or empties."""
        with self._cond:
            want = self._want_pause
        if want == attempt.paused or attempt.player is None:
            return
        attempt.player.set_pause(1 if want else 0)  # asynchronous: libVLC's input thread does it
        attempt.paused = want
        if not want:
            with self._cond:
                self._last_progress = time.monotonic()

    def _first_subitem(self, attempt: _Attempt) -> str | None:
        """The first entry of a playlist that ``attempt`` opened, if it was one."""
        if attempt.media is None:
            return None
        items = attempt.media.subitems()
        if items is None:
            return None
        items.lock()  # libVLC asks for the list's lock around count and item_at_index
        try:
            item = items.item_at_index(0) if items.count() > 0 else None
        finally:
            items.unlock()
        try:
            mrl: str | None = None if item is None else item.get_mrl()
            return mrl
        finally:
            if item is not None:
                item.release()
            items.release()

    def _release(self, attempt: _Attempt) -> None:
        """Stop and free ``attempt``'s player (its play callback must already be cancelled)."""
        bindings = self._engine._bindings
        if attempt.player is not None:
            attempt.player.stop()  # returns once libVLC's threads are gone
            if attempt.events is not None:
                for event in _EVENTS:  # detaching one never attached is harmless
                    bindings.event_detach(attempt.events, event, attempt.event_cb, None)
            attempt.player.release()
            attempt.player = None
        if attempt.media is not None:
            attempt.media.release()
            attempt.media = None

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` between reconnects; True if stop() came meanwhile."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                _, kind = self._events.get(timeout=remaining)
            except queue.Empty:
                break
            if kind == "stop":
                return True
        with self._cond:
            return self._stopping

    def _end(self, state: State, reason: str | None) -> None:
        """No more PCM: ``ended``, or ``failed`` for ``reason``."""
        with self._cond:
            if not self._stopping:
                self._state = state
            if reason is not None:
                self._error = f"{self.name}: {reason}"
            self._eof = True
            self._cond.notify_all()
        if reason is not None:
            log.warning("audio source %s: %s", self.name, reason)

    def _notify(self, what: str, detail: str) -> None:
        """Tell ``on_state`` (on this, the supervisor's, thread)."""
        with self._cond:
            if self._stopping:
                return
        log.info("audio source %s: %s", what, detail)
        if self._on_state is None:
            return
        try:
            self._on_state(what, detail)
        except Exception:
            log.exception("on_state of audio source %s failed", self.name)

    def _finish(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()
        self._finished.set()
        self._engine._forget(self)

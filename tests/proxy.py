"""A flaky TCP link on loopback: an asyncio proxy between the agent and the broker.

It forwards bytes both ways and, on request, behaves like a poor 3G/4G link: it delays every
chunk (``delay``: 300–1,500 ms with jitter, order kept), stalls the traffic for a while, drops
every connection (a reset), refuses new ones for a while, or goes half-open (forwards nothing
and closes nothing, as a link whose far end vanished). Each connection is recorded with when it
was accepted and when and by whom it was closed, so tests can measure the agent's reconnect
delays and how soon its keepalive notices a half-open connection.

The proxy runs its own event loop on a thread; every method is safe from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

CHUNK = 65536


@dataclass
class Connection:
    """One client connection through the proxy (times on ``time.monotonic``)."""

    number: int
    accepted_at: float
    refused: bool = False
    # Set when the proxy went half-open on this connection, and when the client closed it.
    half_open_at: float | None = None
    closed_at: float | None = None
    closed_by: str = ""  # "client", "upstream", "drop", "refused", "proxy"
    bytes_up: int = 0
    bytes_down: int = 0
    _writers: list[asyncio.StreamWriter] = field(default_factory=list, repr=False)


class FlakyProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:upstream_port`` with faults on request."""

    def __init__(self, upstream_port: int, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.connections: list[Connection] = []
        self._rng = random.Random(seed)
        self._delay: tuple[float, float] | None = None
        self._stalled_until = 0.0
        self._refuse_until = 0.0
        self._half_open = False
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._ready = threading.Event()

    # ------------------------------------------------------------------ control (any thread)

    def start(self) -> FlakyProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FlakyProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def delay(self, low_s: float | None, high_s: float | None = None) -> None:
        """Delay each chunk by a random time in [low_s, high_s] (None: no delay)."""
        with self._lock:
            self._delay = None if low_s is None else (low_s, high_s or low_s)

    def stall(self, seconds: float) -> None:
        """Forward nothing (buffer it) for ``seconds``, then carry on."""
        with self._lock:
            self._stalled_until = time.monotonic() + seconds

    def refuse(self, seconds: float) -> None:
        """Accept and at once reset every new connection for ``seconds``."""
        with self._lock:
            self._refuse_until = time.monotonic() + seconds

    def drop(self) -> int:
        """Reset every open connection; return how many there were."""
        future = asyncio.run_coroutine_threadsafe(self._drop_all(), self._loop)
        return future.result(10)

    def half_open(self) -> list[Connection]:
        """From now on forward nothing and close nothing on the open connections (new ones are
        refused) until ``heal``; return the connections affected."""
        now = time.monotonic()
        with self._lock:
            self._half_open = True
            open_ = [c for c in self.connections if c.closed_at is None and not c.refused]
            for conn in open_:
                conn.half_open_at = now
        return open_

    def heal(self) -> None:
        """End the half-open state, a stall and a refusal; close the half-open connections'
        upstream sides (as the broker would at its own keepalive)."""
        with self._lock:
            self._half_open = False
            self._stalled_until = 0.0
            self._refuse_until = 0.0
            stuck = [c for c in self.connections if c.half_open_at is not None]
        for conn in stuck:
            asyncio.run_coroutine_threadsafe(self._reset(conn, "proxy"), self._loop).result(10)

    def open_connections(self) -> list[Connection]:
        with self._lock:
            return [c for c in self.connections if c.closed_at is None and not c.refused]

    # ------------------------------------------------------------------ the event loop

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        now = time.monotonic()
        with self._lock:
            conn = Connection(len(self.connections) + 1, now)
            conn._writers.append(writer)
            self.connections.append(conn)
            refuse = now < self._refuse_until or self._half_open
        if refuse:
            conn.refused = True
            await self._reset(conn, "refused")
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            conn.refused = True
            await self._reset(conn, "upstream")
            return
        conn._writers.append(up_writer)
        await asyncio.gather(
            self._pump(conn, reader, up_writer, "up"),
            self._pump(conn, up_reader, writer, "down"),
        )

    async def _pump(
        self,
        conn: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        """Read one direction, hand chunks to a writer that honours delay, stall, half-open."""
        outbox: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._send(conn, outbox, writer, direction))
        due = 0.0
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                with self._lock:
                    span = self._delay
                    rng_delay = self._rng.uniform(*span) if span else 0.0
                due = max(due, time.monotonic() + rng_delay)  # delayed, never reordered
                await outbox.put((due, data))
        await outbox.put(None)
        await sender
        if direction == "down" and conn.half_open_at is not None and conn.closed_at is None:
            return  # the broker gave up on a half-open connection: the client must not hear it
        if conn.closed_at is None:
            conn.closed_at = time.monotonic()
            conn.closed_by = "client" if direction == "up" else "upstream"
        await self._reset(conn, conn.closed_by)

    async def _send(
        self,
        conn: Connection,
        outbox: asyncio.Queue[tuple[float, bytes] | None],
        writer: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        while True:
            item = await outbox.get()
            if item is None or conn.closed_at is not None:
                return
            due, data = item
            while True:
                with self._lock:
                    wait = max(due, self._stalled_until) - time.monotonic()
                    black_hole = conn.half_open_at is not None
                if black_hole:
                    data = b""  # swallowed: the far end never sees it
                    break
                if wait <= 0:
                    break
                await asyncio.sleep(min(wait, 0.05))
            if not data:
                continue
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                return
            if direction == "up":
                conn.bytes_up += len(data)
            else:
                conn.bytes_down += len(data)

    async def _reset(self, conn: Connection, by: str) -> None:
        if conn.closed_at is None:
            conn.closed_at = time.monotonic()
            conn.closed_by = by
        for writer in conn._writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    # SO_LINGER 0: close with a reset, as a link that breaks does.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
        conn._writers.clear()

    async def _drop_all(self) -> int:
        with self._lock:
            open_ = [c for c in self.connections if c.closed_at is None and not c.refused]
        for conn in open_:
            await self._reset(conn, "drop")
        return len(open_)

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop_all()

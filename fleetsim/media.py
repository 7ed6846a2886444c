"""The program's media server: one local HTTP server that counts what the fleet asks of it.

    python -m fleetsim.media COUNT SEED

runs it as a process of its own (so that its threads do not slow the clock of the process
that timestamps acks): prints ``{"port": …, "media": [...]}``, then answers ``stats`` with its
counters and stops at ``stop``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RANGE = re.compile(r"^bytes=(\d+)-$")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: a fleet connects in bursts


class MediaServer:
    """Files held in memory, served over HTTP/1.1 with keep-alive and ``Range: bytes=N-``.

    Counts the body bytes sent, the requests, and the downloads in progress (a request from
    its first byte read to its last byte written): ``peak`` is the most at any instant.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.bytes_sent = 0
        self.requests = 0
        self.active = 0
        self.peak = 0
        self.peak_at = 0.0
        self._httpd = _Server(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def add_program_files(self, count: int, rng: random.Random) -> list[dict[str, Any]]:
        """``count`` image files of 4–16 KiB of random bytes; their signed media records."""
        media = []
        for index in range(count):
            data = rng.randbytes(rng.randrange(4096, 16385))
            name = f"p{index:02d}-{hashlib.sha256(data).hexdigest()[:12]}.png"
            self.files[name] = data
            media.append(
                {
                    "url": f"http://127.0.0.1:{self.port}/{name}",
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "mime": "image/png",
                }
            )
        return media

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_sent = self.requests = self.peak = 0
            self.peak_at = 0.0

    def start(self) -> MediaServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _begin(self) -> None:
        with self._lock:
            self.requests += 1
            self.active += 1
            if self.active > self.peak:
                self.peak, self.peak_at = self.active, time.monotonic()

    def _end(self, sent: int) -> None:
        with self._lock:
            self.active -= 1
            self.bytes_sent += sent


def _handler(server: MediaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15  # an idle kept-alive connection is closed after this long

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: a thousand devices would fill the terminal."""

        def do_GET(self) -> None:
            data = server.files.get(self.path.lstrip("/"))
            if data is None:
                self.send_error(404)
                return
            server._begin()
            sent = 0
            try:
                start = 0
                match = _RANGE.match(self.headers.get("Range", ""))
                if match and int(match[1]) < len(data):
                    start = int(match[1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])
                sent = len(data) - start
            except ConnectionError:
                self.close_connection = True  # the device went away; it resumes later
            finally:
                server._end(sent)

    return Handler


def stats(server: MediaServer) -> dict[str, int]:
    return {"bytes_sent": server.bytes_sent, "requests": server.requests, "peak": server.peak}


def main(argv: list[str]) -> int:
    count, seed = int(argv[0]), int(argv[1])
    server = MediaServer().start()
    media = server.add_program_files(count, random.Random(seed))
    print(json.dumps({"port": server.port, "media": media}), flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            print(json.dumps(stats(server)), flush=True)
        elif line.strip() == "stop":
            break
    server.stop()
    print(json.dumps({"stopped": True, **stats(server)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

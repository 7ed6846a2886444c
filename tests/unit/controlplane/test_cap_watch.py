"""``cap watch URL --dry-run`` against a real HTTP feed: a feed that fails is tried again after a
longer pause, each alert of the feed is planned once however often the feed is read, and a dry
run needs neither a broker nor a key."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controlplane.cli import main
from tests.unit.controlplane.conftest import DATA, KTTV


def alert(sent: datetime) -> bytes:
    stamp = sent.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    later = (sent + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    text = (DATA / "alert-flood.xml").read_text(encoding="utf-8")
    text = text.replace("2026-11-26T13:00:00+07:00", stamp)
    return text.replace("2026-11-26T19:00:00+07:00", later).encode()


class Feed:
    """An Atom feed of one alert; the first ``failures`` reads of the feed answer 503."""

    def __init__(self, document: bytes, failures: int) -> None:
        self.reads: list[str] = []
        feed = (
            b'<feed xmlns="http://www.w3.org/2005/Atom"><title>KTTV</title>'
            b'<entry><id>1</id><link type="application/cap+xml" href="/cap/1.xml"/></entry>'
            b"</feed>"
        )
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.reads.append(self.path)
                failing = self.path == "/feed" and outer.reads.count("/feed") <= failures
                body = {"/feed": feed, "/cap/1.xml": document}.get(self.path)
                if failing or body is None:
                    self.send_error(503 if failing else 404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def feed() -> Iterator[Feed]:
    served = Feed(alert(datetime.now(UTC) - timedelta(minutes=1)), failures=1)
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def test_a_feed_is_retried_with_backoff_and_each_alert_planned_once(
    feed: Feed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "control.toml"
    config.write_text(
        f'[cap]\nareas = "{DATA / "areas.toml"}"\n[[cap.senders]]\nsender = "{KTTV}"\n',
        encoding="utf-8",
    )
    args = ["cap", "watch", feed.url, "--config", str(config), "--dry-run"]
    assert main([*args, "--interval", "0.2", "--duration", "2"]) == 0
    out, err = capsys.readouterr()
    assert "cannot read" in err and "503" in err and "trying again in 0.4 s" in err
    assert feed.reads.count("/feed") >= 3  # failed, then read again and again
    assert feed.reads.count("/cap/1.xml") == 1
    assert out.count("Alert KTTV-2026-1126-001 from canhbao@kttv.gov.vn") == 1
    assert "emergency.start grp:q10-p12 " in out and "dry run: nothing sent" in out

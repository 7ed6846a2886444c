"""CAP 1.2 alerts end to end: ``ttcs-control cap send`` reaches the two real agents of the
affected ward over a real Mosquitto (not the third, outside the area); their headless screens
draw the emergency (red and yellow in the screenshot) with the alert's image fetched from the
media folder over HTTP by its hash, and their speakers, captured to WAV files, speak the
headline and the instruction; a dry run sends nothing, the same alert again is refused, and the
Cancel that ``cap watch`` finds in its folder ends the emergency on both."""

from __future__ import annotations

import base64
import functools
import io
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pygame
import pytest

from controlplane.keys import SigningKey
from player.draw import Theme
from player.normalize import normalize
from player.output import RATE
from player.speaker import rms, wav_pcm
from player.tts import Tts
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    agent_cli,
    agent_status,
    control_cli,
    provision,
    wait_for,
)
from tests.media import RED, jpeg_frames

SENDER = "canhbao@kttv.gov.vn"
AREAS = """geocode_names = ["VN-DVHC"]
[[groups]]
id = "q10-p12"
name = "Phường 12, Quận 10"
codes = ["27175"]
[[groups]]
id = "q10-p13"
name = "Phường 13, Quận 10"
codes = ["27178"]
"""
HEADLINE = "Cảnh báo lũ quét tại Phường 12"
INSTRUCTION = "Di chuyển lên tầng cao. Không đi qua đường ngập."
SCREEN = 'enabled = true\ndriver = "headless"\nwidth = 480\nheight = 270\nward_name = "Phường 12"'
ALERT_BG, ALERT_BAND = Theme.emergency_bg, Theme.emergency_band  # the defaults: every profile


def cap_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def alert_xml(identifier: str, sent: datetime, image: bytes) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>{SENDER}</sender>
  <sent>{cap_time(sent)}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>vi-VN</language>
    <category>Met</category>
    <event>Lũ quét</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <expires>{cap_time(sent + timedelta(hours=1))}</expires>
    <headline>{HEADLINE}</headline>
    <description>Mưa lớn 120 mm trong 3 giờ; nhiều tuyến đường đang ngập.</description>
    <instruction>{INSTRUCTION}</instruction>
    <resource>
      <resourceDesc>Bản đồ vùng ngập</resourceDesc>
      <mimeType>image/jpeg</mimeType>
      <size>{len(image)}</size>
      <derefUri>{base64.b64encode(image).decode()}</derefUri>
    </resource>
    <area>
      <areaDesc>Phường 12, Quận 10</areaDesc>
      <geocode><valueName>VN-DVHC</valueName><value>27175</value></geocode>
    </area>
  </info>
</alert>
""".encode()


def cancel_xml(identifier: str, of: str, sent: datetime) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>{SENDER}</sender>
  <sent>{cap_time(sent)}</sent>
  <status>Actual</status>
  <msgType>Cancel</msgType>
  <scope>Public</scope>
  <references>{SENDER},{of},{cap_time(sent - timedelta(minutes=1))}</references>
</alert>
""".encode()


class MediaFolderServer:
    """The media folder served over real HTTP, as an operator's web server would; counts GETs."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.gets: list[str] = []
        gets = self.gets

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                gets.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        handler = functools.partial(Handler, directory=str(folder))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cap/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def media(tmp_path: Path) -> Iterator[MediaFolderServer]:
    server = MediaFolderServer(tmp_path / "www")
    yield server
    server.close()


def showing(device: Device) -> str | None:
    shown: str | None = agent_status(device)["now"]["screen"]
    return shown


def capture_of(device: Device) -> Path:
    return device.state_dir.parent / "speaker.wav"


def captured(device: Device) -> bytes:
    path = capture_of(device)
    return wav_pcm(path) if path.exists() else b""


def speech_chunks(text: str) -> list[bytes]:
    """The PCM chunks an agent speaks for ``text`` (espeak-ng is deterministic; gain 1)."""
    tts = Tts({}, "vi-north", Path(tempfile.mkdtemp()), lambda code, detail: None)
    try:
        return [chunk.samples for chunk in tts.synthesize(normalize(text))]
    finally:
        tts.close()


def loud_probe(pcm: bytes) -> npt.NDArray[np.float64]:
    """A quarter of a second of ``pcm`` from its first loud sample on."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    start = int(np.argmax(np.abs(samples) > 2000))
    probe = samples[start : start + RATE // 4]
    assert len(probe) == RATE // 4, "a speech chunk shorter than a quarter of a second"
    return probe


def heard(pcm: bytes, probe: npt.NDArray[np.float64]) -> bool:
    """Whether ``probe`` is in ``pcm`` at any volume (normalized cross-correlation > 0.95)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if len(samples) < len(probe):
        return False
    dots = np.correlate(samples, probe, "valid")
    energy = np.concatenate(([0.0], np.cumsum(samples**2)))
    norms = np.sqrt(energy[len(probe) :] - energy[: -len(probe)]) * np.linalg.norm(probe)
    return bool(np.max(dots / np.maximum(norms, 1e-9)) > 0.95)


def voiced_seconds(pcm: bytes) -> float:
    """How long ``pcm`` is not silent, in 20 ms windows."""
    window = 2 * RATE // 50
    loud = sum(1 for i in range(0, len(pcm), window) if rms(pcm[i : i + window]) > 300)
    return loud / 50


def alert_pixels(device: Device) -> tuple[float, float]:
    """The shares of the screenshot's pixels in the emergency's red and in its band's yellow."""
    shot = device.state_dir.parent / "shot.png"
    out = agent_cli("screenshot", str(shot), "--config", str(device.config))
    assert out.returncode == 0, out.stderr
    image = pygame.image.load(io.BytesIO(shot.read_bytes()), "shot.png")
    rgb = pygame.image.tobytes(image, "RGB")
    pixels = [rgb[i : i + 3] for i in range(0, len(rgb), 3)]
    red, band = bytes(ALERT_BG), bytes(ALERT_BAND)
    return pixels.count(red) / len(pixels), pixels.count(band) / len(pixels)


def test_a_cap_alert_reaches_the_wards_devices_and_its_cancel_ends_it(
    tmp_path: Path, broker: Broker, signing_key: SigningKey, media: MediaFolderServer
) -> None:
    keyfile = tmp_path / "control.key"
    signing_key.save(keyfile)
    (tmp_path / "areas.toml").write_text(AREAS, encoding="utf-8")
    config = tmp_path / "control.toml"
    config.write_text(
        f'[cap]\nareas = "areas.toml"\nledger = "state/cap.sqlite"\nmedia_dir = "www/cap"\n'
        f'media_url = "{media.url}"\nmedia_in_emergencies = true\n'
        f'[[cap.senders]]\nsender = "{SENDER}"\n',
        encoding="utf-8",
    )

    def real_players(device_id: str, *groups: str) -> Device:
        capture = tmp_path / device_id / "speaker.wav"
        speaker = f'enabled = true\noutput = "file:{capture}"\namplifier_warmup_s = 0.0'
        return provision(
            tmp_path, broker, signing_key, device_id=device_id, groups=groups,
            screen=SCREEN, speaker=speaker,
        )  # fmt: skip

    ward = [real_players(f"q10-p12-loa-0{i}", "q10-p12", "q10") for i in (1, 2)]
    outside = real_players("q10-p13-loa-01", "q10-p13", "q10")
    agents = [AgentProcess(d).start(wait_online=True) for d in (*ward, outside)]
    common = ("--config", str(config), "--broker", broker.url, "--key", str(keyfile))
    now = datetime.now(UTC)
    image = jpeg_frames((64, 48), [RED])[0]
    alert = tmp_path / "alert.xml"
    alert.write_bytes(alert_xml("KTTV-E2E-001", now - timedelta(minutes=1), image))
    try:
        with Listener(broker, [f"{PREFIX}/dev/+/ack", f"{PREFIX}/+/+/cmd"]) as listener:
            dry = control_cli("cap", "send", str(alert), "--dry-run", *common)
            assert dry.returncode == 0, dry.stdout + dry.stderr
            assert "emergency.start grp:q10-p12 " in dry.stdout and "dry run" in dry.stdout
            assert not list((tmp_path / "www").rglob("*")), "a dry run stored a file"

            sent = control_cli("cap", "send", str(alert), *common)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            rows = [line.split() for line in sent.stdout.splitlines()]
            assert {r[0]: r[1] for r in rows if r[0].startswith("q10-")} == {
                d.device_id: "done" for d in ward
            }, sent.stdout
            assert "2 done, 0 failed, 0 rejected, 0 waiting of 2" in sent.stderr
            # One command went out (the dry run sent none), to the ward's group.
            commands = [t for t, _, _ in listener.drain() if t.endswith("/cmd")]
            assert commands == [f"{PREFIX}/grp/q10-p12/cmd"]

            def alert_shown() -> str | None:
                shown = {showing(d) for d in ward}
                (only,) = shown if len(shown) == 1 else (None,)
                return only if only is not None and only.startswith("cap-") else None

            bulletin = wait_for(alert_shown, 10, "the alert on the ward's screens")
            assert showing(outside) != bulletin
            for device in ward:
                red, band = alert_pixels(device)
                assert red > 0.3 and band > 0.05, (device.device_id, red, band)
            # The headline, then the instruction: the start of each spoken chunk in each capture.
            chunks = speech_chunks(f"{HEADLINE}. {INSTRUCTION}")
            probes = [loud_probe(chunk) for chunk in chunks]
            wait_for(
                lambda: all(all(heard(captured(d), p) for p in probes) for d in ward),
                30,
                "the headline and the instruction spoken on both loudspeakers",
            )
            speech = voiced_seconds(b"".join(chunks))
            assert speech > 1.0
            for device in ward:
                assert voiced_seconds(captured(device)) >= speech, device.device_id
            assert alert_pixels(outside) == (0.0, 0.0)
            assert voiced_seconds(captured(outside)) == 0.0
            stored = list((tmp_path / "www" / "cap").iterdir())
            assert [p.read_bytes() for p in stored] == [image]
            assert sorted(media.gets) == [f"/cap/{stored[0].name}"] * 2  # each device once

            again = control_cli("cap", "send", str(alert), *common)
            assert again.returncode == 3 and "duplicate" in again.stdout, again.stdout
            assert [t for t, _, _ in listener.drain() if t.endswith("/cmd")] == commands

        feed = tmp_path / "feed"
        feed.mkdir()
        (feed / "1-alert.xml").write_bytes(alert.read_bytes())  # acted on already
        cancel = cancel_xml("KTTV-E2E-002", "KTTV-E2E-001", now)
        (feed / "2-cancel.xml").write_bytes(cancel)
        watch = control_cli(
            "cap", "watch", str(feed), "--interval", "0.5", "--duration", "4", *common,
            timeout=60,
        )  # fmt: skip
        assert watch.returncode == 0, watch.stderr
        logged = [line for line in watch.stderr.splitlines() if "KTTV-E2E-00" in line]
        assert len(logged) == 2, watch.stderr  # one line per alert, however often it looks
        assert "refused Alert KTTV-E2E-001" in logged[0] and "duplicate" in logged[0]
        assert "acted on Cancel KTTV-E2E-002" in logged[1]
        assert "emergency.stop grp:q10-p12 (2 done" in logged[1]
        wait_for(lambda: all(showing(d) != bulletin for d in ward), 10, "the alert to end")
        for device in ward:
            assert agent_status(device)["now"]["speaker"] != bulletin
            assert alert_pixels(device) == (0.0, 0.0), device.device_id
        assert voiced_seconds(captured(outside)) == 0.0
    finally:
        for agent in agents:
            agent.stop()

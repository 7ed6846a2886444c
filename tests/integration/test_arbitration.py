"""Announcements meeting on two real agents of one group, as a district operator sends them.

A ``play.now``, a second longer one while the first speaks, an ``emergency.start`` a few
seconds later, its ``emergency.stop``, then a synchronized group ``play.now`` sent with
``ttcs-control send`` with its ``play_at`` 8 s ahead. Both loudspeakers must start the district
call together, the first announcement (cut by the emergency) must be spoken again, and the
playlogs of both devices must account for every announcement accepted.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controlplane.keys import SigningKey
from player.normalize import normalize
from player.speaker import wav_pcm
from player.tts import Tts
from protocol import format_time
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    command,
    control_cli,
    provision,
    wait_for,
)

GROUP = "q10-p12"
FIRST = (
    "Thông báo thứ nhất: ngày mai phường tổ chức tiêm chủng tại trạm y tế phường, từ bảy giờ "
    "sáng, đề nghị bà con mang theo sổ tiêm chủng và căn cước công dân."
)
SECOND = (
    "Thông báo thứ hai: từ bảy giờ sáng đến mười một giờ trưa thứ bảy, khu phố ba tạm ngừng "
    "cấp nước để sửa đường ống. Đề nghị bà con chủ động trữ nước."
)
ALERT = "Khẩn cấp: áp thấp nhiệt đới gần bờ, bà con không ra biển."
CALL = "Thông báo chung của quận: mời bà con dự họp khu phố lúc mười chín giờ."


def spoken(bid: str, text: str, level: str = "normal") -> dict[str, Any]:
    return {
        "id": bid,
        "title": f"Loa {bid}",
        "level": level,
        "speaker": {"kind": "tts", "text": text, "chime": False},
    }


def capture_of(device: Device) -> Path:
    return device.state_dir.parent.parent / f"{device.device_id}.wav"


@pytest.fixture
def street(
    tmp_path: Path, broker: Broker, signing_key: SigningKey
) -> Iterator[list[tuple[Device, AgentProcess]]]:
    devices = []
    for i in (1, 2):
        name = f"q10-p12-loa-0{i}"
        capture = tmp_path / f"{name}.wav"
        speaker = f'enabled = true\noutput = "file:{capture}"\namplifier_warmup_s = 0.0'
        devices.append(
            provision(
                tmp_path, broker, signing_key, device_id=name, groups=(GROUP,), speaker=speaker
            )
        )
    agents = [AgentProcess(d).start(wait_online=True) for d in devices]
    yield list(zip(devices, agents, strict=True))
    for agent in agents:
        agent.stop()


def speech_of(text: str) -> bytes:
    """The PCM an agent speaks for ``text`` (espeak-ng is deterministic; volume 100 is gain 1)."""
    tts = Tts({}, "vi-north", Path(tempfile.mkdtemp()), lambda code, detail: None)
    try:
        return b"".join(chunk.samples for chunk in tts.synthesize(normalize(text)))
    finally:
        tts.close()


def times_spoken(capture: bytes, speech: bytes) -> int:
    """How often the start of ``speech`` (its first loud second) is in ``capture``."""
    samples = memoryview(speech).cast("h")
    start = next(i for i, sample in enumerate(samples) if abs(sample) > 2000)
    probe = speech[2 * start : 2 * start + 22050]  # half a second
    return capture.count(probe)


def test_every_announcement_is_played_replayed_or_reported_and_the_call_starts_together(
    street: list[tuple[Device, AgentProcess]],
    broker: Broker,
    signing_key: SigningKey,
    tmp_path: Path,
) -> None:
    keyfile = tmp_path / "control.key"
    signing_key.save(keyfile)
    devices = [d.device_id for d, _ in street]
    target = f"grp:{GROUP}"
    subs = [f"{PREFIX}/dev/+/{leaf}" for leaf in ("ack", "status", "playlog")]
    with Listener(broker, subs) as listener:

        def send(doc_type: str, body: dict[str, Any]) -> str:
            topic, payload, doc = command(signing_key, doc_type, target=target, body=body)
            listener.publish(topic, payload)

            def done() -> bool:
                messages = listener.drain()
                acks = [(t.split("/")[-2], json.loads(p)) for t, p, _ in messages if "/ack" in t]
                answered = {d for d, a in acks if a["cmd"] == doc["id"] and a["status"] == "done"}
                return answered >= set(devices)

            wait_for(done, 15, f"{doc_type} done on both devices")
            return str(doc["id"])

        def speaking(bulletin: str | None) -> None:
            def now_on(device: str) -> str | None:
                statuses = listener.json_on(f"/dev/{device}/status")
                return statuses[-1]["now"]["speaker"] if statuses else "?"

            wait_for(
                lambda: all(now_on(d) == bulletin for d in devices),
                30,
                f"both loudspeakers on {bulletin}",
            )

        send("volume.set", {"percent": 100})  # gain 1: the capture holds the speech as spoken
        first = send("play.now", {"bulletin": spoken("mot", FIRST)})
        speaking("mot")
        second = send("play.now", {"bulletin": spoken("hai", SECOND)})
        alert = send("emergency.start", {"bulletin": spoken("khan", ALERT, "emergency")})
        speaking("khan")
        send("emergency.stop", {"ref": alert})
        speaking("mot")  # the first, again from its start

        play_at = datetime.now(UTC) + timedelta(seconds=8)
        body = {"bulletin": spoken("chung", CALL), "play_at": format_time(play_at)}
        body_file = tmp_path / "call.json"
        body_file.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
        args = ["--body-file", str(body_file), "--broker", broker.url, "--key", str(keyfile)]
        out = control_cli("send", target, "play.now", *args, "--wait", "3", timeout=90)
        print(out.stdout, out.stderr)
        assert out.returncode == 0, out.stdout + out.stderr
        errors = {
            m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\S+)\s+in sync ([+-]\d+) ms", out.stdout, re.MULTILINE)
        }
        assert set(errors) == set(devices), out.stdout
        assert all(abs(e) <= 50 for e in errors.values()), errors
        assert abs(errors[devices[0]] - errors[devices[1]]) <= 50, errors
        call_id = re.search(r"sent play.now (\S+)", out.stderr)
        assert call_id is not None
        speaking(None)  # everything has been said

        def finals() -> dict[str, dict[str, list[tuple[str, Any]]]] | None:
            found: dict[str, dict[str, list[tuple[str, Any]]]] = {d: {} for d in devices}
            for message in listener.json_on("/playlog"):
                for entry in message["entries"]:
                    if entry["channel"] == "speaker":
                        history = found[message["device"]].setdefault(entry["ref"], [])
                        history.append((entry["outcome"], entry.get("replayed")))
            wanted = {first, second, alert, call_id.group(1)}
            ended = all(
                set(refs) >= wanted and all(h[-1] != ("interrupted", True) for h in refs.values())
                for refs in found.values()
            )
            return found if ended else None

        found = wait_for(finals, 30, "every announcement in both playlogs")
    for device in devices:
        history = found[device]
        assert history[first][0] == ("interrupted", True)  # cut by the emergency…
        assert history[first][-1] == ("completed", None)  # … and spoken again in full
        assert history[second][-1] == ("completed", None)
        assert history[alert] in ([("interrupted", False)], [("completed", None)])
        assert history[call_id.group(1)] == [("completed", None)]
    speech = speech_of(FIRST)
    for box, _ in street:
        assert times_spoken(wav_pcm(capture_of(box)), speech) >= 2

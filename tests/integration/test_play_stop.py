"""``play.stop`` in a real agent: a long spoken ``play.now`` withdrawn while it speaks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.control_socket import request
from controlplane.keys import SigningKey
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Listener,
    command,
    provision,
    wait_for,
)

LONG = (
    "Thông báo của phường: ngày mai phường tổ chức tiêm chủng tại trạm y tế phường, từ bảy giờ "
    "sáng đến mười một giờ trưa, đề nghị bà con mang theo sổ tiêm chủng và căn cước công dân. "
    "Từ chiều thứ bảy, khu phố ba tạm ngừng cấp nước để sửa đường ống, bà con chủ động trữ nước."
)


def test_a_long_play_now_stopped_while_it_speaks_is_interrupted(
    tmp_path: Path, broker: Broker, signing_key: SigningKey
) -> None:
    capture = tmp_path / "loa.wav"
    speaker = f'enabled = true\noutput = "file:{capture}"\namplifier_warmup_s = 0.0'
    device = provision(tmp_path, broker, signing_key, device_id="q10-p12-loa-05", speaker=speaker)
    target = f"dev:{device.device_id}"
    subs = [f"{PREFIX}/dev/{device.device_id}/{leaf}" for leaf in ("ack", "playlog")]
    agent = AgentProcess(device).start(wait_online=True)
    try:
        with Listener(broker, subs) as listener:
            bulletin = {
                "id": "tiem-chung",
                "title": "Tiêm chủng",
                "speaker": {"kind": "tts", "text": LONG},
            }
            topic, payload, play = command(
                signing_key, "play.now", target=target, body={"bulletin": bulletin}
            )
            listener.publish(topic, payload)

            def speaking() -> bool:
                answer: dict[str, Any] = request(device.socket, "status")
                return bool(answer.get("ok")) and answer["status"]["now"]["speaker"] == "tiem-chung"

            wait_for(speaking, 15, "the announcement to speak")
            body = {"ref": play["id"]}
            topic, payload, stop = command(signing_key, "play.stop", target=target, body=body)
            listener.publish(topic, payload)
            ack = listener.wait_ack(stop["id"], "done")
            assert ack["reason"] is None and "stopped on the loudspeakers" in ack["detail"]
            wait_for(lambda: not speaking(), 10, "the loudspeakers to fall silent")
            assert agent.stop() == 0  # the play log is flushed at shutdown
            entries = wait_for(
                lambda: [e for m in listener.json_on("/playlog") for e in m["entries"]],
                10,
                "the play log",
            )
    finally:
        agent.stop()
    [entry] = [e for e in entries if e["bulletin"] == "tiem-chung"]
    assert (entry["channel"], entry["outcome"], entry["replayed"]) == (
        "speaker",
        "interrupted",
        False,
    )

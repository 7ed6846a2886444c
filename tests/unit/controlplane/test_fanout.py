"""The fan-out view: members from retained states, answers counted once, who did not answer."""

from __future__ import annotations

import io
import json

from controlplane.fanout import FanOut, Member, Progress, progress_line


def message(device: str, leaf: str, **doc: object) -> tuple[str, bytes]:
    return f"ttcs/v1/dev/{device}/{leaf}", json.dumps(doc).encode()


def ack(device: str, status: str, cmd: str = "cmd-0001") -> tuple[str, bytes]:
    return message(device, "ack", v=1, cmd=cmd, status=status, reason=None, detail="")


def test_members_come_from_retained_states_naming_the_group() -> None:
    fan = FanOut("cmd-0001", "grp:q10")
    fan.take(*message("a", "state", online=True, groups=["q10-p12", "q10"]))
    fan.take(*message("b", "state", online=True, groups=["q10-p13", "q10"]))
    fan.take(*message("c", "state", online=True, groups=["q11-p01", "q11"]))
    fan.take(*message("d", "state", online=False))  # a last will names no groups
    fan.take(*message("b", "status", at="2026-12-03T10:00:00Z"))
    fan.take(*message("e", "status", at="2026-12-03T09:00:00Z"))  # its state comes after
    fan.take(*message("e", "state", online=True, groups=["q10"]))
    assert sorted(fan.members) == ["a", "b", "e"]
    assert fan.last_seen("b") == "2026-12-03T10:00:00Z"
    assert fan.last_seen("e") == "2026-12-03T09:00:00Z"
    assert fan.last_seen("a") is None
    assert not fan.complete()


def test_a_last_will_marks_a_member_the_store_knows_offline() -> None:
    fan = FanOut("cmd-0001", "grp:q10", {"a": Member("a", True, "2026-12-01T08:00:00Z")})
    fan.take(*message("a", "state", online=False))
    assert fan.members["a"].online is False
    assert fan.last_seen("a") == "2026-12-01T08:00:00Z"


def test_the_first_final_answer_counts_and_other_commands_are_ignored() -> None:
    fan = FanOut("cmd-0001", "grp:q10", {"a": Member("a"), "b": Member("b")})
    assert fan.take(*ack("a", "accepted")) is not None
    fan.take(*ack("a", "done"))
    fan.take(*ack("a", "duplicate"))  # a redelivery keeps "done"
    assert fan.take(*ack("b", "done", cmd="another-01")) is None
    assert fan.counts() == {"done": 1, "failed": 0, "rejected": 0, "duplicate": 0, "waiting": 1}
    fan.take(*ack("b", "rejected"))
    assert fan.complete() and fan.counts()["rejected"] == 1


def test_the_table_lists_who_did_not_answer_with_when_they_were_last_seen() -> None:
    members = {
        "q10-p12-loa-01": Member("q10-p12-loa-01", True, "2026-12-03T10:00:00Z"),
        "q10-p12-loa-02": Member("q10-p12-loa-02", False, "2026-12-01T08:00:00Z"),
        "q10-p12-loa-03": Member("q10-p12-loa-03"),
    }
    fan = FanOut("cmd-0001", "grp:q10-p12", members)
    fan.take(*ack("q10-p12-loa-01", "done"))
    header, *rows = fan.unanswered_table()
    assert header.split() == ["DEVICE", "ONLINE", "LAST", "SEEN"]
    assert [r.split() for r in rows] == [
        ["q10-p12-loa-02", "NO", "2026-12-01T08:00:00Z"],
        ["q10-p12-loa-03", "?", "never"],
    ]
    doc = fan.as_json()
    assert doc["counts"]["done"] == 1 and doc["counts"]["waiting"] == 2
    assert doc["acks"]["q10-p12-loa-01"]["status"] == "done"
    assert [u["device"] for u in doc["unanswered"]] == ["q10-p12-loa-02", "q10-p12-loa-03"]
    assert doc["unanswered"][0] == {
        "device": "q10-p12-loa-02",
        "online": False,
        "last_seen": "2026-12-01T08:00:00Z",
    }


def test_a_device_target_waits_for_that_device_alone() -> None:
    fan = FanOut("cmd-0001", "dev:q10-p12-loa-01")
    assert fan.waiting() == ["q10-p12-loa-01"]
    fan.take(*message("q10-p12-loa-02", "state", online=True, groups=["q10-p12"]))
    fan.take(*ack("q10-p12-loa-01", "failed"))
    assert fan.complete() and fan.counts()["failed"] == 1


def test_the_progress_line_adds_up_several_commands() -> None:
    one = FanOut("cmd-0001", "grp:a", {"x": Member("x"), "y": Member("y")})
    two = FanOut("cmd-0002", "grp:b", {"z": Member("z"), "w": Member("w")})
    one.take(*ack("x", "done"))
    two.take(*ack("z", "failed", cmd="cmd-0002"))
    line = progress_line([one, two], 1.25)
    assert line == (
        "[############............] 1 done, 1 failed, 0 rejected, 2 waiting of 4 (1.2 s)"
    )


def test_off_a_terminal_progress_is_a_line_per_change_at_most_once_a_second() -> None:
    out = io.StringIO()
    progress = Progress(out)
    progress.show("[..] 0 done, 0 failed, 0 rejected, 2 waiting of 2 (0.0 s)", 0.0)
    progress.show("[..] 0 done, 0 failed, 0 rejected, 2 waiting of 2 (0.5 s)", 0.5)  # same
    progress.show("[#.] 1 done, 0 failed, 0 rejected, 1 waiting of 2 (0.6 s)", 0.6)  # too soon
    progress.show("[#.] 1 done, 0 failed, 0 rejected, 1 waiting of 2 (1.1 s)", 1.1)
    progress.show("[##] 2 done, 0 failed, 0 rejected, 0 waiting of 2 (1.2 s)", 1.2, final=True)
    assert [line.split(" (")[1] for line in out.getvalue().splitlines()] == [
        "0.0 s)",
        "1.1 s)",
        "1.2 s)",
    ]

"""Fuzzing the program and bulletin models (``protocol.documents``) on their own.

Each model is given valid documents mutated field by field (dropped, replaced by any JSON
value, retyped, extra keys) and arbitrary JSON. ``model_validate`` either raises
``ValidationError`` or returns a model whose input ``tests/unit/spec.py`` finds nothing wrong
with, and whose dump validates again to the same model.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from protocol import BODY_MODELS, Bulletin
from tests import fuzzing
from tests.unit.fakes import bulletin, program_body
from tests.unit.spec import body_problems, bulletin_problems
from tests.unit.test_fuzz import TEXT, _parent, json_values, paths

NAME = "documents (program, bulletin, command bodies)"
SHA = "ab" * 32
MEDIA = {
    "url": "https://cdn.q10.example.vn/anh.png",
    "sha256": SHA,
    "size": 1234,
    "mime": "image/png",
}
BULLETINS: list[dict[str, Any]] = [
    bulletin(
        valid_from="2026-11-26T00:00:00Z",
        valid_until="2026-12-31T00:00:00Z",
        schedule={"weekdays": [1, 3, 5], "times": ["06:00", "17:30"]},
    ),
    {
        "id": "tb.anh-01",
        "title": "Lịch cắt điện",
        "level": "priority",
        "screen": {"kind": "image", "media": MEDIA, "duration_ms": 20000},
        "speaker": {"kind": "audio", "media": {**MEDIA, "mime": "audio/mpeg"}, "chime": False},
    },
    {
        "id": "tb-truc-tiep",
        "title": "Tiếp sóng Đài phát thanh",
        "level": "emergency",
        "speaker": {"kind": "stream", "url": "rtsp://radio.q10.example.vn/live"},
    },
]
# (type, body) for every document type the protocol knows.
BODIES: list[tuple[str, dict[str, Any]]] = [
    ("program", {**program_body(3), "bulletins": BULLETINS}),
    ("play.now", {"bulletin": BULLETINS[0], "play_at": "2026-11-26T06:01:00Z", "repeat": 2}),
    ("emergency.start", {"bulletin": BULLETINS[2], "repeat_every_s": 600}),
    ("emergency.stop", {"ref": "01JDX3M7K2Q8"}),
    ("play.stop", {"ref": "01JDX3M7K2Q8"}),
    ("stream.start", {"url": "https://radio.example.vn/live.mp3", "channels": ["speaker"]}),
    ("stream.stop", {}),
    ("volume.set", {"percent": 40}),
    ("power.set", {"screen": "off", "amplifier": "auto"}),
    ("screenshot", {"max_width": 640}),
    ("logs.upload", {"lines": 200}),
    ("ping", {}),
    ("agent.restart", {}),
]


@st.composite
def mutated(draw: st.DrawFn, original: Any) -> Any:
    """``original`` with one to four of its fields dropped, replaced, added or retyped."""
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        candidates = list(paths(doc))
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent = _parent(doc, path)
        action = draw(st.sampled_from(["drop", "replace", "add", "retype", "swap"]))
        if action == "drop":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(TEXT)] = draw(json_values)
        elif action == "swap":  # a value of another field of the same document
            other = draw(st.sampled_from(candidates))
            parent[path[-1]] = copy.deepcopy(_parent(doc, other)[other[-1]])
        else:
            old = parent[path[-1]]
            retyped: list[Any] = [str(old), [old], {"value": old}, None, "", 0]
            if isinstance(old, int) and not isinstance(old, bool):
                retyped += [float(old), bool(old), -old, old + 1, old - 1, old * 1000]
            if isinstance(old, str):
                retyped += [old.upper(), old + " ", old[:-1], old * 40]
            parent[path[-1]] = draw(st.sampled_from(retyped))
    return doc


def validate_and_check(model: type[BaseModel], kind: str | None, data: Any) -> None:
    try:
        parsed = model.model_validate(data)
    except ValidationError:
        return
    fuzzing.accepted(NAME)
    problems = bulletin_problems("bulletin", data) if kind is None else body_problems(kind, data)
    assert problems == [], (problems, data)
    assert model.model_validate(parsed.model_dump()) == parsed


@fuzzing.fuzz_settings(200)
@given(data=st.sampled_from(BULLETINS).flatmap(mutated))
@fuzzing.target(NAME)
def test_bulletin_mutations(data: Any) -> None:
    validate_and_check(Bulletin, None, data)


@fuzzing.fuzz_settings(200)
@given(case=st.sampled_from(BODIES).flatmap(lambda c: st.tuples(st.just(c[0]), mutated(c[1]))))
@fuzzing.target(NAME)
def test_body_mutations(case: tuple[str, Any]) -> None:
    kind, data = case
    validate_and_check(BODY_MODELS[kind], kind, data)


@fuzzing.fuzz_settings(80)
@given(kind=st.sampled_from([k for k, _ in BODIES]), data=json_values)
@fuzzing.target(NAME)
def test_bodies_of_arbitrary_json(kind: str, data: Any) -> None:
    validate_and_check(BODY_MODELS[kind], kind, data)


def test_the_samples_are_valid() -> None:
    """The oracle's other side: unmutated, every sample is accepted and the spec agrees."""
    for sample in BULLETINS:
        Bulletin.model_validate(sample)
        assert bulletin_problems("bulletin", sample) == []
    for kind, body in BODIES:
        BODY_MODELS[kind].model_validate(body)
        assert body_problems(kind, body) == []


def test_documents_memory_stayed_bounded() -> None:
    fuzzing.check_memory(NAME)

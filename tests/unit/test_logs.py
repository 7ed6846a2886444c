"""agent.logs: secrets never reach the log, and never leave it through tail()."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.logs import Redactor, setup_logging, tail

PASSWORD = "Mật-khẩu-Phường12"
SECRETS = (PASSWORD, "hunter2", "s3cr3t-pw", "tok-987654")
LEAKY = [
    f"connecting with password {PASSWORD}",
    "config: password=hunter2",
    "config: Password: hunter2",
    "broker mqtts://bang01:s3cr3t-pw@broker.q10.example:8883 refused",
    "token = tok-987654",
]


@pytest.fixture
def root_logging() -> Iterator[None]:
    """setup_logging() replaces the root handlers; put the test runner's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into: {text!r}"


# --------------------------------------------------------------------------- Redactor


def test_redactor_hides_known_secrets_and_credential_patterns() -> None:
    redact = Redactor([PASSWORD])
    out = [redact(line) for line in LEAKY]
    assert out == [
        "connecting with password ***",
        "config: password=***",
        "config: Password: ***",
        "broker mqtts://bang01:***@broker.q10.example:8883 refused",
        "token = ***",
    ]


def test_redactor_leaves_ordinary_text_alone() -> None:
    redact = Redactor([PASSWORD])
    for line in [
        "Phát thông báo lịch tiêm chủng lúc 06:00",
        "connected to mqtt://broker.q10.example:1883",
        "volume set to 35%",
        "",
    ]:
        assert redact(line) == line


def test_redactor_prefers_the_longest_secret() -> None:
    redact = Redactor(["abcd", "abcdefgh"])
    assert redact("key abcdefgh") == "key ***"


def test_redactor_ignores_empty_and_tiny_secrets() -> None:
    redact = Redactor(["", "a"])
    assert redact("a banana") == "a banana"


# --------------------------------------------------------------------------- logger output


def test_logger_output_is_redacted(
    tmp_path: Path, root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path = tmp_path / "logs" / "agent.log"
    setup_logging("INFO", log_path, Redactor([PASSWORD]))
    log = logging.getLogger("agent.test")
    for line in LEAKY:
        log.warning(line)
    log.info("connecting to %s as %s", "mqtt://bang01:s3cr3t-pw@broker", "bang01")
    log.error("login failed: %s", PASSWORD)
    logging.getLogger().handlers[1].flush()

    written = log_path.read_text(encoding="utf-8")
    assert_clean(written)
    assert "connecting with password ***" in written
    assert "mqtt://bang01:***@broker as bang01" in written
    assert_clean(capsys.readouterr().err)


def test_exception_text_is_redacted(
    tmp_path: Path, root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path = tmp_path / "agent.log"
    setup_logging("INFO", log_path, Redactor([PASSWORD]))
    log = logging.getLogger("agent.test")
    try:
        raise ConnectionError(f"mqtts://bang01:s3cr3t-pw@broker failed; password={PASSWORD}")
    except ConnectionError:
        log.exception("link failed")
    written = log_path.read_text(encoding="utf-8")
    assert "ConnectionError" in written and "link failed" in written
    assert_clean(written)
    assert_clean(capsys.readouterr().err)


def test_stack_text_is_redacted(tmp_path: Path, root_logging: None) -> None:
    log_path = tmp_path / "agent.log"
    setup_logging("INFO", log_path, Redactor([PASSWORD]))
    logging.getLogger("agent.test").warning("here", stack_info=True)  # password=hunter2
    written = log_path.read_text(encoding="utf-8")
    assert "Stack (most recent call last)" in written and "password=***" in written
    assert_clean(written)


def test_level_is_applied(tmp_path: Path, root_logging: None) -> None:
    log_path = tmp_path / "agent.log"
    setup_logging("WARNING", log_path, Redactor())
    logging.getLogger("agent.test").info("quiet")
    logging.getLogger("agent.test").warning("loud")
    assert "loud" in log_path.read_text() and "quiet" not in log_path.read_text()


# --------------------------------------------------------------------------- tail()


def test_tail_is_redacted(tmp_path: Path) -> None:
    """A log written before the secret was known (or by hand) is still cleaned on the way out."""
    log_path = tmp_path / "agent.log"
    log_path.write_text("\n".join(LEAKY) + "\n", encoding="utf-8")
    lines = tail(log_path, 100, Redactor([PASSWORD]))
    assert len(lines) == len(LEAKY)
    assert_clean("\n".join(lines))


def test_tail_returns_the_last_lines_across_a_rotation(tmp_path: Path) -> None:
    log_path = tmp_path / "agent.log"
    (tmp_path / "agent.log.1").write_text("one\ntwo\nthree\n", encoding="utf-8")
    log_path.write_text("four\nnăm\n", encoding="utf-8")
    assert tail(log_path, 3, Redactor()) == ["three", "four", "năm"]
    assert tail(log_path, 100, Redactor()) == ["one", "two", "three", "four", "năm"]


def test_tail_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert tail(tmp_path / "none.log", 10, Redactor()) == []


def test_tail_survives_bad_bytes(tmp_path: Path) -> None:
    log_path = tmp_path / "agent.log"
    log_path.write_bytes(b"ok\n\xff\xfe broken\n")
    assert tail(log_path, 10, Redactor()) == ["ok", "\ufffd\ufffd broken"]


def test_credentials_in_any_url_are_redacted() -> None:
    redact = Redactor()
    assert redact("relaying rtsp://admin:S3cret@10.0.0.7:554/live") == (
        "relaying rtsp://admin:***@10.0.0.7:554/live"
    )
    assert redact("stream_gone: https://ward:pw-12@radio.q10.vn/live.mp3") == (
        "stream_gone: https://ward:***@radio.q10.vn/live.mp3"
    )
    assert redact("http://radio.q10.vn:8000/live") == "http://radio.q10.vn:8000/live"

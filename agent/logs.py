"""Logging set-up (called once from ``main``), secret redaction, and reading the log back."""

from __future__ import annotations

import logging
import logging.handlers
import re
from collections import deque
from collections.abc import Iterable
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Things that look like credentials even when we do not know their value.
_PATTERNS = [
    re.compile(r"(?i)\b(password|passwd|secret|token|private[_ ]key)(\s*[=:]\s*)(\S+)"),
    # user:password@ in any URL: the broker's, a stream's (rtsp://admin:…@camera), a mirror's.
    re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]+:)([^@\s]+)(@)"),
]
_TRACEBACKS = logging.Formatter()


class Redactor:
    """Replaces known secrets and credential-looking text with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
        return _PATTERNS[1].sub(lambda m: f"{m.group(1)}***{m.group(3)}", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message, traceback and stack of every record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redactor(message)
        if clean != message:
            record.msg, record.args = clean, None
        # An exception's text (e.g. a URL with credentials) is formatted after the filters run;
        # format it now so that the handler's formatter uses the redacted copy (exc_text).
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


def setup_logging(level: str, log_path: Path | None, redactor: Redactor) -> None:
    """Send logs to stderr (journald under systemd) and to a rotating file for ``logs``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_path, maxBytes=1_000_000, backupCount=3, encoding="utf-8"
            )
        )
    formatter = logging.Formatter(FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RedactingFilter(redactor))
        root.addHandler(handler)
    root.setLevel(level)


def tail(log_path: Path, lines: int, redactor: Redactor) -> list[str]:
    """The last ``lines`` lines of the log (across one rotation), redacted."""
    buf: deque[str] = deque(maxlen=lines)
    for path in (log_path.with_name(log_path.name + ".1"), log_path):
        try:
            with path.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    buf.append(line.rstrip("\n"))
        except FileNotFoundError:
            continue
    return [redactor(line) for line in buf]

"""Structured (JSON lines) logging; pass ``extra={"commandId": ...}`` to carry context."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger(service).info("logging configured", extra={"service": service})


class Throttle(logging.Filter):
    """Let one record per key through every ``interval`` seconds.

    While the broker is down librdkafka reports the same failure several times a
    second; the operator needs to know it is down, not every reconnect attempt.
    """

    def __init__(self, interval: float = 30.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            return False
        self._last[key] = now
        return True

    def filter(self, record: logging.LogRecord) -> bool:
        return self.allow(f"{record.levelno}:{record.getMessage().split(' ', 1)[0]}")

"""The one retry-with-backoff helper: doubling delays up to a cap, until it works or stop is set."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class RetryStopped(Exception):
    """Asked to stop while waiting to retry; the last attempt failed."""


@dataclass(frozen=True)
class Backoff:
    """Delays ``first``, ``2 * first``, ``4 * first`` ... never above ``cap`` (seconds)."""

    first: float
    cap: float

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1 for the first)."""
        return min(self.first * 2 ** (attempt - 1), self.cap)


def retry(
    attempt: Callable[[], T],
    *,
    retry_on: tuple[type[Exception], ...],
    backoff: Backoff,
    stop: threading.Event,
    on_failure: Callable[[Exception, float], None],
) -> T:
    """``attempt()`` until it returns; after each failure in ``retry_on`` call
    ``on_failure(error, delay)`` and wait ``delay``. Raises ``RetryStopped`` when
    ``stop`` is set during a wait; any other error goes through at once.
    """
    failures = 0
    while True:
        try:
            return attempt()
        except retry_on as exc:
            failures += 1
            delay = backoff.delay(failures)
            on_failure(exc, delay)
            if stop.wait(delay):
                raise RetryStopped(str(exc)) from exc

"""Per-caller rate limiting: moving windows in process memory.

A limit is written as the ``limits`` library parses it: ``"50/second;1000/minute"``.
Each authenticated caller (the token's ``sub``) has its own windows; a request
over any of them is answered 429 with ``Retry-After`` (whole seconds until the
oldest request in the window leaves it) and consumes nothing. The memory is per
process: with several API processes behind a balancer each enforces the limit
on its own.

The windows are kept here (a deque of hit times per caller and window) rather
than in ``limits``' MemoryStorage, whose expiry timer thread was restarted every
10 ms under load and cost about 6% of the command API's CPU (make bench profile).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from limits import RateLimitItem, parse_many

from servicekit.auth import Caller
from servicekit.problems import Problem

log = logging.getLogger("servicekit.ratelimit")


def parse_limit(text: str) -> list[RateLimitItem]:
    """The windows of a limit string; ValueError when it does not parse or allows nothing."""
    try:
        items = list(parse_many(text))
    except ValueError as exc:
        raise ValueError(f"not a rate limit like '50/second;1000/minute': {exc}") from None
    if not items or any(item.amount < 1 for item in items):
        raise ValueError("not a rate limit like '50/second;1000/minute'")
    return items


class RateLimiter:
    """Windows per caller; ``check(caller)`` records a hit or says how long to wait."""

    # callers without a hit in their longest window are forgotten this often (seconds)
    SWEEP_SECONDS = 60.0

    def __init__(self, limit: str, namespace: str = "writes") -> None:
        self.items = parse_limit(limit)
        self.namespace = namespace
        self._windows = [(item.amount, float(item.get_expiry())) for item in self.items]
        self._longest = max(seconds for _, seconds in self._windows)
        # caller -> one deque of hit times (monotonic) per window, oldest first
        self._hits: dict[str, list[deque[float]]] = {}
        self._lock = threading.Lock()
        self._next_sweep = time.monotonic() + self.SWEEP_SECONDS

    def check(self, caller: str) -> int | None:
        """None when the request may go on (it is counted), else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            hits = self._hits.get(caller)
            if hits is None:
                hits = self._hits[caller] = [deque() for _ in self._windows]
            for (amount, seconds), times in zip(self._windows, hits, strict=True):
                while times and times[0] <= now - seconds:
                    times.popleft()
                if len(times) >= amount:
                    # the window frees a slot when its oldest hit leaves it
                    return max(1, math.ceil(times[0] + seconds - now))
            for times in hits:
                times.append(now)
        return None

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_SECONDS
        idle = [
            c
            for c, hits in self._hits.items()
            if all(not t or t[-1] <= now - self._longest for t in hits)
        ]
        for caller in idle:
            del self._hits[caller]


def too_many_requests(retry_after: int) -> Problem:
    return Problem(
        429,
        "Too Many Requests",
        f"Too many requests from this caller; retry after {retry_after} s.",
        type_="/problems/rate-limited",
        headers={"Retry-After": str(retry_after)},
    )


def rate_limited(
    limiter: RateLimiter, authenticated: Callable[..., Awaitable[Caller]]
) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the caller ``authenticated`` gives, within ``limiter``'s limit, else 429."""

    async def dependency(request: Request, caller: Caller = Depends(authenticated)) -> Caller:
        wait = limiter.check(caller.sub)
        if wait is not None:
            log.info(
                "rate limited",
                extra={"caller": caller.sub, "retryAfter": wait, "path": request.url.path},
            )
            raise too_many_requests(wait)
        return caller

    dependency.__name__ = f"rate_limited_{getattr(authenticated, '__name__', 'caller')}"
    return dependency

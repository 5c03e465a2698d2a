"""Per-caller rate limiting with the ``limits`` library (moving window, in process memory).

A limit is written as ``limits`` parses it: ``"50/second;1000/minute"``. Each
authenticated caller (the token's ``sub``) has its own windows; a request over
any of them is answered 429 with ``Retry-After`` (whole seconds until the oldest
request in the window leaves it) and consumes nothing. The memory is per process:
with several API processes behind a balancer each enforces the limit on its own.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

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

    def __init__(self, limit: str, namespace: str = "writes") -> None:
        self.items = parse_limit(limit)
        self.namespace = namespace
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, caller: str) -> int | None:
        """None when the request may go on (it is counted), else the seconds to wait."""
        for item in self.items:
            if not self._limiter.test(item, self.namespace, caller):
                reset = self._limiter.get_window_stats(item, self.namespace, caller).reset_time
                return max(1, math.ceil(reset - time.time()))
        for item in self.items:
            self._limiter.hit(item, self.namespace, caller)
        return None


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

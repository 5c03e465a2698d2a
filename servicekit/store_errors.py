"""The one boundary where the store driver's (pymongo's) errors become ours.

``StoreUnavailable``: the store did not answer (connection lost, timeout, no
server); nothing can be assumed read or written, retry the whole thing.
``StoreRejected``: it answered with a refusal (a write error, a bad query);
retrying the same thing may not help.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store did not answer; nothing of the call can be assumed read or written."""


class StoreRejected(Exception):
    """The store answered but refused a write or read (not an outage); retrying may not help."""


def translate(exc: PyMongoError) -> StoreUnavailable | StoreRejected:
    """Our exception for one of pymongo's."""
    if isinstance(exc, ConnectionFailure):  # incl. timeouts and server selection
        return StoreUnavailable(str(exc))
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", [])
        first = errors[0] if errors else {}
        return StoreRejected(
            f"{len(errors)} write(s) refused, first: code {first.get('code')}: "
            f"{first.get('errmsg')}"
        )
    return StoreRejected(str(exc))


def guarded(fn: Callable[[], T], *, refusal_is_outage: bool = False) -> T:
    """Call ``fn``; pymongo's errors leave as ours (``translate``).

    ``refusal_is_outage``: report a refusal as ``StoreUnavailable`` too (a reader
    has nothing to do differently: it could not read).
    """
    try:
        return fn()
    except PyMongoError as exc:
        ours = translate(exc)
        if refusal_is_outage and isinstance(ours, StoreRejected):
            ours = StoreUnavailable(str(exc))
        raise ours from exc

"""servicekit's store error boundary and retry helper, on their own."""

from __future__ import annotations

import threading

import pytest
from pymongo.errors import BulkWriteError, OperationFailure, ServerSelectionTimeoutError

from servicekit.backoff import Backoff, RetryStopped, retry
from servicekit.store_errors import StoreRejected, StoreUnavailable, guarded


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [Backoff(0.5, 3.0).delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_retry_reports_each_failure_with_its_delay_then_returns() -> None:
    failures: list[tuple[str, float]] = []
    left = [2]

    def attempt() -> str:
        if left[0]:
            left[0] -= 1
            raise ConnectionError("down")
        return "done"

    result = retry(
        attempt,
        retry_on=(ConnectionError,),
        backoff=Backoff(0.001, 0.002),
        stop=threading.Event(),
        on_failure=lambda exc, delay: failures.append((str(exc), delay)),
    )
    assert result == "done"
    assert failures == [("down", 0.001), ("down", 0.002)]


def test_retry_stops_when_asked_and_lets_other_errors_through() -> None:
    stop = threading.Event()
    stop.set()

    def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(RetryStopped):
        retry(down, retry_on=(ConnectionError,), backoff=Backoff(1, 1), stop=stop, on_failure=print)
    with pytest.raises(ConnectionError):
        retry(down, retry_on=(KeyError,), backoff=Backoff(1, 1), stop=stop, on_failure=print)


def fail(exc: Exception) -> None:
    raise exc


def test_no_answer_is_unavailable_a_refusal_is_rejected() -> None:
    with pytest.raises(StoreUnavailable):
        guarded(lambda: fail(ServerSelectionTimeoutError("no server")))
    with pytest.raises(StoreRejected, match=r"1 write\(s\) refused, first: code 11000: dup"):
        guarded(lambda: fail(BulkWriteError({"writeErrors": [{"code": 11000, "errmsg": "dup"}]})))
    with pytest.raises(StoreRejected):
        guarded(lambda: fail(OperationFailure("bad query")))


def test_a_reader_sees_a_refusal_as_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="bad query"):
        guarded(lambda: fail(OperationFailure("bad query")), refusal_is_outage=True)

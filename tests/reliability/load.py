"""The recorded load: every request the suite sends and every answer it gets.

Writers send creates and updates (merge patches) to the command API at a
bounded rate from a few threads; every request carries its own
``Idempotency-Key`` so that an unconfirmed one can be retried exactly as a
careful client would. Each attempt is one ``Attempt`` (key, status,
``commandId``, times on the scenario's clock) kept in memory and appended to a
JSON-lines file. Readers (optional) read items back through the query API.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.reliability.auth import HEADERS


@dataclass
class Attempt:
    key: str  # Idempotency-Key: one logical request, however often it is sent
    method: str
    path: str
    body: dict[str, Any]
    sent: float  # seconds on the scenario clock
    answered: float
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    command_id: str | None
    action_item_id: str | None
    retry: bool
    error: str | None = None


class Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0


@dataclass
class Load:
    """Writers at up to ``rate`` requests/s from ``workers`` threads, until stopped."""

    url: str
    clock: Clock
    log_path: Path
    rate: float = 25.0
    workers: int = 8
    seed: int = 1
    prefix: str = "r"
    timeout: float = 15.0
    create_share: float = 0.35
    attempts: list[Attempt] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: int = 0
    _next_slot: float = 0.0
    _threads: list[threading.Thread] = field(default_factory=list)

    # -- recording -------------------------------------------------------------------
    def record(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)
            with self.log_path.open("a") as out:
                out.write(json.dumps(asdict(attempt)) + "\n")
            if (
                attempt.status == 202
                and attempt.method == "POST"
                and attempt.action_item_id
                and not attempt.retry
            ):
                self.items.append(attempt.action_item_id)

    def send(
        self,
        client: httpx.Client,
        key: str,
        method: str,
        path: str,
        body: dict[str, Any],
        retry: bool,
    ) -> Attempt:
        sent = self.clock.now()
        status: int | None = None
        command_id = item_id = error = None
        try:
            answer = client.request(
                method, path, json=body, headers={**HEADERS, "Idempotency-Key": key}
            )
            status = answer.status_code
            with_body: dict[str, Any] = {}
            try:
                parsed = answer.json()
                with_body = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                pass
            command_id = with_body.get("commandId")
            item_id = with_body.get("actionItemId")
            if status not in (202,):
                error = str(with_body.get("detail") or answer.text[:200])
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        attempt = Attempt(
            key,
            method,
            path,
            body,
            sent,
            self.clock.now(),
            status,
            command_id,
            item_id,
            retry,
            error,
        )
        self.record(attempt)
        return attempt

    # -- the writers -----------------------------------------------------------------
    def _next(self, rng: random.Random) -> tuple[str, str, str, dict[str, Any]] | None:
        with self._lock:
            slot = max(time.monotonic(), self._next_slot)
            self._next_slot = slot + 1.0 / self.rate
            self._seq += 1
            seq = self._seq
            items = self.items[-200:]
        delay = slot - time.monotonic()
        if delay > 0 and self.stop_event.wait(delay):
            return None
        key = f"{self.prefix}-{seq}"
        if not items or rng.random() < self.create_share:
            body: dict[str, Any] = {
                "title": f"{self.prefix} item {seq}",
                "priority": rng.choice(["low", "normal", "high", "urgent"]),
                "tags": rng.sample(["a", "b", "c", "d"], rng.randint(0, 2)),
            }
            return key, "POST", "/action-items", body
        item = rng.choice(items)
        body = rng.choice(
            [
                {"title": f"{self.prefix} renamed {seq}"},
                {"status": "in_progress"},
                {"status": "done"},
                {"status": "open"},
                {"priority": rng.choice(["low", "high"]), "assignee": f"u{seq % 7}"},
                {"description": f"note {seq}"},
            ]
        )
        return key, "PATCH", f"/action-items/{item}", body

    def _run(self, worker: int) -> None:
        rng = random.Random(self.seed * 1000 + worker)
        with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
            while not self.stop_event.is_set():
                request = self._next(rng)
                if request is None:
                    return
                attempt = self.send(client, *request, retry=False)
                if attempt.status is None and not self.stop_event.is_set():
                    self.stop_event.wait(0.2)  # a refused connection answers at once: do not spin

    def start(self) -> Load:
        self._next_slot = time.monotonic()
        for i in range(self.workers):
            t = threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(self.timeout + 10)
        self._threads.clear()

    # -- what happened ---------------------------------------------------------------
    def latest(self) -> dict[str, Attempt]:
        """The last attempt of every key."""
        out: dict[str, Attempt] = {}
        for attempt in sorted(self.attempts, key=lambda a: a.answered):
            out[attempt.key] = attempt
        return out

    def accepted_count(self) -> int:
        return sum(1 for a in self.attempts if a.status == 202)

    def retry_unconfirmed(
        self, rounds: int = 30, pause: float = 2.0, also: list[str] | None = None
    ) -> int:
        """Send every key without a 202 again (same key and body) until confirmed or out of rounds.

        A round stops at the first 503 or missing answer (the service is not back yet:
        wait ``pause``, then start over), so a long outage costs one attempt per round.
        ``also``: keys to send once more even though they were confirmed (a client that
        did not get the answer). Returns how many keys are still unconfirmed.
        """
        extra = sorted(set(also or []))
        first: dict[str, Attempt] = {}
        for a in self.attempts:
            first.setdefault(a.key, a)
        with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
            for _ in range(rounds):
                todo = [
                    k
                    for k, a in self.latest().items()
                    if a.status not in (202, 400, 404, 409, 413, 415, 422)
                ]
                todo += extra
                if not todo:
                    return 0
                for key in todo:
                    a = first[key]
                    answer = self.send(client, key, a.method, a.path, a.body, retry=True)
                    if key in extra and answer.status == 202:
                        extra.remove(key)
                    if answer.status in (None, 503):
                        break
                time.sleep(pause)
        return sum(1 for a in self.latest().values() if a.status != 202)


@dataclass
class Readers:
    """GET /action-items/{id} on items the writers created, at up to ``rate`` per second."""

    url: str
    items: list[str]
    rate: float = 10.0
    statuses: Counter[int] = field(default_factory=Counter)
    stop_event: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        rng = random.Random(7)
        with httpx.Client(base_url=self.url, timeout=10, headers=HEADERS) as client:
            while not self.stop_event.wait(1.0 / self.rate):
                if not self.items:
                    continue
                try:
                    status = client.get(
                        f"/action-items/{rng.choice(self.items[-500:])}"
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                self.statuses[status] += 1

    def start(self) -> Readers:
        self._thread = threading.Thread(target=self._run, name="readers", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(20)

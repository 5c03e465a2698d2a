"""After a scenario: read the whole log and the read model, and count what happened.

- lost: a 202 whose command is not in the final read model (no status), or whose
  item shows fewer applied effects than applied commands;
- duplicated: an effect applied twice (an item's version above the number of
  commands applied to it, or above what the pure domain folded once over the log
  gives, or an Exceptions entry twice), or one Idempotency-Key that put two
  different commandIds on the log;
- false 202: a 202 for a command that is not on the log.
The read model must also equal the fold of the log (tests/support/projector_model).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pymongo.database import Database

from schemas.codec import CommandCodec, DecodeError
from tests.reliability.load import Attempt
from tests.support.projector_log import high_watermarks, read_log
from tests.support.projector_model import differences, fold_log, read_stored
from tests.support.projector_runtime import caught_up, positions


@dataclass
class Window:
    label: str
    start: float
    end: float | None = None


@dataclass
class Counts:
    sent: int = 0
    keys: int = 0
    accepted: int = 0
    unavailable: int = 0
    other: int = 0
    no_answer: int = 0
    lost: int = 0
    duplicated: int = 0
    false_202: int = 0
    unconfirmed_keys: int = 0
    on_log: int = 0
    copies: int = 0
    undecodable: int = 0
    model_differences: list[str] = field(default_factory=list)
    recover: dict[str, float | None] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    def recover_max(self) -> float | None:
        values = [v for v in self.recover.values()]
        if not values:
            return None
        if any(v is None for v in values):
            return None
        return max(v for v in values if v is not None)


def first_202_after(attempts: list[Attempt], at: float) -> float | None:
    times = [a.answered for a in attempts if a.status == 202 and a.sent >= at]
    return round(min(times) - at, 2) if times else None


def count(
    attempts: list[Attempt],
    db: Database[Any],
    bootstrap: str,
    topic: str,
    partitions: int,
    windows: list[Window],
    settle_timeout: float = 300,
) -> Counts:
    c = Counts()
    c.sent = len(attempts)
    c.keys = len({a.key for a in attempts})
    for a in attempts:
        if a.status == 202:
            c.accepted += 1
        elif a.status == 503:
            c.unavailable += 1
        else:
            c.other += 1
            if a.status is None:
                c.no_answer += 1
    latest: dict[str, Attempt] = {}
    for a in sorted(attempts, key=lambda a: a.answered):
        latest[a.key] = a
    c.unconfirmed_keys = sum(1 for a in latest.values() if a.status != 202)
    for w in windows:
        if w.end is not None:
            c.recover[w.label] = first_202_after(attempts, w.end)

    # the projector has everything that is on the log now (bounded wait)
    ends = high_watermarks(bootstrap, topic, partitions)
    deadline = time.monotonic() + settle_timeout
    while not caught_up(db, ends):
        if time.monotonic() > deadline:
            c.details.append(
                f"projector not caught up after {settle_timeout} s: {positions(db)} < {ends}"
            )
            break
        time.sleep(0.5)

    log = read_log(bootstrap, topic, partitions, timeout=120)
    codec = CommandCodec()
    copies: Counter[str] = Counter()
    for record in log:
        try:
            copies[codec.decode(record.value).command_id] += 1
        except DecodeError:
            c.undecodable += 1
    c.on_log = len(copies)
    c.copies = sum(copies.values()) - len(copies)
    stored = read_stored(db)
    expected = fold_log(log, codec)
    c.model_differences = differences(expected, stored)

    accepted_ids = {a.command_id for a in attempts if a.status == 202 and a.command_id}
    false = sorted(cid for cid in accepted_ids if cid not in copies)
    c.false_202 = len(false)
    if false:
        c.details.append(f"202 but not on the log: {false[:5]}")
    missing = sorted(cid for cid in accepted_ids if cid not in stored.statuses)

    # per item: applied commands vs version (an effect twice, or one missing)
    applied: Counter[str] = Counter()
    for status in stored.statuses.values():
        if status.get("status") == "applied":
            applied[str(status["actionItemId"])] += 1
    twice: list[str] = []
    short: list[str] = []
    for item_id, doc in stored.items.items():
        version = int(doc.get("version", 0))
        want = expected.items.get(item_id)
        if version > applied[item_id] or (want is not None and version > want.state.version):
            twice.append(item_id)
        elif version < applied[item_id]:
            short.append(item_id)
        entries = [e.get("commandId") for e in doc.get("exceptions", [])]
        if len(entries) != len(set(entries)):
            twice.append(item_id)
    # one request (same key, method, path and body) sent again: one command on the log
    ids_by_key: dict[tuple[str, str, str, str], set[str]] = {}
    for a in attempts:
        if a.key and a.command_id and a.command_id in copies:
            request = (a.key, a.method, a.path, json.dumps(a.body, sort_keys=True))
            ids_by_key.setdefault(request, set()).add(a.command_id)
    split = sorted(k[0] for k, ids in ids_by_key.items() if len(ids) > 1)
    c.lost = len(missing) + len(short)
    c.duplicated = len(set(twice)) + len(split)
    if missing:
        c.details.append(f"202 but no status in the read model: {missing[:5]}")
    if short:
        c.details.append(f"items with fewer effects than applied commands: {short[:5]}")
    if twice:
        c.details.append(f"items with an effect twice: {sorted(set(twice))[:5]}")
    if split:
        c.details.append(f"Idempotency-Keys with two commandIds on the log: {split[:5]}")
    return c


@dataclass
class BacklogWatch:
    """From the end of a fault: seconds until the projector has stored everything that was on
    the log at that moment (its lag back to 0 for the backlog the fault built)."""

    db: Database[Any]
    bootstrap: str
    topic: str
    partitions: int
    timeout: float = 300
    seconds: float | None = None
    backlog: int = 0
    _thread: threading.Thread | None = None

    def start(self) -> BacklogWatch:
        self._thread = threading.Thread(target=self._run, name="backlog-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        deadline = started + self.timeout
        ends: dict[int, int] | None = None
        while time.monotonic() < deadline:
            try:
                if ends is None:
                    ends = high_watermarks(self.bootstrap, self.topic, self.partitions)
                    have = positions(self.db)
                    self.backlog = sum(max(0, e - have.get(p, 0)) for p, e in ends.items())
                if caught_up(self.db, ends):
                    self.seconds = round(time.monotonic() - started, 2)
                    return
            except Exception:  # the store or the broker may still be coming back
                pass
            time.sleep(0.25)

    def wait(self) -> float | None:
        if self._thread is not None:
            self._thread.join(self.timeout + 30)
        return self.seconds

"""Where the cores go during one load run: CPU seconds per process group, read from /proc.

The bench machine runs everything on 2 cores: the service measured, its
projector, the broker, FerretDB, PostgreSQL and the load generator. A rate
alone cannot say whether it is bounded by the service's own Python or by the
cores the others take; the split of the CPU over the run can. Linux only
(/proc); elsewhere the split is empty and the bench says so.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# (group, words that must all be in the command line), first match wins
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("peer", ("peers.command_peer",)),
    ("sync peer", ("peers.sync_peer",)),
    ("trivial", ("peers.trivial",)),
    ("command API", ("command_api",)),
    ("projector", ("projector",)),
    ("query API", ("query_api",)),
    ("Kafka", ("java", "kafka.Kafka")),
]
# by the program's own name: FerretDB's command line names PostgreSQL in its URL, and a
# PostgreSQL backend's title ("postgres: user db host idle") names the database
PROGRAMS = {"ferretdb": "FerretDB", "postgres": "PostgreSQL", "postgres:": "PostgreSQL"}
WRK = "wrk (load generator)"


def _group(cmdline: str) -> str:
    program = cmdline.split(" ", 1)[0].rsplit("/", 1)[-1]
    if program in PROGRAMS:
        return PROGRAMS[program]
    for name, words in GROUPS:
        if all(w in cmdline for w in words):
            return name
    return "other"


def _cpu_seconds(stat: str) -> float:
    # the fields after the command name, which may hold spaces and parentheses
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def snapshot() -> dict[int, tuple[str, float]]:
    """pid -> (group, CPU seconds used so far) for every process that can be read."""
    out: dict[int, tuple[str, float]] = {}
    if not PROC.is_dir():
        return out
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            out[int(entry.name)] = (_group(cmdline), _cpu_seconds((entry / "stat").read_text()))
    return out


def _children_seconds() -> float:
    """CPU of this process's finished children (wrk runs as one, waited for)."""
    t = os.times()
    return t.children_user + t.children_system


@dataclass
class CpuSplit:
    """Cores used per group over a run (CPU seconds / wall seconds); 2.0 = both cores."""

    cores: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.cores.values())

    def line(self, top: int = 6) -> str:
        if not self.cores:
            return "cpu split: not available (no /proc)"
        ranked = sorted(self.cores.items(), key=lambda kv: -kv[1])
        parts = [f"{name} {value:.2f}" for name, value in ranked[:top] if value >= 0.01]
        return f"cores used: {', '.join(parts)}; all {self.total:.2f} of {os.cpu_count()}"

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.cores.items()}


@contextlib.contextmanager
def measure() -> Iterator[CpuSplit]:
    """Fill the yielded CpuSplit with the cores each group used while the block ran.

    A process that started during the block counts from zero; one that ended during it
    is missed, except this process's children (wrk), counted from their exit times.
    """
    split = CpuSplit()
    before, children, started = snapshot(), _children_seconds(), time.monotonic()
    yield split
    after, wall = snapshot(), time.monotonic() - started
    used: dict[str, float] = {}
    for pid, (group, seconds) in after.items():
        previous = before.get(pid)
        delta = seconds - (previous[1] if previous and previous[0] == group else 0.0)
        used[group] = used.get(group, 0.0) + max(delta, 0.0)
    used[WRK] = used.get(WRK, 0.0) + _children_seconds() - children
    split.wall_seconds = wall
    split.cores = {k: v / wall for k, v in used.items() if wall > 0}

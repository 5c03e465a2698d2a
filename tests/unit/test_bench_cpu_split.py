"""The bench's CPU split (tests/benchmarks/cpu.py): parsing /proc and naming processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.benchmarks import cpu


def test_cpu_seconds_are_read_after_a_command_name_with_spaces_and_parentheses() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    stat = "4242 (uvicorn (w) 1) S 1 4242 4242 0 -1 4194560 10 0 0 0 250 50 0 0 20 0 3"
    assert cpu._cpu_seconds(stat) == pytest.approx(300 / cpu.TICK)


@pytest.mark.parametrize(
    ("cmdline", "group"),
    [
        ("/repo/.venv/bin/python -m uvicorn command_api.app:app --port 8000", "command API"),
        ("/repo/.venv/bin/projector run", "projector"),
        ("python -m uvicorn tests.benchmarks.peers.command_peer:app", "peer"),
        ("java -Xmx512m -cp /repo/.infra/kafka/libs/* kafka.Kafka server.properties", "Kafka"),
        ("/repo/.infra/store/bin/ferretdb --postgresql-url=postgres://x", "FerretDB"),
        ("postgres: ferret ferretdb 127.0.0.1(51234) idle", "PostgreSQL"),
        ("/usr/bin/python3 -m pytest", "other"),
    ],
)
def test_processes_are_grouped_by_their_command_line(cmdline: str, group: str) -> None:
    assert cpu._group(cmdline) == group


def test_a_child_that_burns_cpu_is_counted_as_the_load_generator() -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    with cpu.measure() as split:
        subprocess.run([sys.executable, "-c", burn], check=True)
    assert split.wall_seconds > 0
    assert split.cores[cpu.WRK] * split.wall_seconds >= 0.25
    assert "wrk (load generator)" in split.line()

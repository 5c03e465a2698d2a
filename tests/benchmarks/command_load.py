"""Concurrent write load on the command API: prints throughput and latency, asserts nothing.

    python -m tests.benchmarks.command_load [--clients 32] [--seconds 20] [--warmup 3]
        [--keyed] [--url http://127.0.0.1:8000]

N clients (httpx async, one keep-alive connection each) POST creates for T
seconds; every answer is timed from send to response. Without --url it starts
its own command API process (uvicorn, one worker) on a free port with a fresh
topic on KAFKA_BOOTSTRAP_SERVERS (default localhost:9092), and removes both
afterwards. With --keyed every request carries a unique Idempotency-Key.
Numbers from a shared machine are indicative only: say what else was running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.command_api import CommandApi, own_topics, running_command_api


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)


async def client(url: str, until: float, measure_from: float, keyed: bool, tally: Tally) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        n = 0
        while time.monotonic() < until:
            n += 1
            headers = {"Idempotency-Key": uuid.uuid4().hex} if keyed else {}
            body = {"title": f"load {n}", "priority": "high", "tags": ["load", "bench"]}
            started = time.monotonic()
            try:
                answer = await http.post("/action-items", json=body, headers=headers)
                status = str(answer.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            finished = time.monotonic()
            if started >= measure_from:
                tally.latencies.append(finished - started)
                tally.statuses[status] += 1


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run_load(url: str, clients: int, seconds: float, warmup: float, keyed: bool) -> Tally:
    tally = Tally()
    start = time.monotonic()
    measure_from, until = start + warmup, start + warmup + seconds
    await asyncio.gather(*(client(url, until, measure_from, keyed, tally) for _ in range(clients)))
    return tally


@contextlib.contextmanager
def api_under_test(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    with (
        tempfile.TemporaryDirectory(prefix="command-load-") as logs,
        own_topics(bootstrap, COMMANDS_PARTITIONS="6") as (settings, env),
        running_command_api(env, Path(logs)) as api,
    ):
        print(f"command API {api.url} on {bootstrap}, topic {settings.commands_topic}")
        yield api.url
        report_server_side(api)


def report_server_side(api: CommandApi) -> None:
    count = api.metric("command_api_delivery_seconds_count")
    total = api.metric("command_api_delivery_seconds_sum")
    if count:
        print(f"server: {count:.0f} acks, mean produce->ack {1000 * total / count:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--url", help="a running command API (default: start one)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--keyed", action="store_true", help="send a unique Idempotency-Key")
    args = parser.parse_args()

    with api_under_test(args.url) as url:
        tally = asyncio.run(run_load(url, args.clients, args.seconds, args.warmup, args.keyed))
        latencies = sorted(tally.latencies)
        accepted = tally.statuses.get("202", 0)
        print(
            f"clients={args.clients} seconds={args.seconds:g} keyed={args.keyed} "
            f"requests={len(latencies)} statuses={dict(tally.statuses)}"
        )
        print(f"throughput: {accepted / args.seconds:.0f} accepted/s")
        if latencies:
            print(
                "latency ms: "
                f"p50={1000 * percentile(latencies, 0.50):.1f} "
                f"p95={1000 * percentile(latencies, 0.95):.1f} "
                f"p99={1000 * percentile(latencies, 0.99):.1f} "
                f"max={1000 * latencies[-1]:.1f} "
                f"mean={1000 * statistics.fmean(latencies):.1f}"
            )


if __name__ == "__main__":
    main()

"""Measurement 5: from a create to reading it back with its consistency token.

One writer (keep-alive httpx clients) POSTs a create to the command API and at
once GETs the item from the query API with `Consistency-Token`; the time from
sending the POST to the 200 of the GET is one sample. Taken on the idle
stack, then while wrk writes at about half the product's best rate of this run
(paced connections: wrk's Lua delay()).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from typing import Any

import httpx

from tests.benchmarks import wrk
from tests.benchmarks.context import CREATE_BODY, Bench
from tests.benchmarks.results import Section, Target, ms
from tests.benchmarks.stack import wait_projector_idle

LOAD_CONNECTIONS = 16


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def sample(bench: Bench, count: int, until: float | None = None) -> dict[str, Any]:
    """``count`` create-then-read samples (or fewer when ``until`` comes first), in ms."""
    rng = random.Random(5)
    total, reads, failures = [], [], 0
    body = {"title": "fresh", "priority": "normal"}
    with (
        httpx.Client(base_url=bench.stack.command_url, headers=bench.auth(), timeout=30) as writer,
        httpx.Client(base_url=bench.stack.query_url, headers=bench.auth(), timeout=30) as reader,
    ):
        for _ in range(count):
            if until is not None and time.monotonic() > until:
                break
            started = time.perf_counter()
            created = writer.post("/action-items", json=body)
            if created.status_code != 202:
                failures += 1
                continue
            accepted = time.perf_counter()
            answer = created.json()
            got = reader.get(
                f"/action-items/{answer['actionItemId']}",
                headers={"Consistency-Token": answer["consistencyToken"]},
            )
            finished = time.perf_counter()
            if got.status_code != 200:
                failures += 1
                continue
            total.append(1000 * (finished - started))
            reads.append(1000 * (finished - accepted))
            # a think time, so that samples do not lock step with any poll interval
            time.sleep(rng.uniform(0.005, 0.05))
    return {
        "samples": len(total),
        "failures": failures,
        "p50_ms": percentile(total, 0.5),
        "p99_ms": percentile(total, 0.99),
        "mean_ms": statistics.fmean(total) if total else float("nan"),
        "read_p50_ms": percentile(reads, 0.5),
        "read_p99_ms": percentile(reads, 0.99),
    }


def max_write_rate(bench: Bench) -> float:
    if not bench.max_write_rate:
        print("  (no write measurement in this run: measuring the product at 32 connections)")
        wait_projector_idle(bench.stack)
        script = wrk.post_script(CREATE_BODY, bench.tokens)
        result = bench.load(f"{bench.stack.command_url}/action-items", script, 32, "command API")
        bench.max_write_rate = result.rate
    return bench.max_write_rate


def freshness(bench: Bench) -> None:
    count = 40 if bench.quick else 300
    print("freshness: create, then read with the consistency token", flush=True)
    top = max_write_rate(bench)
    wait_projector_idle(bench.stack)
    idle = sample(bench, count)
    print(f"  idle: p50 {idle['p50_ms']:.1f} ms, p99 {idle['p99_ms']:.1f} ms", flush=True)

    wanted = top / 2
    # each connection: one request (about its latency at this load) then the pause
    delay_ms = max(0.0, LOAD_CONNECTIONS * 1000 / wanted - bench.write_p50_low)
    script = wrk.paced(wrk.post_script(CREATE_BODY, bench.tokens[1:]), delay_ms)
    seconds = 10.0 if bench.quick else 30.0
    outcome: dict[str, wrk.WrkResult] = {}

    def drive() -> None:
        outcome["load"] = wrk.run(
            f"{bench.stack.command_url}/action-items", script, LOAD_CONNECTIONS, seconds
        )

    wait_projector_idle(bench.stack)
    load = threading.Thread(target=drive)
    load.start()
    time.sleep(2.0)
    loaded = sample(bench, count, until=time.monotonic() + seconds - 3.0)
    load.join()
    background = outcome["load"]
    print(
        f"  under {background.rate:,.0f} writes/s (wanted {wanted:,.0f}): p50 "
        f"{loaded['p50_ms']:.1f} ms, p99 {loaded['p99_ms']:.1f} ms",
        flush=True,
    )
    wait_projector_idle(bench.stack)
    rows = [
        [
            "idle stack",
            str(idle["samples"]),
            ms(idle["p50_ms"]),
            ms(idle["p99_ms"]),
            ms(idle["read_p50_ms"]),
        ],
        [
            f"wrk writing {background.rate:,.0f}/s alongside (half of {top:,.0f})",
            str(loaded["samples"]),
            ms(loaded["p50_ms"]),
            ms(loaded["p99_ms"]),
            ms(loaded["read_p50_ms"]),
        ],
    ]
    section = Section(
        "freshness",
        "5. From a create to reading it with its consistency token",
        ["condition", "samples", "p50", "p99", "read part p50"],
        rows,
        [
            f"One writer: POST /action-items to {bench.stack.command_url}, then at once GET "
            f"/action-items/{{id}} with Consistency-Token from {bench.stack.query_url}; a sample "
            "is POST sent to GET answered (200). "
            "'read part' starts at the 202.",
            f"Background load: wrk, {LOAD_CONNECTIONS} connections, each pausing "
            f"{delay_ms:.1f} ms between requests.",
        ],
        {
            "idle": idle,
            "loaded": loaded,
            "background": background.as_dict(),
            "max_write_rate": top,
        },
    )
    bench.report.add(
        section,
        Target("5 freshness", "p50 idle", idle["p50_ms"], 20.0, "ms", "limit", 1.0, False),
        Target(
            "5 freshness",
            "p99 at half the max write rate",
            loaded["p99_ms"],
            100.0,
            "ms",
            "limit",
            1.0,
            False,
            f"background {background.rate:,.0f}/s",
        ),
    )

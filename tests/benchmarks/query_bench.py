"""Measurement 6: the query API (`make up`, :8001) against raw pymongo reads of the same documents.

Get by id (random ids of the active generation) and the first page of a
filtered list (`status=open&limit=50`), each at 1, 16 and 64 connections
with wrk; the raw baseline runs the same reads with pymongo from as many
threads, for as long, in the same run.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from pymongo import ASCENDING, MongoClient

from servicekit.read_model import active_read_model
from tests.benchmarks import http_bench, wrk
from tests.benchmarks.context import Bench
from tests.benchmarks.freshness import percentile
from tests.benchmarks.results import Section, Target, ms
from tests.benchmarks.stack import wait_projector_idle

LEVELS = (1, 16, 64)
LIST_PATH = "/action-items?status=open&limit=50"
MIN_ITEMS = 1000
ORDER = [("createdAt", ASCENDING), ("_id", ASCENDING)]


def raw_load(
    threads: int, seconds: float, op: Callable[[random.Random], object]
) -> dict[str, float]:
    """``threads`` threads calling ``op`` for ``seconds``: rate and latency percentiles."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    until = time.perf_counter() + seconds

    def work(n: int) -> None:
        rng, mine = random.Random(n), latencies[n]
        while True:
            started = time.perf_counter()
            if started > until:
                return
            op(rng)
            mine.append(time.perf_counter() - started)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    began = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - began
    flat = [x for per in latencies for x in per]
    return {
        "connections": threads,
        "rate": len(flat) / wall,
        "p50_ms": 1000 * percentile(flat, 0.5),
        "p99_ms": 1000 * percentile(flat, 0.99),
    }


def ensure_items(bench: Bench, client: MongoClient[dict[str, Any]]) -> list[str]:
    db = client[bench.stack.settings.mongodb_database]
    items = active_read_model(db).items
    if items.estimated_document_count() < MIN_ITEMS:
        print(f"  fewer than {MIN_ITEMS} items in the read model: creating them", flush=True)
        with httpx.Client(
            base_url=bench.stack.command_url, headers=bench.auth(), timeout=30
        ) as http:
            for n in range(MIN_ITEMS):
                http.post("/action-items", json={"title": f"query bench {n}"}).raise_for_status()
        wait_projector_idle(bench.stack)
        items = active_read_model(db).items
    return [str(d["_id"]) for d in items.find({}, {"_id": 1}).limit(2000)]


def queries(bench: Bench) -> None:
    print("queries: query API vs raw pymongo", flush=True)
    wait_projector_idle(bench.stack)
    client: MongoClient[dict[str, Any]] = MongoClient(bench.stack.mongodb_uri, maxPoolSize=100)
    try:
        ids = ensure_items(bench, client)
        items = active_read_model(client[bench.stack.settings.mongodb_database]).items
        count = items.estimated_document_count()
        scenarios: dict[str, tuple[str, Callable[[random.Random], object]]] = {
            "get by id": (
                wrk.get_paths_script([f"/action-items/{i}" for i in ids], bench.tokens),
                lambda rng: items.find_one({"_id": rng.choice(ids)}),
            ),
            "list status=open, 50": (
                wrk.get_paths_script([LIST_PATH], bench.tokens),
                lambda rng: list(items.find({"status": "open"}).sort(ORDER).limit(51)),
            ),
        }
        with httpx.Client(base_url=bench.stack.query_url, headers=bench.auth()) as http:
            for path in (f"/action-items/{ids[0]}", LIST_PATH):
                answer = http.get(path)
                if answer.status_code != 200:
                    raise RuntimeError(f"GET {path} answered {answer.status_code}")
        found: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for name, (script, op) in scenarios.items():
            found[name] = {"api": [], "raw": []}
            for c in LEVELS:
                run = bench.load(f"{bench.stack.query_url}/", script, c, f"query API {name}")
                found[name]["api"].append(run.as_dict())
                raw = raw_load(c, bench.seconds, op)
                print(
                    f"  {'raw pymongo ' + name:38} c={c:<4} {raw['rate']:9,.0f}/s  p50 "
                    f"{raw['p50_ms']:7.1f} ms  p99 {raw['p99_ms']:7.1f} ms",
                    flush=True,
                )
                found[name]["raw"].append(raw)
            if bench.profile and name == "get by id":
                http_bench.profiled(
                    bench,
                    f"{bench.stack.query_url}/",
                    bench.stack.pid("query-api"),
                    "query API, get by id",
                    script,
                    16,
                )
    finally:
        client.close()
    bench.series["queries"] = found
    rows, targets = [], []
    for name, runs in found.items():
        for api, raw in zip(runs["api"], runs["raw"], strict=True):
            c = api["connections"]
            rows.append(
                [
                    name,
                    str(c),
                    f"{api['rate']:,.0f}",
                    ms(api["p50_ms"]),
                    ms(api["p99_ms"]),
                    f"{raw['rate']:,.0f}",
                    ms(raw["p50_ms"]),
                    ms(raw["p99_ms"]),
                    f"{api['rate'] / raw['rate']:.2f}",
                ]
            )
            if name == "get by id":
                targets.append(
                    Target(
                        "6 query",
                        f"get by id at {c} conn",
                        api["rate"],
                        raw["rate"],
                        "/s",
                        "raw find_one",
                        0.5,
                    )
                )
    section = Section(
        "queries",
        f"6. Query API against raw pymongo ({count:,} items in the read model)",
        [
            "read",
            "connections",
            "API/s",
            "API p50",
            "API p99",
            "raw/s",
            "raw p50",
            "raw p99",
            "API/raw",
        ],
        rows,
        [
            "API: wrk -t1 against the query API (random ids of 2,000 for get by id). Raw: "
            "pymongo find_one by _id / find(status=open).sort(createdAt,_id).limit(51) from as "
            "many threads for as long. The raw list lacks the createdAt windows the API "
            "reads in (docs/query-api.md), so on FerretDB it is the slower one: shown, with "
            "no target."
        ],
        found,
    )
    bench.report.add(section, *targets)

"""Query API latency at moderate concurrency, against the real store, through a real process.

    .venv/bin/python -m tests.benchmarks.query_latency [--items 10000] [--concurrency 16]

Seeds a fresh database's active generation with projector-shaped documents,
starts the query API on a free port, then has N concurrent httpx async clients
send requests per scenario (after a one-client run of the same scenario, which
shows service time without queueing) and prints p50/p90/p99 and throughput. The machine's
load average is printed too: other work on the same cores skews every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from pymongo import MongoClient

from query_api.cursor import Cursor, filters_digest
from tests.support import services
from tests.support.query_data import seed, varied_items

Request = tuple[str, dict[str, str]]


async def _worker(
    url: str, make: Callable[[random.Random], Request], count: int, seed_: int, out: list[float]
) -> None:
    rng = random.Random(seed_)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(count):
            path, params = make(rng)
            started = time.perf_counter()
            response = await client.get(path, params=params)
            out.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{path} {params}: {response.status_code} {response.text}")


async def run_scenario(
    url: str, make: Callable[[random.Random], Request], requests: int, concurrency: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    per_client = max(1, requests // concurrency)
    started = time.perf_counter()
    await asyncio.gather(
        *(_worker(url, make, per_client, n, latencies) for n in range(concurrency))
    )
    return latencies, time.perf_counter() - started


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=3_200, help="per concurrent scenario")
    parser.add_argument("--serial-requests", type=int, default=300, help="per one-client run")
    parser.add_argument(
        "--mongodb-uri", default=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017")
    )
    args = parser.parse_args()

    database = f"bench_query_{uuid.uuid4().hex[:8]}"
    mongo: MongoClient = MongoClient(args.mongodb_uri)
    states = varied_items(args.items, same_instant_every=3)
    started = time.perf_counter()
    seed(mongo[database], states)
    print(f"seeded {args.items} items into {database} in {time.perf_counter() - started:.1f} s")
    ids = [s.id for s in states]
    open_items = sorted((s.created_at, s.id) for s in states if str(s.status) == "open")
    open_digest = filters_digest({"status": "open"})

    scenarios: dict[str, Callable[[random.Random], Request]] = {
        "GET /action-items/{id}": lambda r: (f"/action-items/{r.choice(ids)}", {}),
        "GET /action-items?status=open&limit=50 (first page)": lambda r: (
            "/action-items",
            {"status": "open", "limit": "50"},
        ),
        "GET /action-items?status=open&limit=50&cursor=<random page>": lambda r: (
            "/action-items",
            {
                "status": "open",
                "limit": "50",
                "cursor": Cursor(*r.choice(open_items), open_digest).encode(),
            },
        ),
        "GET /action-items?assignee=ana&status=open&limit=50": lambda r: (
            "/action-items",
            {"assignee": "ana", "status": "open", "limit": "50"},
        ),
    }

    port = services.free_port()
    env = {"MONGODB_URI": args.mongodb_uri, "MONGODB_DATABASE": database, "LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryDirectory() as logs:
        process = services.query_api_process(env, port, Path(logs)).start()
        url = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(run_scenario(url, scenarios["GET /action-items/{id}"], 200, 4))  # warm-up
            print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared with others)")
            header = ["clients", "n", "p50 ms", "p90 ms", "p99 ms", "req/s"]
            print(f"{'scenario':62} " + " ".join(f"{h:>7}" for h in header))
            runs = ((1, args.serial_requests), (args.concurrency, args.requests))
            for name, make in scenarios.items():
                for clients, count in runs:
                    lat, wall = asyncio.run(run_scenario(url, make, count, clients))
                    print(
                        f"{name:62} {clients:7d} {len(lat):7d} {percentile(lat, 50) * 1000:7.1f} "
                        f"{percentile(lat, 90) * 1000:7.1f} {percentile(lat, 99) * 1000:7.1f} "
                        f"{len(lat) / wall:7.0f}"
                    )
            print(f"load average after: {os.getloadavg()[0]:.2f}")
        finally:
            process.stop()
            mongo.drop_database(database)
            mongo.close()


if __name__ == "__main__":
    main()

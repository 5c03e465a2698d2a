"""What one Idempotency-Key claim costs as the key registry grows (10,000 -> 1,000,000 keys).

    .venv/bin/python -m tests.benchmarks.key_registry_growth [--sizes 10000,100000,1000000]

Against the store of `make up` (MONGODB_URI), in a database of its own, dropped
at the end: the registry collection is filled to each size (bulk inserts), then
500 new keys are claimed one at a time through ``KeyRegistry.claim``, each
twice: the second claim is a refused insert and a read, as a retry or a reuse
costs ("reuse" below). The registry keeps one document per key and never
removes one, so this is its growth.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

from pymongo import MongoClient

from command_api.key_registry import COLLECTION, KeyRegistry
from domain.commands import CreateActionItem
from domain.identity import build_command, sha256_hex
from servicekit.store_types import StoreClient

CLAIMS = 500


def percentiles(ms: list[float]) -> str:
    ordered = sorted(ms)
    return f"p50 {statistics.median(ordered):.2f} ms p99 {ordered[int(len(ordered) * 0.99)]:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument(
        "--mongodb-uri", default=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017")
    )
    args = parser.parse_args()
    database = f"bench_key_registry_{uuid.uuid4().hex[:8]}"
    client: StoreClient = MongoClient(args.mongodb_uri)
    registry = KeyRegistry.connect(args.mongodb_uri, database, timeout_ms=5000)
    keys = client[database][COLLECTION]
    try:
        have = 0
        for size in (int(s) for s in args.sizes.split(",")):
            while have < size:
                n = min(20_000, size - have)
                keys.insert_many(
                    [
                        {"_id": sha256_hex(f"fill{have + i}"), "commandId": "-", "acceptedAt": "-"}
                        for i in range(n)
                    ],
                    ordered=False,
                )
                have += n
            first: list[float] = []
            again: list[float] = []
            for i in range(CLAIMS):
                for caller, timings in (("first", first), ("first", again)):
                    command = build_command(
                        CreateActionItem(title=f"claim {i}"),
                        action_item_id=None,
                        caller=caller,
                        idempotency_key=f"{size}-{i}",
                        expected_version=None,
                        correlation_id=str(uuid.uuid4()),
                    )
                    started = time.perf_counter()
                    registry.claim(command)
                    timings.append((time.perf_counter() - started) * 1000)
            print(
                f"{size:>10,} keys: first use {percentiles(first)}; reuse {percentiles(again)}",
                flush=True,
            )
    finally:
        registry.close()
        client.drop_database(database)
        client.close()


if __name__ == "__main__":
    main()

"""Measurements 1 and 2 (writes over HTTP) and the load generator's own ceiling.

1. The command API (`make up`, :8000) against the minimal peer
   (peers/command_peer.py) with the product's uvicorn flags, on the same broker.
2. The same load against the synchronous alternative (peers/sync_peer.py):
   the document straight into the store (with the read model's indexes), 200.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
from pymongo import ASCENDING, MongoClient

from tests.benchmarks import cpu, profile, wrk
from tests.benchmarks.context import CREATE_BODY, Bench
from tests.benchmarks.results import Section, Target, ms
from tests.benchmarks.stack import (
    trivial_server,
    uvicorn_server,
    wait_projector_idle,
)

LEVELS = (8, 32, 128)
PRODUCT, PEER, SYNC = "command API", "peer (FastAPI+fastavro+acks=all)", "sync (store write)"
# the same command API code on a topic nobody consumes: the write path without its projector
ALONE = "command API, log not consumed (no target)"


def generator(bench: Bench) -> dict[str, Any]:
    """wrk alone against a canned-answer server: what it can drive on this machine."""
    print("generator: wrk against a trivial endpoint (2 processes, canned 202)", flush=True)
    script = wrk.post_script(CREATE_BODY, bench.tokens)
    rows, best = [], 0.0
    with trivial_server(2, bench.logs) as url:
        for c in (32, 128):
            r = wrk.run(f"{url}/action-items", script, c, bench.warmup)
            r = wrk.run(f"{url}/action-items", script, c, bench.seconds)
            print(f"  trivial endpoint c={c:<4} {r.rate:9,.0f}/s  p99 {r.p99_ms:.1f} ms")
            rows.append(r.as_dict())
            best = max(best, r.rate)
    bench.series["generator"] = rows
    return {"rate": best, "runs": rows}


def generator_target(bench: Bench, found: dict[str, Any]) -> None:
    rows = [
        ["wrk -t1 -> trivial endpoint", str(r["connections"]), f"{r['rate']:,.0f}", ms(r["p99_ms"])]
        for r in found["runs"]
    ]
    section = Section(
        "generator",
        "Load generator alone",
        ["what", "connections", "requests/s", "p99"],
        rows,
        [
            "wrk 1 thread, the bench's POST script (a bearer token per request), against a "
            "canned 202 server "
            "(tests/benchmarks/peers/trivial.py, 2 processes); the target compares it with "
            f"the best rate any server reached in this run ({bench.best_rate_what})."
        ],
        found,
    )
    bench.report.add(
        section,
        Target(
            "generator",
            "wrk alone vs the best measured rate",
            found["rate"],
            bench.best_rate,
            "req/s",
            "best measured",
            3.0,
        ),
    )


def peer_pid(url: str) -> int | None:
    """The pid of the uvicorn process listening on ``url``'s port (ss -ltnp)."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    found = re.search(r"pid=(\d+)", out)
    return int(found.group(1)) if found else None


def profiled(
    bench: Bench, url: str, pid: int | None, what: str, script: str, connections: int = 32
) -> None:
    """One more run with py-spy attached to ``pid``: its top frames."""
    if pid is None:
        print(f"bench: no pid for {what}: not profiled")
        return
    out = bench.logs / f"profile-{what.replace(' ', '-')}.txt"
    recording = profile.start(pid, bench.seconds, out)
    result = wrk.run(url, script, connections, bench.seconds)
    found = profile.finish(
        recording,
        out,
        f"{what} at {connections} connections ({result.rate:,.0f}/s while profiled)",
    )
    if found is not None:
        bench.report.profiles.append(found)


def _check(bench: Bench, url: str, expected: int) -> None:
    headers = {"Content-Type": "application/json", **bench.auth()}
    answer = httpx.post(url, content=CREATE_BODY, headers=headers)
    if answer.status_code != expected:
        raise RuntimeError(f"POST {url} answered {answer.status_code}: {answer.text[:300]}")


@contextlib.contextmanager
def _sync_database(bench: Bench) -> Iterator[str]:
    name = f"bench_sync_{uuid.uuid4().hex[:8]}"
    client: MongoClient[dict[str, Any]] = MongoClient(bench.stack.mongodb_uri)
    items = client[name]["action_items"]
    order = [("createdAt", ASCENDING), ("_id", ASCENDING)]
    items.create_index(order, name="order")
    for f in ("status", "assignee", "priority", "tags"):
        items.create_index([(f, ASCENDING), *order], name=f"by_{f}")
    try:
        yield name
    finally:
        client.drop_database(name)
        client.close()


def writes(bench: Bench, peer: bool = True, sync: bool = True) -> None:
    """1 and 2: the same wrk load on the product, the peer and/or the synchronous design."""
    stack = bench.stack
    script = wrk.post_script(CREATE_BODY, bench.tokens)
    results: dict[str, list[wrk.WrkResult]] = {PRODUCT: [], PEER: [], SYNC: []}
    if not peer:
        del results[PEER]
    if not sync:
        del results[SYNC]
    if peer:
        results[ALONE] = []
    print("writes: POST /action-items, product vs peer vs synchronous store write", flush=True)
    with (
        contextlib.ExitStack() as extra,
        bench.own_topic("peer") as topic,
        _sync_database(bench) as database,
        uvicorn_server(
            "tests.benchmarks.peers.command_peer:app",
            bench.flags,
            {
                "PEER_TOPIC": topic,
                "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
                "PEER_JWKS": bench.jwks,
            },
            bench.logs,
        ) as peer_url,
        uvicorn_server(
            "tests.benchmarks.peers.sync_peer:app",
            bench.flags,
            {"PEER_DATABASE": database, "MONGODB_URI": stack.mongodb_uri, "PEER_JWKS": bench.jwks},
            bench.logs,
        ) as sync_url,
    ):
        product_url, product_pid = stack.command_url, stack.pid("command-api")
        alone_url = ""
        if peer:
            alone_topic = extra.enter_context(bench.own_topic("alone"))
            alone_env = {
                "COMMANDS_TOPIC": alone_topic,
                "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
                "AUTH_JWKS_FILE": bench.jwks,
            }
            alone_url = extra.enter_context(
                uvicorn_server("command_api.app:app", bench.flags, alone_env, bench.logs)
            )
        urls = {
            ALONE: f"{alone_url}/action-items",
            PRODUCT: f"{product_url}/action-items",
            PEER: f"{peer_url}/action-items",
            SYNC: f"{sync_url}/action-items",
        }
        _check(bench, urls[PRODUCT], 202)
        _check(bench, urls[PEER], 202)
        _check(bench, urls[SYNC], 200)
        chosen = [PRODUCT] + [PEER, ALONE] * peer + [SYNC] * sync
        for c in LEVELS:
            for name in chosen:
                url = urls[name]
                if name == PRODUCT:
                    # the shared projector digests earlier load first: it shares the cores
                    wait_projector_idle(stack)
                results[name].append(bench.load(url, script, c, name))
        wait_projector_idle(stack)
        if bench.profile:
            profiled(bench, urls[PRODUCT], product_pid, "command API, POST", script)
            if peer:
                pid = peer_pid(peer_url)
                profiled(bench, urls[PEER], pid, "peer, POST", script)
            wait_projector_idle(stack)
    product = results[PRODUCT]
    bench.max_write_rate = max(r.rate for r in product)
    bench.write_p50_low = product[0].p50_ms
    bench.series["writes"] = {k: [r.as_dict() for r in v] for k, v in results.items()}
    _report_writes(bench, results)


def _report_writes(bench: Bench, results: dict[str, list[wrk.WrkResult]]) -> None:
    rows = []
    for name, runs in results.items():
        for r in runs:
            rows.append(
                [
                    name,
                    str(r.connections),
                    f"{r.rate:,.0f}",
                    ms(r.p50_ms),
                    ms(r.p99_ms),
                    str(r.requests - r.ok + r.errors),
                ]
            )
    data = {k: [r.as_dict() for r in v] for k, v in results.items()}
    columns = ["server", "connections", "2xx/s", "p50", "p99", "errors"]
    section = Section(
        "writes",
        "1-2. POST /action-items: command API, minimal peer, synchronous store write",
        columns,
        rows,
        [
            f"wrk -t1, {bench.seconds:g} s per run after a {bench.warmup:g} s warm-up, body "
            f"`{CREATE_BODY}`; every server runs with the product's uvicorn flags "
            f"`{' '.join(bench.flags)}` ({bench.server}).",
            f"The command API is the one at {bench.stack.command_url} "
            f"({bench.report.meta.get('product', 'make up stack')}); its projector applies the "
            "load on the same cores while it is measured (the bench waits for it to catch up "
            "before each product run). The row 'log not consumed' is the same code of this "
            "working tree on a topic no projector reads: the write path alone, for comparison.",
            "The synchronous peer inserts into a collection with the read model's 5 indexes.",
            f"Every request carries a bearer token (ES256, {len(bench.tokens)} callers round "
            "robin, so the product's per-caller write limit stays out of the way); both peers "
            "verify it with pyjwt against the product's key set, as the contract requires.",
        ],
        data,
    )
    if results.get(ALONE) and results.get(PEER):
        section.notes.append(
            "Log not consumed / peer: "
            + ", ".join(
                f"{a.rate / b.rate:.2f} at {a.connections}"
                for a, b in zip(results[ALONE], results[PEER], strict=False)
            )
            + " (202/s); p99 "
            + ", ".join(
                f"{a.p99_ms / b.p99_ms:.2f}"
                for a, b in zip(results[ALONE], results[PEER], strict=False)
            )
            + "."
        )
    targets = []
    for p, peer in zip(results[PRODUCT], results.get(PEER, []), strict=False):
        c = p.connections
        targets += [
            Target("1 command", f"202/s at {c} conn", p.rate, peer.rate, "/s", "peer", 0.70),
            Target(
                "1 command", f"p99 at {c} conn", p.p99_ms, peer.p99_ms, "ms", "peer", 1.5, False
            ),
        ]
    for p, sync in zip(results[PRODUCT], results.get(SYNC, []), strict=False):
        c = p.connections
        targets += [
            Target("2 vs sync", f"202/s at {c} conn", p.rate, sync.rate, "/s", "sync", 2.0),
            Target(
                "2 vs sync", f"p99 at {c} conn", p.p99_ms, sync.p99_ms, "ms", "sync", 1.0, False
            ),
        ]
    bench.report.add(section, *targets)
    bench.report.sections.append(_cpu_section(results))


CPU_COLUMNS = [
    "command API",
    "peer",
    "sync peer",
    "projector",
    "Kafka",
    "FerretDB",
    "PostgreSQL",
    cpu.WRK,
    "other",
]


def _cpu_section(results: dict[str, list[wrk.WrkResult]]) -> Section:
    """Which processes used the 2 cores during each write run: what bounds each rate."""
    rows = []
    for name, runs in results.items():
        for r in runs:
            if not r.cpu:
                continue
            cells = [f"{r.cpu.get(g, 0.0):.2f}" for g in CPU_COLUMNS]
            rows.append([name, str(r.connections), *cells, f"{sum(r.cpu.values()):.2f}"])
    return Section(
        "writes_cpu",
        f"1-2. Where the cores went during each write run (cores used, of {os.cpu_count()})",
        ["server", "connections", *CPU_COLUMNS, "all"],
        rows,
        [
            "CPU seconds per process group over the measured wrk run divided by its wall "
            "time, from /proc (tests/benchmarks/cpu.py); 'command API' is the server "
            "measured in the product and 'log not consumed' rows, 'other' is everything "
            "else (the bench itself, the query API, the system).",
            "An 'all' near the core count means the run was CPU-bound on the shared machine; "
            "the split shows who held the cores.",
        ],
        {"columns": CPU_COLUMNS, "runs": rows},
    )

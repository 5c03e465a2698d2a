"""Measurements 3 (projector live apply) and 4 (rebuild), each against a raw bulk write.

Both put commands straight onto a fresh topic with the codec (a seeded mix of
creates, patches, rejections and re-sent copies), run the product as a
process (`projector run` / `projector rebuild --output json`) on their own
database, then write the documents the product produced (every collection of
the generation) into a fresh database of the same store with plain
`insert_many` from 4 threads (the projector's write concurrency): the raw rate
is commands / seconds of those inserts, so the ratio is raw time / product time.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pymongo import MongoClient

from domain.commands import CommandEnvelope
from servicekit.read_model import active_generation
from tests.benchmarks import profile
from tests.benchmarks.context import Bench
from tests.benchmarks.results import Section, Target
from tests.benchmarks.stack import Process, RssSampler
from tests.support.projector_log import CommandMix, high_watermarks, produce_commands
from tests.support.projector_runtime import caught_up, positions
from tests.support.services import free_port

PARTITIONS = 6
PROFILE_SECONDS = {False: 30.0, True: 5.0}  # py-spy on the projector: seconds recorded
RAW_CHUNK = 1000
RAW_THREADS = 4


def mixed(items: int, count: int, seed: int) -> Iterator[CommandEnvelope]:
    """``count`` commands over ``items`` items: 5% built to be rejected, 1% re-sent copies."""
    mix = CommandMix(items, seed=seed, rejections=0.05, resend=0.01)
    for _ in range(count):
        yield mix.next()
        if len(mix.sent) > 2000:  # copies come from the last 50: keep memory flat
            del mix.sent[:1000]


def fill(bench: Bench, topic: str, items: int, count: int, seed: int) -> float:
    started = time.perf_counter()
    produce_commands(bench.stack.bootstrap, topic, PARTITIONS, mixed(items, count, seed))
    seconds = time.perf_counter() - started
    print(f"  filled {count:,} commands over {items:,} items in {seconds:.1f} s", flush=True)
    return seconds


def env_for(bench: Bench, topic: str, database: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bench.stack.bootstrap,
        "MONGODB_URI": bench.stack.mongodb_uri,
        "MONGODB_DATABASE": database,
        "COMMANDS_TOPIC": topic,
        "DLQ_TOPIC": f"{topic}.dlq",
        "COMMANDS_PARTITIONS": str(PARTITIONS),
        "CONSUMER_GROUP": f"bench-{uuid.uuid4().hex[:8]}",
        "LOG_LEVEL": "WARNING",
        "AUTH_JWKS_FILE": bench.jwks,  # its /metrics and /readyz want a token too
    }


@contextlib.contextmanager
def databases(bench: Bench, *roles: str) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"bench_{role}_{suffix}" for role in roles}
    try:
        yield names
    finally:
        client: MongoClient[dict[str, Any]] = MongoClient(bench.stack.mongodb_uri)
        for name in names.values():
            with contextlib.suppress(Exception):
                client.drop_database(name)
        client.close()


def raw_copy(bench: Bench, source_db: str, target_db: str, with_indexes: bool) -> dict[str, Any]:
    """Write every document of the source's active generation into ``target_db``; time inserts.

    Every collection of the generation (items, command statuses, positions, and
    whatever else the projector keeps per generation), with the same indexes
    created first when ``with_indexes`` (else `_id` only). Documents are read in
    chunks before the clock runs; only the inserts are timed.
    """
    client: MongoClient[dict[str, Any]] = MongoClient(bench.stack.mongodb_uri)
    try:
        source, target = client[source_db], client[target_db]
        generation = active_generation(source)
        names = sorted(n for n in source.list_collection_names() if n.endswith(f"_{generation}"))
        if with_indexes:
            for name in names:
                for index, spec in source[name].index_information().items():
                    if index != "_id_":
                        options = {k: v for k, v in spec.items() if k in ("unique", "sparse")}
                        target[name].create_index(spec["key"], name=index, **options)
        seconds, documents = 0.0, 0
        with ThreadPoolExecutor(RAW_THREADS) as pool:
            for name in names:
                dst_coll = target[name]
                cursor = source[name].find({}, batch_size=5000)
                while True:
                    block = [d for _, d in zip(range(50 * RAW_CHUNK), cursor, strict=False)]
                    if not block:
                        break
                    chunks = [block[i : i + RAW_CHUNK] for i in range(0, len(block), RAW_CHUNK)]
                    started = time.perf_counter()
                    list(
                        pool.map(
                            lambda c, coll=dst_coll: coll.insert_many(c, ordered=False), chunks
                        )
                    )
                    seconds += time.perf_counter() - started
                    documents += len(block)
        return {
            "documents": documents,
            "seconds": seconds,
            "indexes": with_indexes,
            "collections": names,
        }
    finally:
        client.close()


def run_rebuild(
    bench: Bench, env: dict[str, str], name: str, profile_what: str | None = None
) -> dict[str, Any]:
    """`projector rebuild --output json` as a process: its progress lines, timed, and its RSS."""
    args = [sys.executable, "-m", "projector.cli", "rebuild", "--output", "json"]
    events: list[tuple[float, dict[str, Any]]] = []
    started = time.monotonic()
    popen = subprocess.Popen(
        args,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=(bench.logs / f"{name}.stderr.log").open("ab"),
        text=True,
        start_new_session=True,
    )
    recording, spy_out = None, bench.logs / f"profile-{name}.txt"
    with RssSampler(popen.pid, 0.25) as rss:
        assert popen.stdout is not None
        for line in popen.stdout:
            with contextlib.suppress(ValueError):
                events.append((time.monotonic() - started, json.loads(line)))
                if recording is None and profile_what and events[-1][1].get("phase"):
                    recording = profile.start(popen.pid, PROFILE_SECONDS[bench.quick], spy_out)
        code = popen.wait(60)
    if recording is not None and profile_what:
        found = profile.finish(recording, spy_out, profile_what)
        if found is not None:
            bench.report.profiles.append(found)
    if code != 0:
        raise RuntimeError(f"projector rebuild exited {code}: {events[-3:]}")
    return timeline(events, rss.samples)


def timeline(events: list[tuple[float, dict[str, Any]]], rss: list[tuple[float, float]]) -> Any:
    replay_start = next(t for t, e in events if e.get("phase") == "replaying the log")
    index_at = next(
        (i for i, (_, e) in enumerate(events) if "building indexes" in str(e.get("message"))),
        None,
    )
    if index_at is None:
        raise RuntimeError("no 'building indexes' line in the rebuild's output")
    index_start = events[index_at][0]
    index_end = events[index_at + 1][0] if index_at + 1 < len(events) else index_start
    result = next(e for _, e in reversed(events) if e.get("event") == "result")
    records = int(result["records"])
    replay_seconds = index_start - replay_start
    progress = [
        (t, int(e["done"]))
        for t, e in events
        if e.get("event") == "progress" and e.get("phase") == "replaying the log"
    ]
    # RSS while replaying: the peak of the first quarter of the records against the rest
    quarter = next((t for t, done in progress if done >= records / 4), replay_start)
    early = [m for t, m in rss if t <= quarter]
    late = [m for t, m in rss if quarter < t <= index_start]
    return {
        "records": records,
        "applied": int(result["appliedRecords"]),
        "seconds": float(result["seconds"]),
        "replay_seconds": replay_seconds,
        "replay_rate": records / replay_seconds if replay_seconds > 0 else 0.0,
        "index_seconds": index_end - index_start,
        "rss_early_mib": max(early, default=float("nan")),
        "rss_late_mib": max(late, default=float("nan")),
        "rss_peak_mib": max((m for _, m in rss), default=float("nan")),
        "progress": [(round(t - replay_start, 2), d) for t, d in progress],
        "rss": [(round(t - replay_start, 2), round(m, 1)) for t, m in rss],
        "result": result,
    }


def exited(process: Process) -> None:
    if process.popen is not None and process.popen.poll() is not None:
        tail = process.log_path.read_text(errors="replace")[-1500:] if process.log_path else ""
        raise RuntimeError(f"{process.name} exited ({process.popen.returncode}):\n{tail}")


def live(bench: Bench) -> None:
    """3. `projector run` over a pre-filled topic, against raw inserts and the rebuild."""
    count, items = (10_000, 1_000) if bench.quick else (100_000, 10_000)
    print(f"projector live apply: {count:,} commands over {items:,} items", flush=True)
    with (
        bench.own_topic("live", PARTITIONS) as topic,
        databases(bench, "live", "liveraw", "livere") as dbs,
    ):
        fill(bench, topic, items, count, seed=11)
        ends = high_watermarks(bench.stack.bootstrap, topic, PARTITIONS)
        env = env_for(bench, topic, dbs["live"])
        port = free_port()
        client: MongoClient[dict[str, Any]] = MongoClient(bench.stack.mongodb_uri)
        db = client[dbs["live"]]
        projector = Process(
            "projector",
            [sys.executable, "-m", "projector.cli", "run"],
            {**env, "HTTP_PORT": str(port)},
            f"http://127.0.0.1:{port}",
            bench.logs / "projector-live.log",
        )
        with projector.start():
            deadline = time.monotonic() + 1800
            while not sum(positions(db).values()):
                exited(projector)
                if time.monotonic() > deadline:
                    raise RuntimeError("the projector applied nothing within 30 minutes")
                time.sleep(0.02)
            first = time.monotonic()
            spy_out = bench.logs / "profile-projector.txt"
            recording = (
                profile.start(projector.pid, PROFILE_SECONDS[bench.quick], spy_out)
                if bench.profile
                else None
            )
            while not caught_up(db, ends):
                exited(projector)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the projector did not reach {ends} within 30 minutes")
                time.sleep(0.05)
            seconds = time.monotonic() - first
            found = profile.finish(
                recording, spy_out, "`projector run` applying the pre-filled topic (this run)"
            )
            if found is not None:
                bench.report.profiles.append(found)
        client.close()
        rate = count / seconds
        print(f"  projector run: {seconds:.1f} s, {rate:,.0f} commands/s", flush=True)
        raw = raw_copy(bench, dbs["live"], dbs["liveraw"], with_indexes=True)
        raw_rate = count / raw["seconds"]
        print(
            f"  raw insert of the {raw['documents']:,} documents with indexes: "
            f"{raw['seconds']:.1f} s = {raw_rate:,.0f} commands/s",
            flush=True,
        )
        rb = run_rebuild(bench, env_for(bench, topic, dbs["livere"]), "rebuild-live")
        print(f"  rebuild replay of the same log: {rb['replay_rate']:,.0f} commands/s", flush=True)
    data = {
        "commands": count,
        "items": items,
        "seconds": seconds,
        "rate": rate,
        "raw": {**raw, "rate": raw_rate},
        "rebuild": {k: v for k, v in rb.items() if k not in ("progress", "rss")},
    }
    rows = [
        ["`projector run` (process), first batch to caught up", f"{seconds:.1f} s", f"{rate:,.0f}"],
        [
            f"raw insert_many of the same {raw['documents']:,} final documents, same indexes",
            f"{raw['seconds']:.1f} s",
            f"{raw_rate:,.0f}",
        ],
        [
            "`projector rebuild` replay of the same log (no secondary indexes)",
            f"{rb['replay_seconds']:.1f} s",
            f"{rb['replay_rate']:,.0f}",
        ],
    ]
    section = Section(
        "live",
        f"3. Projector live apply: {count:,} mixed commands over {items:,} items",
        ["what", "time", "commands/s"],
        rows,
        [
            "Mix: 5% built to be rejected, 1% re-sent copies, 6 partitions, batch size 1000; "
            "raw = the documents the projector produced (every collection of its generation) "
            f"inserted by {RAW_THREADS} threads in chunks of {RAW_CHUNK}."
        ],
        data,
    )
    bench.report.add(
        section,
        Target("3 live apply", "vs raw bulk write", rate, raw_rate, "cmd/s", "raw", 0.8),
        Target(
            "3 live apply", "vs rebuild replay", rate, rb["replay_rate"], "cmd/s", "rebuild", 0.5
        ),
    )


def rebuild(bench: Bench) -> None:
    """4. `projector rebuild` of a long log, against raw inserts without secondary indexes."""
    count, items = (100_000, 20_000) if bench.quick else (1_000_000, 200_000)
    print(f"rebuild: {count:,} commands over {items:,} items", flush=True)
    with bench.own_topic("rebuild", PARTITIONS) as topic, databases(bench, "re", "reraw") as dbs:
        fill(bench, topic, items, count, seed=13)
        rb = run_rebuild(
            bench,
            env_for(bench, topic, dbs["re"]),
            "rebuild",
            "`projector rebuild` replaying (this run)" if bench.profile else None,
        )
        print(
            f"  rebuild: {rb['seconds']:.1f} s total, replay {rb['replay_rate']:,.0f} commands/s, "
            f"index build {rb['index_seconds']:.1f} s, RSS peak {rb['rss_peak_mib']:.0f} MiB",
            flush=True,
        )
        raw = raw_copy(bench, dbs["re"], dbs["reraw"], with_indexes=False)
        raw_rate = count / raw["seconds"]
        print(
            f"  raw insert of the {raw['documents']:,} documents, no secondary index: "
            f"{raw['seconds']:.1f} s = {raw_rate:,.0f} commands/s",
            flush=True,
        )
    bench.series["rebuild"] = {"progress": rb["progress"], "rss": rb["rss"], "records": count}
    data = {
        "commands": count,
        "items": items,
        "raw": {**raw, "rate": raw_rate},
        "rebuild": {k: v for k, v in rb.items() if k not in ("progress", "rss")},
    }
    rows = [
        [
            "`projector rebuild` replay (no secondary indexes)",
            f"{rb['replay_seconds']:.1f} s",
            f"{rb['replay_rate']:,.0f}",
        ],
        ["index build after the replay", f"{rb['index_seconds']:.1f} s", ""],
        ["`projector rebuild` in all (replay, indexes, swap)", f"{rb['seconds']:.1f} s", ""],
        [
            f"raw insert_many of the same {raw['documents']:,} final documents, `_id` only",
            f"{raw['seconds']:.1f} s",
            f"{raw_rate:,.0f}",
        ],
        [
            "rebuild RSS: peak in the first quarter / after it / overall",
            f"{rb['rss_early_mib']:.0f} / {rb['rss_late_mib']:.0f} / {rb['rss_peak_mib']:.0f} MiB",
            "",
        ],
    ]
    section = Section(
        "rebuild",
        f"4. Rebuild: {count:,} commands over {items:,} items",
        ["what", "time", "commands/s"],
        rows,
        ["Progress over time and RSS: rebuild_progress.png."],
        data,
    )
    bench.report.add(
        section,
        Target(
            "4 rebuild",
            "replay vs raw bulk write",
            rb["replay_rate"],
            raw_rate,
            "cmd/s",
            "raw",
            0.8,
        ),
        Target(
            "4 rebuild", "total time vs 2 minutes", rb["seconds"], 120.0, "s", "limit", 1.0, False
        ),
        Target(
            "4 rebuild",
            "RSS peak after the first quarter",
            rb["rss_late_mib"],
            rb["rss_early_mib"],
            "MiB",
            "first quarter",
            1.2,
            False,
            "flat = the late peak stays within 1.2x the early one",
        ),
    )

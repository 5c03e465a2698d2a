"""The long scenarios of issue 19: rebuild killed (8), soak (9), generated requests (10)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as hst
from schemathesis import GenerationMode

from projector.rebuild_lease import ABANDONED_AFTER_SECONDS
from servicekit.read_model import active_generation
from tests.reliability.auth import HEADERS
from tests.reliability.harness import Suite, base_url, stage
from tests.reliability.load import Attempt, Readers
from tests.reliability.more_scenarios import RATE
from tests.reliability.results import Row
from tests.support.command_contract import verdict
from tests.support.projector_log import (
    CommandMix,
    high_watermarks,
    produce_commands,
    read_log,
)
from tests.support.projector_runtime import positions, wait_projected
from tests.support.rebuild_oracle import snapshot

CONTROL_COLLECTIONS = {"read_model_meta", "projector_members"}


# -- 8: rebuild killed ---------------------------------------------------------------
def s8_rebuild_kills(suite: Suite) -> list[Row]:
    row = Row("8", "projector rebuild kill -9 x3, then a rebuild to the end")
    rng = random.Random(8)
    with stage(suite, "s8") as st:
        s = st.settings
        api = st.command_api()
        st.projector()
        load = st.load(api, rate=RATE).start()
        time.sleep(6)
        load.stop()
        load.retry_unconfirmed()
        produced = produce_commands(
            st.bootstrap,
            s.commands_topic,
            s.commands_partitions,
            CommandMix(items=3000, seed=8, rejections=0.1, resend=0.02).take(30_000),
        )
        ends = high_watermarks(st.bootstrap, s.commands_topic, s.commands_partitions)
        wait_projected(st.db, ends, timeout=600)
        live = snapshot(st.db)
        generation = active_generation(st.db)
        before = set(st.db.list_collection_names())
        env = {**os.environ, **st.env, "PYTHONUNBUFFERED": "1"}
        killed_during = []
        leftovers: list[str] = []
        untouched = True
        # three kills at random points of three phases: early and late in the replay, and
        # after it (indexes, catch-up, the pause hand-over)
        points = [
            ("replay", rng.uniform(5, 50)),
            ("replay", rng.uniform(50, 95)),
            ("after the replay", rng.uniform(0.0, 0.5)),
        ]
        attempt = 0
        last_kill = time.monotonic()
        while points and attempt < 6:
            attempt += 1
            phase, at = points[0]
            out_path = st.log_dir / f"rebuild-{attempt}.out"
            with out_path.open("w") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "projector.cli", "rebuild", "--output", "json"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            killed = _kill_during(proc, out_path, phase, at)
            last_kill = time.monotonic()
            killed_during.append(f"rebuild {attempt}: {killed}")
            if proc.returncode == 0:  # it got to the end first: the model is a new one now
                live, generation = snapshot(st.db), active_generation(st.db)
                before = set(st.db.list_collection_names())
                continue
            points.pop(0)
            now = {n for n in st.db.list_collection_names() if n not in CONTROL_COLLECTIONS}
            leftovers += sorted(now - before - set(leftovers))
            if active_generation(st.db) != generation or snapshot(st.db) != live:
                untouched = False
        row.notes += killed_during
        row.expect("the live model untouched by the killed rebuilds", untouched)
        # a killed rebuild cannot clean up; the next rebuild drops what its lease left behind
        row.notes.append(f"left by the killed rebuilds: {leftovers or 'nothing'}")
        # the live projector still takes commands (not left paused by a killed hand-over)
        load2 = st.load(api, rate=RATE, prefix="s8b")
        load2.start()
        time.sleep(6)
        load2.stop()
        load2.retry_unconfirmed()
        ends = high_watermarks(st.bootstrap, s.commands_topic, s.commands_partitions)
        try:
            wait_projected(st.db, ends, timeout=120)
            row.expect("the live projector applies new commands after the kills", True)
        except AssertionError as exc:
            row.expect(f"the live projector applies new commands after the kills ({exc})", False)
        live = snapshot(st.db)
        # a killed rebuild's lease counts as abandoned once it went unrenewed for
        # ABANDONED_AFTER_SECONDS; the next rebuild drops its generation from then on
        time.sleep(max(0.0, last_kill + ABANDONED_AFTER_SECONDS + 1 - time.monotonic()))
        t0 = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "projector.cli", "rebuild", "--output", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        took = time.monotonic() - t0
        result = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
        swapped = any(e.get("event") == "result" and e.get("swapped") for e in result)
        row.expect(
            f"the next rebuild succeeds (exit {done.returncode}, {took:.0f} s)",
            done.returncode == 0 and swapped,
        )
        row.expect("the rebuilt model equals the live one", snapshot(st.db) == live)
        left = sorted(set(st.db.list_collection_names()) - before)
        row.notes.append(f"collections beyond the live model after the full rebuild: {left}")
        still = sorted(set(leftovers) & set(st.db.list_collection_names()))
        row.expect(
            f"nothing of the half-built generations left after the next rebuild "
            f"({still or 'none'})",
            not still,
        )
        attempts: list[Attempt] = load.attempts + load2.attempts
        load.attempts = attempts
        row.counts = st.count(load)
        row.run = (
            f"{produced:,} commands on the log (+{len(attempts)} requests through the API); "
            "`projector rebuild` SIGKILLed 3 x (early and late in the replay, after it), "
            "then run to the end"
        )
        _ = read_log, positions
    return [row]


def _kill_during(proc: subprocess.Popen[bytes], out_path: Any, phase: str, at: float) -> str:
    """SIGKILL ``proc`` once its JSON progress shows ``phase`` (replay: at ``at`` percent;
    otherwise ``at`` seconds after the replay ended). Says where it was killed."""
    deadline = time.monotonic() + 300
    after_replay: float | None = None
    while proc.poll() is None and time.monotonic() < deadline:
        events = []
        for line in out_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        last = events[-1] if events else {}
        replaying = last.get("event") == "progress" and last.get("phase") == "replaying the log"
        if phase == "replay" and replaying and float(last.get("percent", 0)) >= at:
            proc.kill()
            proc.wait(30)
            return f"killed in the replay at {last.get('percent')} %"
        if phase != "replay" and events and not replaying:
            after_replay = after_replay or time.monotonic()
            if time.monotonic() - after_replay >= at:
                proc.kill()
                proc.wait(30)
                what = last.get("message") or last.get("phase") or last.get("event")
                return f"killed after the replay, during: {what}"
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)
        return "killed at the time bound (300 s)"
    return f"finished by itself before the kill (exit {proc.returncode})"


# -- 9: soak -------------------------------------------------------------------------
def _rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def s9_soak(suite: Suite) -> list[Row]:
    seconds = suite.soak_seconds
    row = Row("9", f"soak {seconds / 60:.1f} min at half the max write rate, reads alongside")
    with stage(suite, "s9") as st:
        s = st.settings
        api = st.command_api()
        proj = st.projector()
        query = st.query_api()
        probe = st.load(api, rate=1000, workers=12, prefix="max").start()
        time.sleep(15)
        probe.stop()
        max_rate = sum(1 for a in probe.attempts if a.status == 202) / 15
        rate = max(2.0, max_rate / 2)
        load = st.load(api, rate=rate, workers=8, prefix="soak").start()
        readers = Readers(base_url(query), load.items, rate=max(5.0, rate / 2)).start()
        procs: dict[str, Any] = {
            "command API": api.process,
            "projector": proj.process,
            "query API": query.process,
            "kafka": suite.kafka.nodes[0].process,
            "FerretDB": suite.store.process,
        }
        samples: list[tuple[float, dict[str, float], int]] = []
        t0 = time.monotonic()
        step = max(5.0, seconds / 60)
        while time.monotonic() - t0 < seconds:
            time.sleep(step)
            rss = {n: _rss_mb(p.pid if p is not None else None) for n, p in procs.items()}
            try:
                ends = high_watermarks(st.bootstrap, s.commands_topic, s.commands_partitions)
                have = positions(st.db)
                lag = sum(max(0, e - have.get(p, 0)) for p, e in ends.items())
            except Exception:
                lag = -1
            samples.append((time.monotonic() - t0, rss, lag))
        load.stop()
        readers.stop()
        probe.retry_unconfirmed()
        load.retry_unconfirmed()
        load.attempts = probe.attempts + load.attempts
        row.counts = st.count(load)
        warm = seconds / 5
        after = [x for x in samples if x[0] >= warm]
        if after:
            base = after[0][1]
            for name in procs:
                peak = max(x[1][name] for x in after)
                row.expect(
                    f"{name} RSS flat after warm-up: {base[name]:.0f} MB -> peak {peak:.0f} MB, "
                    f"end {after[-1][1][name]:.0f} MB",
                    peak <= 1.2 * base[name] + 1,
                )
            lags = [x[2] for x in after]
            half = len(lags) // 2
            first, second = max(lags[: half or 1]), max(lags[half:] or [0])
            row.expect(
                f"projector lag flat (max {first} in the first half after warm-up, {second} in the "
                "second; commands behind the log end)",
                second <= max(1.2 * first, rate * 2),
            )
        errors = st.log_errors()
        row.expect(f"no ERROR in any service log ({errors})", not any(errors.values()))
        row.notes.append(f"reads: {dict(readers.statuses)}")
        row.notes.append(
            f"max write rate measured first: {max_rate:.0f}/s (12 client threads, 15 s; the "
            f"client shares the 2 cores); soak rate {rate:.0f}/s"
        )
        row.run = (
            f"{seconds:.0f} s at {rate:.0f} writes/s (half of {max_rate:.0f}/s) "
            f"+ {max(5.0, rate / 2):.0f} reads/s"
        )
        row.lag0 = None
    return [row]


# -- 10: generated requests --------------------------------------------------------
def s10_generated_requests(suite: Suite, per_api: int = 2000) -> list[Row]:
    row = Row("10", f"bad input at scale: {per_api:,} generated requests per API (schemathesis)")
    with stage(suite, "s10") as st:
        api = st.command_api()
        st.projector()
        query = st.query_api()
        load = st.load(api)  # only its record: the generated requests go in its log
        seen: Counter[str] = Counter()
        session = requests.Session()
        session.headers.update(HEADERS)

        def run(url: str, paths: list[tuple[str, str]], is_command: bool) -> None:
            schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=HEADERS)
            operations = [schema[p][m] for p, m in paths]
            cases = hst.one_of(
                *(
                    op.as_strategy(generation_mode=mode)
                    for op in operations
                    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                )
            )
            name = "command" if is_command else "query"

            @settings(
                max_examples=per_api,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=cases)
            def one(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
                started = st.clock.now()
                try:
                    response = case.call(base_url=url, session=session, timeout=30)
                except requests.RequestException as exc:
                    seen[f"{name} no answer"] += 1
                    load.record(
                        Attempt(
                            "",
                            case.method,
                            case.path,
                            {},
                            started,
                            st.clock.now(),
                            None,
                            None,
                            None,
                            False,
                            str(exc)[:200],
                        )
                    )
                    return
                seen[f"{name} requests"] += 1
                seen[f"{name} {response.status_code}"] += 1
                if response.status_code >= 500:
                    seen[f"{name} 5xx"] += 1
                if not is_command:
                    return
                request = response.request
                body = request.body
                raw = (
                    body.encode()
                    if isinstance(body, str)
                    else body
                    if isinstance(body, bytes)
                    else b""
                )
                sent = [
                    (k, v if isinstance(v, str) else v.decode("latin-1"))
                    for k, v in request.headers.items()
                ]
                why = verdict(str(request.method), str(request.path_url), sent, raw)
                payload: dict[str, Any] = {}
                with contextlib.suppress(ValueError):
                    parsed = response.json()
                    payload = parsed if isinstance(parsed, dict) else {}
                if response.status_code == 202 and why is not None:
                    seen["202 for an invalid request"] += 1
                load.record(
                    Attempt(
                        str(request.headers.get("Idempotency-Key") or "")
                        or f"gen-{seen['command requests']}",
                        str(request.method),
                        str(request.path_url),
                        # what makes a request the same request (If-Match is in its commandId)
                        {
                            "raw": raw.decode("utf-8", "replace"),
                            "ifMatch": str(request.headers.get("If-Match")),
                        },
                        started,
                        st.clock.now(),
                        response.status_code,
                        payload.get("commandId"),
                        payload.get("actionItemId"),
                        False,
                        None,
                    )
                )

            one()

        run(
            base_url(api),
            [("/action-items", "POST"), ("/action-items/{actionItemId}", "PATCH")],
            True,
        )
        query_schema = schemathesis.openapi.from_url(
            f"{base_url(query)}/openapi.json", headers=HEADERS
        )
        query_paths = [
            (op.path, op.method.upper())
            for op in (r.ok() for r in query_schema.get_all_operations())  # type: ignore[union-attr]
            if op.method.upper() == "GET" and op.path not in ("/healthz", "/readyz", "/metrics")
        ]
        run(base_url(query), query_paths, False)
        row.counts = st.count(load)
        row.notes.append(f"answers: {dict(sorted(seen.items()))}")
        five = seen["command 5xx"] + seen["query 5xx"]
        row.expect(f"0 answers 5xx ({five})", five == 0)
        row.expect(
            f"0 202s for invalid requests ({seen['202 for an invalid request']})",
            seen["202 for an invalid request"] == 0,
        )
        row.expect(
            f"at least {per_api} requests per API "
            f"({seen['command requests']} / {seen['query requests']})",
            seen["command requests"] >= per_api * 0.95 and seen["query requests"] >= per_api * 0.95,
        )
        row.run = (
            f"{per_api:,} hypothesis examples per API, positive and negative, through schemathesis"
        )
        _ = threading
    return [row]

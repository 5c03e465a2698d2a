"""`make bench`: every performance target of the project, as ratios to same-run baselines.

    python -m tests.benchmarks.bench [--only command,sync,freshness,query,live,rebuild]
        [--quick] [--out bench-results] [--no-doc]

Uses the running `make up` stack (starts it when it does not answer) for the
product; peers and extra processes run on free ports with their own topics and
databases, removed afterwards. Load comes from wrk (installed when missing:
tests/benchmarks/install_wrk.sh), bounded in connections and seconds, on
loopback only. Writes bench-results/results.md, results.json and PNG charts,
and copies the table between the bench markers of docs/performance.md.

Measurements (see docs/performance.md): generator (wrk's own ceiling), command
(1: command API vs the minimal peer), sync (2: vs the synchronous store write),
live (3: projector live apply), rebuild (4), freshness (5), query (6).
--quick: small scale for a smoke run (the figures mean little).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.benchmarks import charts, freshness, http_bench, projector_bench, query_bench
from tests.benchmarks.context import Bench
from tests.benchmarks.results import DOC, Report
from tests.benchmarks.stack import (
    Stack,
    bearer_tokens,
    dev_jwks,
    ensure_stack,
    own_stack,
    product_uvicorn_flags,
    server_stack,
    stale_product,
)
from tests.benchmarks.wrk import ensure_wrk
from tests.support.services import REPO

ALL = ("command", "sync", "freshness", "query", "live", "rebuild")
HTTP = {"command", "sync", "freshness", "query"}


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}"
    )
    parser.add_argument("--quick", action="store_true", help="small scale, for a smoke run")
    parser.add_argument("--out", default=str(REPO / "bench-results"))
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the command API and the peer (an extra run each), the projector and "
        "the rebuild (during their runs): top frames in the table",
    )
    parser.add_argument(
        "--own-stack",
        action="store_true",
        help="measure the three services of this working tree on free ports (own topics and "
        "database, same broker and store) instead of the make up ones (which may run older code)",
    )
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/performance.md")
    args = parser.parse_args(argv)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(wanted) - set(ALL)
    if unknown:
        parser.error(f"unknown measurement(s) {sorted(unknown)}; known: {', '.join(ALL)}")

    wrk_binary = ensure_wrk()
    wrk_version = (
        subprocess.run([wrk_binary, "--version"], capture_output=True, text=True, check=False)
        .stdout.split("\n")[0]
        .split(" [")[0]
    )
    stack = ensure_stack()
    tokens = bearer_tokens()
    jwks = dev_jwks()
    flags = product_uvicorn_flags()
    for package, service in (
        ("command_api", "command-api"),
        ("query_api", "query-api"),
        ("projector", "projector"),
    ):
        changed = [] if args.own_stack else stale_product(package, service)
        if changed:
            print(
                f"bench: WARNING: {service} of make up started before {len(changed)} source "
                f"change(s) ({', '.join(changed[:3])}...): it runs older code; "
                f"`infra/services.sh restart {service}` to measure the working tree"
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-", dir=out))
    meta = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit(),
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "load_before": load_average(),
        "server": server_stack(flags),
        "uvicorn_flags": flags,
        "wrk": wrk_version.strip(),
        "measurements": wanted,
        "python": sys.version.split()[0],
        "product": "own stack of the working tree" if args.own_stack else "make up stack",
    }
    with contextlib.ExitStack() as cleanup:
        product = (
            cleanup.enter_context(own_stack(stack, str(jwks or ""), flags, logs))
            if args.own_stack
            else stack
        )
        return run(args, wanted, product, out, logs, flags, meta, tokens, str(jwks or ""))
    return 1


def run(
    args: argparse.Namespace,
    wanted: list[str],
    stack: Stack,
    out: Path,
    logs: Path,
    flags: list[str],
    meta: dict[str, Any],
    tokens: list[str],
    jwks: str,
) -> int:
    bench = Bench(
        stack,
        args.quick,
        out,
        logs,
        flags,
        Report(meta),
        meta["server"],
        args.profile,
        tokens,
        jwks,
    )
    print(
        f"bench: {', '.join(wanted)}{' (quick)' if args.quick else ''}; load average "
        f"{meta['load_before']} on {meta['cpus']} cores; server {meta['server']}; logs {logs}",
        flush=True,
    )
    started = time.monotonic()
    generator = http_bench.generator(bench) if HTTP & set(wanted) else None
    if "command" in wanted or "sync" in wanted:
        http_bench.writes(bench, peer="command" in wanted, sync="sync" in wanted)
    if "freshness" in wanted:
        freshness.freshness(bench)
    if "query" in wanted:
        query_bench.queries(bench)
    if "live" in wanted:
        projector_bench.live(bench)
    if "rebuild" in wanted:
        projector_bench.rebuild(bench)
    if generator is not None:
        http_bench.generator_target(bench, generator)

    meta["load_after"] = load_average()
    meta["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    meta["seconds"] = round(time.monotonic() - started)
    bench.report.charts = charts.draw(bench.series, out)
    bench.report.write(out, None if args.no_doc else DOC)
    missed = [t for t in bench.report.targets if not t.passed]
    print(
        f"\nbench: {len(bench.report.targets) - len(missed)} of {len(bench.report.targets)} "
        f"targets met in {meta['seconds']} s; results in {out}/results.md"
        + ("" if args.no_doc else ", table copied into docs/performance.md")
    )
    for t in bench.report.targets:
        print(t.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m tests.reliability [--only 1,4] [--soak-seconds N] [--docs]`: run, write the table."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback

from tests.reliability import results
from tests.reliability.harness import BASE, Suite
from tests.reliability.results import Row
from tests.reliability.scenarios import ORDER, SCENARIOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    parser.add_argument(
        "--only", default="", help="comma-separated scenario numbers (default: all)"
    )
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="scenario 9's length")
    parser.add_argument(
        "--docs", action="store_true", help="copy the table into docs/reliability.md"
    )
    args = parser.parse_args(argv)
    started = time.time()
    # SIGTERM (a bounded run's timeout, Ctrl-C's sibling): unwind, so that every broker,
    # store and service process the suite started is stopped by the finally blocks
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # librdkafka's and the services' client noise goes to a file; the progress stays on stdout
    BASE.mkdir(parents=True, exist_ok=True)
    noise = open(BASE / "suite-stderr.log", "ab")  # noqa: SIM115
    os.dup2(noise.fileno(), 2)
    wanted = [s for s in ORDER if s in SCENARIOS and (not args.only or s in args.only.split(","))]
    rows: list[Row] = []
    command = (
        "make test-reliability"
        if args.docs
        else "python -m tests.reliability " + " ".join(sys.argv[1:])
    )
    try:
        with Suite.running(args.soak_seconds) as suite:
            for name in wanted:
                t0 = time.monotonic()
                print(f"=== scenario {name} ===", flush=True)
                try:
                    got = SCENARIOS[name](suite)
                except Exception as exc:
                    traceback.print_exc(file=sys.stdout)
                    got = [
                        Row(
                            name,
                            SCENARIOS[name].__name__,
                            error=f"{type(exc).__name__}: {exc}"[:500],
                        )
                    ]
                spent = time.monotonic() - t0
                for r in got:
                    r.seconds = r.seconds or spent / len(got)
                    c = r.counts
                    print(
                        f"  {r.scenario}: {'pass' if r.passed else 'FAIL'} "
                        f"sent={c.sent if c else '-'} "
                        f"lost={c.lost if c else '-'} dup={c.duplicated if c else '-'} "
                        f"false202={c.false_202 if c else '-'} ({spent:.0f} s)",
                        flush=True,
                    )
                rows.extend(got)
    finally:
        path = results.write(rows, results.meta(started, command), docs=args.docs)
        print(results.markdown(rows, results.meta(started, command)))
        print(f"results: {path}")
    return 0 if rows and all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

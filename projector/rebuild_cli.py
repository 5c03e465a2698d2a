"""The terminal side of `projector rebuild`: options, progress (rich, plain or JSON), exit codes."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from pymongo.errors import PyMongoError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from projector.log_reader import LogReader, LogUnavailable
from projector.rebuild import Rebuild, RebuildFailed, RebuildOptions, RebuildResult, estimate_text
from projector.settings import ProjectorSettings
from servicekit.logs import configure_logging
from servicekit.settings import load_settings
from servicekit.store_client import store_client
from servicekit.store_errors import StoreUnavailable

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Output(StrEnum):
    RICH = "rich"
    PLAIN = "plain"
    JSON = "json"


class RichProgress:
    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9,.0f} events/s"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: TaskID | None = None
        self._started = time.monotonic()
        self._done = 0

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def phase(self, name: str, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=self._progress.tasks[-1].total)
        self._task = self._progress.add_task(name, total=max(total, 1), rate=0.0)
        self._started, self._done = time.monotonic(), 0

    def advance(self, records: int) -> None:
        self._done += records
        rate = self._done / max(time.monotonic() - self._started, 1e-6)
        if self._task is not None:
            self._progress.update(self._task, advance=records, rate=rate)

    def message(self, text: str) -> None:
        self._progress.console.print(text)


class LineProgress:
    """One line per second for scripts: plain text or JSON objects."""

    def __init__(self, as_json: bool) -> None:
        self._json = as_json
        self._name, self._total, self._done = "", 0, 0
        self._started = self._last = time.monotonic()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def phase(self, name: str, total: int) -> None:
        self._name, self._total, self._done = name, total, 0
        self._started = self._last = time.monotonic()
        self._emit(force=True)

    def advance(self, records: int) -> None:
        self._done += records
        self._emit()

    def message(self, text: str) -> None:
        self._print({"event": "message", "message": text}, text)

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 1.0 and self._done < self._total:
            return
        self._last = now
        elapsed = max(now - self._started, 1e-6)
        rate = self._done / elapsed
        percent = 100.0 * self._done / self._total if self._total else 100.0
        left = (self._total - self._done) / rate if rate > 0 else None
        data = {
            "event": "progress",
            "phase": self._name,
            "done": self._done,
            "total": self._total,
            "percent": round(percent, 1),
            "eventsPerSecond": round(rate, 1),
            "secondsLeft": round(left, 1) if left is not None else None,
        }
        left_text = f"{left:,.0f} s left" if left is not None else "time left unknown"
        self._print(
            data,
            f"{self._name}: {self._done:,}/{self._total:,} ({percent:.1f}%), "
            f"{rate:,.0f} events/s, {left_text}",
        )

    def _print(self, data: dict[str, Any], text: str) -> None:
        print(json.dumps(data) if self._json else text, flush=True)


def parse_offsets(text: str) -> dict[int, int]:
    """'0:120,1:88' -> {0: 120, 1: 88}: replay each partition up to (not including) the offset."""
    out: dict[int, int] = {}
    for part in text.split(","):
        partition, sep, offset = part.strip().partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise typer.BadParameter(
                "expected PARTITION:OFFSET[,PARTITION:OFFSET...], e.g. 0:120,1:88"
            )
        out[int(partition)] = int(offset)
    return out


def rebuild(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report records and expected time only.")
    ] = False,
    into: Annotated[
        str | None,
        typer.Option(help="Build into this named side generation and do NOT swap (forensics)."),
    ] = None,
    until_offset: Annotated[
        str | None,
        typer.Option(help="Stop each partition before OFFSET: '0:120,1:88'. Needs --into."),
    ] = None,
    until_time: Annotated[
        datetime | None,
        typer.Option(help="Stop at the first record at/after this time. Needs --into."),
    ] = None,
    output: Annotated[
        Output | None, typer.Option(help="rich (default on a terminal), plain or json")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000)] = 2000,
    pause_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for projectors to pause.")
    ] = 30.0,
) -> None:
    """Replay the whole log into a fresh read model and swap it in atomically."""
    if (until_offset or until_time) and not into:
        typer.echo(
            "error: --until-offset/--until-time build a side model: give --into NAME", err=True
        )
        raise typer.Exit(EXIT_USAGE)
    if into is not None and not into.replace("_", "").isalnum():
        typer.echo("error: --into must be letters, digits and underscores", err=True)
        raise typer.Exit(EXIT_USAGE)
    settings = load_settings(ProjectorSettings)
    configure_logging("projector", "WARNING")
    options = RebuildOptions(
        dry_run=dry_run,
        into=into,
        until_offsets=parse_offsets(until_offset) if until_offset else None,
        until_time=until_time,
        batch_size=batch_size,
        pause_timeout=pause_timeout,
    )
    code = run(settings, options, output or (Output.RICH if sys.stdout.isatty() else Output.PLAIN))
    if code:
        raise typer.Exit(code)


def run(settings: ProjectorSettings, options: RebuildOptions, mode: Output) -> int:
    """Run the rebuild with progress on the terminal; the exit code (0: done)."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client = store_client(
        settings.mongodb_uri, app_name="projector-rebuild", timeout_ms=settings.mongodb_timeout_ms
    )
    reader = LogReader(settings.kafka_bootstrap_servers, settings.commands_topic)
    progress: RichProgress | LineProgress = (
        RichProgress(Console(stderr=False))
        if mode == Output.RICH
        else LineProgress(mode == Output.JSON)
    )
    code = 0
    try:
        with progress:
            job = Rebuild(client, settings.mongodb_database, reader, progress, stop, options)
            result = job.run()
        report(result, mode, job)
    except KeyboardInterrupt:
        fail(
            mode,
            "interrupted: nothing was swapped; the live read model is untouched and the "
            "half-built generation was dropped",
            "interrupted",
        )
        code = EXIT_INTERRUPTED
    except (RebuildFailed, LogUnavailable, StoreUnavailable, PyMongoError) as exc:
        what = {
            LogUnavailable: "Kafka",
            StoreUnavailable: "the store",
        }.get(type(exc), "the store" if isinstance(exc, PyMongoError) else "rebuild")
        fail(
            mode,
            f"rebuild failed ({what}): {exc}. The live read model is untouched and the half-built "
            "generation was dropped; fix the cause and run `projector rebuild` again.",
            "failed",
        )
        code = EXIT_FAILED
    finally:
        reader.close()
        client.close()
    return code


def report(result: RebuildResult, mode: Output, job: Rebuild) -> None:
    data = {"event": "result", **result.as_dict()}
    if mode == Output.JSON:
        print(json.dumps(data), flush=True)
        return
    if result.generation is None:
        _rate, known = job.last_rate()
        print(
            f"dry run: {result.records:,} records on the log; a rebuild should take "
            f"{estimate_text(result, known)}"
        )
        return
    where = (
        f"swapped in generation {result.generation} (previous {result.previous} kept for rollback)"
        if result.swapped
        else f"built side generation {result.generation} (not swapped)"
    )
    print(
        f"rebuild done: {result.applied_records:,} records in {result.seconds:,.1f} s "
        f"({result.rate:,.0f} events/s); {where}"
        + (
            f"; {result.undecodable} undecodable record(s) skipped (see the DLQ)"
            if result.undecodable
            else ""
        )
    )


def fail(mode: Output, text: str, event: str) -> None:
    if mode == Output.JSON:
        print(json.dumps({"event": event, "message": text}), flush=True)
    print(f"error: {text}", file=sys.stderr, flush=True)

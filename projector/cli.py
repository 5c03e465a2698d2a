"""The `projector` command: `run` (the consumer), `rebuild` (recovery), `release ITEM`."""

from __future__ import annotations

import logging
import signal
import threading
import time

import typer

from projector.bootstrap import build_projector, mongo_client
from projector.http import create_health_app, serve_in_thread
from projector.parking import ParkingLot
from projector.rebuild_cli import rebuild
from projector.settings import ProjectorSettings
from servicekit.logs import configure_logging
from servicekit.settings import load_settings
from servicekit.store_errors import StoreRejected, StoreUnavailable

app = typer.Typer(help="ActionItems projector: builds the read model from the command log.")
log = logging.getLogger("projector")


@app.callback()
def _commands() -> None:
    """ActionItems projector."""


def stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("signal received; finishing the current batch", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


@app.command()
def run() -> None:
    """Consume the command log and keep the read model up to date (what `make up` starts)."""
    settings = load_settings(ProjectorSettings)
    configure_logging("projector", settings.log_level)
    stop = stop_on_signals()
    projector = build_projector(settings, stop)
    server = serve_in_thread(
        create_health_app(projector.health), settings.http_host, settings.http_port
    )
    log.info(
        "projector starting",
        extra={"topic": settings.commands_topic, "group": settings.consumer_group},
    )
    try:
        projector.run()
    finally:
        projector.close()
        server.should_exit = True
        log.info("projector stopped")


app.command("rebuild")(rebuild)


@app.command()
def release(
    item: str = typer.Argument(..., help="the id of the parked ActionItem"),
    wait: float = typer.Option(60.0, help="seconds to wait for the running projector"),
) -> None:
    """Apply a parked item's waiting commands now, in order (once the cause is gone).

    The running projector does the applying (it owns the partition); this asks it
    to retry at once and waits for the outcome. Exit 0 when the item is live
    again, 1 when the store still refuses it (the reason is printed) or nobody
    retried it within --wait, 2 when the item is not parked.
    """
    settings = load_settings(ProjectorSettings)
    configure_logging("projector", settings.log_level)
    client = mongo_client(settings)
    try:
        lot = ParkingLot(client, settings.mongodb_database)
        before = lot.request_release(item)
        if before is None:
            typer.echo(f"item {item} is not parked; nothing to do")
            raise typer.Exit(2)
        typer.echo(
            f"asked the projector to apply the parked commands of {item} now "
            f"(parked at partition {before.partition} offset {before.offset}, "
            f"{before.attempts} attempt(s) so far)"
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = lot.items().get(item)
            if now is None:
                typer.echo(f"released: item {item} is live again, its commands are applied")
                return
            if now.attempts > before.attempts and not now.release_requested:
                typer.echo(
                    f"still refused after attempt {now.attempts}: {now.error}; its commands "
                    "keep waiting; fix the cause and run this again",
                    err=True,
                )
                raise typer.Exit(1)
        typer.echo(
            f"no projector retried item {item} within {wait:g} s: is `projector run` running "
            "and is the item's partition assigned? Its commands keep waiting.",
            err=True,
        )
        raise typer.Exit(1)
    except (StoreUnavailable, StoreRejected) as exc:
        typer.echo(f"the store did not answer: {exc}; nothing was changed", err=True)
        raise typer.Exit(1) from None
    finally:
        client.close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()

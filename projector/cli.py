"""The `projector` command: `run` (the long-running consumer) and `rebuild` (recovery)."""

from __future__ import annotations

import logging
import signal
import threading

import typer

from projector.bootstrap import build_projector
from projector.http import create_health_app, serve_in_thread
from projector.rebuild_cli import rebuild
from projector.settings import ProjectorSettings
from servicekit.logs import configure_logging
from servicekit.settings import load_settings

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()

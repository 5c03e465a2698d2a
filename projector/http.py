"""The projector's operator endpoints (/healthz, /readyz, /metrics) on their own thread."""

from __future__ import annotations

import threading

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from projector.health import Health
from servicekit.problems import Problem, install_problem_handlers


def create_health_app(health: Health) -> FastAPI:
    app = FastAPI(title="ActionItems projector", version="0.1.0")
    install_problem_handlers(app)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, object]:
        problems = health.problems()
        if problems:
            raise Problem(503, "Not Ready", "; ".join(problems), down=problems)
        return {"status": "ready", "partitions": health.assignment}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def serve_in_thread(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    threading.Thread(target=server.run, name="projector-http", daemon=True).start()
    return server

"""The projector's operator endpoints (/healthz, /readyz, /metrics) on their own thread.

/healthz is open; /readyz and /metrics need a token with the admin scope (servicekit/protect.py).
"""

from __future__ import annotations

import threading

import uvicorn
from fastapi import FastAPI

from projector.health import Health
from servicekit.auth import ADMIN
from servicekit.ops_routes import install_ops_routes, not_ready
from servicekit.problems import install_problem_handlers
from servicekit.protect import METRICS_ROUTE, merged, protect


def create_health_app(health: Health) -> FastAPI:
    app = FastAPI(title="ActionItems projector", version="0.1.0")
    install_problem_handlers(app)
    protect(app, "projector")

    async def ready() -> dict[str, object]:
        # Health.problems() only reads state the loop writes (one short lock): no thread needed
        problems = health.problems()
        if problems:
            raise not_ready(problems, "; ".join(problems))
        return {"status": "ready", "partitions": health.assignment}

    install_ops_routes(
        app,
        ready,
        readyz=merged({"response_model": dict[str, object]}, ADMIN),
        metrics=merged({**METRICS_ROUTE, "name": "metrics"}, ADMIN),
    )
    return app


def serve_in_thread(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", server_header=False)
    )
    threading.Thread(target=server.run, name="projector-http", daemon=True).start()
    return server

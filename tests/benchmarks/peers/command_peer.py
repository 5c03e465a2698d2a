"""Baseline: the smallest honest command API, run with the product's uvicorn flags.

FastAPI + pydantic body, fastavro with a parsed schema, one idempotent acks=all
producer (linger 1 ms, as the product) served by a poll thread; each request
awaits its own delivery report before answering 202. Env: PEER_TOPIC,
KAFKA_BOOTSTRAP_SERVERS, PEER_JWKS (when set, the bearer token is verified
against that key set, as the contract requires of the product).
"""

import asyncio
import io
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Literal

import fastavro
import jwt
from confluent_kafka import Producer
from fastapi import FastAPI, Header
from pydantic import BaseModel, Field

FIELDS = [("commandId", "string"), ("title", "string"), ("priority", "string")]
SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Create",
        "fields": [{"name": n, "type": t} for n, t in FIELDS]
        + [{"name": "tags", "type": {"type": "array", "items": "string"}}],
    }
)
TOPIC = os.environ.get("PEER_TOPIC", "bench-peer.commands")
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
JWKS = os.environ.get("PEER_JWKS")
KEY = jwt.PyJWKSet.from_json(Path(JWKS).read_text()).keys[0] if JWKS else None
producer = Producer(
    {"bootstrap.servers": BOOTSTRAP, "acks": "all", "enable.idempotence": True, "linger.ms": 1}
)


def serve_reports() -> None:
    while True:
        producer.poll(0.1)


threading.Thread(target=serve_reports, daemon=True).start()
app = FastAPI()
logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # as the product


class Create(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    tags: list[str] = Field(default_factory=list, max_length=20)


def settle(done: "asyncio.Future[Any]", err: Any, msg: Any) -> None:
    if not done.done():
        done.set_exception(RuntimeError(str(err))) if err else done.set_result(msg)


@app.post("/action-items", status_code=202)
async def create(body: Create, authorization: str = Header("")) -> dict[str, Any]:
    if KEY is not None:  # a bad token fails the request (500): enough for a baseline
        jwt.decode(authorization.removeprefix("Bearer "), KEY.key, [KEY.algorithm_name])
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    command_id = str(uuid.uuid4())
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, SCHEMA, {"commandId": command_id, **body.model_dump()})

    def report(err: Any, msg: Any) -> None:
        loop.call_soon_threadsafe(settle, done, err, msg)

    # a key per produced record, as the product writes them (schemas/record_key.py)
    key = f"{command_id}.{uuid.uuid4().hex}"
    producer.produce(TOPIC, buf.getvalue(), key=key, on_delivery=report)
    msg = await done
    return {"commandId": command_id, "partition": msg.partition(), "offset": msg.offset()}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}

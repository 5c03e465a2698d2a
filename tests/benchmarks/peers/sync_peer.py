"""Baseline: the synchronous alternative, which writes the document straight to the store.

Run as the product runs (same uvicorn flags): `uvicorn
tests.benchmarks.peers.sync_peer:app`, with MONGODB_URI, PEER_DATABASE and
PEER_JWKS (when set, the bearer token is verified against that key set).
Each request validates its body, inserts the new item (acknowledged write) and
answers 200; the endpoint is a plain `def`, so FastAPI runs it on its thread pool.
"""

import logging
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jwt
from fastapi import FastAPI, Header
from pydantic import BaseModel, Field
from pymongo import MongoClient

JWKS = os.environ.get("PEER_JWKS")
KEY = jwt.PyJWKSet.from_json(Path(JWKS).read_text()).keys[0] if JWKS else None
client: MongoClient[dict[str, Any]] = MongoClient(
    os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017")
)
items = client[os.environ.get("PEER_DATABASE", "bench_sync_peer")]["action_items"]
app = FastAPI()
logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # as the product


class Create(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    tags: list[str] = Field(default_factory=list, max_length=20)


@app.post("/action-items")
def create(body: Create, authorization: str = Header("")) -> dict[str, str | int]:
    if KEY is not None:  # a bad token fails the request (500): enough for a baseline
        jwt.decode(authorization.removeprefix("Bearer "), KEY.key, [KEY.algorithm_name])
    now = datetime.now(UTC).isoformat()
    doc = {"_id": str(uuid.uuid4()), **body.model_dump(), "status": "open", "version": 1}
    items.insert_one({**doc, "createdAt": now, "updatedAt": now})
    return {"actionItemId": doc["_id"], "version": 1}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}

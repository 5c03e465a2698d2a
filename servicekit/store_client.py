"""The one place a store client (pymongo ``MongoClient``) is built, for every service."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import MongoClient, monitoring

from servicekit.store_types import StoreClient


def store_client(
    uri: str,
    *,
    app_name: str,
    timeout_ms: int,
    event_listeners: Sequence[monitoring.CommandListener] = (),
    socket_timeout_ms: int | None = None,
    operation_timeout_ms: int | None = None,
    max_pool_size: int = 100,
) -> StoreClient:
    """A client that gives up on an unreachable store after ``timeout_ms``.

    ``timeout_ms`` bounds server selection and connecting. ``socket_timeout_ms``
    bounds one reply (None: wait as long as the driver does); ``operation_timeout_ms``
    bounds a whole operation, retries included (None: no bound). ``event_listeners``
    see every command the client sends (the projector watches for a hung store).
    """
    return MongoClient(
        uri,
        appname=app_name,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=socket_timeout_ms,
        timeoutMS=operation_timeout_ms,
        uuidRepresentation="standard",
        maxPoolSize=max_pool_size,
        event_listeners=list(event_listeners),
    )

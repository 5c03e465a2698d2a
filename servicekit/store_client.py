"""The one place a store client is built, for every service.

``store_client`` is pymongo's ``MongoClient`` (every service); ``async_store_client``
is its asyncio twin with the same options, for the query API's hot reads, which
then need no thread-pool hop (docs/query-api.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import AsyncMongoClient, MongoClient, monitoring

from servicekit.store_types import AsyncStoreClient, StoreClient


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
        **_options(app_name, timeout_ms, event_listeners, socket_timeout_ms, operation_timeout_ms),
        maxPoolSize=max_pool_size,
    )


def async_store_client(
    uri: str,
    *,
    app_name: str,
    timeout_ms: int,
    event_listeners: Sequence[monitoring.CommandListener] = (),
    operation_timeout_ms: int | None = None,
    max_pool_size: int = 100,
) -> AsyncStoreClient:
    """``store_client``'s asyncio twin (pymongo's ``AsyncMongoClient``), same options.

    Build it inside the event loop that uses it (an app's lifespan) and close it there.
    """
    return AsyncMongoClient(
        uri,
        **_options(app_name, timeout_ms, event_listeners, None, operation_timeout_ms),
        maxPoolSize=max_pool_size,
    )


def _options(
    app_name: str,
    timeout_ms: int,
    event_listeners: Sequence[monitoring.CommandListener],
    socket_timeout_ms: int | None,
    operation_timeout_ms: int | None,
) -> dict[str, Any]:
    return {
        "appname": app_name,
        "serverSelectionTimeoutMS": timeout_ms,
        "connectTimeoutMS": timeout_ms,
        "socketTimeoutMS": socket_timeout_ms,
        "timeoutMS": operation_timeout_ms,
        "uuidRepresentation": "standard",
        "event_listeners": list(event_listeners),
    }

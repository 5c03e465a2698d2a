"""Schemathesis against the running query API's own /openapi.json: no 5xx, and every answer
matches the documented status codes, content types, headers and schemas.

The store holds seeded items and command statuses, so lists return real pages
and some generated ids exist. Positive and negative (schema-violating) requests
are mixed; at least 1,000 are sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.errors import InvalidSchema
from schemathesis.core.result import Err, Result

from domain.rules import ActionItem
from query_api.cursor import Cursor, filters_digest
from query_api.listing import FILTER_FIELDS
from servicekit.consistency import ConsistencyToken
from servicekit.read_model import active_read_model
from servicekit.store_types import StoreClient
from tests.conftest import Stack
from tests.support import services
from tests.support.auth import caller_headers
from tests.support.query_data import seed, varied_items

pytestmark = pytest.mark.e2e
REQUESTS = 1050
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class Seeded:
    url: str
    items: list[ActionItem] = field(repr=False)
    command_ids: list[str] = field(repr=False)


@pytest.fixture
def seeded(stack: Stack, mongo: StoreClient) -> Iterator[Seeded]:
    db = mongo[stack.settings.mongodb_database]
    states = varied_items(300)
    model = seed(db, states)
    model.commands.insert_many(
        {
            "_id": str(uuid.UUID(int=n)),
            "commandId": str(uuid.UUID(int=n)),
            "actionItemId": states[n].id,
            "status": "applied",
            "exception": None,
            "processedAt": states[n].created_at,
            "partition": 0,
            "offset": n,
        }
        for n in range(50)
    )
    active_read_model(db).positions.insert_one({"_id": "0", "partition": 0, "nextOffset": 50})
    port = services.free_port()
    process = services.query_api_process(
        {**stack.env, "CONSISTENCY_WAIT_SECONDS": "0.2"}, port, stack.log_dir
    ).start()
    yield Seeded(f"http://127.0.0.1:{port}", states, [str(uuid.UUID(int=n)) for n in range(50)])
    process.stop()


Operation: TypeAlias = APIOperation[Any, Any, Any, Any]
Case: TypeAlias = schemathesis.Case[Operation]


def realistic(op: Operation, seeded: Seeded) -> st.SearchStrategy[Case]:
    """A schema-valid request, often made to hit real data: a seeded id, no token or a valid
    one, a real cursor for the request's own filters (random ones are mostly 400s)."""
    positive = op.as_strategy(generation_mode=GenerationMode.POSITIVE)

    @st.composite
    def build(draw: st.DrawFn) -> Case:
        case = draw(positive)
        if case.headers and "Consistency-Token" in case.headers:
            choice = draw(st.sampled_from(["drop", "valid", "keep"]))
            if choice == "drop":
                del case.headers["Consistency-Token"]
            elif choice == "valid":
                offset = draw(st.integers(0, 49))
                case.headers["Consistency-Token"] = ConsistencyToken(
                    seeded.command_ids[offset], 0, offset
                ).encode()
        if case.headers and "If-None-Match" in case.headers and draw(st.booleans()):
            case.headers["If-None-Match"] = draw(st.sampled_from(['"1"', 'W/"1"', "*", '"2"']))
        if bool(case.path_parameters) and draw(st.booleans()):
            if "actionItemId" in case.path_parameters:
                case.path_parameters["actionItemId"] = seeded.items[draw(st.integers(0, 299))].id
            else:
                case.path_parameters["commandId"] = seeded.command_ids[draw(st.integers(0, 49))]
        if case.query and "cursor" in case.query and draw(st.booleans()):
            filters = {k: str(v) for k, v in case.query.items() if k in FILTER_FIELDS}
            after = seeded.items[draw(st.integers(0, 299))]
            cursor = Cursor(after.created_at, after.id, filters_digest(filters))
            case.query["cursor"] = cursor.encode()
        return case

    # a closure, so the strategy's repr does not print the whole schema
    return build()


def operation(result: Result[Operation, InvalidSchema]) -> Operation:
    if isinstance(result, Err):
        raise result.err()
    return result.ok()


def tagged(
    mode: GenerationMode, strategy: st.SearchStrategy[Case]
) -> st.SearchStrategy[tuple[GenerationMode, Case]]:
    return strategy.map(lambda case: (mode, case))


def test_generated_requests_find_no_server_error_and_match_the_schema(seeded: Seeded) -> None:
    query_url = seeded.url
    schema = schemathesis.openapi.from_url(f"{query_url}/openapi.json")
    operations = [operation(result) for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/action-items",
        "/action-items/{actionItemId}",
        "/commands/{commandId}",
    }
    strategies = [
        tagged(mode, strategy)
        for op in operations
        for mode, strategy in (
            (GenerationMode.POSITIVE, op.as_strategy(generation_mode=GenerationMode.POSITIVE)),
            (GenerationMode.POSITIVE, realistic(op, seeded)),
            (GenerationMode.NEGATIVE, op.as_strategy(generation_mode=GenerationMode.NEGATIVE)),
        )
    ]
    sent: list[int] = []
    with httpx.Client(headers=caller_headers("anonymous"), timeout=10) as probe:
        assert probe.get(f"{query_url}/readyz").status_code == 200

    @settings(
        max_examples=REQUESTS,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.one_of(strategies))
    def run(generated: tuple[GenerationMode, Case]) -> None:
        mode, case = generated
        # a positive case gets the caller's token over the random bearer value schemathesis
        # generates (else no realistic request reaches the data: no 304); a negative one keeps
        # the session's token unless schemathesis removed the header on purpose (401)
        token = caller_headers("anonymous") if mode is GenerationMode.POSITIVE else None
        response = case.call(base_url=query_url, session=session, headers=token, timeout=10)
        sent.append(response.status_code)
        checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
        case.validate_response(response, checks=checks)

    with requests.Session() as session:
        session.headers.update(caller_headers("anonymous"))
        run()
    assert len(sent) >= 1000, len(sent)
    assert not [s for s in sent if s >= 500]
    assert {200, 304, 400, 404, 422} <= set(sent), sorted(set(sent))
    assert sent.count(200) >= len(sent) // 10, "too few requests reached real data"

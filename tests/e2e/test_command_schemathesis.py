"""Property-based: schemathesis requests from /openapi.json against the real command API.

At least 1,000 generated requests, positive and negative, to POST and PATCH.
For every one: never a 5xx; every 4xx a problem+json; schemathesis's own checks
(invalid-by-schema data rejected, answers conform to the documented statuses,
media types, headers and schemas); and an independent oracle of the contract
(tests/support/command_contract.py): a request it calls invalid never gets a
202, and one it calls valid gets a 202 (the log is up).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from schemathesis.config import SchemathesisConfig

from tests.support.auth import caller_headers
from tests.support.command_api import CommandApi, own_topics, running_command_api
from tests.support.command_contract import verdict

REQUESTS = 1_000
TOKEN = caller_headers("anonymous")
REJECTIONS = [400, 401, 413, 415, 422]  # 401: a case without a valid token
CHECKS = [
    not_a_server_error,
    negative_data_rejection,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CommandApi]:
    log_dir: Path = tmp_path_factory.mktemp("command-schemathesis")
    with own_topics(kafka_bootstrap) as (_, env), running_command_api(env, log_dir) as running:
        yield running


def test_generated_requests_never_get_a_5xx_or_an_undeserved_202(api: CommandApi) -> None:
    # a body that is invalid by the schema may also be over the size limit: 413 is a rejection
    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}}
    )
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json", config=config)
    operations = [
        schema["/action-items"]["POST"],
        schema["/action-items/{actionItemId}"]["PATCH"],
    ]
    cases = st.one_of(
        *(
            operation.as_strategy(generation_mode=mode)
            for operation in operations
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        )
    )
    seen: Counter[str] = Counter()
    session = requests.Session()
    session.headers.update(TOKEN)

    @settings(
        max_examples=REQUESTS + 20,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def one_request(case: schemathesis.Case[APIOperation[Any, Any, Any, Any]]) -> None:
        # The session's valid token goes with every case that does not bring its own; a case
        # may draw another Authorization from the security scheme, or drop it (negative mode).
        response = case.call(base_url=api.url, session=session, timeout=30)
        request = response.request
        seen["requests"] += 1
        seen[f"{case.method} {response.status_code}"] += 1
        seen[f"mode {case.meta.generation.mode.value if case.meta else '?'}"] += 1
        assert response.status_code < 500, response.text
        if 400 <= response.status_code < 500:
            assert response.headers["content-type"] == ["application/problem+json"], response.text
        body = request.body
        raw = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else b""
        sent = [
            (k, v if isinstance(v, str) else v.decode("latin-1"))
            for k, v in request.headers.items()
        ]
        why = verdict(str(request.method), str(request.path_url), sent, raw)
        if request.headers.get("Authorization") != TOKEN["Authorization"]:
            # not our caller: the token is what is refused (test_auth_routes.py covers it)
            why = "no valid token"
            assert response.status_code == 401, (response.status_code, response.text)
        if response.status_code == 202:
            assert why is None, f"202 for an invalid request ({why}): {raw[:300]!r}"
        elif why is None:
            pytest.fail(f"valid request refused: {response.status_code} {response.text}")
        else:
            seen[f"refused: {why}"] += 1
        case.validate_response(response, checks=CHECKS)

    one_request()
    session.close()
    print(dict(seen))
    assert seen["requests"] >= REQUESTS, dict(seen)
    assert seen["POST 202"] > 50 and seen["PATCH 202"] > 50, dict(seen)
    assert seen["mode negative"] > 200, dict(seen)

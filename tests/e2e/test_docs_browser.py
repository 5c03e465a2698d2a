"""The docs pages work offline, in a real headless browser (Debian's chromium via selenium).

On a small app and on the real command and query APIs, the page must list every
operation of the OpenAPI document, and its "Authorize"
button must carry a bearer token into "Try it out". The assets come from an
installed package (servicekit/docs.py), so no request leaves this machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI

from servicekit.auth import READ, WRITE, Authenticator, AuthSettings, Caller, install_auth
from servicekit.auth import require_scope as scope
from servicekit.docs import install_docs
from servicekit.mint_token import load_private_key, mint
from servicekit.problems import install_problem_handlers
from tests.conftest import RunningSystem
from tests.support import browser, docs_page
from tests.support.auth import token
from tests.support.services import free_port


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    try:
        browser.ensure_browser()
    except browser.BrowserMissing as exc:
        # `make test` installs it (`make browser`); a missing browser is a failure, never a skip
        pytest.fail(f"the browser test needs chromium (run `make browser`): {exc}")
    with browser.chromium() as web:
        yield web


def small_service(jwks: Path) -> FastAPI:
    app = FastAPI(title="docs check")
    install_problem_handlers(app)
    install_auth(app, Authenticator.from_settings(AuthSettings(auth_jwks_file=jwks)), "docs")
    install_docs(app)

    @app.get("/things")
    async def things(caller: Caller = Depends(scope(READ))) -> dict[str, str]:
        return {"caller": caller.sub}

    @app.post("/things", status_code=202)
    async def add(caller: Caller = Depends(scope(WRITE))) -> dict[str, str]:
        return {"caller": caller.sub}

    return app


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    from infra.dev_keys import write_key_pair

    keys = write_key_pair(tmp_path)
    key, algorithm, kid = load_private_key(keys.private_key)
    token = mint("docs-reader", [READ], key, algorithm, kid=kid)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(small_service(keys.jwks), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/openapi.json", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url, token
    server.should_exit = True
    thread.join(10)


def test_swagger_ui_lists_every_operation_and_authorize_carries_the_token(
    driver, served: tuple[str, str]
) -> None:
    url, token = served
    openapi = httpx.get(f"{url}/openapi.json").json()
    docs_page.open_docs(driver, f"{url}/docs")
    assert docs_page.operations_listed(driver) == docs_page.documented_operations(openapi)
    assert docs_page.try_it(driver, "GET", "/things") == "401"
    driver.refresh()
    docs_page.open_docs(driver, f"{url}/docs")
    docs_page.authorize(driver, token)
    assert docs_page.try_it(driver, "GET", "/things") == "200"


def test_the_services_docs_pages_list_every_operation_and_authorize_works(
    driver, system: RunningSystem
) -> None:
    for url in (system.command_url, system.query_url):
        openapi = httpx.get(f"{url}/openapi.json").json()
        docs_page.open_docs(driver, f"{url}/docs")
        listed = docs_page.operations_listed(driver)
        assert listed == docs_page.documented_operations(openapi), url
        assert len(listed) >= 5, listed
    # On the query API, "Try it out" with the Authorize button's token reads the list.
    docs_page.open_docs(driver, f"{system.query_url}/docs")
    assert docs_page.try_it(driver, "GET", "/action-items") == "401"
    driver.refresh()
    docs_page.open_docs(driver, f"{system.query_url}/docs")
    docs_page.authorize(driver, token("docs-reader", READ))
    assert docs_page.try_it(driver, "GET", "/action-items") == "200"

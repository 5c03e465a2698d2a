"""The Grafana dashboard reads only metrics the running services export on /metrics.

The three real processes are started on this test's topics and database, a few
requests go through them, then each /metrics page is scraped with an admin token.
"""

from __future__ import annotations

import httpx

from tests.conftest import RunningSystem
from tests.support.auth import ADMIN, WRITE, bearer
from tests.support.dashboard import exported_names, expressions, metric_names


def test_every_dashboard_expression_names_a_metric_a_running_service_exports(
    system: RunningSystem,
) -> None:
    admin = bearer("operator", ADMIN)
    created = httpx.post(
        f"{system.command_url}/action-items", json={"title": "x"}, headers=bearer("w", WRITE)
    )
    assert created.status_code == 202, created.text
    exported: set[str] = set()
    for url in (system.command_url, system.query_url, system.projector_url):
        page = httpx.get(f"{url}/metrics", headers=admin)
        assert page.status_code == 200, (url, page.status_code, page.text[:300])
        assert page.headers["content-type"].startswith("text/plain"), page.headers
        exported |= exported_names(page.text)
    missing = {
        expr: sorted(metric_names(expr) - exported)
        for expr in expressions()
        if metric_names(expr) - exported
    }
    assert not missing, f"dashboard expressions name metrics no running service exports: {missing}"

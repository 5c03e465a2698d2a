"""The Grafana dashboard (infra/grafana/actionitems-dashboard.json) reads only exported metrics.

Here against the services' metric registries (their modules imported, rendered as
/metrics renders them); tests/e2e/test_dashboard_metrics.py scrapes the running services.
"""

from __future__ import annotations

import json

from prometheus_client import REGISTRY, generate_latest

from tests.support.dashboard import DASHBOARD, exported_names, expressions, metric_names


def test_the_expression_parser_finds_metric_names_only() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, route) (rate(query_api_request_seconds_bucket"
        '{route=~"/a.*", job="q"}[$__rate_interval]))) / on (job) group_left max(up) offset 5m'
    )
    assert metric_names(expr) == {"query_api_request_seconds_bucket", "up"}


def test_the_dashboard_is_valid_json_with_expressions_for_every_service() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "actionitems"
    names = set().union(*(metric_names(e) for e in expressions(board)))
    for prefix in ("command_api_", "projector_", "query_api_", "process_"):
        assert any(n.startswith(prefix) for n in names), prefix


def test_every_expression_names_a_metric_the_services_export() -> None:
    import command_api.metrics  # noqa: F401
    import projector.metrics  # noqa: F401
    import query_api.metrics  # noqa: F401

    exported = exported_names(generate_latest(REGISTRY).decode())
    missing = {
        expr: sorted(metric_names(expr) - exported)
        for expr in expressions()
        if metric_names(expr) - exported
    }
    assert not missing, f"dashboard expressions name metrics no service exports: {missing}"

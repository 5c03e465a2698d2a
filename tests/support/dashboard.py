"""The Grafana dashboard's PromQL expressions, the metric names they read, what /metrics exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.services import REPO

DASHBOARD = REPO / "infra" / "grafana" / "actionitems-dashboard.json"

# PromQL functions, aggregations and keywords: every other identifier is a metric name.
_WORDS = """
    abs absent absent_over_time avg avg_over_time bottomk ceil changes clamp clamp_max clamp_min
    count count_over_time count_values day_of_month day_of_week days_in_month delta deriv exp
    floor group histogram_quantile holt_winters hour idelta increase irate label_join
    label_replace last_over_time ln log10 log2 max max_over_time min min_over_time minute month
    predict_linear quantile quantile_over_time rate resets round scalar sgn sort sort_desc sqrt
    stddev stddev_over_time stdvar sum sum_over_time time timestamp topk vector year
    by without on ignoring group_left group_right bool and or unless offset inf nan
"""
PROMQL_WORDS = frozenset(_WORDS.split())
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")


def expressions(dashboard: dict[str, Any] | None = None) -> list[str]:
    """Every ``expr`` of every panel (rows' nested panels included)."""
    board = dashboard if dashboard is not None else json.loads(DASHBOARD.read_text())
    found: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(board["panels"])
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (labels, functions, durations left out)."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENT.findall(text) if name not in PROMQL_WORDS}


def exported_names(exposition: str) -> set[str]:
    """Sample names a /metrics page exports, with the series every family type implies."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        base = family.name
        names.add(base)
        if family.type == "counter":
            names.update({f"{base}_total", f"{base}_created"})
        elif family.type in ("histogram", "gaugehistogram"):
            names.update({f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"})
        elif family.type == "summary":
            names.update({f"{base}_sum", f"{base}_count", f"{base}_created"})
        names.update(sample.name for sample in family.samples)
    return names


def dashboard_path() -> Path:
    return DASHBOARD

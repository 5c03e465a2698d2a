"""What one bench run found: tables, targets as ratios to same-run baselines, JSON, charts."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.services import REPO

DOC = REPO / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass
class Target:
    """One target: ``value`` against ``baseline`` measured in the same run.

    ``ratio`` = value / baseline; it passes when ratio >= need (``at_least``) or
    ratio <= need (not ``at_least``).
    """

    measurement: str
    what: str
    value: float
    baseline: float
    unit: str
    baseline_what: str
    need: float
    at_least: bool = True
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    @property
    def passed(self) -> bool:
        r = self.ratio
        return r == r and (r >= self.need if self.at_least else r <= self.need)

    def line(self) -> str:
        verdict = "PASS" if self.passed else "MISS"
        sign = ">=" if self.at_least else "<="
        return (
            f"{verdict} [{self.measurement}] {self.what}: {fmt(self.value)} {self.unit} / "
            f"{self.baseline_what} {fmt(self.baseline)} = {self.ratio:.2f} (need {sign} "
            f"{self.need:g})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": round(self.ratio, 4), "passed": self.passed}


@dataclass
class Section:
    """One measurement's table."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        out = [f"### {self.title}", ""]
        if self.rows:
            out.append("| " + " | ".join(self.columns) + " |")
            out.append("|" + "|".join("---" for _ in self.columns) + "|")
            out.extend("| " + " | ".join(row) + " |" for row in self.rows)
            out.append("")
        out.extend(f"- {n}" for n in self.notes)
        if self.notes:
            out.append("")
        return "\n".join(out)


@dataclass
class Report:
    meta: dict[str, Any]
    sections: list[Section] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    profiles: list[Any] = field(default_factory=list)  # profile.Profile

    def add(self, section: Section, *targets: Target) -> None:
        self.sections.append(section)
        for t in targets:
            self.targets.append(t)
            print(t.line(), flush=True)

    def markdown(self) -> str:
        m = self.meta
        out = [
            f"Last `make bench` run: {m['finished']} UTC, commit {m['commit']}"
            f"{' (quick scale)' if m['quick'] else ''}; {m['cpus']} cores shared, load average "
            f"{m['load_before']} before and {m['load_after']} after; product server: "
            f"{m['server']}; load generator: {m['wrk']}; product: "
            f"{m.get('product', 'make up stack')}.",
            "",
            "### Targets (ratio to a baseline measured in the same run)",
            "",
            "| | measurement | target | measured | baseline | ratio | need |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in self.targets:
            sign = ">=" if t.at_least else "<="
            out.append(
                f"| {'PASS' if t.passed else 'MISS'} | {t.measurement} | {t.what} | "
                f"{fmt(t.value)} {t.unit} | {t.baseline_what} {fmt(t.baseline)} | "
                f"{t.ratio:.2f} | {sign} {t.need:g} |"
            )
        out.append("")
        out.extend(s.markdown() for s in self.sections)
        if self.profiles:
            out.append("### Profiles (py-spy, a separate run of the same load unless noted)")
            out.append("")
            out.extend(p.markdown() for p in self.profiles)
        if self.charts:
            out.append("Charts (in `bench-results/`): " + ", ".join(self.charts) + ".")
            out.append("")
        return "\n".join(out)

    def as_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "targets": [t.as_dict() for t in self.targets],
            "sections": {s.key: {"title": s.title, **s.data} for s in self.sections},
            "charts": self.charts,
            "profiles": [asdict(p) for p in self.profiles],
        }

    def write(self, out: Path, doc: Path | None = DOC) -> None:
        out.mkdir(parents=True, exist_ok=True)
        table = self.markdown()
        (out / "results.md").write_text("# ActionItems bench results\n\n" + table)
        (out / "results.json").write_text(json.dumps(self.as_dict(), indent=2, default=str))
        if doc is not None:
            copy_into_doc(doc, table)


def copy_into_doc(doc: Path, table: str) -> None:
    """Put ``table`` between the bench markers of ``doc``; nothing else in the file changes."""
    block = f"{BEGIN}\n{table.rstrip()}\n{END}"
    text = doc.read_text() if doc.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n## Last bench run\n\n" + block + "\n"
    doc.write_text(text)


def fmt(value: float) -> str:
    if value != value:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ms(value: float) -> str:
    return f"{value:.1f} ms" if value == value else "n/a"

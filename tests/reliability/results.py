"""One row per scenario; the table as markdown and JSON in reliability-results/, and in the docs."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.reliability.check import Counts
from tests.support.services import REPO

RESULTS = REPO / "reliability-results"
DOC = REPO / "docs" / "reliability.md"
BEGIN = "<!-- reliability-results:begin -->"
END = "<!-- reliability-results:end -->"


@dataclass
class Row:
    scenario: str
    title: str
    run: str = ""  # what was really run (fault, load, durations)
    seconds: float = 0.0
    counts: Counts | None = None
    lag0: float | None = None  # fault end -> projector has the fault's backlog
    checks: list[tuple[str, bool]] = field(default_factory=list)  # extra expectations
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the scenario itself could not run to its end

    def expect(self, what: str, ok: bool) -> None:
        self.checks.append((what, bool(ok)))

    @property
    def passed(self) -> bool:
        if self.error or self.counts is None:
            return False
        c = self.counts
        return (
            c.lost == 0
            and c.duplicated == 0
            and c.false_202 == 0
            and not c.model_differences
            and all(ok for _, ok in self.checks)
        )


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    out = [
        f"Run {meta['started']} on {meta['host']}; wall time {meta['wall_seconds']:.0f} s "
        f"({meta['wall_seconds'] / 60:.1f} min); command: `{meta['command']}`.",
        "",
        "| # | scenario | what was run | sent | 202 | 503 | other | lost | dup | false 202 "
        "| recover s | lag→0 s | result |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        c = r.counts or Counts()
        verdict = "pass" if r.passed else "**FAIL**"
        out.append(
            f"| {r.scenario} | {r.title} | {r.run} | {c.sent} | {c.accepted} | {c.unavailable} "
            f"| {c.other} | {c.lost} | {c.duplicated} | {c.false_202} "
            f"| {_fmt(c.recover_max()) if c.recover else '-'} | {_fmt(r.lag0)} | {verdict} |"
        )
    out += ["", "Per scenario (checks beyond the counts, and what the checker saw):", ""]
    for r in rows:
        c = r.counts or Counts()
        out.append(f"- **{r.scenario} {r.title}** ({r.seconds:.0f} s)")
        if r.error:
            out.append(f"  - scenario error: `{r.error}`")
        facts = (
            f"{c.keys} requests ({c.sent} attempts incl. retries), "
            f"{c.no_answer} without an answer, "
            f"{c.unconfirmed_keys} still unconfirmed at the end; {c.on_log} commands on the log "
            f"(+{c.copies} re-sent copies, {c.undecodable} undecodable records); "
            f"read model = fold of the log: {'yes' if not c.model_differences else 'NO'}"
        )
        out.append(f"  - {facts}")
        if c.recover:
            per = ", ".join(f"{k}: {_fmt(v)} s" for k, v in c.recover.items())
            out.append(f"  - first 202 after each fault ended: {per}")
        for what, ok in r.checks:
            out.append(f"  - {'ok' if ok else 'FAILED'}: {what}")
        for note in r.notes:
            out.append(f"  - {note}")
        for d in [*c.details, *c.model_differences[:6]]:
            out.append(f"  - checker: {d}")
    return "\n".join(out) + "\n"


def write(rows: list[Row], meta: dict[str, Any], docs: bool) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    md = markdown(rows, meta)
    data = {
        "meta": meta,
        "rows": [
            {
                **asdict(r),
                "passed": r.passed,
                "recover_max": r.counts.recover_max() if r.counts else None,
            }
            for r in rows
        ],
    }
    for name in (stamp, "latest"):
        (RESULTS / f"{name}.md").write_text(md)
        (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))
    if docs and DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, _, rest = text.partition(BEGIN)
            _, _, tail = rest.partition(END)
            DOC.write_text(f"{head}{BEGIN}\n{md}{END}{tail}")
    return RESULTS / f"{stamp}.md"


def meta(started: float, command: str) -> dict[str, Any]:
    return {
        "started": datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "wall_seconds": time.time() - started,
        "command": command,
    }

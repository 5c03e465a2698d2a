"""PNG charts of one bench run (matplotlib, the `bench` extra): returns the files written."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(series: dict[str, Any], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is missing (pip install -e '.[bench]'): no charts")
        return []
    written: list[str] = []

    def per_concurrency(name: str, title: str, lines: dict[str, list[dict[str, Any]]]) -> None:
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
        for label, runs in lines.items():
            xs = [r["connections"] for r in runs]
            (line,) = left.plot(xs, [r["rate"] for r in runs], marker="o", label=label)
            right.plot(
                xs,
                [r["p50_ms"] for r in runs],
                marker="o",
                color=line.get_color(),
                label=f"{label} p50",
            )
            right.plot(
                xs,
                [r["p99_ms"] for r in runs],
                marker="s",
                linestyle="--",
                color=line.get_color(),
                label=f"{label} p99",
            )
        left.set(title=f"{title}: throughput", xlabel="connections", ylabel="answers/s")
        right.set(title=f"{title}: latency", xlabel="connections", ylabel="ms")
        levels = sorted({r["connections"] for runs in lines.values() for r in runs})
        left.set_ylim(bottom=0)
        for ax in (left, right):
            ax.set_xscale("log", base=2)
            ax.set_xticks(levels, [str(c) for c in levels])
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        right.set_yscale("log")
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(name)

    if "writes" in series:
        per_concurrency("writes.png", "POST /action-items", series["writes"])
    if "queries" in series:
        lines = {
            f"{who} {name}": runs[who]
            for name, runs in series["queries"].items()
            for who in ("api", "raw")
        }
        per_concurrency("queries.png", "reads", lines)
    if "rebuild" in series:
        data = series["rebuild"]
        fig, ax = plt.subplots(figsize=(9, 4.5))
        ax.plot(
            [t for t, _ in data["progress"]],
            [d for _, d in data["progress"]],
            label="records replayed",
        )
        ax.set(
            title=f"projector rebuild of {data['records']:,} commands",
            xlabel="seconds since the replay started",
            ylabel="records",
        )
        ax.grid(True, alpha=0.3)
        twin = ax.twinx()
        twin.plot(
            [t for t, _ in data["rss"]],
            [m for _, m in data["rss"]],
            color="tab:red",
            label="RSS (MiB)",
        )
        twin.set_ylabel("RSS MiB")
        twin.set_ylim(bottom=0)
        fig.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "rebuild_progress.png", dpi=100)
        plt.close(fig)
        written.append("rebuild_progress.png")
    return written

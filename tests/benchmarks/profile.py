"""py-spy on a running process during a measurement: where its samples are (top frames).

`py-spy record --format raw` gives collapsed stacks; a frame's inclusive share is
the share of samples whose stack contains it, its own share the share of
samples where it is the leaf. Sampling is non-blocking (the process is not
paused), at 100 Hz.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

LINE_NO = re.compile(r":\d+\)$")
# the frames every stack of a server shares (entry points, the loop's runner): left out
PLUMBING = re.compile(
    r"^thread \(|\((click/|<frozen |uvicorn/(main|server|_compat|__main__)\.py|uvicorn\)|"
    r"asyncio/(runners|events)\.py|threading\.py)|"
    r"^(BaseEventLoop\.(run_forever|run_until_complete|_run_once)|_run_module_as_main|_run_code|"
    r"<module>) "
)
SITE = re.compile(r"\((?:/[^ ]*/(?:site-packages|lib/python3\.\d+)/)?(?:/work/main/)?")


@dataclass
class Profile:
    """Top frames of one py-spy recording."""

    what: str
    samples: int
    inclusive: list[tuple[str, float]]
    own: list[tuple[str, float]]
    packages: list[tuple[str, float]]  # own time by package (native code: "(native)")

    def markdown(self, top: int = 15) -> str:
        out = [
            f"#### Profile: {self.what} ({self.samples:,} samples)",
            "",
            "| frame | in stack | own |",
            "|---|---|---|",
        ]
        own = dict(self.own)
        # the frames every request passes through (the middleware chain) say nothing: skip
        # frames in more than half of the samples
        telling = [(f, s) for f, s in self.inclusive if s <= 0.5]
        out.extend(
            f"| `{frame}` | {share:.1%} | {own.get(frame, 0.0):.1%} |"
            for frame, share in telling[:top]
        )
        out.append("")
        out.append(
            "Own time by package: "
            + ", ".join(f"{name} {share:.0%}" for name, share in self.packages[:12])
            + "."
        )
        out.append("")
        out.append(
            "Most own time: "
            + "; ".join(f"`{frame}` {share:.1%}" for frame, share in self.own[:8])
            + "."
        )
        out.append("")
        return "\n".join(out)


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Start recording ``pid`` for ``seconds`` into ``out`` (raw); None when py-spy is missing."""
    binary = py_spy()
    if binary is None:
        print("bench: py-spy is missing (pip install -e '.[bench]'): no profile")
        return None
    return subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "100",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes] | None, out: Path, what: str) -> Profile | None:
    if proc is None:
        return None
    _, err = proc.communicate(timeout=120)
    if proc.returncode != 0 or not out.exists():
        print(f"bench: py-spy failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
        return None
    return summarise(out.read_text(), what)


def short(frame: str) -> str:
    return SITE.sub("(", LINE_NO.sub(")", frame.strip()))


def summarise(raw: str, what: str) -> Profile:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";")]
        frames = [f for f in frames if not PLUMBING.search(f)] or ["(no Python frame)"]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if not total:
        return Profile(what, 0, [], [], [])
    packages: Counter[str] = Counter()
    for frame, count in own.items():
        packages[package(frame)] += count
    return Profile(
        what,
        total,
        [(f, c / total) for f, c in inclusive.most_common(60)],
        [(f, c / total) for f, c in own.most_common(20)],
        [(p, c / total) for p, c in packages.most_common(20)],
    )


def package(frame: str) -> str:
    """`publish (command_api/publisher.py)` -> command_api; no file -> (native)."""
    if "(" not in frame or frame.startswith("(no Python"):
        return "(native)"
    where = frame.rsplit("(", 1)[1].rstrip(")")
    first = where.split("/", 1)[0]
    return first.removesuffix(".py") if "/" in where or where.endswith(".py") else where

"""Drive HTTP load with wrk (Debian package): a Lua script per scenario, one JSON line back.

wrk is a C event loop that needs a fraction of a core for tens of thousands of
requests per second, so it is not the bottleneck here (the bench shows that
against a trivial server). Every run is bounded: a fixed number of
connections for a fixed number of seconds, on loopback only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.services import REPO

INSTALL_SCRIPT = REPO / "tests" / "benchmarks" / "install_wrk.sh"
MARK = "BENCH_JSON "

# Appended to every script: wrk calls done() once, after the run, with the totals.
DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f}\n',
    "MARK", summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
""".replace("MARK", MARK)


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: answers are 2xx/3xx (wrk counts any other status as an error)."""

    connections: int
    seconds: float
    requests: int
    ok: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    # cores used per process group during the run (tests/benchmarks/cpu.py), when measured
    cpu: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "rate": round(self.rate, 1)}


def ensure_wrk() -> str:
    """The wrk binary; installs the Debian package (tests/benchmarks/install_wrk.sh) if missing."""
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still missing after install_wrk.sh: apt-get install wrk")
    return found


def lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _lua_table(name: str, values: list[str]) -> str:
    return f"local {name} = {{\n" + ",\n".join(lua_string(v) for v in values) + "\n}\n"


def post_script(
    body: str, authorizations: list[str] | None = None, content_type: str = "application/json"
) -> str:
    """POST ``body``; each request carries the next of ``authorizations`` (round robin)."""
    script = (
        'wrk.method = "POST"\n'
        f"wrk.body = {lua_string(body)}\n"
        f'wrk.headers["Content-Type"] = {lua_string(content_type)}\n'
    )
    if not authorizations:
        return script
    return (
        script + _lua_table("auth", authorizations) + "local i = 0\n"
        "request = function()\n"
        "  i = i % #auth + 1\n"
        '  wrk.headers["Authorization"] = auth[i]\n'
        "  return wrk.format()\n"
        "end\n"
    )


def get_paths_script(paths: list[str], authorizations: list[str] | None = None) -> str:
    """GET a path drawn at random from ``paths``, with the next of ``authorizations`` if any."""
    if not authorizations:
        return (
            _lua_table("paths", paths) + "request = function()\n"
            '  return wrk.format("GET", paths[math.random(#paths)])\n'
            "end\n"
        )
    return (
        _lua_table("paths", paths) + _lua_table("auth", authorizations) + "local i = 0\n"
        "request = function()\n"
        "  i = i % #auth + 1\n"
        '  wrk.headers["Authorization"] = auth[i]\n'
        '  return wrk.format("GET", paths[math.random(#paths)])\n'
        "end\n"
    )


def paced(script: str, delay_ms: float) -> str:
    """Each connection waits ``delay_ms`` before each request: about connections*1000/delay/s."""
    return script + f"delay = function() return {delay_ms:.3f} end\n"


def run(
    url: str,
    script: str,
    connections: int,
    seconds: float,
    threads: int = 1,
    timeout_s: float = 10,
) -> WrkResult:
    """One bounded wrk run against ``url`` (loopback only); the totals from the Lua done()."""
    host = urlsplit(url).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise ValueError(f"load goes to loopback only, not {url}")
    binary = ensure_wrk()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + DONE_LUA)
        path = Path(f.name)
    try:
        threads = max(1, min(threads, connections))
        proc = subprocess.run(
            [
                binary,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                f"--timeout={timeout_s:g}s",
                "-s",
                str(path),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        path.unlink(missing_ok=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk against {url} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    data = json.loads(line[len(MARK) :])
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    duration = data["duration_us"] / 1e6
    return WrkResult(
        connections=connections,
        seconds=duration,
        requests=data["requests"],
        ok=data["requests"] - data["status"],
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )

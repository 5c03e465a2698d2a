"""A toxiproxy-server of the suite's own (infra/toxiproxy.sh builds it) and its REST API."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import REPO, free_port


def binary() -> str:
    result = subprocess.run(
        [str(REPO / "infra" / "toxiproxy.sh"), "path"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"infra/toxiproxy.sh path failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


@dataclass
class Toxiproxy:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, log_path: Path) -> Toxiproxy:
        proxy = cls(free_port(), log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out = log_path.open("ab")
        proxy.process = subprocess.Popen(
            [binary(), "-host", "127.0.0.1", "-port", str(proxy.port)],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{proxy.api}/version", timeout=1).status_code == 200:
                    return proxy
            except httpx.HTTPError:
                pass
            if proxy.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"toxiproxy-server did not start: {log_path.read_text()[-2000:]}"
                )
            time.sleep(0.2)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def proxy(self, name: str, listen: int, upstream: str) -> None:
        r = httpx.post(
            f"{self.api}/proxies",
            json={
                "name": name,
                "listen": f"127.0.0.1:{listen}",
                "upstream": upstream,
                "enabled": True,
            },
            timeout=10,
        )
        if r.status_code not in (200, 201):
            raise RuntimeError(f"toxiproxy: proxy {name}: {r.status_code} {r.text}")

    def add(self, proxy: str, name: str, kind: str, stream: str, **attributes: Any) -> None:
        r = httpx.post(
            f"{self.api}/proxies/{proxy}/toxics",
            json={
                "name": name,
                "type": kind,
                "stream": stream,
                "toxicity": 1.0,
                "attributes": attributes,
            },
            timeout=10,
        )
        if r.status_code not in (200, 201):
            raise RuntimeError(f"toxiproxy: toxic {name} on {proxy}: {r.status_code} {r.text}")

    def remove(self, proxy: str, name: str) -> None:
        httpx.delete(f"{self.api}/proxies/{proxy}/toxics/{name}", timeout=10)

    def clear(self, proxy: str) -> None:
        r = httpx.get(f"{self.api}/proxies/{proxy}/toxics", timeout=10)
        for toxic in r.json():
            self.remove(proxy, toxic["name"])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

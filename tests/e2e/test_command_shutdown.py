"""Graceful shutdown of the real command API process under concurrent writes.

SIGTERM while clients keep writing: uvicorn stops taking connections, the
requests in flight finish with their real outcome (one of them is still
sending its body when the signal arrives), the publisher flushes, the process
exits. Every request that got a 202 is on the log; nothing is accepted after
the producer was closed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.auth import caller_headers
from tests.support.command_api import CommandApi, own_topics, start_command_api
from tests.support.command_log import read_records


@dataclass
class Outcome:
    correlation: str
    started: float
    finished: float
    status: int | None  # None: no HTTP answer (connection refused or closed)
    command_id: str | None


async def writer(url: str, name: str, stop: asyncio.Event, out: list[Outcome]) -> None:
    """Write until the server is gone (or ``stop``); a fresh connection per request."""
    n = 0
    while not stop.is_set():
        n += 1
        corr = f"{name}-{n}"
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(headers=caller_headers("anonymous"), timeout=20) as client:
                answer = await client.post(
                    f"{url}/action-items",
                    json={"title": corr},
                    headers={"X-Correlation-Id": corr},
                )
        except httpx.TransportError:
            out.append(Outcome(corr, started, time.monotonic(), None, None))
            if stop.is_set() or out[-1].finished - started < 1:
                await asyncio.sleep(0.05)
            continue
        body = answer.json()
        out.append(
            Outcome(corr, started, time.monotonic(), answer.status_code, body.get("commandId"))
        )


async def slow_request(port: int, signalled: asyncio.Event, out: list[Outcome]) -> None:
    """A POST whose body is only half sent when SIGTERM arrives; it must still get its answer."""
    corr = "slow-1"
    body = json.dumps({"title": "sent across the SIGTERM"}).encode()
    auth = "".join(f"{k}: {v}\r\n" for k, v in caller_headers("anonymous").items())
    head = (
        f"POST /action-items HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{auth}X-Correlation-Id: {corr}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
    writer_.write(head + body[:10])
    await writer_.drain()
    await signalled.wait()
    await asyncio.sleep(0.3)  # uvicorn is shutting down by now
    writer_.write(body[10:])
    await writer_.drain()
    raw = await asyncio.wait_for(reader.read(), 30)  # the server closes after answering
    writer_.close()
    status_line, _, rest = raw.partition(b"\r\n")
    status = int(status_line.split()[1])
    payload = json.loads(rest.partition(b"\r\n\r\n")[2] or b"{}")
    out.append(Outcome(corr, started, time.monotonic(), status, payload.get("commandId")))


def test_sigterm_under_load_loses_no_202_and_accepts_nothing_after_close(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with own_topics(kafka_bootstrap) as (settings, env):
        api: CommandApi = start_command_api(env, tmp_path)
        port = int(api.url.rsplit(":", 1)[1])
        outcomes: list[Outcome] = []
        sigterm_at = 0.0

        async def scenario() -> None:
            nonlocal sigterm_at
            stop, signalled = asyncio.Event(), asyncio.Event()
            writers = [
                asyncio.create_task(writer(api.url, f"w{i}", stop, outcomes)) for i in range(8)
            ]
            slow = asyncio.create_task(slow_request(port, signalled, outcomes))
            deadline = time.monotonic() + 20
            while sum(o.status == 202 for o in outcomes) < 40:  # load is flowing
                assert time.monotonic() < deadline, "no load reached the API"
                await asyncio.sleep(0.05)
            sigterm_at = time.monotonic()
            api.process.signal(signal.SIGTERM)
            signalled.set()
            # keep writing until every writer sees the server gone
            deadline = time.monotonic() + 30
            while api.process.process is not None and api.process.process.poll() is None:
                assert time.monotonic() < deadline, "the API did not exit after SIGTERM"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*writers, slow), 30)

        try:
            asyncio.run(scenario())
        finally:
            api.process.kill()
        assert api.process.process is not None
        # uvicorn re-raises the signal once its graceful shutdown is complete
        assert api.process.process.returncode in (0, -signal.SIGTERM), api.process.log_tail()

        accepted = [o for o in outcomes if o.status == 202]
        assert not [o for o in outcomes if o.status not in (202, 503, None)], outcomes
        slow = next(o for o in outcomes if o.correlation == "slow-1")
        assert slow.status == 202, "a request in flight at SIGTERM must get its real answer"
        assert [o for o in accepted if o.finished > sigterm_at], "nothing finished after SIGTERM"
        assert [o for o in outcomes if o.status is None and o.started > sigterm_at], (
            "new connections were still taken after SIGTERM"
        )

        on_log = {r.command_id: r for r in read_records(kafka_bootstrap, settings.commands_topic)}
        for outcome in accepted:
            record = on_log.get(outcome.command_id)
            assert record is not None, f"{outcome} got a 202 but is not on the log"
            assert record.command().correlation_id == outcome.correlation

        lines = [json.loads(x) for x in api.process.log_tail(10**7).splitlines() if x[:1] == "{"]
        messages = [line["msg"] for line in lines]
        closed_at = messages.index("producer flushed and closed")
        assert lines[closed_at]["outstanding"] == 0
        assert "command accepted" not in messages[closed_at:]
        assert sum(m == "command accepted" for m in messages) == len(accepted)
        assert messages[-1] == "command API stopped", messages[-3:]

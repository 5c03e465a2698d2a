"""A trivial HTTP/1.1 endpoint: answers every request with a canned 202, to show wrk's ceiling.

    python -m tests.benchmarks.peers.trivial PORT [PROCESSES]

Keep-alive, Content-Length bodies skipped, nothing else parsed. With more than
one process they share the port (SO_REUSEPORT). uvloop when installed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import sys
from typing import Any

ANSWER = (
    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
    b"Content-Length: 15\r\n\r\n" + b'{"status":"ok"}'
)


class Canned(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # asyncio's or uvloop's TCP transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        answers = 0
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at)
                length = int(head[at + 15 : line_end if line_end > 0 else None])
            if len(buffer) < end + 4 + length:
                break
            buffer = buffer[end + 4 + length :]
            answers += 1
        self.buffer = buffer
        if answers and self.transport is not None:
            self.transport.write(ANSWER * answers)


def serve(port: int) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Canned, "127.0.0.1", port, reuse_port=True, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    port, processes = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1
    workers = [multiprocessing.Process(target=serve, args=(port,)) for _ in range(processes)]
    for w in workers:
        w.start()

    def stop(*_: object) -> None:
        for w in workers:
            w.terminate()

    signal.signal(signal.SIGTERM, stop)
    for w in workers:
        w.join()

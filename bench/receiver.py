"""A minimal merchant order receiver for the benchmark, in its own process on loopback.

Run:  ORDER_WEBHOOK_SECRET=… .venv/bin/python bench/receiver.py --port 8099

It does what docs/receiving-orders.md asks of a merchant and no more: verify `Signature`
(base64 HMAC-SHA256 of the raw body) in constant time, dedupe on `Idempotency-Key`, answer
200. HTTP/1.1 with keep-alive on an asyncio Protocol, so an order costs it a few tens of
microseconds of the CPUs it shares with the store. `GET /stats` answers what arrived so far as JSON:
`requests`, `orders` (distinct keys), `duplicates` (a key seen again), `bad_signatures`,
`last_at` (epoch seconds of the last new order) and `cpu` (this process's CPU seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
UNAUTHORIZED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"


class Receiver:
    """Counts what arrives; one instance per process."""

    def __init__(self, secret: bytes | None) -> None:
        self.secret = secret
        self.seen: set[bytes] = set()
        self.requests = self.duplicates = self.bad_signatures = 0
        self.last_at = 0.0

    def accept(self, headers: dict[bytes, bytes], body: bytes) -> bytes:
        self.requests += 1
        if self.secret is not None:
            expected = base64.b64encode(hmac.new(self.secret, body, hashlib.sha256).digest())
            if not hmac.compare_digest(expected, headers.get(b"signature", b"")):
                self.bad_signatures += 1
                return UNAUTHORIZED
        key = headers.get(b"idempotency-key", b"")
        if key in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(key)
            self.last_at = time.time()
        return OK

    def stats(self) -> bytes:
        times = os.times()
        body = json.dumps(
            {
                "requests": self.requests,
                "orders": len(self.seen),
                "duplicates": self.duplicates,
                "bad_signatures": self.bad_signatures,
                "last_at": self.last_at,
                "cpu": times.user + times.system,
            }
        ).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        return head % len(body) + body


class Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection: requests parsed from the bytes as they arrive.

    A Protocol rather than asyncio streams: the streams' futures and buffer copies cost more
    than the rest of an order's handling, and this process shares the CPUs with the store.
    """

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.pending = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        buffer = self.pending + data if self.pending else data
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            lines = buffer[:end].split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            try:
                size = int(headers.get(b"content-length", b"0"))
            except ValueError:
                self.transport.close()
                return
            if len(buffer) < end + 4 + size:
                break  # the body is still on its way
            body = buffer[end + 4 : end + 4 + size]
            buffer = buffer[end + 4 + size :]
            method, _, target = lines[0].partition(b" ")
            if method == b"GET" and target.startswith(b"/stats "):
                self.transport.write(self.receiver.stats())
            else:
                self.transport.write(self.receiver.accept(headers, body))
            if headers.get(b"connection", b"").lower() == b"close":
                self.transport.close()
                return
        self.pending = buffer


async def main(port: int, secret: bytes | None) -> None:
    receiver = Receiver(secret)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(receiver), "127.0.0.1", port, backlog=256)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    secret = os.environ.get("ORDER_WEBHOOK_SECRET")
    asyncio.run(main(args.port, secret.encode() if secret else None))

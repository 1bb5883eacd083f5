"""A minimal merchant order receiver for the benchmark, in its own process on loopback.

Run:  ORDER_WEBHOOK_SECRET=… .venv/bin/python bench/receiver.py --port 8099

It does what docs/receiving-orders.md asks of a merchant and no more: verify `Signature`
(base64 HMAC-SHA256 of the raw body) in constant time, dedupe on `Idempotency-Key`, answer
200. HTTP/1.1 with keep-alive on asyncio, so an order costs it a few tens of microseconds of
the CPUs it shares with the store. `GET /stats` answers what arrived so far as JSON:
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

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, path = lines[0].split(b" ", 2)[:2]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
                if method == b"GET" and path == b"/stats":
                    writer.write(self.stats())
                else:
                    writer.write(self.accept(headers, body))
                if headers.get(b"connection", b"").lower() == b"close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def main(port: int, secret: bytes | None) -> None:
    receiver = Receiver(secret)
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", port, backlog=256)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    secret = os.environ.get("ORDER_WEBHOOK_SECRET")
    asyncio.run(main(args.port, secret.encode() if secret else None))

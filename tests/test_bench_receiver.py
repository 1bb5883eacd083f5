"""bench/receiver.py, the merchant receiver bench/flow.py hands orders to, counts what a
merchant would: it verifies each Signature, answers 200 on a kept-alive connection (also to
requests split across TCP segments or sent back to back), 401 to a bad signature, and
counts a repeated Idempotency-Key as a duplicate, not a new order."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time

import pytest

from bench.flow import receiver_process

SECRET = "whsec_bench_receiver_test"


def _order(body: bytes, key: str, secret: str = SECRET) -> bytes:
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return (
        b"POST /hooks/orders HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
        b"Idempotency-Key: %s\r\nSignature: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (key.encode(), signature, len(body), body)
    )


def _answers(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    deadline = time.time() + 5
    while data.count(b"HTTP/1.1 ") < count or not data.endswith((b"{}", b"\r\n\r\n")):
        sock.settimeout(max(0.01, deadline - time.time()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return [b"HTTP/1.1 " + part for part in data.split(b"HTTP/1.1 ")[1:]]


@pytest.fixture(scope="module")
def receiver():
    with receiver_process(SECRET) as running:
        yield running


def test_signed_orders_are_counted_once_and_bad_signatures_refused(receiver):
    body = json.dumps({"order": {"id": "ord_1"}}).encode()
    with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.sendall(_order(body, "key-1"))
        assert _answers(sock, 1)[0].startswith(b"HTTP/1.1 200 ")
        # The next request in two segments, the head cut in the middle of a header.
        request = _order(body, "key-2")
        sock.sendall(request[:40])
        time.sleep(0.05)
        sock.sendall(request[40:])
        assert _answers(sock, 1)[0].startswith(b"HTTP/1.1 200 ")
        # Two at once on the same connection: a redelivery of key-1, and a forged one.
        sock.sendall(_order(body, "key-1") + _order(body, "key-3", secret="wrong"))
        first, second = _answers(sock, 2)
        assert first.startswith(b"HTTP/1.1 200 ") and second.startswith(b"HTTP/1.1 401 ")
    stats = receiver.stats()
    assert (stats["requests"], stats["orders"]) == (4, 2)
    assert (stats["duplicates"], stats["bad_signatures"]) == (1, 1)
    assert stats["last_at"] > 0 and stats["cpu"] > 0

"""The hand-off's HTTP/1.1 exchange reads every answer shape a receiver may send (RFC 9112 §6):
chunked, close-delimited, interim 1xx, too long, not HTTP at all — over a real socket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from shop.orders.transport import MAX_ANSWER_BYTES, DeliveryError, Transport

HEADERS = {"Content-Type": "application/json", "Idempotency-Key": "order_cs_1"}


@dataclass
class RawReceiver:
    """Answers each request with the next canned bytes; closes after one marked `close`."""

    answers: list[tuple[bytes, bool]] = field(default_factory=list)  # (bytes, then close)
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    def serve(self) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            self.port = listener.getsockname()[1]
            self._ready.set()
            listener.settimeout(10)
            while self.answers:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                self.connections += 1
                with conn:
                    self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        buffer = b""
        while self.answers:
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(buffer) < length:
                buffer += conn.recv(65536)
            self.heads.append(head)
            self.bodies.append(buffer[:length])
            buffer = buffer[length:]
            answer, close = self.answers.pop(0)
            conn.sendall(answer)
            if close:
                return

    def __post_init__(self) -> None:
        self._ready = threading.Event()


@pytest.fixture
def raw() -> Iterator[RawReceiver]:
    started: list[tuple[RawReceiver, threading.Thread]] = []

    def start(*answers: tuple[bytes, bool]) -> RawReceiver:
        receiver = RawReceiver(list(answers))
        thread = threading.Thread(target=receiver.serve, daemon=True)
        thread.start()
        receiver._ready.wait(5)
        started.append((receiver, thread))
        return receiver

    yield start  # type: ignore[misc]
    for receiver, thread in started:
        receiver.answers.clear()
        thread.join(timeout=5)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


def _post(receiver: RawReceiver, path: str = "/hooks/orders", **kwargs: float) -> Transport:
    transport = Transport(f"http://127.0.0.1:{receiver.port}{path}", 5)
    transport.post(b'{"order":1}', dict(HEADERS), **kwargs)
    return transport


def test_the_request_is_one_well_formed_http_1_1_message(raw):
    receiver = raw((OK, False))
    _post(receiver)
    head = receiver.heads[0].decode().split("\r\n")
    assert head[0] == "POST /hooks/orders HTTP/1.1"
    assert f"Host: 127.0.0.1:{receiver.port}" in head
    assert "Content-Length: 11" in head and "Idempotency-Key: order_cs_1" in head
    assert receiver.bodies == [b'{"order":1}']


def test_a_chunked_answer_with_a_trailer_is_read_and_the_connection_kept(raw):
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    receiver = raw((chunked, False), (OK, False))
    transport = _post(receiver)
    transport.post(b"{}", dict(HEADERS))
    assert receiver.connections == 1  # the second order went on the same connection


def test_interim_1xx_answers_are_skipped(raw):
    receiver = raw((b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n" + OK, False))
    _post(receiver)


def test_a_close_delimited_http_1_0_answer_is_read_and_the_next_order_reconnects(raw):
    receiver = raw((b"HTTP/1.0 200 OK\r\n\r\nstored", True), (OK, False))
    transport = _post(receiver)
    transport.post(b"{}", dict(HEADERS))
    assert receiver.connections == 2


def test_connection_close_is_honoured(raw):
    receiver = raw((b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", True), (OK, False))
    transport = _post(receiver)
    transport.post(b"{}", dict(HEADERS))
    assert receiver.connections == 2


def test_an_answer_longer_than_the_cap_is_cut_and_its_connection_not_reused(raw):
    big = b"x" * (MAX_ANSWER_BYTES + 10)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
    receiver = raw((answer, True), (OK, False))
    transport = _post(receiver)
    transport.post(b"{}", dict(HEADERS))
    assert receiver.connections == 2


def test_a_refusal_in_chunks_names_the_status_and_an_excerpt(raw):
    refusal = (
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"7\r\ntoo bus\r\n1\r\ny\r\n0\r\n\r\n"
    )
    receiver = raw((refusal, False))
    with pytest.raises(DeliveryError, match="answered HTTP 503: too busy") as raised:
        _post(receiver)
    assert raised.value.status == 503


@pytest.mark.parametrize(
    "answer",
    [
        b"hello there\r\n\r\n",
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    ],
)
def test_what_is_not_an_http_answer_is_a_failed_delivery_in_one_line(raw, answer):
    receiver = raw((answer, True))
    with pytest.raises(
        DeliveryError, match=r"^http://127\.0\.0\.1:\d+/hooks/orders answered with"
    ) as raised:
        _post(receiver)
    assert "\n" not in str(raised.value)


def test_a_connection_closed_before_any_answer_is_a_failed_delivery(raw):
    receiver = raw((b"", True))
    with pytest.raises(DeliveryError, match="could not reach"):
        _post(receiver)


def test_a_space_in_the_url_path_is_sent_percent_encoded(raw):
    receiver = raw((OK, False))
    _post(receiver, path="/hooks/new orders")
    assert receiver.heads[0].startswith(b"POST /hooks/new%20orders HTTP/1.1\r\n")

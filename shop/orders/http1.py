"""One HTTP/1.1 request and its answer on a kept-alive connection, read by RFC 9112's rules.

The hand-off sends one order per request to one URL. `http.client` builds each request through
`putrequest`/`putheader` (checks and a buffer per header) and parses each answer's header
fields with the email package: about 0.15 ms of the ~0.25 ms an order's exchange cost the
worker that took the payment (docs/decisions.md, issue 12). Here the request is one bytes
object and the answer is read from one buffer: the status line, the header fields, then the
body, delimited as RFC 9112 §6.3 says: none for 1xx/204/304, `Transfer-Encoding: chunked`,
`Content-Length`, or the connection's close. 1xx interim answers are skipped. At most
`max_body` bytes of a body are kept; a longer one, bytes after the answer, or
`Connection: close` end the connection's reuse. Anything that is not HTTP/1.x raises
`BadAnswer`; a connection closed before any answer raises ConnectionResetError (so a kept-alive
connection the receiver had closed is retried by the caller, as with http.client).
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Mapping
from typing import NamedTuple

MAX_LINE = 8192  # a status line or header field longer than this is not an answer we read
MAX_FIELDS = 100
_RECV = 65536
_BAD_VALUE = re.compile(r"[\r\n\x00]")


class BadAnswer(Exception):
    """The destination's bytes were not an HTTP/1.x answer."""


class Answer(NamedTuple):
    status: int
    body: bytes
    reusable: bool  # the connection may carry the next request


def request(method: str, target: str, host: str, headers: Mapping[str, str], body: bytes) -> bytes:
    """The request's bytes (head and body in one piece: one send, no Nagle wait between)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
    for name, value in headers.items():
        if _BAD_VALUE.search(name) or _BAD_VALUE.search(value) or ":" in name:
            raise ValueError(f"header {name!r} holds a line break, NUL or colon")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    """A TCP (or TLS) connection to one host, opened on first use, and its read buffer."""

    def __init__(
        self, host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host, self.port, self.timeout, self._tls = host, port, timeout, tls
        self.sock: socket.socket | None = None
        self._buffer = bytearray()

    def send(self, data: bytes) -> None:
        """Write one request, connecting first if not connected."""
        if self.sock is None:
            sock = socket.create_connection((self.host, self.port), self.timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._tls is not None:
                    sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
            self.sock = sock
            self._buffer.clear()
        self.sock.sendall(data)

    @property
    def buffered(self) -> bool:
        """True when answer bytes were already read from the socket into the buffer."""
        return bool(self._buffer)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self._buffer.clear()
        if sock is not None:
            sock.close()

    def answer(self, max_body: int) -> Answer:
        """Read the answer to the request just sent (a POST: every answer but 1xx/204/304 has
        a body)."""
        while True:
            status_line = self._line()
            if status_line is None:
                raise ConnectionResetError("the connection was closed without an answer")
            version, status = _status(status_line)
            fields = self._fields()
            if not 100 <= status < 200 or status == 101:
                break
        connection = fields.get("connection", "").lower()
        reusable = "close" not in connection and (
            version != "HTTP/1.0" or "keep-alive" in connection
        )
        if 100 <= status < 200 or status in (204, 304):
            return self._done(Answer(status, b"", reusable))
        coding = fields.get("transfer-encoding")
        if coding is not None:
            if coding.lower().rsplit(",", 1)[-1].strip() == "chunked":
                return self._done(self._chunked(status, reusable, max_body))
            return self._done(Answer(status, self._until_close(max_body), False))
        length = fields.get("content-length")
        if length is None:
            return self._done(Answer(status, self._until_close(max_body), False))
        if not length.isdigit():
            raise BadAnswer(f"Content-Length {length[:40]!r} is not a number")
        size = int(length)
        if size > max_body:
            return self._done(Answer(status, self._exact(max_body), False))
        return self._done(Answer(status, self._exact(size), reusable))

    def _done(self, answer: Answer) -> Answer:
        if self._buffer and answer.reusable:  # bytes after the answer: nothing we asked for
            return answer._replace(reusable=False)
        return answer

    def _fill(self) -> bool:
        assert self.sock is not None
        chunk = self.sock.recv(_RECV)
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def _line(self) -> str | None:
        """The next line without its line end; None at the end of the stream."""
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                if end > MAX_LINE:
                    raise BadAnswer("a line of the answer is too long")
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line.rstrip(b"\r").decode("latin-1")
            if len(self._buffer) > MAX_LINE:
                raise BadAnswer("a line of the answer is too long")
            start = len(self._buffer)
            if not self._fill():
                if self._buffer:
                    raise BadAnswer("the answer ended in the middle of a line")
                return None

    def _fields(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        last = ""
        for _ in range(MAX_FIELDS + 1):
            line = self._line()
            if line is None:
                raise BadAnswer("the answer ended in its header")
            if not line:
                return fields
            if line[0] in " \t" and last:  # an obsolete folded line continues the last field
                fields[last] += " " + line.strip()
                continue
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise BadAnswer(f"header line {line[:40]!r} is not a field")
            last = name.lower()
            value = value.strip()
            if last in fields and last in ("content-length", "transfer-encoding"):
                if last == "content-length" and fields[last] != value:
                    raise BadAnswer("two different Content-Length fields")
                if last == "transfer-encoding":
                    value = f"{fields[last]}, {value}"
            fields[last] = value
        raise BadAnswer(f"the answer has more than {MAX_FIELDS} header fields")

    def _exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._fill():
                raise BadAnswer("the answer ended before its Content-Length")
        body = bytes(self._buffer[:size])
        del self._buffer[:size]
        return body

    def _until_close(self, max_body: int) -> bytes:
        while len(self._buffer) < max_body and self._fill():
            pass
        body = bytes(self._buffer[:max_body])
        self._buffer.clear()
        return body

    def _chunked(self, status: int, reusable: bool, max_body: int) -> Answer:
        body = bytearray()
        while True:
            line = self._line()
            if line is None:
                raise BadAnswer("the answer ended inside its chunks")
            size_text = line.split(";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadAnswer(f"chunk size {size_text[:20]!r} is not hexadecimal") from None
            if size == 0:
                while self._line():  # trailer fields, up to the empty line
                    pass
                return Answer(status, bytes(body), reusable)
            if len(body) + size > max_body:  # too long to read on: keep what fits, close
                body += self._exact(min(size, max_body - len(body)))
                return Answer(status, bytes(body), False)
            body += self._exact(size)
            if self._line() != "":
                raise BadAnswer("a chunk did not end where its size said")


def _status(line: str) -> tuple[str, int]:
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit() or rest[3:4] not in ("", " "):
        raise BadAnswer(f"{line[:40]!r} is not an HTTP/1.x status line")
    return version, int(code)

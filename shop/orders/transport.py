"""POSTing exact bytes to one destination over kept-alive connections.

A sink sends every message to the same URL, so it keeps its connections open between
messages (`http1.Connection`, a few idle ones per destination, any thread may take one): no TCP
or TLS handshake per order, and none of the per-call work of `requests`, which cost more CPU
than the checkout itself. A kept-alive connection the receiver has closed is noticed before
it is used; one that breaks while the request is being written is replaced and the request
written once more (nothing was answered yet). Anything else that goes wrong is a failed
delivery, retried later by the outbox.

When the environment names a proxy for the URL (HTTPS_PROXY, HTTP_PROXY, not excluded by
NO_PROXY), or a caller passes its own `requests.Session`, messages go through `requests`,
which speaks to proxies; its session keeps connections alive too.
"""

from __future__ import annotations

import base64
import os
import re
import select
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from typing import NoReturn
from urllib.parse import quote, unquote, urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment

import requests

from shop.orders.http1 import BadAnswer, Connection, request

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux
MAX_IDLE = 4  # kept-alive connections per destination (the hand-off thread and sweepers)
MAX_ANSWER_BYTES = 64 * 1024  # read at most this much of an answer; more: close the connection
_EXCERPT = 120
# An answer that begins within this long marks its destination quick (Transport.quick).
QUICK_SECONDS = 0.02
_TARGET_OK = re.compile(r"[^\x00-\x20\x7f]*").fullmatch  # no space or control character
_TARGET_SAFE = "/?&=%:@!$'()*+,;~"


class DeliveryError(Exception):
    """An order did not reach its destination; the message is one line and holds no secret."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class AnswerPending(Exception):
    """The request went out but its answer had not begun within the caller's patience.

    `finish()` waits for the answer (the rest of the timeout) and raises as `post` does.
    """

    def __init__(self, finish: Callable[[], None]) -> None:
        super().__init__("the answer is still to come")
        self.finish = finish


def where(url: str) -> str:
    """The URL without query or credentials: safe to put in a log line."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT else flat[:_EXCERPT] + "…"


def _refused(url: str, status: int, answer: bytes) -> DeliveryError:
    excerpt = _one_line(answer.decode("utf-8", "replace"))
    return DeliveryError(
        f"{where(url)} answered HTTP {status}" + (f": {excerpt}" if excerpt else ""),
        status=status,
    )


def _no_answer(url: str, timeout: float, exc: BaseException) -> DeliveryError:
    return DeliveryError(f"no answer from {where(url)} within {timeout:g}s ({type(exc).__name__})")


def _unreachable(url: str, exc: BaseException) -> DeliveryError:
    return DeliveryError(f"could not reach {where(url)} ({type(exc).__name__})")


def _failure(url: str, timeout: float, exc: BaseException) -> DeliveryError | None:
    """The DeliveryError a broken exchange is recorded as; None: not ours to say (re-raise)."""
    if isinstance(exc, TimeoutError):
        return _no_answer(url, timeout, exc)
    if isinstance(exc, OSError):  # refused, DNS, TLS, reset …
        return _unreachable(url, exc)
    if isinstance(exc, BadAnswer):
        return DeliveryError(f"{where(url)} answered with something that is not HTTP/1.1: {exc}")
    return None


def _uses_proxy(url: str) -> bool:
    parts = urlsplit(url)
    proxies = getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not proxy_bypass_environment(parts.hostname or "", proxies)


class Transport:
    """POST to one URL; `post` raises DeliveryError unless the answer is 2xx."""

    def __init__(self, url: str, timeout: float, session: requests.Session | None = None) -> None:
        parts = urlsplit(url)
        self.url = url
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # A space or control character cannot go on the request line: sent percent-encoded.
        self._target = target if _TARGET_OK(target) else quote(target, safe=_TARGET_SAFE)
        default_port = 443 if self._https else 80
        self._port_number = parts.port or default_port
        name = f"[{self._host}]" if ":" in self._host else self._host  # an IPv6 literal
        self._host_header = name if self._port_number == default_port else f"{name}:{parts.port}"
        self._auth: str | None = None
        if parts.username is not None:  # as requests does: credentials in the URL are Basic auth
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._auth = "Basic " + base64.b64encode(pair.encode("latin-1")).decode()
        self._requests = session
        if session is None and _uses_proxy(url):
            self._requests = requests.Session()
        self._idle: list[Connection] = []
        # A sink dropped with its app closes its connections (no socket left for the GC).
        weakref.finalize(self, _close_all, self._idle)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._tls: ssl.SSLContext | None = None
        # True while the last answer began within QUICK_SECONDS of its request (set by every
        # exchange, whichever thread made it): the worker that took a payment then sends the
        # order itself (shop.orders.courier); False until a first answer shows it.
        self.quick = False

    def post(self, body: bytes, headers: dict[str, str], patience: float | None = None) -> None:
        """POST exact bytes; raise DeliveryError unless the answer is 2xx.

        With `patience` (seconds) the caller waits at most that long for the answer to begin:
        past it, or when the request would need a new connection (whose first answer a TLS
        session ticket can precede), AnswerPending is raised and its `finish()` does the rest
        (the hand-off thread calls it), raising as `post` would.
        """
        if self._auth is not None:
            headers = {"Authorization": self._auth, **headers}
        if self._requests is not None:  # never quick (no `_answer`), so never given patience
            self._post_with_requests(body, headers)
            return
        conn, reused = self._take()
        if patience is not None and not reused:
            conn.close()  # never connected: the thread that finishes connects
            raise AnswerPending(lambda: self.post(body, headers))
        try:
            try:
                self._exchange(conn, body, headers, patience)
            except (ConnectionResetError, BrokenPipeError):  # RemoteDisconnected is a reset
                if not reused:
                    raise
                # The receiver closed the kept-alive connection before answering (as a server
                # does to an idle one): write the request once more on a new connection.
                conn.close()
                conn = self._connect()
                # A new connection's answer is the hand-off thread's to wait for (see above).
                self._exchange(conn, body, headers, None if patience is None else 0.0)
        except (AnswerPending, DeliveryError):
            raise  # the connection went on with the answer to come, or back to the idle ones
        except BaseException as exc:
            self._broken(conn, exc)

    def _exchange(
        self,
        conn: Connection,
        body: bytes,
        headers: dict[str, str],
        patience: float | None,
    ) -> None:
        conn.send(request("POST", self._target, self._host_header, headers, body))
        if _QUICKACK is not None and conn.sock is not None:
            # A receiver that writes its answer's head and body apart (Python's http.server
            # does) waits, by Nagle's rule, for our ACK of the head; on a kept-alive
            # connection Linux delays that ACK up to 40 ms. Acknowledge at once instead.
            conn.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        sent = time.monotonic()
        if patience is not None and not _answer_begun(conn, patience):
            self.quick = False
            raise AnswerPending(lambda: self._finish(conn, sent))
        self._answer(conn, sent)

    def _finish(self, conn: Connection, sent: float) -> None:
        """Wait for the answer to a request already written (AnswerPending.finish)."""
        try:
            self._answer(conn, sent)
        except DeliveryError:
            raise
        except BaseException as exc:
            self._broken(conn, exc)

    def _broken(self, conn: Connection, exc: BaseException) -> NoReturn:
        conn.close()
        self.quick = False
        failure = _failure(self.url, self.timeout, exc)
        if failure is None:
            raise exc
        raise failure from exc

    def _answer(self, conn: Connection, sent: float) -> None:
        """Read the answer, keep the connection for the next request, raise unless 2xx."""
        answer = conn.answer(MAX_ANSWER_BYTES)
        self.quick = time.monotonic() - sent <= QUICK_SECONDS
        if not answer.reusable:  # `Connection: close`, or more answer than we read
            conn.close()
        self._give_back(conn)
        if not 200 <= answer.status < 300:
            raise _refused(self.url, answer.status, answer.body)

    def close(self) -> None:
        """Close the idle connections (a later post opens new ones)."""
        with self._lock:
            _close_all(self._idle)

    def _take(self) -> tuple[Connection, bool]:
        """An idle connection that is still open (True), or a new one (False)."""
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets stay the parent's
                _close_all(self._idle)  # closes this process's copies of them only
                self._pid = os.getpid()
            while self._idle:
                conn = self._idle.pop()
                if not _dropped(conn):
                    return conn, True
                conn.close()
        return self._connect(), False

    def _give_back(self, conn: Connection) -> None:
        if conn.sock is None:  # the answer said `Connection: close`
            return
        with self._lock:
            if self._pid == os.getpid() and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> Connection:
        if self._https and self._tls is None:
            self._tls = _tls_context()
        return Connection(self._host, self._port_number, self.timeout, self._tls)

    def _post_with_requests(self, body: bytes, headers: dict[str, str]) -> None:
        assert self._requests is not None
        try:
            # Redirects are failures: requests would replay a POST as a body-less GET.
            response = self._requests.post(
                self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.Timeout as exc:
            raise _no_answer(self.url, self.timeout, exc) from exc
        except requests.RequestException as exc:  # refused, DNS, TLS, reset …
            raise _unreachable(self.url, exc) from exc
        if not 200 <= response.status_code < 300:
            raise _refused(self.url, response.status_code, response.content[:MAX_ANSWER_BYTES])


def _close_all(connections: list[Connection]) -> None:
    while connections:
        connections.pop().close()


def _dropped(conn: Connection) -> bool:
    """True when an idle connection cannot carry another request (closed by the receiver)."""
    sock = conn.sock
    if sock is None or conn.buffered:
        return True
    try:
        # An idle kept-alive socket has nothing to read; readable means EOF (or stray bytes).
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _answer_begun(conn: Connection, patience: float) -> bool:
    """Wait up to `patience` seconds for the first bytes of the answer; True once they came."""
    sock = conn.sock
    if sock is None or conn.buffered or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
        return True  # closed (reading says how), or answer bytes already here
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(patience * 1000))


def _tls_context() -> ssl.SSLContext:
    """Verify certificates against the same CA bundle requests uses (certifi's)."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - requests depends on certifi
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())

"""A request body must arrive in time: a lying Content-Length cannot hold a worker.

gunicorn's sync workers read the body from a blocking socket with no timeout, so a client that
announces more bytes than it sends holds the worker until gunicorn's worker timeout kills it
(and the client gets a 500). Behind the shipped nginx site this never reaches gunicorn: nginx
reads the whole body first (client_body_timeout). Without nginx, this WSGI middleware reads the
body itself before Flask sees it, under one deadline for the whole body; a body that does not
arrive in time is answered 400 `request_body_timeout` in the surface's own error shape.

Only under gunicorn (it needs the connection's socket, `gunicorn.socket`); the test client and
other servers pass through untouched.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request

from shop.errors import InvalidRequestError

BODY_SECONDS = 10.0  # SHOP_BODY_TIMEOUT (shop/config/settings.py): the whole body, not a packet
_CHUNK = 64 * 1024
_TIMED_OUT = "shop.body_timed_out"


class BodyDeadline:
    """WSGI middleware: read the request body under a deadline, then hand Flask the bytes."""

    def __init__(self, wsgi_app: Callable[..., Any], max_bytes: int, seconds: float) -> None:
        self.wsgi_app = wsgi_app
        self.max_bytes = max_bytes
        self.seconds = seconds

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        length = environ.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if sock is not None and (chunked or length not in ("", "0")):
            self._read(environ, sock, length, chunked)
        return self.wsgi_app(environ, start_response)

    def _read(self, environ: dict[str, Any], sock: Any, length: str, chunked: bool) -> None:
        try:
            wanted = None if chunked else int(length)
        except ValueError:
            return  # Werkzeug answers a malformed Content-Length itself
        if wanted is not None and wanted > self.max_bytes:
            return  # refused with 413 before anything is read
        stream = environ["wsgi.input"]
        limit = self.max_bytes + 1 if wanted is None else wanted
        parts: list[bytes] = []
        got = 0
        deadline = time.monotonic() + self.seconds
        previous = sock.gettimeout()
        try:
            while got < limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                part = stream.read(min(_CHUNK, limit - got))
                if not part:
                    break
                parts.append(part)
                got += len(part)
        except (TimeoutError, OSError):
            environ[_TIMED_OUT] = (wanted, got)
            environ["wsgi.input"] = io.BytesIO(b"")
            environ["CONTENT_LENGTH"] = "0"
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            return
        finally:
            with contextlib.suppress(OSError):  # the client may have gone
                sock.settimeout(previous)
        body = b"".join(parts)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)


def init_app(app: Flask, max_bytes: int, seconds: float = BODY_SECONDS) -> None:
    """Wrap the app's WSGI callable and refuse, in each surface's shape, a body that timed out."""
    app.wsgi_app = BodyDeadline(app.wsgi_app, max_bytes, seconds)  # type: ignore[method-assign]

    @app.before_request
    def _refuse_late_body() -> None:
        late = request._get_current_object().environ.get(_TIMED_OUT)
        if late is None:
            return
        wanted, _got = late
        said = f"Content-Length says {wanted} bytes" if wanted is not None else "chunked"
        raise InvalidRequestError(
            "request_body_timeout",
            f"the request body did not arrive within {seconds:g} s ({said}); "
            "send the whole body at once, with a Content-Length that matches it.",
        )

"""The ShopError hierarchy and the one place that renders errors for each surface."""

from __future__ import annotations

from typing import Any

from shop import fast_json


class ConfigError(Exception):
    """A merchant-editable file or environment variable is wrong; the message says how to fix it."""


class ShopError(Exception):
    """A request that cannot be served; rendered as the surface's error shape."""

    def __init__(
        self,
        status: int,
        type: str,
        code: str,
        message: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        replayable: bool = True,
    ) -> None:
        super().__init__(message)
        self.replayable = replayable
        self.status = status
        self.type = type
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}

    def to_acp(self) -> dict[str, Any]:
        """Return the flat ACP Error object."""
        body: dict[str, Any] = {"type": self.type, "code": self.code, "message": self.message}
        if self.param:
            body["param"] = self.param
        body.update(self.extra)
        return body


class InvalidRequestError(ShopError):
    """The client sent something we cannot act on (400 unless told otherwise)."""

    def __init__(
        self, code: str, message: str, param: str | None = None, status: int = 400, **kwargs: Any
    ) -> None:
        super().__init__(status, "invalid_request", code, message, param, **kwargs)


class NotFoundError(ShopError):
    """The named resource does not exist (404)."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(404, "invalid_request", code, message, param)


class ProcessingError(ShopError):
    """Something on our side or the provider's failed; nothing was stored (5xx-free when told)."""

    def __init__(self, code: str, message: str, status: int = 500) -> None:
        super().__init__(status, "processing_error", code, message)


class DatabaseUnavailableError(ShopError):
    """The database cannot be trusted with a change now (503); the message says why and what to do.

    Raised before a payment is taken, never after: nothing was charged.
    """

    def __init__(self, message: str, retry_after: int = 30) -> None:
        super().__init__(
            503,
            "service_unavailable",
            "database_unavailable",
            message,
            headers={"Retry-After": str(retry_after)},
            replayable=False,
        )


class ProviderError(Exception):
    """The payment provider could not be reached or answered unexpectedly.

    `setup`: the store's own setup is wrong (a key, a permission, a parameter the API version
    refuses): the merchant must fix it, the buyer cannot. `outcome_unknown`: the provider may
    have charged (a lost answer, a request still running); nobody may say nothing was charged.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        setup: bool = False,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.setup = setup
        self.outcome_unknown = outcome_unknown


def render_acp_error(exc: ShopError, shape: Any = None) -> Any:
    """Render a ShopError as the ACP flat Error response (`shape`: one ACP version's Error)."""
    from flask import Response

    body = exc.to_acp() if shape is None else shape(exc.to_acp())
    response = Response(fast_json.dumps_bytes(body), status=exc.status, mimetype="application/json")
    for name, value in exc.headers.items():
        response.headers[name] = value
    if not exc.replayable:
        response.headers["X-Not-Replayable"] = "1"
    return response


def render_forter_error(exc: ShopError) -> Any:
    """Render a ShopError in the Forter merchant-endpoint shape."""
    from flask import Response

    body = {"success": False, "error_code": exc.code, "error_message": exc.message}
    response = Response(fast_json.dumps_bytes(body), status=exc.status, mimetype="application/json")
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response


def _renderer_for(path: str) -> Any:
    return render_forter_error if path.startswith("/api/") else render_acp_error


def render_for_path(path: str, exc: ShopError) -> Any:
    """Render a ShopError in the shape of the surface that `path` belongs to."""
    return _renderer_for(path)(exc)


def register_error_handlers(app: Any) -> None:
    """Render every failure in the shape of the surface that was called; never a traceback."""
    import logging

    from flask import request
    from werkzeug.exceptions import HTTPException

    log = logging.getLogger("shop.errors")

    @app.errorhandler(ShopError)
    def _shop_error(exc: ShopError) -> Any:
        return _renderer_for(request.path)(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        code, message = _HTTP_MESSAGES.get(status, ("http_error", exc.description or exc.name))
        if status == 405:
            message = (
                f"{request.method} is not allowed on {request.path}; see the README for "
                "the routes and their methods."
            )
        return _renderer_for(request.path)(InvalidRequestError(code, message, status=status))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _renderer_for(request.path)(
            ProcessingError(
                "internal_error",
                "Something went wrong on the store's side; the error is logged. "
                "Retrying the same request is safe: nothing is ever charged twice.",
            )
        )


_HTTP_MESSAGES = {
    400: ("invalid_request", "The request could not be understood; send a JSON body."),
    404: ("not_found", "No such route; see the README for the API's routes."),
    413: ("request_too_large", "The request body is larger than 1 MiB; send a smaller body."),
    415: ("unsupported_media_type", "Send the body as Content-Type: application/json."),
}

"""Suite-wide guards (conftest.py): ACP responses checked against the schema; loopback only."""

from __future__ import annotations

from flask import Flask, jsonify

from tests.conftest import _validate_acp_responses


def _app_answering(body: dict, status: int) -> Flask:
    app = Flask("guard")

    @app.post("/checkout_sessions/<session_id>/complete")
    def broken(session_id: str):
        return jsonify(body), status

    return app


def test_guard_records_a_session_that_breaks_the_schema() -> None:
    app = _app_answering({"id": "cs_1", "status": "paid"}, 200)
    violations: list[str] = []
    _validate_acp_responses(app, violations)
    app.test_client().post("/checkout_sessions/cs_1/complete")
    assert violations and all("CheckoutSession" in v for v in violations)


def test_guard_checks_error_bodies_and_formats() -> None:
    app = _app_answering(
        {"type": "invalid_request", "code": "x", "message": "m", "param": "$.a"}, 400
    )
    violations: list[str] = []
    _validate_acp_responses(app, violations)
    app.test_client().post("/checkout_sessions/cs_1/complete")
    assert violations == []

    app = _app_answering({"type": "not-a-type", "code": "x", "message": "m"}, 400)
    _validate_acp_responses(app, violations)
    app.test_client().post("/checkout_sessions/cs_1/complete")
    assert any("(Error)" in v for v in violations)


def test_guard_checks_uri_formats(app) -> None:
    """A CheckoutSession whose link url is not a URI is caught (FormatChecker is on)."""
    from tests.conftest import acp_validator

    errors = list(acp_validator("Link").iter_errors({"type": "terms_of_use", "url": "not a uri"}))
    assert errors and errors[0].validator == "format"


def test_the_suite_cannot_reach_beyond_loopback() -> None:
    import socket

    import pytest

    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="loopback"):
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed

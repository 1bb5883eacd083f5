"""GET /openapi.json: the newest enabled version's checkout OpenAPI, for GPT Actions."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate
from werkzeug.exceptions import MethodNotAllowed, NotFound


def test_the_document_is_valid_openapi_3_1_for_this_store(client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    doc = response.get_json()

    validate(doc)  # raises on anything that is not valid OpenAPI 3.1
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["version"] == "2026-04-17"
    assert doc["servers"] == [
        {"url": "https://store.test", "description": "This store's ACP checkout API"}
    ]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert doc["security"] == [{"bearerAuth": []}]
    error = doc["components"]["schemas"]["Error"]["properties"]
    assert error["supported_versions"]["type"] == "array"


def test_every_operation_is_a_route_of_the_store(app, client) -> None:
    doc = client.get("/openapi.json").get_json()
    adapter = app.url_map.bind("store.test")
    operations = 0
    for path, item in doc["paths"].items():
        concrete = path.replace("{checkout_session_id}", "cs_1")
        for method in ("get", "post", "patch", "put", "delete"):
            if method not in item:
                continue
            operations += 1
            try:
                endpoint, _args = adapter.match(concrete, method=method.upper())
            except (NotFound, MethodNotAllowed):
                pytest.fail(f"{method.upper()} {path} is in the document but not served")
            assert endpoint.startswith("acp."), endpoint
    assert operations == 5


def test_the_newest_enabled_version_is_served(make_app) -> None:
    client = make_app(config={"acp": {"versions": ["2026-01-30", "2025-09-29"]}}).test_client()
    doc = client.get("/openapi.json").get_json()
    validate(doc)
    assert doc["info"]["version"] == "2026-01-30"
    assert "supported_versions" not in doc["components"]["schemas"]["Error"]["properties"]


def test_without_store_url_the_server_is_the_host_asked(make_app, shop_files) -> None:
    import json

    config = json.loads(shop_files["config"].read_text())
    del config["storeUrl"]
    shop_files["config"].write_text(json.dumps(config))
    client = make_app().test_client()
    doc = client.get("/openapi.json", base_url="https://shop.example").get_json()
    assert doc["servers"][0]["url"] == "https://shop.example"

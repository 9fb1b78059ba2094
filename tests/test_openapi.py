"""specs/openapi.yaml describes exactly the app's routes, is valid OpenAPI 3.1, and is served.

The contract itself is exercised against a real server in ``test_openapi_fuzz.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from starlette.testclient import TestClient

from keyproof.errors import all_codes
from keyproof.server.app import ROUTES, create_app
from keyproof.server.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT: dict[str, Any] = yaml.safe_load((ROOT / "specs" / "openapi.yaml").read_text())
ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method.upper(), operation


def _resolved(response: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[1]
        return dict(DOCUMENT["components"]["responses"][name])
    return response


def test_every_route_is_documented_and_nothing_else():
    documented = {(path, method) for path, method, _ in _operations()}
    routed = {(path, method) for path, _, method in ROUTES}
    assert documented == routed


def test_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(DOCUMENT).validate()


def test_operation_ids_are_unique():
    ids = [operation["operationId"] for _, _, operation in _operations()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("path", "method", "operation"), list(_operations()), ids=lambda v: str(v)[:40]
)
def test_every_error_response_has_the_error_body(path: str, method: str, operation: dict[str, Any]):
    for status, declared in operation["responses"].items():
        response = _resolved(declared)
        if int(status) >= 400:
            assert response["content"]["application/json"]["schema"] == ERROR_SCHEMA, status
        if status in {"429", "503"}:
            assert response["headers"]["Retry-After"]["$ref"] == "#/components/headers/RetryAfter"


def test_body_endpoints_document_size_and_media_type_refusals():
    for path, method, operation in _operations():
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= set(operation["responses"]), (method, path)


def test_every_status_of_the_error_table_is_documented():
    """Statuses of specs/protocol.md §7, less 500 (raised at startup, never answered)."""
    spec = (ROOT / "specs" / "protocol.md").read_text()
    table = spec[spec.index("## 7. Error codes") : spec.index("## 8. Stores")]
    listed = {int(s) for s in re.findall(r"^\| `[a-z_]+` \| (\d{3}) \|", table, re.M)}
    assert len(all_codes()) > 40 and listed >= {400, 401, 403, 404, 405, 413, 415, 429, 503}
    statuses = {int(s) for _, _, operation in _operations() for s in operation["responses"]}
    # For paths and methods not listed, and for any request whose headers are too large.
    shared = {"NotFound": 404, "MethodNotAllowed": 405, "HeadersTooLarge": 431}
    assert set(shared) <= set(DOCUMENT["components"]["responses"])
    assert listed - {500} <= statuses | set(shared.values())


def test_served_document_is_the_spec_file(tmp_path: Path):
    app = create_app(Settings(data_dir=tmp_path, store="memory://"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == DOCUMENT


def test_a_method_a_path_does_not_serve_is_405_with_allow(tmp_path: Path):
    app = create_app(Settings(data_dir=tmp_path, store="memory://"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        refused = client.delete("/v1/challenge")
        missing = client.get("/v1/nothing")
    assert (refused.status_code, refused.json()["reason"]) == (405, "method_not_allowed")
    assert refused.headers["allow"] == "POST"
    assert (missing.status_code, missing.json()["reason"]) == (404, "not_found")

"""Property-based fuzzing of the live HTTP API from its own OpenAPI document: no 5xx, every
response matches the documented status codes and schemas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .harness import ServerProcess, start_server, token

ADMIN = {"Authorization": f"Bearer {token('fuzzy', roles=('admin', 'member'))}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        tmp_path_factory.mktemp("data"), rate_user_per_s=100000, rate_user_burst=100000
    )
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def api_schema(fuzz_server: ServerProcess) -> schemathesis.BaseSchema:
    import httpx

    # Seed a room and a message so path parameters can hit existing resources too.
    with httpx.Client(base_url=fuzz_server.api, headers=ADMIN) as http:
        http.post("/v1/rooms", json={"name": "general"}).raise_for_status()
        http.post("/v1/rooms/general/messages", json={"body": "seed"}).raise_for_status()
    return schemathesis.openapi.from_url(f"{fuzz_server.api}/openapi.json")


def operations(api_schema: schemathesis.BaseSchema) -> list[object]:
    ops = [result.ok() for result in api_schema.get_all_operations()]
    assert len(ops) >= 20, "the document should describe every endpoint"
    return ops


def test_api_conforms_to_its_openapi(api_schema: schemathesis.BaseSchema) -> None:
    # schemathesis' pytest plugin does not load under this pytest; drive Hypothesis directly.
    for operation in operations(api_schema):

        @given(case=operation.as_strategy())  # type: ignore[attr-defined]
        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=ADMIN, checks=CHECKS)

        run()


def test_api_without_token_is_401_not_5xx(api_schema: schemathesis.BaseSchema) -> None:
    for operation in operations(api_schema):

        @given(case=operation.as_strategy())  # type: ignore[attr-defined]
        @settings(
            max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call(headers={})
            assert response.status_code < 500
            if case.path.startswith("/v1/"):
                assert response.status_code in (400, 401), response.text

        run()

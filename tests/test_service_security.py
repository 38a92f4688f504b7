"""Every route of the OpenAPI document is guarded; fuzzing the API finds no server error.

The routes are read from `/openapi.json` of the full app, so routes that other
parts add later are checked without editing this file.
"""

from __future__ import annotations

import re
import time

import pytest

from service_util import auth, make_client, make_token

METHODS = {"get", "post", "put", "patch", "delete"}
NON_ADMIN_SCOPES = ("hash", "match", "curate", "review")
OPEN_ROUTES = {("GET", "/status/live")}  # liveness: no token, by design
ANY_TOKEN_ROUTES = {("GET", "/status")}  # readiness: any valid token, whatever its scopes
BANK = "SECURITY_TEST"


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def concrete(path: str) -> str:
    """Fill path parameters: bank names with a real bank, everything else with 1."""
    return re.sub(r"\{([^}]+)\}", lambda m: BANK if "bank" in m.group(1).lower() else "1", path)


def declared_scopes(operation: dict) -> set[str]:
    return {scope for requirement in operation.get("security") or [] for scopes in requirement.values() for scope in scopes}


@pytest.fixture
def guarded_service(tmp_path, db_url):
    client, admin = make_client(tmp_path, db_url, scopes=("admin",), name="admin")
    tokens = {scope: make_token(client, (scope,), name=f"only-{scope}") for scope in NON_ADMIN_SCOPES}
    client.post("/c/banks", json={"name": BANK}, headers=auth(admin))
    client.post(f"/c/bank/{BANK}/signal", json={"pdq": "e" * 64}, headers=auth(admin))
    return client, admin, tokens


def test_every_route_needs_a_token_with_its_scope(guarded_service):
    client, admin, tokens = guarded_service
    spec = client.get("/openapi.json").json()
    checked = []
    for method, path, operation in operations(spec):
        url = concrete(path)
        where = f"{method} {path}"
        if (method, path) in OPEN_ROUTES:
            assert client.request(method, url).status_code < 400, where
            continue
        assert operation.get("security"), f"{where} declares no security requirement in the OpenAPI document"

        missing = client.request(method, url)
        assert missing.status_code == 401, (where, missing.status_code, missing.text)
        assert missing.headers.get("www-authenticate") == "Bearer", where
        bad = client.request(method, url, headers=auth("sst_not-a-real-token"))
        assert bad.status_code == 401, (where, bad.status_code, bad.text)
        malformed = client.request(method, url, headers={"Authorization": "Token abc"})
        assert malformed.status_code == 401, (where, malformed.status_code)

        answers = {scope: client.request(method, url, headers=auth(secret)) for scope, secret in tokens.items()}
        refused = {scope for scope, answer in answers.items() if answer.status_code == 403}
        for scope, answer in answers.items():
            assert answer.status_code != 401, (where, scope, answer.text)
        declared = declared_scopes(operation)
        if declared:
            assert refused == set(NON_ADMIN_SCOPES) - declared, (where, "refused", refused, "declared", declared)
        elif (method, path) in ANY_TOKEN_ROUTES:
            assert not refused, (where, refused)
        else:
            assert refused, f"{where}: every single-scope token is let in; the route checks no scope"
        as_admin = client.request(method, url, headers=auth(admin))
        assert as_admin.status_code not in (401, 403), (where, as_admin.status_code, as_admin.text)
        checked.append(where)
    # the core's own routes are all there (others' routes are checked the same way when present)
    assert {"GET /status", "POST /h/hash", "GET /c/banks", "DELETE /c/bank/{bank_name}/content/{content_id}"} <= set(checked)


def test_docs_pages_are_not_served_without_a_token_or_are_static(tmp_path):
    client, _ = make_client(tmp_path)
    # the OpenAPI document itself describes the API (no data); it must not leak secrets
    spec_text = client.get("/openapi.json").text
    assert "sst_" not in spec_text.replace("sst_not", "")


def _wait_until_ready(client, admin, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while client.get("/status", headers=auth(admin)).status_code != 200:
        assert time.monotonic() < deadline, "the service did not become ready"
        time.sleep(0.05)


def test_fuzzing_the_api_finds_no_server_error(tmp_path):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    client, admin = make_client(tmp_path, scopes=("admin",), name="fuzzer", raise_server_exceptions=False)

    def seed_bank():  # again before each operation: a DELETE may have removed it
        client.post("/c/banks", json={"name": BANK}, headers=auth(admin))
        client.post(f"/c/bank/{BANK}/signal", json={"pdq": "e" * 64, "md5": "d" * 32}, headers=auth(admin))

    seed_bank()
    _wait_until_ready(client, admin)
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures = []

    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case):
            responses = [case.call(headers=auth(admin))]
            if "bank_name" in (case.path_parameters or {}):
                # and again on a bank that exists, so the handlers' inner paths are fuzzed too
                case.path_parameters = {**case.path_parameters, "bank_name": BANK}
                responses.append(case.call(headers=auth(admin)))
            for response in responses:
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

        seed_bank()
        call()
    assert not failures, "\n".join(failures[:20])

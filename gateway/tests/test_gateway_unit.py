"""Gateway pieces without services: passwords, tokens, error mapping to problem+json."""
import datetime as dt
import os
import uuid
from types import SimpleNamespace

import jwt
import pytest

os.environ.setdefault("JWT_SECRET", "unit-test-secret-unit-test-secret-0123456789")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from gateway import problems  # noqa: E402
from gateway.auth import decode_token, hash_password, issue_token, verify_password  # noqa: E402
from gateway.settings import get_gateway_settings  # noqa: E402
from svc_common.errors import Conflict  # noqa: E402
from svc_common.rpc_client import RemoteError, RpcTimeout  # noqa: E402


def test_passwords_are_hashed_with_argon2_and_verified():
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$") and "correct horse" not in hashed
    assert verify_password(hashed, "correct horse") and not verify_password(hashed, "wrong")
    assert not verify_password("garbage", "x")


def test_tokens_carry_tenant_and_role_and_expire():
    user = SimpleNamespace(id=uuid.uuid4(), tenant_id=uuid.uuid4(), role="technician", username="li")
    token, expires = issue_token(user, "en")
    principal = decode_token(token)
    assert (principal.user_id, principal.tenant_id, principal.role, principal.locale) == (
        user.id, user.tenant_id, "technician", "en")
    assert expires > dt.datetime.now(dt.timezone.utc)
    secret = get_gateway_settings().jwt_secret
    expired = jwt.encode({"sub": str(user.id), "tid": str(user.tenant_id), "role": "admin", "usr": "li",
                          "exp": dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)}, secret)
    assert decode_token(expired) is None
    forged = jwt.encode({"sub": str(user.id), "tid": str(user.tenant_id), "role": "admin", "usr": "li",
                         "exp": expires}, "another-secret-another-secret-0123456789")
    assert decode_token(forged) is None


class Body(BaseModel):
    name: str
    count: int


@pytest.fixture
def client():
    app = FastAPI()
    problems.install(app)

    @app.post("/echo")
    def echo(body: Body):
        return body

    @app.get("/remote/{kind}")
    def remote(kind: str):
        if kind == "validation":
            raise RemoteError("ValidationFailed", "name: too short", ["name: too short",
                                                                       [{"field": "name", "message": "too short"}]])
        if kind == "conflict":
            raise RemoteError("Conflict", "work order is assigned", ["work order is assigned", []])
        if kind == "local":
            raise Conflict("taken", [{"field": "code", "message": "already taken"}])
        if kind == "timeout":
            raise RpcTimeout("tickets.get_ticket did not answer")
        if kind == "database":
            raise RemoteError("OperationalError", "FATAL: sorry, too many clients already")
        raise RemoteError("KeyError", "'boom'")

    return TestClient(app)


def test_malformed_body_is_422_problem_naming_each_field(client):
    r = client.post("/echo", json={"name": 1})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert {e["field"] for e in r.json()["errors"]} == {"name", "count"}


@pytest.mark.parametrize("kind,status,errors", [
    ("validation", 422, [{"field": "name", "message": "too short"}]),
    ("conflict", 409, None),
    ("local", 409, [{"field": "code", "message": "already taken"}]),
    ("timeout", 504, None),
    ("database", 503, None),
    ("unexpected", 500, None),
])
def test_remote_errors_map_to_http(client, kind, status, errors):
    r = client.get(f"/remote/{kind}")
    assert r.status_code == status and r.json()["status"] == status
    assert r.json().get("errors") == errors
    if status == 500:
        assert "boom" not in r.text  # internals are logged, not shown


def test_openapi_documents_success_schemas_and_problem_errors():
    from gateway.app import create_app
    spec = create_app().openapi()
    get_order = spec["paths"]["/api/v1/work-orders/{ticket_id}"]["get"]["responses"]
    assert get_order["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/TicketOut")
    assert get_order["404"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
    created = spec["paths"]["/api/v1/work-orders"]["post"]["responses"]
    assert created["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/TicketOut")
    assert "422" in created and "TicketOut" in spec["components"]["schemas"]
    undocumented = [f"{method.upper()} {path}" for path, ops in spec["paths"].items() if path.startswith("/api/")
                    for method, op in ops.items()
                    if not any(code in op["responses"] and "schema" in str(op["responses"][code])
                               for code in ("200", "201", "202"))]
    assert undocumented == []

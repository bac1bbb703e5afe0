"""Rate limits at the edge: who is counted, the 429 answer, limits shared through Redis."""
import os
import socket
import uuid
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI, HTTPException

os.environ.setdefault("JWT_SECRET", "unit-test-secret-unit-test-secret-0123456789")

from gateway.rate_limit import STORE_ERRORS, RateLimitMiddleware  # noqa: E402
from gateway.settings import GatewaySettings  # noqa: E402

TOKENS = {"token-a": SimpleNamespace(user_id="a", tenant_id="1"), "token-b": SimpleNamespace(user_id="b", tenant_id="1"),
          "token-c": SimpleNamespace(user_id="c", tenant_id="2")}


def settings(**limits) -> GatewaySettings:
    values = {"JWT_SECRET": "unit-test-secret-unit-test-secret-0123456789", "RATE_LIMIT_LOGIN": "3/minute",
              "RATE_LIMIT_USER": "2/minute", "RATE_LIMIT_TENANT": "3/minute", "RATE_LIMIT_ANONYMOUS": "2/minute"}
    values.update(limits)
    return GatewaySettings(**values)


def an_app(config: GatewaySettings) -> FastAPI:
    app = FastAPI()

    @app.post("/api/v1/auth/login")
    def login(password: str = "wrong"):
        if password != "right":
            raise HTTPException(401, "wrong company, username or password")
        return {"ok": True}

    @app.get("/api/v1/things")
    def things():
        return {"ok": True}

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    app.add_middleware(RateLimitMiddleware, authenticate=TOKENS.get, settings=config)
    return app


def client(app, address: str = "10.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)),
                             base_url="http://gateway")


async def test_failed_logins_are_limited_per_client_address_and_successful_ones_are_free():
    app = an_app(settings())
    async with client(app) as guesser, client(app, "10.0.0.2") as someone_else:
        assert [(await guesser.post("/api/v1/auth/login?password=right")).status_code
                for _ in range(10)] == [200] * 10
        answers = [(await guesser.post("/api/v1/auth/login")).status_code for _ in range(4)]
        assert answers == [401, 401, 401, 429]
        refused = await guesser.post("/api/v1/auth/login?password=right")   # even the right one, now
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["limit"] == "login" and refused.json()["status"] == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert (await someone_else.post("/api/v1/auth/login")).status_code == 401


async def test_callers_are_limited_each_and_their_company_as_a_whole():
    app = an_app(settings())
    async with client(app) as http:
        def get(token):
            return http.get("/api/v1/things", headers={"Authorization": f"Bearer {token}"})
        assert [(await get("token-a")).status_code for _ in range(3)] == [200, 200, 429]
        assert (await get("token-a")).json()["limit"] == "user"
        assert (await get("token-b")).status_code == 200          # tenant 1: a, a, b = 3
        refused = await get("token-b")
        assert refused.status_code == 429 and refused.json()["limit"] == "tenant"
        assert (await get("token-c")).status_code == 200          # another company is not affected


async def test_unknown_tokens_count_as_anonymous_and_health_is_never_limited():
    app = an_app(settings())
    async with client(app) as http:
        codes = [(await http.get("/api/v1/things", headers={"Authorization": "Bearer forged"})).status_code
                 for _ in range(3)]
        assert codes == [200, 200, 429]
        assert [(await http.get("/healthz")).status_code for _ in range(10)] == [200] * 10


async def test_an_empty_limit_is_off():
    app = an_app(settings(RATE_LIMIT_LOGIN=""))
    async with client(app) as http:
        assert [(await http.post("/api/v1/auth/login")).status_code for _ in range(10)] == [401] * 10


def test_a_malformed_limit_is_refused_at_start():
    with pytest.raises(ValueError, match="RATE_LIMIT_USER|not a rate"):
        settings(RATE_LIMIT_USER="often")


def redis_url() -> str:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError:
        pytest.fail("Redis is not reachable at 127.0.0.1:6379. Start it with: redis-server --daemonize yes "
                    "--bind 127.0.0.1 --port 6379 --save '' --appendonly no", pytrace=False)
    return "async+redis://127.0.0.1:6379/7"


async def test_replicas_sharing_a_redis_store_share_the_limit():
    config = settings(RATE_LIMIT_STORAGE_URI=redis_url())
    replica_1, replica_2 = an_app(config), an_app(config)
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.9"   # fresh counters each run
    async with client(replica_1, address) as first, client(replica_2, address) as second:
        assert (await first.post("/api/v1/auth/login")).status_code == 401
        assert (await second.post("/api/v1/auth/login")).status_code == 401
        assert (await first.post("/api/v1/auth/login")).status_code == 401
        assert (await second.post("/api/v1/auth/login")).status_code == 429


async def test_a_dead_store_lets_requests_through_and_is_counted():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    app = an_app(settings(RATE_LIMIT_STORAGE_URI=f"async+redis://127.0.0.1:{closed_port}/0"))
    before = STORE_ERRORS._value.get()
    async with client(app) as http:
        assert [(await http.post("/api/v1/auth/login")).status_code for _ in range(5)] == [401] * 5
    assert STORE_ERRORS._value.get() == before + 5    # the check of each attempt failed


def test_the_gateway_limits_between_its_observability_and_idempotency_layers():
    from gateway.app import create_app
    from gateway.idempotency import IdempotencyMiddleware

    stack = [m.cls.__name__ for m in create_app().user_middleware]   # outermost first
    assert stack.index("ObservabilityMiddleware") < stack.index(RateLimitMiddleware.__name__) \
        < stack.index(IdempotencyMiddleware.__name__)

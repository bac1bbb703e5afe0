"""The FastAPI gateway: the only HTTP surface of the platform."""
import asyncio
import logging
import threading
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from svc_common.context import correlation_id_var
from svc_common.db import Database
from svc_common.metrics import HTTP_LATENCY
from svc_common.outbox import OutboxRelay
from svc_common.rpc_client import RpcClient
from svc_common.settings import get_settings
from svc_common.startup import freeze_startup_objects

from . import portal, problems
from .api_keys import ApiKeyCache
from .auth import CACHED_ACCOUNTS, AccountCheck, principal_from_token
from .idempotency import IdempotencyMiddleware
from .rate_limit import RateLimitMiddleware
from .models import PLATFORM
from .routes import all_routers
from .settings import get_gateway_settings

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")
SERVICES = ("tickets", "inventory", "customers", "notify", "reports")


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    get_gateway_settings()  # fail fast on a missing JWT_SECRET
    app.state.db = Database(settings.database_url, PLATFORM)
    app.state.account_check = AccountCheck(get_gateway_settings().account_recheck_seconds)
    app.state.api_keys = ApiKeyCache(get_gateway_settings().account_recheck_seconds, max_keys=CACHED_ACCOUNTS)
    app.state.rpc = RpcClient(settings.amqp_uri, timeout=settings.rpc_timeout_seconds)
    async for attempt in AsyncRetrying(stop=stop_after_delay(60), wait=wait_fixed(1), reraise=True,
                                       retry=retry_if_exception_type(OSError)):
        with attempt:  # the broker may still be starting (compose, k8s)
            await app.state.rpc.connect()
    freeze_startup_objects()  # what is loaded now lives as long as the process: out of the GC's walks
    # The accounts outbox (user.* events) is published by a relay thread beside the app.
    relay = OutboxRelay(app.state.db, settings.amqp_uri, "gateway", poll_seconds=settings.outbox_poll_seconds)
    stopping = threading.Event()
    thread = threading.Thread(target=relay.run_forever, args=(stopping,), name="outbox-relay", daemon=True)
    thread.start()
    yield
    stopping.set()
    app.state.db.outbox_written.set()
    thread.join(timeout=10)
    relay.close()
    await app.state.rpc.close()
    app.state.db.dispose()


class ObservabilityMiddleware:
    """Correlation id (taken from X-Correlation-ID or made) for logs, RPC and events; latency metric."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope["headers"]).get(b"x-correlation-id", b"").decode("latin-1")[:100]
        correlation_id = incoming or uuid.uuid4().hex
        correlation_id_var.set(correlation_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-correlation-id", correlation_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            HTTP_LATENCY.labels(scope["method"], route, status).observe(elapsed)
            if route not in ("/healthz", "/readyz", "/metrics"):  # probes and scrapes would drown the log
                access_log.info("request", extra={"method": scope["method"], "path": scope["path"],
                                                  "status": status, "duration_ms": round(elapsed * 1000, 1)})


def create_app() -> FastAPI:
    app = FastAPI(
        title="After-sales field-service platform API",
        version="1.0.0",
        description="Work orders, dispatch, spare parts, customers and equipment, notifications, reports. "
                    "Errors are RFC 9457 problem+json; POST accepts an Idempotency-Key.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RateLimitMiddleware, authenticate=lambda token: principal_from_token(app.state, token))
    app.add_middleware(ObservabilityMiddleware)  # outermost: sees every request

    for router in all_routers():
        app.include_router(router, prefix="/api/v1")
    app.include_router(portal.router)  # public pages (QR scan), outside the API

    @app.get("/healthz", tags=["ops"], summary="The process is up")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="The broker and every service answer")
    async def readyz(request: Request):
        timeout = get_gateway_settings().readiness_timeout_seconds
        client: RpcClient = request.app.state.rpc

        async def ping(name: str) -> bool:
            try:
                await client.call(name, "ping", timeout=timeout)
                return True
            except Exception:
                return False

        results = dict(zip(SERVICES, await asyncio.gather(*(ping(s) for s in SERVICES))))
        ok = client.connected and all(results.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "broker": client.connected,
                             "services": results}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics():
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


app = create_app()

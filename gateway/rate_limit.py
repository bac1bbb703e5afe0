"""Rate limits at the edge (the `limits` library, sliding-window counters).

Who is counted:
- failed logins (`POST /api/v1/auth/login` answered 401) per client address — slows password
  guessing, while successful logins (a seeding script, a shift change at one office) cost nothing;
- a caller with a valid bearer token per user (or per API key), and their company as a whole —
  one tenant's integration cannot starve the others;
- anything else (no or an invalid token) per client address.

Counters live in this process (`async+memory://`) unless RATE_LIMIT_STORAGE_URI names a shared
store (`async+redis://host:6379/0`), which makes the limits hold across gateway replicas. If the
shared store is down, requests pass (and `rate_limit_store_errors_total` counts it): the limits
protect the platform, an outage of their store must not become an outage of the API.
"""
import functools
import json
import logging
import math
import os
import time

import limits
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import Counter

from .settings import DEFAULT_STORAGE_URI, GatewaySettings, get_gateway_settings

log = logging.getLogger(__name__)

RATE_LIMITED = Counter("rate_limited_total", "Requests refused with 429, by what was limited", ["limit"])
STORE_ERRORS = Counter("rate_limit_store_errors_total", "Rate-limit checks skipped because the store failed")

LOGIN_PATH = "/api/v1/auth/login"


class RateLimitMiddleware:
    """Pure ASGI, before routing: a refused request costs no RPC and no database work."""

    def __init__(self, app, authenticate, settings: GatewaySettings | None = None):
        """`authenticate(token)` → the caller (with `user_id`, `tenant_id`) of a valid token, else None.
        The caller is left in the request's state, so authentication does not run twice."""
        self.app = app
        settings = settings or get_gateway_settings()
        self.authenticate = authenticate
        self.limiter = SlidingWindowCounterRateLimiter(storage(settings.rate_limit_storage_uri))
        self.rules = {name: limits.parse(value) if value else None for name, value in {
            "login": settings.rate_limit_login, "user": settings.rate_limit_user,
            "tenant": settings.rate_limit_tenant, "anonymous": settings.rate_limit_anonymous}.items()}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            return await self.app(scope, receive, send)
        if scope["path"] == LOGIN_PATH and scope["method"] == "POST":
            return await self.login(scope, receive, send)
        for limit_name, key in self.counted_as(scope):
            rule = self.rules[limit_name]
            if rule is None:
                continue
            try:
                allowed = await self.limiter.hit(rule, limit_name, key)
                if not allowed:
                    reset_at = (await self.limiter.get_window_stats(rule, limit_name, key)).reset_time
            except Exception:  # noqa: BLE001 — a broken store must not take the API down with it
                STORE_ERRORS.inc()
                log.warning("rate-limit store failed; request let through", exc_info=True)
                break
            if not allowed:
                RATE_LIMITED.labels(limit_name).inc()
                return await refuse(send, limit_name, rule, max(1, math.ceil(reset_at - time.time())))
        return await self.app(scope, receive, send)

    async def login(self, scope, receive, send):
        """Refused while the address has used up its failures; a 401 answer counts as one."""
        rule, client = self.rules["login"], client_address(scope)
        if rule is None:
            return await self.app(scope, receive, send)
        try:
            if not await self.limiter.test(rule, "login", client):
                reset_at = (await self.limiter.get_window_stats(rule, "login", client)).reset_time
                RATE_LIMITED.labels("login").inc()
                return await refuse(send, "login", rule, max(1, math.ceil(reset_at - time.time())))
        except Exception:  # noqa: BLE001 — see __call__
            STORE_ERRORS.inc()
            log.warning("rate-limit store failed; login let through", exc_info=True)
            return await self.app(scope, receive, send)
        status = 0

        async def watch(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        if status == 401:
            try:
                await self.limiter.hit(rule, "login", client)
            except Exception:  # noqa: BLE001
                STORE_ERRORS.inc()

    def counted_as(self, scope) -> list[tuple[str, str]]:
        client = client_address(scope)
        token = bearer_token(scope)
        caller = self.authenticate(token) if token else None
        if caller is None:
            return [("anonymous", client)]
        scope.setdefault("state", {})["principal"] = caller
        return [("user", f"caller:{caller.user_id}"), ("tenant", f"tenant:{caller.tenant_id}")]


@functools.cache
def storage(uri: str):
    """One counter store per URI for the process: the edge limits and the routes' own share it."""
    options = {"implementation": "redispy"} if "redis" in uri else {}
    return limits.storage.storage_from_string(uri, **options)


class RouteLimit:
    """A limit a route applies itself, e.g. a public form: `amount` hits per `seconds` per key,
    counted in the same store as the edge limits (so shared across replicas with Redis)."""

    def __init__(self, name: str, amount: int, seconds: int):
        self.name, self.item = name, limits.RateLimitItemPerSecond(amount, seconds)
        self._limiter = None

    async def allow(self, key: str) -> tuple[bool, int]:
        """(allowed, seconds to wait when not)."""
        if self._limiter is None:  # on first use: the store is made inside the running event loop
            # the env var directly: a public page's limit must not need the gateway's secrets configured
            uri = os.environ.get("RATE_LIMIT_STORAGE_URI", DEFAULT_STORAGE_URI)
            self._limiter = SlidingWindowCounterRateLimiter(storage(uri))
        limiter = self._limiter
        try:
            if await limiter.hit(self.item, self.name, key):
                return True, 0
            reset_at = (await limiter.get_window_stats(self.item, self.name, key)).reset_time
        except Exception:  # noqa: BLE001 — as in RateLimitMiddleware: fail open, counted
            STORE_ERRORS.inc()
            return True, 0
        RATE_LIMITED.labels(self.name).inc()
        return False, max(1, math.ceil(reset_at - time.time()))


def client_address(scope) -> str:
    return (scope.get("client") or ("unknown", 0))[0]


def bearer_token(scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


async def refuse(send, limit_name: str, rule, retry_after: int) -> None:
    body = json.dumps({
        "type": "about:blank", "title": "Too Many Requests", "status": 429,
        "detail": f"rate limit exceeded ({limit_name}: {rule.amount} per {rule.multiples} {rule.GRANULARITY.name})",
        "limit": limit_name,
    }, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode())]})
    await send({"type": "http.response.body", "body": body})

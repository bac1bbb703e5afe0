"""Rate limits at the edge (the `limits` library, sliding-window counters).

Who is counted:
- `POST /api/v1/auth/login` per client address — slows password guessing;
- a caller with a valid bearer token per user (or per API key), and their company as a whole —
  one tenant's integration cannot starve the others;
- anything else (no or an invalid token) per client address.

Counters live in this process (`async+memory://`) unless RATE_LIMIT_STORAGE_URI names a shared
store (`async+redis://host:6379/0`), which makes the limits hold across gateway replicas. If the
shared store is down, requests pass (and `rate_limit_store_errors_total` counts it): the limits
protect the platform, an outage of their store must not become an outage of the API.
"""
import json
import logging
import math
import time

import limits
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import Counter

from .settings import GatewaySettings, get_gateway_settings

log = logging.getLogger(__name__)

RATE_LIMITED = Counter("rate_limited_total", "Requests refused with 429, by what was limited", ["limit"])
STORE_ERRORS = Counter("rate_limit_store_errors_total", "Rate-limit checks skipped because the store failed")

LOGIN_PATH = "/api/v1/auth/login"


class RateLimitMiddleware:
    """Pure ASGI, before routing: a refused request costs no RPC and no database work."""

    def __init__(self, app, authenticate, settings: GatewaySettings | None = None):
        """`authenticate(token)` → (caller key, tenant key) for a valid token, else None."""
        self.app = app
        settings = settings or get_gateway_settings()
        self.authenticate = authenticate
        options = {"implementation": "redispy"} if "redis" in settings.rate_limit_storage_uri else {}
        self.limiter = SlidingWindowCounterRateLimiter(
            limits.storage.storage_from_string(settings.rate_limit_storage_uri, **options))
        self.rules = {name: limits.parse(value) if value else None for name, value in {
            "login": settings.rate_limit_login, "user": settings.rate_limit_user,
            "tenant": settings.rate_limit_tenant, "anonymous": settings.rate_limit_anonymous}.items()}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            return await self.app(scope, receive, send)
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

    def counted_as(self, scope) -> list[tuple[str, str]]:
        client = (scope.get("client") or ("unknown", 0))[0]
        if scope["path"] == LOGIN_PATH and scope["method"] == "POST":
            return [("login", client)]
        token = bearer_token(scope)
        keys = self.authenticate(token) if token else None
        if keys is None:
            return [("anonymous", client)]
        caller, tenant = keys
        return [("user", caller), ("tenant", tenant)]


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

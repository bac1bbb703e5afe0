"""Passwords (argon2id), bearer tokens (JWT, HS256, expiring) and the caller (Principal)."""
import datetime as dt
import threading
import uuid
from dataclasses import dataclass

import jwt
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cachetools import TTLCache
from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from svc_common.context import RequestContext, correlation_id_var
from svc_common.db import utcnow

from . import api_keys
from .models import User
from .settings import get_gateway_settings, key_id

_hasher = PasswordHasher()
_bearer = HTTPBearer(auto_error=False)
CACHED_ACCOUNTS = 100_000  # users (and API keys) whose check is remembered at once, per gateway process


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: str
    username: str
    locale: str = "zh-CN"

    def context(self) -> RequestContext:
        return RequestContext(tenant_id=self.tenant_id, actor_id=self.user_id, actor_role=self.role,
                              correlation_id=correlation_id_var.get(), locale=self.locale)


def issue_token(user, locale: str) -> tuple[str, dt.datetime]:
    settings = get_gateway_settings()
    expires = utcnow() + dt.timedelta(minutes=settings.token_ttl_minutes)
    claims = {"sub": str(user.id), "tid": str(user.tenant_id), "role": user.role, "usr": user.username,
              "loc": locale, "exp": expires, "iat": utcnow()}
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256",
                      headers={"kid": key_id(settings.jwt_secret)}), expires


def decode_token(token: str) -> Principal | None:
    try:
        secrets = get_gateway_settings().verification_secrets()
        # Tokens from before key ids existed carry none: they can only be the current secret's.
        kid = jwt.get_unverified_header(token).get("kid")
        secret = secrets.get(kid) if kid else get_gateway_settings().jwt_secret
        if secret is None:
            return None
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub", "tid"]})
        return Principal(uuid.UUID(claims["sub"]), uuid.UUID(claims["tid"]), claims["role"], claims["usr"],
                         claims.get("loc", "zh-CN"))
    except (jwt.PyJWTError, KeyError, ValueError):
        return None


class AccountCheck:
    """Whether a token's user still exists, is active and has the token's role — so deactivating a
    user or changing their role ends their old tokens within `recheck_seconds`, not at expiry.
    Answers are cached per user (bounded: the least recently used are dropped beyond
    CACHED_ACCOUNTS) to keep the database off the hot path."""

    def __init__(self, recheck_seconds: float):
        self._cache: TTLCache = TTLCache(maxsize=CACHED_ACCOUNTS, ttl=recheck_seconds)
        self._lock = threading.Lock()  # TTLCache is not thread-safe; the pool's threads share it

    def still_valid(self, db, principal: Principal) -> bool:
        key = (principal.user_id, principal.role)  # per role: a new token after a role change is not the old one
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        with db.session(principal.tenant_id) as session:
            row = session.execute(sa.select(User.active, User.role).where(User.id == principal.user_id)).first()
        valid = row is not None and row.active and row.role == principal.role
        with self._lock:
            self._cache[key] = valid
        return valid


def principal_from_token(state, token: str) -> Principal | None:
    """The caller behind a bearer token — a user's JWT or an integration's API key — if it is
    still valid (`state` is the app's: db, account_check, api_keys)."""
    if api_keys.parse_token(token):
        key = state.api_keys.lookup(state.db, token)
        return None if key is None else Principal(key.id, key.tenant_id, key.role, f"api-key:{key.name}")
    principal = decode_token(token)
    if principal is None or not state.account_check.still_valid(state.db, principal):
        return None
    return principal


async def current_principal(request: Request,
                            credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    # Async: FastAPI runs a plain `def` dependency on its thread pool, a hand-off per request that cost
    # more than the work. RateLimitMiddleware has usually checked the token already; only without it
    # is the account looked up here, on the pool (it may read the database).
    principal = getattr(request.state, "principal", None)
    if principal is None and credentials:
        principal = await run_in_threadpool(principal_from_token, request.app.state, credentials.credentials)
    if principal is None:
        raise HTTPException(401, "missing, invalid or expired bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = principal
    return principal


def require_roles(*roles: str):
    """Coarse role gate at the edge; services apply their own business rules too."""
    async def check(principal: Principal = Depends(current_principal)) -> Principal:
        if principal.role not in roles:
            raise HTTPException(403, f"requires one of the roles: {', '.join(roles)}")
        return principal
    return check

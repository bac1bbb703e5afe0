"""Passwords (argon2id), bearer tokens (JWT, HS256, expiring) and the caller (Principal)."""
import datetime as dt
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from svc_common.context import RequestContext, correlation_id_var
from svc_common.db import utcnow

from .settings import get_gateway_settings

_hasher = PasswordHasher()
_bearer = HTTPBearer(auto_error=False)


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
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256"), expires


def decode_token(token: str) -> Principal | None:
    try:
        claims = jwt.decode(token, get_gateway_settings().jwt_secret, algorithms=["HS256"],
                            options={"require": ["exp", "sub", "tid"]})
        return Principal(uuid.UUID(claims["sub"]), uuid.UUID(claims["tid"]), claims["role"], claims["usr"],
                         claims.get("loc", "zh-CN"))
    except (jwt.PyJWTError, KeyError, ValueError):
        return None


def current_principal(request: Request,
                      credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    principal = decode_token(credentials.credentials) if credentials else None
    if principal is None:
        raise HTTPException(401, "missing, invalid or expired bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = principal
    return principal


def require_roles(*roles: str):
    """Coarse role gate at the edge; services apply their own business rules too."""
    def check(principal: Principal = Depends(current_principal)) -> Principal:
        if principal.role not in roles:
            raise HTTPException(403, f"requires one of the roles: {', '.join(roles)}")
        return principal
    return check

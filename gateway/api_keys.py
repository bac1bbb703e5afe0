"""API keys for integrations (ERP, call center, BI): a company's admin issues a key with a role;
the integration sends it as `Authorization: Bearer fsp_<prefix>_<secret>`.

The secret is shown once, at creation; the gateway keeps only its SHA-256 (a 256-bit random
secret needs no slow hash). The prefix is public: it finds the key, appears in lists and logs,
and is what the rate limits count.
"""
import datetime as dt
import hashlib
import hmac
import secrets
import threading
import uuid

import sqlalchemy as sa
from cachetools import TTLCache
from sqlalchemy.orm import Mapped, mapped_column

from svc_common.db import Database, TenantScoped, UTCDateTime, new_id, utcnow
from svc_common.errors import NotFound, ValidationFailed
from svc_common.uow import UnitOfWork

from .models import ROLES, Base

TOKEN_PREFIX = "fsp_"


class ApiKey(TenantScoped, Base):
    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(100))
    role: Mapped[str] = mapped_column(sa.String(40))
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    secret_sha256: Mapped[str] = mapped_column(sa.String(64))
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    def usable(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(uow: UnitOfWork, name: str, role: str, expires_at: dt.datetime | None) -> tuple[ApiKey, str]:
    """The new key and its full token (never stored, never shown again)."""
    if role not in ROLES:
        raise ValidationFailed("unknown role", [{"field": "role", "message": f"one of {', '.join(ROLES)}"}])
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationFailed("expiry in the past", [{"field": "expires_at", "message": "must be in the future"}])
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    key = ApiKey(name=name, role=role, prefix=prefix, secret_sha256=_digest(secret),
                 created_by=uow.ctx.actor_id, expires_at=expires_at)
    uow.session.add(key)
    uow.session.flush()
    return key, f"{TOKEN_PREFIX}{prefix}_{secret}"


def list_keys(uow: UnitOfWork) -> list[ApiKey]:
    return list(uow.session.scalars(sa.select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def revoke_key(uow: UnitOfWork, key_id: uuid.UUID) -> ApiKey:
    key = uow.session.get(ApiKey, key_id)
    if key is None or key.tenant_id != uow.ctx.tenant_id:
        raise NotFound("api key not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def parse_token(token: str) -> tuple[str, str] | None:
    """(prefix, secret) of something shaped like an API key, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    prefix, _, secret = token.removeprefix(TOKEN_PREFIX).partition("_")
    return (prefix, secret) if prefix and secret else None


class ApiKeyCache:
    """Valid keys by token digest, re-read after `recheck_seconds` so a revoked or expired key stops
    working within that time on every replica, without a database read per request."""

    def __init__(self, recheck_seconds: float, max_keys: int):
        self._entries: TTLCache = TTLCache(maxsize=max_keys, ttl=recheck_seconds)
        self._lock = threading.Lock()  # TTLCache is not thread-safe

    def lookup(self, db: Database, token: str) -> ApiKey | None:
        parsed = parse_token(token)
        if parsed is None:
            return None
        prefix, secret = parsed
        digest = _digest(secret)
        with self._lock:
            key = self._entries.get(digest)
        if key is None:
            # Platform read: the key is what tells us the tenant.
            with db.session(None) as session:
                key = session.scalars(sa.select(ApiKey).where(ApiKey.prefix == prefix)).first()
                if key is not None:
                    session.expunge(key)
            if key is None or not hmac.compare_digest(key.secret_sha256, digest):
                return None  # misses are not cached: made-up tokens must not fill memory
            with self._lock:
                self._entries[digest] = key
        return key if key.usable(utcnow()) else None

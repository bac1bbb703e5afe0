"""Accounts: companies, users, login. The gateway owns these; tickets keeps a roster from user.* events."""
import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from svc_common.context import RequestContext
from svc_common.contracts import UserV1
from svc_common.db import Database
from svc_common.errors import Conflict, ValidationFailed, field_error
from svc_common.uow import UnitOfWork

from .auth import hash_password, verify_password
from .models import Tenant, User
from .schemas import TenantIn, UserIn

# A real hash to compare against when the user does not exist (same timing either way).
_DUMMY_HASH = hash_password("not-a-real-password")


def _user_event(user: User) -> UserV1:
    return UserV1(user_id=user.id, name=user.name, username=user.username, role=user.role,
                  phone=user.phone, email=user.email, active=user.active)


def _check_timezone(tz: str) -> None:
    import zoneinfo
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise field_error("timezone", "unknown IANA time zone") from None


def create_tenant(db: Database, data: TenantIn, correlation_id: str | None) -> tuple[Tenant, User]:
    _check_timezone(data.timezone)
    tenant_id = uuid.uuid4()
    admin_id = uuid.uuid4()
    ctx = RequestContext(tenant_id=tenant_id, actor_id=admin_id, actor_role="admin", correlation_id=correlation_id)
    try:
        with UnitOfWork(db, ctx) as uow:
            tenant = Tenant(id=tenant_id, code=data.code, name=data.name, timezone=data.timezone, locale=data.locale)
            uow.session.add(tenant)
            uow.session.flush()
            admin = User(id=admin_id, username=data.admin.username, name=data.admin.name, role="admin",
                         phone=data.admin.phone, password_hash=hash_password(data.admin.password))
            uow.session.add(admin)
            uow.session.flush()
            uow.emit("user.created", _user_event(admin))
    except IntegrityError:
        raise Conflict(f"company code {data.code} is taken", [{"field": "code", "message": "already taken"}]) from None
    return tenant, admin


def authenticate(db: Database, tenant_code: str, username: str, password: str) -> tuple[User, Tenant] | None:
    with db.session(None) as session:
        tenant = session.scalar(sa.select(Tenant).where(Tenant.code == tenant_code))
        user = session.scalar(sa.select(User).where(User.tenant_id == tenant.id, User.username == username)) \
            if tenant else None
        if user is None:
            verify_password(_DUMMY_HASH, password)
            return None
        if not verify_password(user.password_hash, password) or not user.active:
            return None
        return user, tenant


def create_user(uow: UnitOfWork, data: UserIn) -> User:
    if uow.session.scalar(sa.select(User.id).where(User.username == data.username)):
        raise Conflict(f"username {data.username} is taken", [{"field": "username", "message": "already taken"}])
    user = User(username=data.username, name=data.name, role=data.role, phone=data.phone, email=data.email,
                password_hash=hash_password(data.password))
    uow.session.add(user)
    uow.session.flush()
    uow.emit("user.created", _user_event(user))
    return user


def get_user(uow: UnitOfWork, user_id: uuid.UUID) -> User:
    return uow.get_or_404(User, user_id, "user_id", "user")


def list_users(uow: UnitOfWork, role: str | None) -> list[User]:
    query = sa.select(User).order_by(User.created_at, User.id)
    if role:
        query = query.where(User.role == role)
    return list(uow.session.scalars(query))


def deactivate_user(uow: UnitOfWork, user_id: uuid.UUID) -> User:
    user = get_user(uow, user_id)
    if user.id == uow.ctx.actor_id:
        raise ValidationFailed("an admin cannot deactivate themselves", [{"field": "user_id", "message": "yourself"}])
    if user.active:
        user.active = False
        uow.session.flush()
        uow.emit("user.deactivated", _user_event(user))
    return user

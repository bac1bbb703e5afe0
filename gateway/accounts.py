"""Accounts: companies, users, login. The gateway owns these; tickets keeps a roster from user.* events."""
import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from svc_common.context import RequestContext
from svc_common.contracts import TeamUpdatedV1, UserV1
from svc_common.db import Database
from svc_common.errors import Conflict, ValidationFailed, field_error
from svc_common.uow import UnitOfWork

from .auth import hash_password, verify_password
from .models import Team, Tenant, User
from .schemas import TeamIn, TeamPatch, TenantIn, UserIn, UserPatch

# A real hash to compare against when the user does not exist (same timing either way).
_DUMMY_HASH = hash_password("not-a-real-password")


def _user_event(user: User, team_ids: list | None = None) -> UserV1:
    return UserV1(user_id=user.id, name=user.name, username=user.username, role=user.role,
                  phone=user.phone, email=user.email, active=user.active, team_ids=team_ids or [],
                  skills=user.skills or [], areas=user.areas or [])


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
                password_hash=hash_password(data.password), skills=list(data.skills), areas=list(data.areas))
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
        uow.emit("user.deactivated", _user_event(user, _team_ids_of(uow, user.id)))
    return user


def update_user(uow: UnitOfWork, user_id: uuid.UUID, data: UserPatch) -> User:
    user = get_user(uow, user_id)
    for name in ("name", "phone", "email", "skills", "areas"):
        value = getattr(data, name)
        if value is not None:
            setattr(user, name, list(value) if isinstance(value, list) else value)
    uow.session.flush()
    uow.emit("user.updated", _user_event(user, _team_ids_of(uow, user.id)))
    return user


# -- teams, branches (网点), centres, external teams ------------------------------------------------

def _team_ids_of(uow: UnitOfWork, user_id: uuid.UUID) -> list[uuid.UUID]:
    return [t.id for t in uow.session.scalars(sa.select(Team)) if str(user_id) in (t.member_ids or [])]


def _team_event(team: Team) -> TeamUpdatedV1:
    return TeamUpdatedV1(team_id=team.id, name=team.name, parent_id=team.parent_id, kind=team.kind,
                         member_ids=team.member_ids, manager_ids=team.manager_ids, active=team.active)


def _check_people(uow: UnitOfWork, ids: list[uuid.UUID], field: str) -> list[str]:
    known = {u for u in uow.session.scalars(sa.select(User.id).where(User.id.in_(ids)))} if ids else set()
    for i, user_id in enumerate(ids):
        if user_id not in known:
            raise field_error(f"{field}.{i}", "no such user")
    return [str(u) for u in dict.fromkeys(ids)]


def _check_parent(uow: UnitOfWork, team_id: uuid.UUID | None, parent_id: uuid.UUID | None) -> None:
    """The parent exists and the hierarchy stays a tree (no team under itself)."""
    seen = {team_id}
    current = parent_id
    while current is not None:
        if current in seen:
            raise field_error("parent_id", "would make a cycle")
        seen.add(current)
        parent = uow.session.get(Team, current)
        if parent is None or parent.tenant_id != uow.ctx.tenant_id:
            raise field_error("parent_id", "no such team")
        current = parent.parent_id


def create_team(uow: UnitOfWork, data: TeamIn) -> Team:
    if uow.session.scalar(sa.select(Team.id).where(Team.name == data.name)):
        raise Conflict(f"team {data.name} exists", [{"field": "name", "message": "already taken"}])
    team = Team(id=uuid.uuid4(), name=data.name, kind=data.kind)
    _check_parent(uow, team.id, data.parent_id)
    team.parent_id = data.parent_id
    team.member_ids = _check_people(uow, data.member_ids, "member_ids")
    team.manager_ids = _check_people(uow, data.manager_ids, "manager_ids")
    uow.session.add(team)
    uow.session.flush()
    uow.emit("team.updated", _team_event(team))
    return team


def update_team(uow: UnitOfWork, team_id: uuid.UUID, data: TeamPatch) -> Team:
    team = get_team(uow, team_id)
    if data.name is not None and data.name != team.name:
        if uow.session.scalar(sa.select(Team.id).where(Team.name == data.name)):
            raise Conflict(f"team {data.name} exists", [{"field": "name", "message": "already taken"}])
        team.name = data.name
    if "parent_id" in data.model_fields_set:
        _check_parent(uow, team.id, data.parent_id)
        team.parent_id = data.parent_id
    if data.member_ids is not None:
        team.member_ids = _check_people(uow, data.member_ids, "member_ids")
    if data.manager_ids is not None:
        team.manager_ids = _check_people(uow, data.manager_ids, "manager_ids")
    if data.active is not None:
        team.active = data.active
    uow.session.flush()
    uow.emit("team.updated", _team_event(team))
    return team


def get_team(uow: UnitOfWork, team_id: uuid.UUID) -> Team:
    return uow.get_or_404(Team, team_id, "team_id", "team")


def list_teams(uow: UnitOfWork, parent_id: uuid.UUID | None = None, kind: str | None = None) -> list[Team]:
    query = sa.select(Team).order_by(Team.name, Team.id)
    if parent_id:
        query = query.where(Team.parent_id == parent_id)
    if kind:
        query = query.where(Team.kind == kind)
    return list(uow.session.scalars(query))

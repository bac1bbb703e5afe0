"""The gateway's own tables: tenants (companies), users, idempotency records."""
import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from svc_common.db import TenantScoped, UTCDateTime, new_id, platform_tables, utcnow


class Base(DeclarativeBase):
    pass


PLATFORM = platform_tables(Base.metadata)

ROLES = ("admin", "dispatcher", "technician", "warehouse_manager")


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(sa.String(40), unique=True)  # typed at login (企业编码)
    name: Mapped[str] = mapped_column(sa.String(200))
    timezone: Mapped[str] = mapped_column(sa.String(60), default="Asia/Shanghai")
    locale: Mapped[str] = mapped_column(sa.String(10), default="zh-CN")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(TenantScoped, Base):
    __tablename__ = "users"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "username", name="uq_user_username"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(sa.String(60))
    name: Mapped[str] = mapped_column(sa.String(100))
    role: Mapped[str] = mapped_column(sa.String(40))
    phone: Mapped[str | None] = mapped_column(sa.String(30))
    email: Mapped[str | None] = mapped_column(sa.String(200))
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    active: Mapped[bool] = mapped_column(default=True)
    # What automatic dispatch matches on: skills / product lines, and service areas.
    skills: Mapped[list] = mapped_column(sa.JSON, default=list)
    areas: Mapped[list] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Team(TenantScoped, Base):
    """A team, a branch (网点) under a service centre, a centre, or an external (委外) team.
    parent_id makes the hierarchy: centre → branch → sub-branch."""
    __tablename__ = "teams"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_team_name"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(20))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("teams.id"))
    member_ids: Mapped[list] = mapped_column(sa.JSON, default=list)
    manager_ids: Mapped[list] = mapped_column(sa.JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyRecord(TenantScoped, Base):
    """First result of a POST sent with an Idempotency-Key; a retry gets it back."""
    __tablename__ = "idempotency_records"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "user_id", "key", name="uq_idempotency_key"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    key: Mapped[str] = mapped_column(sa.String(200))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int | None]
    response_body: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

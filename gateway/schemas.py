"""Request bodies owned by the gateway (accounts). Other bodies are the services' own schemas."""
import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import EmailStr, Field, StringConstraints

from svc_common.validation import OutSchema, Schema

Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{2,60}$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=200)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=60)]
Role = Literal["admin", "dispatcher", "technician", "warehouse_manager"]


class UserIn(Schema):
    username: Username
    password: Password
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    role: Role
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 \-]{4,19}$")] | None = None
    email: EmailStr | None = None
    skills: list[Tag] = Field(default_factory=list, max_length=50)
    areas: list[Tag] = Field(default_factory=list, max_length=50)


class UserPatch(Schema):
    """What an admin may change on a user (skills and areas feed automatic dispatch)."""
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 \-]{4,19}$")] | None = None
    email: EmailStr | None = None
    skills: list[Tag] | None = Field(None, max_length=50)
    areas: list[Tag] | None = Field(None, max_length=50)


TeamKind = Literal["team", "branch", "center", "external"]


class TeamIn(Schema):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    kind: TeamKind = "team"
    parent_id: uuid.UUID | None = None
    member_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)
    manager_ids: list[uuid.UUID] = Field(default_factory=list, max_length=50)


class TeamPatch(Schema):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    parent_id: uuid.UUID | None = None
    member_ids: list[uuid.UUID] | None = Field(None, max_length=1000)
    manager_ids: list[uuid.UUID] | None = Field(None, max_length=50)
    active: bool | None = None


class TeamOut(OutSchema):
    id: uuid.UUID
    name: str
    kind: str
    parent_id: uuid.UUID | None
    member_ids: list[uuid.UUID]
    manager_ids: list[uuid.UUID]
    active: bool
    created_at: dt.datetime


class AdminIn(Schema):
    username: Username
    password: Password
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    phone: str | None = None


class TenantIn(Schema):
    code: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9\-]{1,39}$")]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    timezone: str = "Asia/Shanghai"
    locale: Literal["zh-CN", "en"] = "zh-CN"
    admin: AdminIn


class LoginIn(Schema):
    tenant: str = Field(description="company code (企业编码)")
    username: str
    password: str


class UserOut(OutSchema):
    id: uuid.UUID
    tenant_id: uuid.UUID
    username: str
    name: str
    role: str
    phone: str | None
    email: str | None
    active: bool
    skills: list[str] = []
    areas: list[str] = []
    created_at: dt.datetime


class TokenOut(OutSchema):
    access_token: str
    token_type: str = "bearer"
    expires_at: dt.datetime
    user: UserOut

"""Companies, users and login."""
import uuid

from fastapi import APIRouter, Depends, HTTPException, Request

from svc_common.context import correlation_id_var
from svc_common.uow import UnitOfWork
from svc_common.validation import dump

from .. import accounts
from ..auth import Principal, current_principal, issue_token, require_roles
from ..schemas import LoginIn, TenantIn, TokenOut, UserIn, UserOut, UserPatch
from ..settings import get_gateway_settings

router = APIRouter(tags=["accounts"])


@router.post("/tenants", status_code=201, summary="Sign up a company with its first admin")
def create_tenant(body: TenantIn, request: Request):
    if not get_gateway_settings().allow_signup:
        raise HTTPException(403, "company sign-up is disabled")
    tenant, admin = accounts.create_tenant(request.app.state.db, body, correlation_id_var.get())
    return {"tenant": {"id": str(tenant.id), "code": tenant.code, "name": tenant.name, "timezone": tenant.timezone},
            "admin": dump(UserOut, admin)}


@router.post("/auth/login", response_model=TokenOut, summary="Log in; returns a bearer token")
def login(body: LoginIn, request: Request):
    found = accounts.authenticate(request.app.state.db, body.tenant, body.username, body.password)
    if found is None:
        raise HTTPException(401, "wrong company, username or password")
    user, tenant = found
    token, expires = issue_token(user, tenant.locale)
    return {"access_token": token, "expires_at": expires, "user": dump(UserOut, user)}


@router.get("/users/me", response_model=UserOut)
def me(request: Request, principal: Principal = Depends(current_principal)):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        return dump(UserOut, accounts.get_user(uow, principal.user_id))


@router.post("/users", status_code=201, response_model=UserOut)
def create_user(body: UserIn, request: Request, principal: Principal = Depends(require_roles("admin"))):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        return dump(UserOut, accounts.create_user(uow, body))


@router.get("/users", response_model=dict)
def list_users(request: Request, role: str | None = None,
               principal: Principal = Depends(require_roles("admin", "dispatcher", "warehouse_manager"))):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        users = accounts.list_users(uow, role)
        return {"items": [dump(UserOut, u) for u in users], "total": len(users)}


@router.get("/users/{user_id}", response_model=UserOut)
def get_user(user_id: uuid.UUID, request: Request, principal: Principal = Depends(current_principal)):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        return dump(UserOut, accounts.get_user(uow, user_id))


@router.post("/users/{user_id}/deactivate", response_model=UserOut)
def deactivate_user(user_id: uuid.UUID, request: Request, principal: Principal = Depends(require_roles("admin"))):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        return dump(UserOut, accounts.deactivate_user(uow, user_id))


@router.patch("/users/{user_id}", response_model=UserOut, summary="Change a user's name, contact, skills or areas")
def update_user(user_id: uuid.UUID, body: UserPatch, request: Request,
                principal: Principal = Depends(require_roles("admin"))):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        return dump(UserOut, accounts.update_user(uow, user_id, body))

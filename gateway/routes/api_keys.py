"""API keys for integrations: an admin issues, lists and revokes them."""
import datetime as dt
import uuid

from fastapi import APIRouter, Depends, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from svc_common.uow import UnitOfWork

from .. import api_keys
from ..auth import Principal, require_roles
from ..schemas import Role

router = APIRouter(tags=["api keys"])


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, description="What the key is for, e.g. 'ERP sync'")
    role: Role = Field(description="The key acts with this role's rights")
    expires_at: AwareDatetime | None = None


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    role: str
    prefix: str
    created_by: uuid.UUID | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="Send as `Authorization: Bearer <key>`. Shown only in this response.")


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated, summary="Issue an API key (shown once)")
def create_api_key(body: ApiKeyIn, request: Request, principal: Principal = Depends(require_roles("admin"))):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        key, token = api_keys.create_key(uow, body.name, body.role, body.expires_at)
        return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=token)


@router.get("/api-keys", response_model=dict, summary="The company's API keys (never their secrets)")
def list_api_keys(request: Request, principal: Principal = Depends(require_roles("admin"))):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        keys = api_keys.list_keys(uow)
        return {"items": [ApiKeyOut.model_validate(k).model_dump(mode="json") for k in keys], "total": len(keys)}


@router.post("/api-keys/{key_id}/revoke", response_model=ApiKeyOut,
             summary="Revoke a key (stops working within ACCOUNT_RECHECK_SECONDS)")
def revoke_api_key(key_id: uuid.UUID, request: Request, principal: Principal = Depends(require_roles("admin"))):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        return ApiKeyOut.model_validate(api_keys.revoke_key(uow, key_id))

"""Request-scoped helpers for routes: the caller's services, bound to their tenant."""
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse

from svc_common.rpc_client import RpcClient

from .auth import Principal, current_principal


# Pagination of every list route: bad values are a 422 naming the parameter; each service caps
# `limit` at its own maximum (svc_common.validation.window).
Offset = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=1, le=500)]


class Services:
    """RPC to the services with the caller's tenant, identity and correlation id attached."""

    def __init__(self, client: RpcClient, principal: Principal):
        self.client = client
        self.principal = principal

    async def call(self, service: str, method: str, **kwargs: Any) -> Any:
        return await self.client.call(service, method, context=self.principal.context().to_context_data(), **kwargs)

    async def reply(self, service: str, method: str, status_code: int = 200, **kwargs: Any) -> JSONResponse:
        """The service's answer as the HTTP response. It is JSON already (it came over the wire as
        JSON), so FastAPI's per-field re-encoding is skipped."""
        return JSONResponse(await self.call(service, method, **kwargs), status_code=status_code)


async def services(request: Request, principal: Principal = Depends(current_principal)) -> Services:
    return Services(request.app.state.rpc, principal)

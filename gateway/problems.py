"""Errors as RFC 9457 problem+json, naming the fields at fault."""
import logging

from typing import Generic, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from svc_common.context import correlation_id_var
from svc_common.errors import ServiceError
from svc_common.rpc_client import RemoteError, RpcTimeout

log = logging.getLogger("gateway.errors")

# Remote exception class → HTTP status. Anything else from a service is a 500.
REMOTE_STATUS = {
    "NotFound": 404, "Conflict": 409, "ValidationFailed": 422, "Forbidden": 403,
    "MalformedRequest": 400, "IncorrectSignature": 400,
    # The service could not reach its database (down, failing over, out of connections): retryable.
    "OperationalError": 503,
}
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 409: "Conflict",
          422: "Validation failed", 500: "Internal error", 503: "Service unavailable", 504: "Upstream timeout"}


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this API is returned (application/problem+json)."""
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    correlation_id: str | None = None
    errors: list[FieldError] | None = None


# Documented on every router; the success schema is documented per route with `ok()`.
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
ERRORS = {status: {"model": Problem, "content": PROBLEM_CONTENT, "description": title}
          for status, title in ((401, "Missing or invalid token"), (403, "Not allowed for your role"),
                                (404, "Not found (or another company's)"), (409, "Conflicts with the current state"),
                                (422, "Invalid input; `errors` names each field"))}

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


class ItemList(BaseModel, Generic[T]):
    items: list[T]
    total: int


def ok(model, status: int = 200) -> dict:
    """OpenAPI for a route that returns the service's JSON as it is (no re-validation on the way out)."""
    return {status: {"model": model, "description": "OK" if status == 200 else "Created"}}


def problem(status: int, detail: str, errors: list[dict] | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail,
            "correlation_id": correlation_id_var.get()}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return problem(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RemoteError)
    async def _remote(request: Request, exc: RemoteError):
        status = REMOTE_STATUS.get(exc.exc_type, 500)
        if status == 500:
            log.error("service error %s: %s", exc.exc_type, exc.value)
            return problem(500, "internal error in a service")
        if status == 503:
            log.error("service unavailable %s: %s", exc.exc_type, exc.value)
            return problem(503, "a service cannot reach its database; retry shortly", headers={"Retry-After": "1"})
        return problem(status, exc.value, exc.errors)

    @app.exception_handler(ServiceError)
    async def _local(request: Request, exc: ServiceError):  # raised by the gateway's own accounts code
        return problem(exc.http_status, exc.message, exc.errors)

    @app.exception_handler(RpcTimeout)
    async def _timeout(request: Request, exc: RpcTimeout):
        return problem(504, str(exc))

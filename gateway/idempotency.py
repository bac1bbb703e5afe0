"""`Idempotency-Key` on POST: a retried request gets the first result and writes nothing twice.

The key is claimed (unique per tenant and user) before the request runs; the response is
stored when it finishes. The same key with a different body is a 422; a retry while the
first is still running is a 409. A 5xx releases the key so the client may try again.
"""
import hashlib

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

from svc_common.db import Database

from .auth import Principal, decode_token
from .models import IdempotencyRecord
from .problems import problem


def _claim(db: Database, principal: Principal, key: str, digest: str) -> IdempotencyRecord | str | None:
    """None: claimed for us. A record: replay it. 'mismatch' / 'in_progress': refuse."""
    with db.session(principal.tenant_id) as session:
        existing = session.scalar(sa.select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == principal.user_id, IdempotencyRecord.key == key))
        if existing is None:
            session.add(IdempotencyRecord(user_id=principal.user_id, key=key, request_hash=digest))
            try:
                session.commit()
                return None
            except IntegrityError:  # a concurrent twin claimed it first
                return "in_progress"
        if existing.request_hash != digest:
            return "mismatch"
        return existing if existing.status_code is not None else "in_progress"


def _finish(db: Database, principal: Principal, key: str, status: int, body: bytes) -> None:
    with db.session(principal.tenant_id) as session:
        record = session.scalar(sa.select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == principal.user_id, IdempotencyRecord.key == key))
        if status >= 500:
            session.delete(record)
        else:
            record.status_code, record.response_body = status, body
        session.commit()


class IdempotencyMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):
        key = request.headers.get("idempotency-key")
        auth = request.headers.get("authorization", "")
        principal = decode_token(auth[7:]) if key and auth[:7].lower() == "bearer " else None
        if request.method != "POST" or principal is None:
            return await call_next(request)
        if len(key) > 200:
            return problem(422, "Idempotency-Key is too long", [{"field": "Idempotency-Key", "message": "max 200"}])
        body = await request.body()
        digest = hashlib.sha256(request.url.path.encode() + b"\n" + body).hexdigest()
        db = request.app.state.db
        claimed = await run_in_threadpool(_claim, db, principal, key, digest)
        if claimed == "mismatch":
            return problem(422, "Idempotency-Key was used with a different request",
                           [{"field": "Idempotency-Key", "message": "reused with a different request"}])
        if claimed == "in_progress":
            return problem(409, "a request with this Idempotency-Key is still in progress")
        if isinstance(claimed, IdempotencyRecord):
            return Response(claimed.response_body, status_code=claimed.status_code,
                            media_type="application/json", headers={"Idempotent-Replayed": "true"})
        try:
            response = await call_next(request)
            payload = b"".join([chunk async for chunk in response.body_iterator])
        except Exception:
            await run_in_threadpool(_finish, db, principal, key, 500, b"")
            raise
        await run_in_threadpool(_finish, db, principal, key, response.status_code, payload)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Response(payload, status_code=response.status_code, headers=headers)

"""`Idempotency-Key` on POST: a retried request gets the first result and writes nothing twice.

The key is claimed (unique per tenant and user) before the request runs; the response is
stored when it finishes. The same key with a different body is a 422; a retry while the
first is still running is a 409. A 5xx releases the key so the client may try again.
"""
import hashlib

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
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


class IdempotencyMiddleware:
    """Pure ASGI: requests without an Idempotency-Key pass straight through."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        key = headers.get("idempotency-key")
        auth = headers.get("authorization", "")
        principal = decode_token(auth[7:]) if key and auth[:7].lower() == "bearer " else None
        if principal is None:  # no key, or no valid token (auth will answer 401)
            return await self.app(scope, receive, send)
        if len(key) > 200:
            response = problem(422, "Idempotency-Key is too long", [{"field": "Idempotency-Key", "message": "max 200"}])
            return await response(scope, receive, send)

        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        digest = hashlib.sha256(scope["path"].encode() + b"\n" + body).hexdigest()
        db = scope["app"].state.db
        claimed = await run_in_threadpool(_claim, db, principal, key, digest)
        if claimed == "mismatch":
            response = problem(422, "Idempotency-Key was used with a different request",
                               [{"field": "Idempotency-Key", "message": "reused with a different request"}])
            return await response(scope, receive, send)
        if claimed == "in_progress":
            return await problem(409, "a request with this Idempotency-Key is still in progress")(scope, receive, send)
        if isinstance(claimed, IdempotencyRecord):
            response = Response(claimed.response_body, status_code=claimed.status_code,
                                media_type="application/json", headers={"Idempotent-Replayed": "true"})
            return await response(scope, receive, send)

        body_sent = False

        async def replay_body():
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        # Hold the response until it is stored: a retry arriving right after must find it.
        messages: list[dict] = []

        async def capture(message):
            messages.append(message)

        try:
            await self.app(scope, replay_body, capture)
        except Exception:
            await run_in_threadpool(_finish, db, principal, key, 500, b"")
            raise
        status = next(m["status"] for m in messages if m["type"] == "http.response.start")
        payload = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        await run_in_threadpool(_finish, db, principal, key, status, payload)
        for message in messages:
            await send(message)

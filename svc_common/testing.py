"""Helpers for unit tests of handlers: a real SQLite database per test, no broker."""
import uuid
from pathlib import Path

import sqlalchemy as sa

from .context import RequestContext
from .db import Database, PlatformTables
from .uow import UnitOfWork


def sqlite_database(tmp_path: Path, metadata: sa.MetaData, tables: PlatformTables) -> Database:
    db = Database(f"sqlite:///{tmp_path}/unit.db", tables)
    metadata.create_all(db.engine)
    return db


def context(tenant_id: uuid.UUID | None = None, role: str = "admin", actor_id: uuid.UUID | None = None
            ) -> RequestContext:
    return RequestContext(tenant_id=tenant_id or uuid.uuid4(), actor_id=actor_id or uuid.uuid4(),
                          actor_role=role, correlation_id=uuid.uuid4().hex)


def outbox_events(db: Database) -> list[dict]:
    """Envelopes waiting in the outbox, oldest first."""
    with db.session(None) as session:
        rows = session.execute(sa.select(db.tables.outbox.c.envelope).order_by(db.tables.outbox.c.id)).scalars()
        return list(rows)


def uow(db: Database, ctx: RequestContext) -> UnitOfWork:
    return UnitOfWork(db, ctx)


def service_worker(service_cls, db: Database, ctx: RequestContext, method: str = "rpc", **dependencies):
    """A nameko worker of `service_cls` (worker_factory) whose `platform` is the real one over `db`,
    acting for `ctx`; other dependencies are mocks unless given."""
    from types import SimpleNamespace

    from nameko.testing.services import worker_factory

    from .nameko_deps import WorkerPlatform

    worker_ctx = SimpleNamespace(data=ctx.to_context_data(), entrypoint=SimpleNamespace(method_name=method))
    return worker_factory(service_cls, platform=WorkerPlatform(db, worker_ctx, service_cls.name), **dependencies)

"""Database access shared by every service: engine, tenant-scoped sessions, platform tables.

Tenancy by construction: a session opened for a tenant adds `tenant_id = :tenant`
to every ORM query of a TenantScoped model and stamps (or checks) it on every new row,
so a handler cannot read or write another tenant's data by forgetting a filter.
"""
import datetime as dt
import math
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import (
    Mapped,
    ORMExecuteState,
    Session,
    declared_attr,
    mapped_column,
    sessionmaker,
    with_loader_criteria,
)
from sqlalchemy.sql.expression import Insert

from .settings import get_settings


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite returns naive ones)."""
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: times are UTC-aware")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class TenantScoped:
    """Mixin: the row belongs to a tenant; sessions filter on it automatically."""

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(sa.Uuid, nullable=False, index=True)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


@event.listens_for(Session, "do_orm_execute")
def _scope_queries_to_tenant(state: ORMExecuteState) -> None:
    tenant_id = state.session.info.get("tenant_id")
    if tenant_id is None or not (state.is_select or state.is_update or state.is_delete):
        return
    state.statement = state.statement.options(
        with_loader_criteria(TenantScoped, lambda cls: cls.tenant_id == tenant_id, include_aliases=True)
    )


@event.listens_for(Session, "before_flush")
def _stamp_tenant_on_new_rows(session: Session, flush_context, instances) -> None:
    tenant_id = session.info.get("tenant_id")
    if tenant_id is None:
        return
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, TenantScoped):
            if obj.tenant_id is None:
                obj.tenant_id = tenant_id
            elif obj.tenant_id != tenant_id:
                raise PermissionError("row of another tenant in a tenant-scoped session")


def platform_tables(metadata: sa.MetaData) -> "PlatformTables":
    """The tables every service has beside its own: outbox, processed events, counters."""
    return PlatformTables(metadata)


class PlatformTables:
    def __init__(self, metadata: sa.MetaData):
        self.outbox = sa.Table(
            "outbox_messages", metadata,
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
            sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
            sa.Column("tenant_id", sa.Uuid, nullable=False),
            sa.Column("type", sa.String(100), nullable=False),
            sa.Column("exchange", sa.String(100), nullable=False),
            sa.Column("envelope", sa.JSON, nullable=False),
            sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
            sa.Column("published_at", UTCDateTime, nullable=True),
            sa.Index("ix_outbox_unpublished", "id",
                     postgresql_where=sa.text("published_at IS NULL"),
                     sqlite_where=sa.text("published_at IS NULL")),
        )
        # Built once, values as parameters: every emit runs it, its cache key is computed once.
        self.outbox_insert = self.outbox.insert()
        # Idempotent consumers: one row per (consumer, event) in the effect's transaction.
        self.processed_events = sa.Table(
            "processed_events", metadata,
            sa.Column("consumer", sa.String(200), primary_key=True),
            sa.Column("event_id", sa.Uuid, primary_key=True),
            sa.Column("processed_at", UTCDateTime, nullable=False, default=utcnow),
        )
        # Human-readable, tenant-unique document numbers (WO000001, REQ000001 ...).
        self.document_counters = sa.Table(
            "document_counters", metadata,
            sa.Column("tenant_id", sa.Uuid, primary_key=True),
            sa.Column("kind", sa.String(40), primary_key=True),
            sa.Column("last_value", sa.BigInteger, nullable=False),
        )


class InsertIfAbsent(Insert):
    """INSERT ... ON CONFLICT DO NOTHING (PostgreSQL and SQLite) that SQLAlchemy can cache.

    The dialects' own `insert().on_conflict_do_nothing()` constructs opt out of the compiled-statement
    cache, so every consumer's claim was compiled anew (a tenth of a consumer's CPU per event). This
    one is the standard, cacheable INSERT (column defaults included) with the clause appended."""
    inherit_cache = True


@compiles(InsertIfAbsent)
def _compile_insert_if_absent(element, compiler, **kw):
    return compiler.visit_insert(element, **kw) + " ON CONFLICT DO NOTHING"


_INSERTS_IF_ABSENT: dict[sa.Table, InsertIfAbsent] = {}


def insert_if_absent(session: Session, table: sa.Table, values: dict) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING (PostgreSQL and SQLite); True if the row was inserted."""
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(dialect)
    # One statement object per table, values as parameters: its cache key is computed once.
    statement = _INSERTS_IF_ABSENT.get(table)
    if statement is None:
        statement = _INSERTS_IF_ABSENT.setdefault(table, InsertIfAbsent(table))
    return session.execute(statement, values).rowcount == 1


def next_document_number(session: Session, tables: PlatformTables, tenant_id: uuid.UUID,
                         kind: str, prefix: str, width: int = 6, blocks: "NumberBlocks | None" = None) -> str:
    """The next number of a tenant's document series (unique; a rolled-back document leaves a gap).

    On PostgreSQL the counter is bumped in its own short transaction: inside the caller's
    transaction its row lock would be held to the end and serialize every create of the tenant.
    With `blocks` (what a unit of work passes) that short transaction reserves several numbers at
    once when the series is busy, see NumberBlocks. SQLite has one writer anyway, so there it stays
    in the caller's transaction, one number at a time.
    """
    if session.get_bind().dialect.name == "sqlite":
        value = _bump_counter(session, tables, tenant_id, kind)
    elif blocks is not None:
        value = blocks.take(session.get_bind(), tables, tenant_id, kind)
    else:
        with Session(session.get_bind()) as own, own.begin():
            value = _bump_counter(own, tables, tenant_id, kind)
    return f"{prefix}{value:0{width}d}"


def _bump_counter(session: Session, tables: PlatformTables, tenant_id: uuid.UUID, kind: str, by: int = 1) -> int:
    """Add `by` to the series' counter; returns its new value (the last number reserved)."""
    counters = tables.document_counters
    value = session.execute(
        sa.update(counters)
        .where(counters.c.tenant_id == tenant_id, counters.c.kind == kind)
        .values(last_value=counters.c.last_value + by)
        .returning(counters.c.last_value)
    ).scalar()
    if value is None:
        try:
            with session.begin_nested():
                session.execute(sa.insert(counters).values(tenant_id=tenant_id, kind=kind, last_value=by))
            value = by
        except sa.exc.IntegrityError:  # another transaction created the series first
            return _bump_counter(session, tables, tenant_id, kind, by)
    return value


class _Series:
    def __init__(self):
        self.lock = threading.Lock()  # green under eventlet's monkey patching
        self.next, self.end = 1, 0     # numbers next..end are reserved for this process
        self.size, self.refilled_at = 0, None
        self.waiting = 0


class NumberBlocks:
    """Document numbers from blocks that this process reserves in the counter row (PostgreSQL).

    A reservation is one short transaction. Its size follows the series' rate: about
    HORIZON_SECONDS of this process's recent creates (at most MAX_BLOCK), and 1 for a quiet series,
    so a quiet tenant gets consecutive numbers and a busy one pays for a reservation every quarter
    of a second instead of on every create. Numbers stay unique across processes; they are
    consecutive within a process, interleave by blocks across instances, and the unused rest of a
    block is a gap if the process dies (a graceful stop gives it back when no one reserved after it).
    """
    HORIZON_SECONDS = 0.25
    MAX_BLOCK = 50

    def __init__(self):
        self._series: dict[tuple[uuid.UUID, str], _Series] = {}

    def take(self, engine: sa.Engine, tables: PlatformTables, tenant_id: uuid.UUID, kind: str) -> int:
        series = self._series.get((tenant_id, kind))
        if series is None:
            series = self._series.setdefault((tenant_id, kind), _Series())
        series.waiting += 1
        with series.lock:
            series.waiting -= 1
            if series.next > series.end:
                size = self._next_size(series)
                with Session(engine) as own, own.begin():
                    end = _bump_counter(own, tables, tenant_id, kind, size)
                series.next, series.end, series.size = end - size + 1, end, size
                series.refilled_at = time.monotonic()
            value = series.next
            series.next += 1
            return value

    def _next_size(self, series: _Series) -> int:
        size = 1
        if series.refilled_at is not None:
            elapsed = max(time.monotonic() - series.refilled_at, 1e-3)
            size = math.ceil(round(series.size * self.HORIZON_SECONDS / elapsed, 6))
        # Those queued behind this reservation each need a number too.
        return max(1, min(self.MAX_BLOCK, max(size, series.waiting + 1)))

    def release(self, engine: sa.Engine, tables: PlatformTables) -> None:
        """Give back the unused rest of each block if no one reserved numbers after it (on stop)."""
        counters = tables.document_counters
        for (tenant_id, kind), series in list(self._series.items()):
            with series.lock:
                if series.next > series.end:
                    continue
                with Session(engine) as own, own.begin():
                    own.execute(sa.update(counters).where(
                        counters.c.tenant_id == tenant_id, counters.c.kind == kind,
                        counters.c.last_value == series.end).values(last_value=series.next - 1))
                series.end = series.next - 1


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One connection per process: SQLite has a single writer anyway, and waiting for the pool
        # is cooperative under eventlet, while SQLite's own busy-wait blocks every greenlet.
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                  pool_size=1, max_overflow=0, pool_timeout=60)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # SQLAlchemy issues BEGIN itself (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin_immediate(conn):
            # Take the write lock at BEGIN so concurrent writers queue instead of failing.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Every worker may hold two connections at once (its own and the document counter's), plus the
    # relay: size the pool from the worker count so it neither churns nor starves. Across all
    # instances, (DB_POOL_SIZE + MAX_WORKERS) each must stay under PostgreSQL's max_connections.
    workers = get_settings().max_workers
    pool = get_settings().db_pool_size or workers + 4
    # No pre-ping (a query per checkout); a dropped connection invalidates the pool on first use instead.
    return sa.create_engine(url, pool_size=pool, max_overflow=workers, pool_recycle=1800,
                            connect_args=_postgres_tls(url))


def _postgres_tls(url: str) -> dict:
    """DATABASE_SSL: off (default; a private network or a TLS sidecar) or verify (TLS, CA and hostname
    checked; DATABASE_SSL_CA names the CA file). The drivers' own defaults ("try TLS, verify nothing")
    are neither safe nor cheap, so they are never used."""
    mode, ca = get_settings().database_ssl, get_settings().database_ssl_ca or None
    if "pg8000" in url:
        if mode == "off":
            return {"ssl_context": False}
        import ssl
        return {"ssl_context": ssl.create_default_context(cafile=ca)}
    # psycopg2 (libpq)
    if mode == "off":
        return {"sslmode": "disable"}
    return {"sslmode": "verify-full", **({"sslrootcert": ca} if ca else {})}


class Database:
    """One per service process: the engine, its sessions, and the outbox wake-up."""

    def __init__(self, url: str, tables: PlatformTables):
        self.url = url
        self.engine = make_engine(url)
        self.tables = tables
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self.outbox_written = threading.Event()
        self.numbers = NumberBlocks()

    def session(self, tenant_id: uuid.UUID | None) -> Session:
        """A session scoped to `tenant_id`; None only for platform work (relay, migrations)."""
        return self.session_factory(info={"tenant_id": tenant_id})

    def release_numbers(self) -> None:
        """Give back reserved, unused document numbers (see NumberBlocks); on a graceful stop."""
        if self.engine.dialect.name != "sqlite":
            self.numbers.release(self.engine, self.tables)

    def dispose(self) -> None:
        self.engine.dispose()


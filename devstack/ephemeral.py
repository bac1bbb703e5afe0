"""A throw-away platform on the real PostgreSQL and RabbitMQ: fresh databases, a fresh vhost,
free ports. Used by the end-to-end tests and the benchmarks; removed afterwards."""
import os
import secrets
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pg8000.native

from .broker import create_vhost, delete_vhost
from .stack import COMPONENTS, Stack, StackConfig

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")
AMQP_BASE = os.environ.get("TEST_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
# psycopg2 (with psycogreen under eventlet) or pg8000; bench/pg_driver.py measures both.
PG_DRIVER = os.environ.get("TEST_PG_DRIVER", "psycopg2")


@dataclass
class PgDatabases:
    prefix: str
    names: list[str]

    def url(self, component: str) -> str:
        return f"postgresql+{PG_DRIVER}://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.prefix}_{component}"


def _admin_connection():
    return pg8000.native.Connection(PG_USER, host=PG_HOST, port=PG_PORT, database="postgres", timeout=60)


def create_databases(components) -> PgDatabases:
    dbs = PgDatabases(f"fsp_t{uuid.uuid4().hex[:8]}", list(components))
    conn = _admin_connection()
    try:
        for c in dbs.names:
            conn.run(f'CREATE DATABASE "{dbs.prefix}_{c}"')
    finally:
        conn.close()
    return dbs


def drop_databases(dbs: PgDatabases) -> None:
    conn = _admin_connection()
    try:
        for c in dbs.names:
            conn.run(f'DROP DATABASE IF EXISTS "{dbs.prefix}_{c}" WITH (FORCE)')
    finally:
        conn.close()


def isolated_vhost() -> tuple[str, str]:
    """(vhost, AMQP URI on it)."""
    name = create_vhost(f"fsp-test-{uuid.uuid4().hex[:8]}")
    return name, AMQP_BASE.rstrip("/") + "/" + name


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free TCP ports."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + size >= 65000:
            continue
        try:
            for port in range(base, base + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free block of ports")


# Tests and benchmarks log in often and call fast from one address; the limits have their own tests.
UNLIMITED = {"RATE_LIMIT_LOGIN": "", "RATE_LIMIT_USER": "", "RATE_LIMIT_TENANT": "", "RATE_LIMIT_ANONYMOUS": ""}


@contextmanager
def running_stack(data_dir: Path, extra_env: dict | None = None, database: str = "postgresql",
                  instances: dict[str, int] | None = None):
    """All five services and the gateway as processes on a fresh vhost and fresh databases:
    PostgreSQL ones, or SQLite files in `data_dir` as in the embedded default.

    `instances`, e.g. {"tickets": 2}: run that many instances of a service (PostgreSQL only: SQLite
    has one writer per file). More can be started or stopped later with `stack.scale()`."""
    if instances and database != "postgresql":
        raise ValueError("several instances of a service need PostgreSQL")
    dbs = create_databases(COMPONENTS) if database == "postgresql" else None
    database_url = dbs.url if dbs else (lambda name: f"sqlite:///{data_dir}/{name}.db")
    vhost, amqp_uri = isolated_vhost()
    base = free_port_block(7)
    stack = Stack(StackConfig(
        amqp_uri=amqp_uri, database_url=database_url, data_dir=data_dir, jwt_secret=secrets.token_urlsafe(48),
        gateway_port=base, metrics_base_port=base + 1,
        extra_env={"EVENT_RETRY_DELAYS": "0.2,0.5,1", "OUTBOX_POLL_SECONDS": "0.2", **UNLIMITED,
                   **(extra_env or {})}))
    try:
        stack.migrate()
        stack.start_all()
        stack.wait_ready()
        for service, count in (instances or {}).items():
            stack.scale(service, count)
        yield stack
    finally:
        stack.stop_all()
        delete_vhost(vhost)
        if dbs:
            drop_databases(dbs)

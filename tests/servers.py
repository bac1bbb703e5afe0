"""The real servers the integration and end-to-end tiers run against.

PostgreSQL on TEST_PG_URL (default 127.0.0.1:5432, user postgres, trust auth) and RabbitMQ on
TEST_AMQP_URI (default guest/guest on 127.0.0.1:5672). Each test session gets its own
databases and its own RabbitMQ vhost, so runs never see each other's queues or rows.
A missing server fails the run with a message saying how to start it; it never skips.
"""
import os
import uuid
from dataclasses import dataclass

import pg8000.native
import pytest

from devstack.broker import create_vhost, delete_vhost, reachable

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")
AMQP_BASE = os.environ.get("TEST_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")

START_PG = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_RABBIT = "rabbitmq-server -detached"


def require_postgres() -> None:
    try:
        pg8000.native.Connection(PG_USER, host=PG_HOST, port=PG_PORT, database="postgres", timeout=5).close()
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} as {PG_USER} ({exc}). "
                    f"Start it with: {START_PG}", pytrace=False)


def require_rabbitmq() -> None:
    if not reachable(AMQP_BASE, timeout=5):
        pytest.fail(f"RabbitMQ is not reachable at {AMQP_BASE}. Start it with: {START_RABBIT}", pytrace=False)


@dataclass
class PgDatabases:
    prefix: str
    names: list[str]

    def url(self, component: str) -> str:
        return f"postgresql+pg8000://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.prefix}_{component}"


def create_databases(components) -> PgDatabases:
    prefix = f"fsp_t{uuid.uuid4().hex[:8]}"
    conn = pg8000.native.Connection(PG_USER, host=PG_HOST, port=PG_PORT, database="postgres")
    try:
        for c in components:
            conn.run(f'CREATE DATABASE "{prefix}_{c}"')
    finally:
        conn.close()
    return PgDatabases(prefix, list(components))


def drop_databases(dbs: PgDatabases) -> None:
    conn = pg8000.native.Connection(PG_USER, host=PG_HOST, port=PG_PORT, database="postgres")
    try:
        for c in dbs.names:
            conn.run(f'DROP DATABASE IF EXISTS "{dbs.prefix}_{c}" WITH (FORCE)')
    finally:
        conn.close()


def isolated_vhost() -> tuple[str, str]:
    """(vhost, AMQP URI on it)."""
    name = create_vhost(f"fsp-test-{uuid.uuid4().hex[:8]}")
    return name, AMQP_BASE.rstrip("/") + "/" + name


__all__ = ["create_databases", "drop_databases", "isolated_vhost", "delete_vhost", "require_postgres",
           "require_rabbitmq", "PgDatabases"]

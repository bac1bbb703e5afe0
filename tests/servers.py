"""The real servers the integration and end-to-end tiers run against.

PostgreSQL on TEST_PG_HOST/PORT/USER (default 127.0.0.1:5432, postgres, trust auth) and RabbitMQ
on TEST_AMQP_URI (default guest/guest on 127.0.0.1:5672). Each run gets its own databases and
its own vhost (devstack.ephemeral). A missing server fails the run with the command that
starts it; it never skips.
"""
from contextlib import contextmanager

import pytest

from devstack import ephemeral
from devstack.broker import delete_vhost, reachable

START_PG = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_RABBIT = "rabbitmq-server -detached"


def require_postgres() -> None:
    try:
        ephemeral._admin_connection().close()
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {ephemeral.PG_HOST}:{ephemeral.PG_PORT} as "
                    f"{ephemeral.PG_USER} ({exc}). Start it with: {START_PG}", pytrace=False)


def require_rabbitmq() -> None:
    if not reachable(ephemeral.AMQP_BASE, timeout=5):
        pytest.fail(f"RabbitMQ is not reachable at {ephemeral.AMQP_BASE}. Start it with: {START_RABBIT}",
                    pytrace=False)


@contextmanager
def _fresh_database(name: str, tables, make_schema):
    """A fresh PostgreSQL database, its schema made by `make_schema(url, db)`, dropped after."""
    from svc_common.db import Database
    require_postgres()
    dbs = create_databases([name])
    db = None
    try:
        db = Database(dbs.url(name), tables)
        make_schema(dbs.url(name), db)
        yield db
    finally:
        if db is not None:
            db.dispose()
        drop_databases(dbs)


def scratch_database(name: str, metadata, tables):
    """A fresh PostgreSQL database with `metadata`'s tables (create_all, not migrations), dropped after."""
    return _fresh_database(name, tables, lambda _url, db: metadata.create_all(db.engine))


def migrated_database(service: str, tables):
    """A fresh PostgreSQL database with the service's Alembic migrations applied (the real schema,
    not create_all), dropped after."""
    from svc_common.migrate import upgrade
    return _fresh_database(service, tables, lambda url, _db: upgrade(service, url))


create_databases = ephemeral.create_databases
drop_databases = ephemeral.drop_databases
isolated_vhost = ephemeral.isolated_vhost
__all__ = ["require_postgres", "require_rabbitmq", "scratch_database", "migrated_database", "create_databases", "drop_databases", "isolated_vhost",
           "delete_vhost"]

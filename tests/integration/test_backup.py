"""Backup and restore (python -m svc_common.backup) on the real PostgreSQL and on SQLite files: the
migrated schema and the rows come back exactly; a damaged backup restores nothing."""
import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from svc_common.backup import alembic_revision
from svc_common.migrate import upgrade
from tests import servers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def backup_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "svc_common.backup", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", ROOT)})


def outbox_count(url: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM outbox_messages")).scalar()
    engine.dispose()
    return count


def write_rows(url: str, count: int) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        for n in range(count):
            connection.execute(sa.text(
                "INSERT INTO outbox_messages (event_id, tenant_id, type, exchange, envelope, created_at) "
                "VALUES (:e, :t, 'customer.created', 'customers.events', :env, CURRENT_TIMESTAMP)"),
                {"e": f"00000000-0000-0000-0000-{n:012d}", "t": "00000000-0000-0000-0000-000000000001",
                 "env": json.dumps({"n": n})})
    engine.dispose()


@pytest.fixture
def pg_urls():
    servers.require_postgres()
    dbs = servers.create_databases(["customers", "notify"])
    yield {name: dbs.url(name) for name in dbs.names}
    servers.drop_databases(dbs)


def test_postgres_round_trip_of_schema_and_rows(pg_urls, tmp_path):
    url = pg_urls["customers"]
    upgrade("customers", url)
    write_rows(url, 5)
    revision = alembic_revision(url)

    done = backup_cli("dump", str(tmp_path / "b"), "--url", f"customers={url}", "--only", "customers")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["components"]["customers"]["alembic_revision"] == revision

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:   # the disaster: rows gone, a table dropped
        connection.execute(sa.text("DELETE FROM outbox_messages"))
        connection.execute(sa.text("DROP TABLE processed_events"))
    engine.dispose()

    # restored into another, empty database too (a new server after losing the old one)
    for target in (url, pg_urls["notify"]):
        done = backup_cli("restore", str(tmp_path / "b"), "--url", f"customers={target}")
        assert done.returncode == 0, done.stderr
        assert outbox_count(target) == 5
        assert alembic_revision(target) == revision
        assert sa.inspect(sa.create_engine(target, poolclass=sa.pool.NullPool)).has_table("processed_events")


def test_sqlite_round_trip_and_a_damaged_backup_restores_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/notify.db"
    upgrade("notify", url)
    write_rows(url, 3)
    assert backup_cli("dump", str(tmp_path / "b"), "--url", f"notify={url}", "--only", "notify").returncode == 0
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM outbox_messages"))
    engine.dispose()

    (tmp_path / "b" / "notify.sqlite").write_bytes((tmp_path / "b" / "notify.sqlite").read_bytes() + b"x")
    refused = backup_cli("restore", str(tmp_path / "b"), "--url", f"notify={url}")
    assert refused.returncode != 0 and "checksum" in refused.stderr
    assert outbox_count(url) == 0

    assert backup_cli("dump", str(tmp_path / "c"), "--url", f"notify={url}", "--only", "notify").returncode == 0
    write_rows(url, 2)
    done = backup_cli("restore", str(tmp_path / "c"), "--url", f"notify={url}")
    assert done.returncode == 0, done.stderr
    assert outbox_count(url) == 0

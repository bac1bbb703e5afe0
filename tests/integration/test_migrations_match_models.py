"""Each component's Alembic migrations, run to head on the real PostgreSQL and on SQLite, give
exactly the schema its SQLAlchemy models declare: a model change without its migration fails here."""
import importlib

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from svc_common.migrate import COMPONENTS, upgrade
from tests import servers

# Where each component's models live (what its migrations/env.py hands to Alembic).
MODELS = {name: [f"{name}.models"] for name in COMPONENTS} | {"gateway": ["gateway.models", "gateway.api_keys"],
                                                          "tickets": ["tickets.models", "tickets.desk.models"]}


def metadata(component: str) -> sa.MetaData:
    modules = [importlib.import_module(name) for name in MODELS[component]]
    return modules[0].Base.metadata


def drift(url: str, component: str) -> list:
    upgrade(component, url)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), metadata(component))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg_databases():
    servers.require_postgres()
    dbs = servers.create_databases(COMPONENTS)
    yield dbs
    servers.drop_databases(dbs)


@pytest.mark.parametrize("component", COMPONENTS)
def test_migrations_at_head_match_the_models_on_postgres(component, pg_databases):
    assert drift(pg_databases.url(component), component) == []


@pytest.mark.parametrize("component", COMPONENTS)
def test_migrations_at_head_match_the_models_on_sqlite(component, tmp_path):
    assert drift(f"sqlite:///{tmp_path}/{component}.db", component) == []

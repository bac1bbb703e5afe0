"""The reports' read models on the real PostgreSQL (migrated by Alembic, as deployed): the worked
scenario gives exactly the figures it gives on SQLite — money stays Decimal — whether the events
come one by one, in one batch, or from a rebuild of the archive."""
import importlib.util
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from devstack.ephemeral import create_databases, drop_databases
from reports import handlers
from reports.models import PLATFORM, Base
from reports.schemas import REPORT_NAMES, ReportQuery
from svc_common.context import system_context
from svc_common.contracts import EventEnvelope
from svc_common.db import Database
from svc_common.migrate import upgrade
from svc_common.testing import sqlite_database
from svc_common.uow import UnitOfWork
from tests import servers

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("reports_scenario", ROOT / "services/reports/tests/reports_scenario.py")
scenario = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scenario)


@pytest.fixture(scope="module")
def pg():
    servers.require_postgres()
    dbs = create_databases(["reports"])
    try:
        upgrade("reports", dbs.url("reports"))
        db = Database(dbs.url("reports"), PLATFORM)
        yield db
        db.dispose()
    finally:
        drop_databases(dbs)


def feed_one_by_one(db, events):
    for env in events:
        event = EventEnvelope.model_validate(env)
        with UnitOfWork(db, system_context(event.tenant_id)) as uow:
            handlers.consume(uow, event)


def figures(db, tenant) -> dict:
    query = ReportQuery(date_from="2026-11-10", date_to="2026-11-12")
    with UnitOfWork(db, system_context(tenant)) as uow:
        return {name: handlers.run_report(uow, name, query) for name in REPORT_NAMES}


def test_postgres_gives_the_sqlite_figures_live_batched_and_rebuilt(pg, tmp_path):
    lite = sqlite_database(tmp_path, Base.metadata, PLATFORM)
    feed_one_by_one(lite, scenario.events())
    expected = figures(lite, scenario.TENANT)
    assert expected["revenue"]["totals"]["fee_total"] == Decimal("330.50")

    live_tenant, batch_tenant = uuid.uuid4(), uuid.uuid4()
    events = scenario.events(tenant=live_tenant)
    feed_one_by_one(pg, events + events[:5])  # with redeliveries
    assert figures(pg, live_tenant) == expected

    with UnitOfWork(pg, system_context(batch_tenant)) as uow:
        batch = [EventEnvelope.model_validate(e) for e in scenario.events(tenant=batch_tenant)]
        assert handlers.ingest(uow, batch + batch[:3]) == len(batch)
    assert figures(pg, batch_tenant) == expected

    with UnitOfWork(pg, system_context(live_tenant)) as uow:
        assert handlers.rebuild_read_models(uow) == len(events)
    assert figures(pg, live_tenant) == expected
    assert figures(pg, batch_tenant) == expected  # another tenant's rebuild left it alone

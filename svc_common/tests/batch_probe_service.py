"""A probe service for the batch consumer tests: a batch handler over a real database.

Run as a process (the test starts it with eventlet patched first, as svc_common.runner does):
`python -c "import eventlet; eventlet.monkey_patch(); import runpy; runpy.run_module('svc_common.tests.batch_probe_service', run_name='__main__')"` with AMQP_URI, DATABASE_URL,
EVENT_BATCH_SIZE, EVENT_BATCH_WAIT_MS, EVENT_RETRY_DELAYS. Each handled event becomes a row of
`probe_seen` with the size of the batch it came in; an event whose data has `poison` fails.
"""
import uuid

import eventlet
import sqlalchemy as sa
from nameko.runners import run_services
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from svc_common.batch_consumer import handle_batch, on_events
from svc_common.db import Database, TenantScoped, platform_tables
from svc_common.nameko_deps import Platform
from svc_common.settings import get_settings


class Base(DeclarativeBase):
    pass


PLATFORM = platform_tables(Base.metadata)


class Seen(TenantScoped, Base):
    __tablename__ = "probe_seen"
    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    n: Mapped[int] = mapped_column(sa.Integer)
    batch_size: Mapped[int] = mapped_column(sa.Integer)


def record(uow, events) -> None:
    for event in events:
        if event.data.get("poison"):
            raise RuntimeError(f"poison event {event.data.get('n')}")
    for event in events:
        uow.session.add(Seen(event_id=event.event_id, n=int(event.data["n"]), batch_size=len(events)))


class BatchProbeService:
    name = "batchprobe"
    platform = Platform(PLATFORM)

    @on_events("probe", "probe.happened")
    def handle(self, envelopes):
        handle_batch(self.platform, envelopes, record)


if __name__ == "__main__":
    settings = get_settings()
    Base.metadata.create_all(Database(settings.database_url, PLATFORM).engine)
    with run_services({"AMQP_URI": settings.amqp_uri, "serializer": "json"}, BatchProbeService):
        eventlet.sleep(3600)

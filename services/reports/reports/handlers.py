"""Use cases of the reports service: read models fed by events, and the reports over them."""
import datetime as dt
import uuid
from collections import Counter

import sqlalchemy as sa

from svc_common.contracts import EventEnvelope, TicketCompletedV1, TicketCreatedV1
from svc_common.db import insert_if_absent
from svc_common.uow import UnitOfWork

from .models import CompletedWorkOrder, CreatedWorkOrder, EventArchive
from .schemas import DateRangeIn, TechnicianDailyIn


# -- events ---------------------------------------------------------------------------------

def archive(uow: UnitOfWork, event: EventEnvelope) -> None:
    """Keep the envelope for replays; once, even if several handlers consume the same event."""
    insert_if_absent(uow.session, EventArchive.__table__, {
        "event_id": event.event_id, "tenant_id": event.tenant_id, "type": event.type,
        "occurred_at": event.occurred_at, "envelope": event.model_dump(mode="json")})


def _row(uow: UnitOfWork, model, ticket_id: uuid.UUID):
    return uow.session.scalar(sa.select(model).where(model.ticket_id == ticket_id))


def record_ticket_created(uow: UnitOfWork, event: EventEnvelope, data: TicketCreatedV1) -> CreatedWorkOrder:
    archive(uow, event)
    row = _row(uow, CreatedWorkOrder, data.ticket_id)
    if row is None:
        row = CreatedWorkOrder(ticket_id=data.ticket_id)
        uow.session.add(row)
    row.number, row.type, row.customer_id = data.number, data.type, data.customer_id
    row.created_at = event.occurred_at  # the contract has no creation time: the event's is it
    return row


def record_ticket_completed(uow: UnitOfWork, event: EventEnvelope, data: TicketCompletedV1) -> CompletedWorkOrder:
    archive(uow, event)
    row = _row(uow, CompletedWorkOrder, data.ticket_id)
    if row is None:
        row = CompletedWorkOrder(ticket_id=data.ticket_id)
        uow.session.add(row)
    elif data.completed_at < row.completed_at:
        return row  # a reopened order's earlier completion, delivered late, does not overwrite the latest
    row.number, row.type = data.number, data.type
    row.technician_id, row.customer_id, row.completed_at = data.technician_id, data.customer_id, data.completed_at
    return row


# Each event type the read models are built from, and what it does to them.
PROJECTIONS = {
    "ticket.created": lambda uow, event: record_ticket_created(uow, event, event.payload()),
    "ticket.completed": lambda uow, event: record_ticket_completed(uow, event, event.payload()),
}
READ_MODELS = (CreatedWorkOrder, CompletedWorkOrder)


def project(uow: UnitOfWork, event: EventEnvelope) -> None:
    """Apply one event to the read models (live consumption and replay both go through here)."""
    PROJECTIONS[event.type](uow, event)


def rebuild_read_models(uow: UnitOfWork) -> int:
    """Drop this tenant's read models and rebuild them by replaying its archive in arrival order.

    Returns how many events were replayed. Live and rebuilt figures agree because both apply the
    same projections to the same events (the archive holds every event once, in arrival order).
    """
    for model in READ_MODELS:
        uow.session.execute(sa.delete(model))  # tenant-scoped by construction
    replayed, after_id = 0, 0
    while True:  # in pages by id: memory stays flat however long the archive
        page_rows = uow.session.execute(
            sa.select(EventArchive.id, EventArchive.envelope).where(EventArchive.id > after_id)
            .order_by(EventArchive.id).limit(1000)).all()
        if not page_rows:
            return replayed
        for row in page_rows:
            event = EventEnvelope.model_validate(row.envelope)
            if event.type in PROJECTIONS:
                project(uow, event)
                replayed += 1
        uow.session.flush()
        uow.session.expunge_all()
        after_id = page_rows[-1].id


# -- reports --------------------------------------------------------------------------------

def _utc_bounds(query: DateRangeIn) -> tuple[dt.datetime, dt.datetime]:
    """[first local midnight, midnight after the last day) of the range, as UTC instants."""
    start = dt.datetime.combine(query.date_from, dt.time.min, tzinfo=query.zone)
    end = dt.datetime.combine(query.date_to + dt.timedelta(days=1), dt.time.min, tzinfo=query.zone)
    return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)


def _local_days(uow: UnitOfWork, column, query: DateRangeIn) -> Counter:
    """How many rows fall on each local day of the range (aggregated here: ranges are bounded)."""
    start, end = _utc_bounds(query)
    stamps = uow.session.scalars(sa.select(column).where(column >= start, column < end))
    return Counter(stamp.astimezone(query.zone).date() for stamp in stamps)


def technician_daily(uow: UnitOfWork, query: TechnicianDailyIn) -> dict:
    start, end = _utc_bounds(query)
    completed = sa.select(CompletedWorkOrder.completed_at, CompletedWorkOrder.technician_id).where(
        CompletedWorkOrder.completed_at >= start, CompletedWorkOrder.completed_at < end)
    if query.technician_id:
        completed = completed.where(CompletedWorkOrder.technician_id == query.technician_id)
    counts = Counter((at.astimezone(query.zone).date(), technician)
                     for at, technician in uow.session.execute(completed))
    rows = [{"day": day, "technician_id": technician, "completed": n}
            for (day, technician), n in sorted(counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))]
    return {"rows": rows, "total_completed": sum(counts.values())}


def work_order_summary(uow: UnitOfWork, query: DateRangeIn) -> dict:
    created = _local_days(uow, CreatedWorkOrder.created_at, query)
    completed = _local_days(uow, CompletedWorkOrder.completed_at, query)
    days = [query.date_from + dt.timedelta(days=i) for i in range((query.date_to - query.date_from).days + 1)]
    return {
        "rows": [{"day": day, "created": created[day], "completed": completed[day]} for day in days],
        "total_created": sum(created.values()),
        "total_completed": sum(completed.values()),
    }

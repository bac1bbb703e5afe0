"""Use cases of the reports service: read models fed by events, and the reports over them."""
import datetime as dt
import uuid
from collections import Counter

import sqlalchemy as sa

from svc_common.contracts import EventEnvelope
from svc_common.db import utcnow
from svc_common.uow import UnitOfWork

from . import domain, exports, projections, queries
from .models import CompletedWorkOrder, CreatedWorkOrder, EventArchive, ReportSettings
from .schemas import DashboardIn, DateRangeIn, ReportQuery, ReportSettingsIn, TechnicianDailyIn


# -- events ---------------------------------------------------------------------------------

def _insert(uow: UnitOfWork, table: sa.Table):
    """INSERT ... ON CONFLICT DO NOTHING of this backend (PostgreSQL or SQLite)."""
    if uow.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def archive(uow: UnitOfWork, events: list[EventEnvelope]) -> set[uuid.UUID]:
    """Keep the envelopes for replays, each once; returns the ids that were new (an executemany
    that the dialect sends as multi-row INSERTs: a batch of events costs a few round trips)."""
    if not events:
        return set()
    rows = [{"event_id": e.event_id, "tenant_id": e.tenant_id, "type": e.type, "occurred_at": e.occurred_at,
             "envelope": e.model_dump(mode="json"), "archived_at": utcnow()} for e in events]
    table = EventArchive.__table__
    statement = _insert(uow, table).on_conflict_do_nothing().returning(table.c.event_id)
    return set(uow.session.connection().execute(statement, rows).scalars())


SUBSCRIPTIONS = sorted(projections.PROJECTIONS)  # (producer, event type) the service listens to
READ_MODELS = projections.READ_MODELS


def project(uow: UnitOfWork, events: list[EventEnvelope], batch: bool = False) -> int:
    """Apply events to the read models (live consumption, bulk loads and replay all go through
    here); returns how many had a projection."""
    if batch:
        projections.prefetch(uow, events)
    applied = 0
    for event in events:
        for projection in projections.BY_TYPE.get(event.type, ()):
            projection(uow, event)
        applied += event.type in projections.BY_TYPE
    projections.write_lines(uow)
    return applied


def consume(uow: UnitOfWork, event: EventEnvelope) -> None:
    """A delivered event: archived, and projected only the first time it is archived (so even a
    second consumer of the same event, or a redelivery past the claim, changes nothing)."""
    if archive(uow, [event]):
        project(uow, [event])


def ingest(uow: UnitOfWork, events: list[EventEnvelope]) -> int:
    """A batch of one tenant's events in one transaction (bulk loads, benchmarks); returns how
    many were new."""
    fresh = archive(uow, events)
    project(uow, [event for event in events if event.event_id in fresh], batch=True)
    return len(fresh)


def rebuild_read_models(uow: UnitOfWork) -> int:
    """Drop this tenant's read models and rebuild them by replaying its archive in arrival order.

    Returns how many events were replayed. Live and rebuilt figures agree because both apply the
    same projections to the same events (the archive holds every event once, in arrival order).
    """
    for model in READ_MODELS:
        uow.session.execute(sa.delete(model))  # tenant-scoped by construction
    projections.forget_cached_rows(uow)
    replayed, after_id = 0, 0
    while True:  # in pages by id: memory stays flat however long the archive
        page_rows = uow.session.execute(
            sa.select(EventArchive.id, EventArchive.envelope).where(EventArchive.id > after_id)
            .order_by(EventArchive.id).limit(1000)).all()
        if not page_rows:
            return replayed
        replayed += project(uow, [EventEnvelope.model_validate(row.envelope) for row in page_rows], batch=True)
        uow.session.flush()
        uow.session.expunge_all()
        projections.forget_cached_rows(uow)
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


# -- the reports of 运营分析 -----------------------------------------------------------------

def _settings_row(uow: UnitOfWork) -> ReportSettings | None:
    return uow.session.scalar(sa.select(ReportSettings))


def report_settings(uow: UnitOfWork) -> dict:
    row = _settings_row(uow)
    if row is None:
        return {"time_zone": domain.DEFAULT_TIME_ZONE, "performance_weights": dict(domain.DEFAULT_WEIGHTS)}
    return {"time_zone": row.time_zone, "performance_weights": row.performance_weights}


def update_report_settings(uow: UnitOfWork, data: ReportSettingsIn) -> dict:
    row = _settings_row(uow)
    if row is None:
        row = ReportSettings(tenant_id=uow.ctx.tenant_id)
        uow.session.add(row)
    row.time_zone, row.performance_weights, row.updated_at = data.time_zone, data.performance_weights, utcnow()
    return report_settings(uow)


def compute_report(uow: UnitOfWork, report: str, query: ReportQuery) -> tuple[dict, queries.Window]:
    """Every row of a report (unpaged), in the query's zone or else the tenant's."""
    settings = report_settings(uow)
    window = queries.Window(query, query.tz or settings["time_zone"])
    if report == "performance":
        result = queries.performance(uow, window, settings["performance_weights"])
    else:
        result = queries.REPORTS[report](uow, window)
    result["columns"] = exports.columns_of(result["rows"])
    return result, window


def run_report(uow: UnitOfWork, report: str, query: ReportQuery, paged: bool = True) -> dict:
    result, window = compute_report(uow, report, query)
    rows = result["rows"]
    return {**result, "report": report, "date_from": query.date_from, "date_to": query.date_to,
            "tz": window.zone.key, "group_by": query.group_by, "total": len(rows),
            "rows": rows[query.offset:query.offset + query.limit] if paged else rows,
            "offset": query.offset, "limit": query.limit}


def export_report(uow: UnitOfWork, report: str, query: ReportQuery, format: str, locale: str) -> bytes:
    result, _ = compute_report(uow, report, query)
    return (exports.to_xlsx if format == "xlsx" else exports.to_csv)(report, result, locale)


def report_chart(uow: UnitOfWork, report: str, query: ReportQuery, locale: str) -> str:
    result, window = compute_report(uow, report, query)
    return exports.trend_svg(report, result, locale, window.periods())


def dashboard(uow: UnitOfWork, query: DashboardIn, now: dt.datetime | None = None) -> dict:
    zone = query.tz or report_settings(uow)["time_zone"]
    return queries.dashboard(uow, zone, query.team_id, query.technician_id, now=now)

"""Use cases of the reports service: read models fed by events, and the reports over them."""
import datetime as dt
import logging
import uuid
from collections import Counter
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from svc_common.context import system_context
from svc_common.contracts import EventEnvelope
from svc_common.db import Database, insert_if_absent, new_id, utcnow
from svc_common.errors import Conflict, NotFound
from svc_common.uow import UnitOfWork

from . import domain, exports, projections, queries, rollup_queries, rollups
from .models import CompletedWorkOrder, CreatedWorkOrder, EventArchive, RebuildJob, ReportSettings, TenantState

from .schemas import DashboardIn, DateRangeIn, ReportQuery, ReportSettingsIn, TechnicianDailyIn

log = logging.getLogger(__name__)


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


# (producer, event type or topic pattern, handler method) the service listens to: every work-order
# event in one queue ("ticket.*"), so that the events of an order meet in the same batches (one after
# the other) instead of locking the same rows from several queues at once; one queue per other type.
SUBSCRIPTIONS = [("tickets", "ticket.*", "on_ticket_events")] + sorted(
    (producer, event_type, "on_" + event_type.replace(".", "_"))
    for producer, event_type in projections.PROJECTIONS if not event_type.startswith("ticket."))
READ_MODELS = projections.READ_MODELS


def tenant_state(uow: UnitOfWork, for_update: bool = False) -> TenantState:
    """The company's rollup zone and running rebuild, read under the company's lock: shared by the
    consumers (many at once), exclusive for a rebuild starting or finishing, which so waits for the
    consumers in flight and holds new ones until it commits.

    On PostgreSQL the lock is a transaction-level advisory lock on the company (shared row locks from
    many concurrent transactions on one row would create a MultiXact each time); SQLite has one writer
    at a time anyway. The exclusive side also locks the row itself."""
    if uow.session.get_bind().dialect.name == "postgresql":
        lock = "pg_advisory_xact_lock" if for_update else "pg_advisory_xact_lock_shared"
        uow.session.execute(sa.select(getattr(sa.func, lock)(_lock_key(uow.ctx.tenant_id))))
    query = sa.select(TenantState)
    if for_update:
        query = query.with_for_update()
    row = uow.session.scalar(query)
    if row is None:
        insert_if_absent(uow.session, TenantState.__table__, {
            "id": new_id(), "tenant_id": uow.ctx.tenant_id, "rollup_zone": report_settings(uow)["time_zone"]})
        row = uow.session.scalar(query)
    return row


def _lock_key(tenant_id: uuid.UUID) -> int:
    """The company's advisory lock: a 64-bit key from its id (a collision only makes two companies
    wait for each other's rebuild)."""
    return int.from_bytes(tenant_id.bytes[:8], "big", signed=True)


def project(uow: UnitOfWork, events: list[EventEnvelope], zone: ZoneInfo) -> int:
    """Apply one company's events to the read models and their rollups (live batches, bulk loads and
    replay all go through here); returns how many had a projection."""
    projections.prefetch(uow, events)
    applied = 0
    for event in events:
        for projection in projections.BY_TYPE.get(event.type, ()):
            projection(uow, event)
        applied += event.type in projections.BY_TYPE
    projections.write_facts(uow)
    projections.write_first_read_models(uow)
    # Last: the rollup rows are the ones concurrent batches share (a day, a team), and an upsert holds
    # them until the commit; written last, another batch waits for this one's commit only.
    rollups.write(uow, zone)
    return applied


def consume_batch(uow: UnitOfWork, events: list[EventEnvelope]) -> int:
    """Delivered events of one company (one transaction): archived, and projected if archived for the
    first time (so even a second consumer of the same event, or a redelivery past the claim, changes
    nothing) — unless a rebuild holds the company: then the rebuild projects them from the archive.
    Returns how many were new."""
    state = tenant_state(uow)
    events = list({event.event_id: event for event in reversed(events)}.values())[::-1]  # a copy counts once
    fresh = archive(uow, events)
    new = [event for event in events if event.event_id in fresh]
    if new and state.rebuild_job_id is None:
        project(uow, new, ZoneInfo(state.rollup_zone))
    return len(new)


def consume(uow: UnitOfWork, event: EventEnvelope) -> None:
    consume_batch(uow, [event])


# The live consumers (svc_common.batch_consumer.handle_batch with these two): the archive is the claim.

def claim_by_archiving(uow: UnitOfWork, consumer: str, events: list[EventEnvelope]) -> set[uuid.UUID]:
    """Take the company's lock (see tenant_state), then archive the events: the ids archived now are
    the ones no consumer of this service handled before."""
    uow.session.info["report_state"] = tenant_state(uow)
    return archive(uow, events)


def partition_key(event: EventEnvelope) -> str:
    """What an event folds into (its work order, stock move, request …): batches are split by it."""
    data = event.data
    for field in ("ticket_id", "move_id", "request_id", "customer_id", "user_id", "team_id"):
        if data.get(field):
            return str(data[field])
    return str(event.event_id)


def project_claimed(uow: UnitOfWork, events: list[EventEnvelope]) -> None:
    """Events just archived by `claim_by_archiving`: projected unless a rebuild holds the company."""
    state = uow.session.info["report_state"]
    if state.rebuild_job_id is None:
        project(uow, events, ZoneInfo(state.rollup_zone))


ingest = consume_batch  # bulk loads: a batch of one company's events in one transaction


# -- rebuilds ------------------------------------------------------------------------------------
#
# A rebuild runs in the background, in pages of its own transactions, and never stops the live
# consumers: while it runs, they keep archiving (and acking) the company's events but leave its read
# models to the rebuild (`consume_batch`, `project_claimed`). The rebuild clears the company's read
# models and rollups, replays the archive up to its high-water mark (every event archived when it
# started), then the events archived since; its last page runs under the company's lock (see
# `tenant_state`), so no consumer is between archiving and committing, and releases the company to
# the live projections as it commits. Other companies are never held. While it runs, the company's
# reports read the rows being rebuilt (partial until done; `rebuild_status` says how far).
#
# Why per company rather than into fresh tables swapped in at the end: the read models are shared by
# every company (rows keyed by company), so a swap would rebuild everyone's or need a generation
# column on every table and query; holding one company off its rows needs one lock and one flag, and
# replaying from its archive is what a rebuild does anyway.

REBUILD_PAGE = 500
REBUILD_STALE_SECONDS = 120  # a running job without a heartbeat for this long is taken over


def _archive_bounds(uow: UnitOfWork) -> tuple[int, int]:
    count, high = uow.session.execute(sa.select(sa.func.count(), sa.func.max(EventArchive.id))).one()
    return count or 0, high or 0


def start_rebuild(uow: UnitOfWork, reason: str = "requested") -> RebuildJob:
    """Create a job and hold the company (committed with the caller's unit of work); the caller then
    runs `run_rebuild` in the background. One at a time per company (409 while one runs)."""
    state = tenant_state(uow, for_update=True)
    if state.rebuild_job_id is not None:
        running = uow.session.get(RebuildJob, state.rebuild_job_id)
        if running is not None and running.status == "running":
            raise Conflict("a rebuild of the reports is already running",
                           [{"field": "job_id", "message": str(running.id)}])
    total, high_water = _archive_bounds(uow)
    zone = report_settings(uow)["time_zone"]
    job = RebuildJob(id=new_id(), tenant_id=uow.ctx.tenant_id, status="running", reason=reason,
                     requested_by=uow.ctx.actor_id, time_zone=zone, total=total, replayed=0,
                     high_water=high_water, attempts=1, created_at=utcnow(), heartbeat_at=utcnow())
    uow.session.add(job)
    uow.session.flush()
    state.rebuild_job_id, state.rollup_zone = job.id, zone
    return job


class RebuildSuperseded(Exception):
    """Another runner took the job over (this one was thought dead): stop without touching anything."""


def _page(db: Database, tenant_id: uuid.UUID, job_id: uuid.UUID, attempt: int, work) -> object:
    """One transaction of a rebuild: the job row locked and checked to still be this runner's."""
    with UnitOfWork(db, system_context(tenant_id)) as uow:
        job = uow.session.scalar(sa.select(RebuildJob).where(RebuildJob.id == job_id).with_for_update())
        if job is None or job.status != "running" or job.attempts != attempt:
            raise RebuildSuperseded()
        result = work(uow, job)
        job.heartbeat_at = utcnow()
        return result


def _replay(uow: UnitOfWork, job: RebuildJob, rows) -> None:
    events = [EventEnvelope.model_validate(row.envelope) for row in rows]
    project(uow, events, ZoneInfo(job.time_zone))
    job.replayed += len(events)


def run_rebuild(db: Database, tenant_id: uuid.UUID, job_id: uuid.UUID, pause=lambda: None,
                page_size: int = REBUILD_PAGE) -> None:
    """The background part of a rebuild (see above). Marks the job done, or failed with the error
    (the company then stays held — its figures partial — until a new rebuild succeeds)."""
    with UnitOfWork(db, system_context(tenant_id)) as uow:
        attempt = uow.session.get(RebuildJob, job_id).attempts
    try:
        def clear(uow, job):
            for model in READ_MODELS:
                uow.session.execute(sa.delete(model))  # tenant-scoped by construction
            rollups.delete_all(uow)
            job.replayed = 0
            return job.high_water
        high_water = _page(db, tenant_id, job_id, attempt, clear)

        after = 0
        while True:  # the archive as it was when the rebuild started: stable, in pages by id
            def first_pass(uow, job):
                rows = uow.session.execute(
                    sa.select(EventArchive.id, EventArchive.envelope)
                    .where(EventArchive.id > after, EventArchive.id <= high_water)
                    .order_by(EventArchive.id).limit(page_size)).all()
                _replay(uow, job, rows)
                return rows[-1].id if rows else None
            after = _page(db, tenant_id, job_id, attempt, first_pass)
            pause()
            if after is None:
                break

        replayed: set[int] = set()  # events archived during the rebuild (ids may commit out of order)
        after = high_water
        while True:
            def catch_up(uow, job):
                rows = uow.session.execute(
                    sa.select(EventArchive.id, EventArchive.envelope).where(EventArchive.id > after)
                    .order_by(EventArchive.id).limit(page_size)).all()
                if len(rows) < page_size:
                    return None  # near the end: the last page runs under the lock
                _replay(uow, job, rows)
                replayed.update(row.id for row in rows)
                return rows[-1].id
            after = _page(db, tenant_id, job_id, attempt, catch_up)
            pause()
            if after is None:
                break

        def finish(uow, job):
            state = tenant_state(uow, for_update=True)  # waits for the consumers in flight
            ids = uow.session.scalars(sa.select(EventArchive.id).where(EventArchive.id > high_water)).all()
            missing = sorted(set(ids) - replayed)
            for chunk in range(0, len(missing), page_size):
                rows = uow.session.execute(
                    sa.select(EventArchive.id, EventArchive.envelope)
                    .where(EventArchive.id.in_(missing[chunk:chunk + page_size])).order_by(EventArchive.id)).all()
                _replay(uow, job, rows)
                projections.forget_cached_rows(uow)
                uow.session.flush()
            job.total = max(job.total, job.replayed)
            job.status, job.finished_at = "done", utcnow()
            if state.rebuild_job_id == job.id:
                state.rebuild_job_id = None
        _page(db, tenant_id, job_id, attempt, finish)
    except RebuildSuperseded:
        log.info("rebuild %s taken over by another runner", job_id)
    except Exception as exc:
        log.exception("rebuild %s failed", job_id)
        error = f"{type(exc).__name__}: {exc}"[:1000]
        try:
            def failed(uow, job):
                job.status, job.error, job.finished_at = "failed", error, utcnow()
            _page(db, tenant_id, job_id, attempt, failed)
        except RebuildSuperseded:
            pass


def rebuild_status(uow: UnitOfWork, job_id: uuid.UUID | None = None) -> dict:
    """A rebuild job of this company (the latest if no id)."""
    if job_id is None:
        job = uow.session.scalar(sa.select(RebuildJob).order_by(RebuildJob.created_at.desc()).limit(1))
        if job is None:
            raise NotFound("no rebuild of the reports yet", [{"field": "job_id", "message": "not found"}])
    else:
        job = uow.get_or_404(RebuildJob, job_id, "job_id", "rebuild job")
    return {"job_id": job.id, "status": job.status, "reason": job.reason, "time_zone": job.time_zone,
            "total": job.total, "replayed": job.replayed, "error": job.error, "created_at": job.created_at,
            "finished_at": job.finished_at}


def stale_rebuilds(db: Database, now: dt.datetime | None = None) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Claim the running jobs whose runner stopped beating (a process that died): each is restarted
    from scratch by whoever claims it (its attempt number bumped, so the old runner, if alive after
    all, stops at its next page). Returns (tenant, job) to run."""
    cutoff = (now or utcnow()) - dt.timedelta(seconds=REBUILD_STALE_SECONDS)
    claimed = []
    with db.session(None) as session, session.begin():
        stale = session.execute(sa.select(RebuildJob.id, RebuildJob.tenant_id).where(
            RebuildJob.status == "running", RebuildJob.heartbeat_at < cutoff)).all()
        for job_id, tenant_id in stale:
            taken = session.execute(sa.update(RebuildJob).where(
                RebuildJob.id == job_id, RebuildJob.status == "running", RebuildJob.heartbeat_at < cutoff)
                .values(attempts=RebuildJob.attempts + 1, heartbeat_at=utcnow())).rowcount
            if taken:
                claimed.append((tenant_id, job_id))
    return claimed


def rebuild_now(db: Database, tenant_id: uuid.UUID, actor_id: uuid.UUID | None = None) -> dict:
    """Start and run a rebuild in this thread (tests, tools): its final status."""
    from svc_common.context import RequestContext
    ctx = RequestContext(tenant_id=tenant_id, actor_id=actor_id, actor_role="admin")
    with UnitOfWork(db, ctx) as uow:
        job_id = start_rebuild(uow).id
    run_rebuild(db, tenant_id, job_id)
    with UnitOfWork(db, ctx) as uow:
        return rebuild_status(uow, job_id)


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


def update_report_settings(uow: UnitOfWork, data: ReportSettingsIn) -> tuple[dict, RebuildJob | None]:
    """Save the settings; a new time zone starts a rebuild of the rollups (kept in local days), which
    the caller runs in the background. Returns (settings, the job or None)."""
    row = _settings_row(uow)
    if row is None:
        row = ReportSettings(tenant_id=uow.ctx.tenant_id)
        uow.session.add(row)
    row.time_zone, row.performance_weights, row.updated_at = data.time_zone, data.performance_weights, utcnow()
    uow.session.flush()
    state = uow.session.scalar(sa.select(TenantState))
    job = None
    if state is not None and state.rollup_zone != data.time_zone:
        job = start_rebuild(uow, reason="time_zone")
    return report_settings(uow), job


REPORT_WORK_MEM = "64MB"  # per sort or hash of a report's query, for its transaction only


def compute_report(uow: UnitOfWork, report: str, query: ReportQuery,
                   path: str | None = None) -> tuple[dict, queries.Window]:
    """Every row of a report (unpaged), in the query's zone or else the tenant's. `path` forces the
    rows or the rollups (tests, benchmarks); by default each report picks (queries.use_rollups).
    The rows are a sequence: a report may build them only when read (rollup_queries.LazyRows)."""
    settings = report_settings(uow)
    window = queries.Window(query, query.tz or settings["time_zone"], path)
    if uow.session.get_bind().dialect.name == "postgresql":
        # a year's rollup rows are grouped in memory, not sorted on disk (the default 4 MB spilled
        # the spare-parts and customer groupings of a 1,000,000-order year: +80 ms)
        uow.session.execute(sa.text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
    if report == "performance":
        result = queries.REPORTS[report](uow, window, settings["performance_weights"])
    else:
        result = queries.REPORTS[report](uow, window)
    rows = result["rows"]
    # (lazy rows share their keys: the first one tells the columns without building the others)
    result["columns"] = exports.columns_of(rows[:1] if isinstance(rows, rollup_queries.LazyRows) else rows)
    return result, window


def run_report(uow: UnitOfWork, report: str, query: ReportQuery, paged: bool = True, path: str | None = None) -> dict:
    result, window = compute_report(uow, report, query, path)
    rows = result["rows"]
    return {**result, "report": report, "date_from": query.date_from, "date_to": query.date_to,
            "tz": window.zone.key, "group_by": query.group_by, "total": len(rows),
            "rows": rows[query.offset:query.offset + query.limit] if paged else list(rows),
            "offset": query.offset, "limit": query.limit}


def export_report(uow: UnitOfWork, report: str, query: ReportQuery, format: str, locale: str) -> bytes:
    result, _ = compute_report(uow, report, query)
    return (exports.to_xlsx if format == "xlsx" else exports.to_csv)(report, result, locale)


def report_chart(uow: UnitOfWork, report: str, query: ReportQuery, locale: str) -> str:
    result, window = compute_report(uow, report, query)
    return exports.trend_svg(report, result, locale, window.periods())


def dashboard(uow: UnitOfWork, query: DashboardIn, now: dt.datetime | None = None, path: str | None = None) -> dict:
    zone = query.tz or report_settings(uow)["time_zone"]
    return queries.dashboard_either(uow, zone, query.team_id, query.technician_id, now=now, path=path)

"""Reports against a real SQLite database (unit tier, no broker).

Events go through the nameko service (worker_factory) with a real platform, so the
idempotency claim is the one event_uow makes with UnitOfWork.consume.
"""
import uuid

import pytest

from reports.models import PLATFORM, Base, CompletedWorkOrder, EventArchive
from reports.service import InlineRebuilds, ReportsService
from svc_common.errors import ValidationFailed
from svc_common.testing import context, service_worker, sqlite_database, uow

TECH_A, TECH_B = uuid.uuid4(), uuid.uuid4()


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


def service(db, ctx=None, method="on_ticket_events"):
    # Event handlers take their tenant from the envelope: any context will do for them.
    return service_worker(ReportsService, db, ctx or context(), method, rebuilds=InlineRebuilds())


def envelope(tenant_id, event_type, occurred_at, data):
    return {"event_id": str(uuid.uuid4()), "type": event_type, "schema_version": 1, "occurred_at": occurred_at,
            "tenant_id": str(tenant_id), "correlation_id": None, "actor": None, "data": data}


def created(tenant_id, at, ticket_id=None, number="WO000001"):
    return envelope(tenant_id, "ticket.created", at, {
        "ticket_id": str(ticket_id or uuid.uuid4()), "number": number, "type": "repair",
        "customer_id": str(uuid.uuid4())})


def completed(tenant_id, at, technician_id, ticket_id=None, number="WO000001"):
    return envelope(tenant_id, "ticket.completed", at, {
        "ticket_id": str(ticket_id or uuid.uuid4()), "number": number, "type": "repair",
        "technician_id": str(technician_id), "customer_id": str(uuid.uuid4()), "customer_name": "上海申能空调",
        "completed_at": at, "summary": "ok"})


def feed(db, *envelopes):
    for env in envelopes:
        getattr(service(db, method="on_ticket_events"), "on_ticket_events")([env])  # a batch of one


def row(day, technician, n):
    return {"day": day, "technician_id": str(technician), "completed": n}


def test_completions_count_by_technician_and_local_day(db):
    tenant = uuid.uuid4()
    feed(db,
         completed(tenant, "2026-11-21T17:00:00+00:00", TECH_A),  # 2026-11-22 01:00 in Shanghai
         completed(tenant, "2026-11-22T03:00:00+00:00", TECH_A),
         completed(tenant, "2026-11-21T16:00:00+00:00", TECH_B),  # exactly local midnight: the 22nd
         completed(tenant, "2026-11-21T15:59:59+00:00", TECH_B),  # one second before: the 21st
         completed(tenant, "2026-11-20T15:59:59+00:00", TECH_B))  # the 20th local: outside the range
    reports = service(db, context(tenant, role="manager"))

    report = reports.technician_daily("2026-11-21", "2026-11-22")
    expected = sorted([row("2026-11-22", TECH_A, 2), row("2026-11-22", TECH_B, 1)], key=lambda r: r["technician_id"])
    assert report == {"rows": [row("2026-11-21", TECH_B, 1)] + expected, "total_completed": 4}

    in_utc = reports.technician_daily("2026-11-21", "2026-11-22", tz="UTC")
    assert row("2026-11-21", TECH_A, 1) in in_utc["rows"] and row("2026-11-22", TECH_A, 1) in in_utc["rows"]
    assert reports.technician_daily("2026-11-22", "2026-11-22", technician_id=str(TECH_A)) == {
        "rows": [row("2026-11-22", TECH_A, 2)], "total_completed": 2}


def test_work_order_summary_fills_every_local_day(db):
    tenant = uuid.uuid4()
    feed(db,
         created(tenant, "2026-11-20T18:00:00+00:00"),  # 2026-11-21 in Shanghai
         created(tenant, "2026-11-21T02:00:00+00:00"),
         completed(tenant, "2026-11-21T17:00:00+00:00", TECH_A))  # 2026-11-22 in Shanghai
    summary = service(db, context(tenant)).work_order_summary("2026-11-21", "2026-11-23")
    assert summary == {
        "rows": [{"day": "2026-11-21", "created": 2, "completed": 0},
                 {"day": "2026-11-22", "created": 0, "completed": 1},
                 {"day": "2026-11-23", "created": 0, "completed": 0}],
        "total_created": 2, "total_completed": 1,
    }


def test_redelivered_events_do_not_double_count_and_are_archived_once(db):
    tenant = uuid.uuid4()
    ticket = uuid.uuid4()
    first_created = created(tenant, "2026-11-21T01:00:00+00:00", ticket)
    first_completed = completed(tenant, "2026-11-21T05:00:00+00:00", TECH_A, ticket)
    feed(db, first_created, first_created, first_completed, first_completed)
    reports = service(db, context(tenant))
    assert reports.technician_daily("2026-11-21", "2026-11-21")["total_completed"] == 1
    assert reports.work_order_summary("2026-11-21", "2026-11-21")["total_created"] == 1

    with uow(db, context(tenant)) as u:
        archived = u.session.query(EventArchive).order_by(EventArchive.id).all()
    assert [(a.type, str(a.event_id)) for a in archived] == [
        ("ticket.created", first_created["event_id"]), ("ticket.completed", first_completed["event_id"])]
    assert archived[1].envelope["data"]["technician_id"] == str(TECH_A)


def test_reopened_order_counts_once_on_its_latest_completion(db):
    tenant, ticket = uuid.uuid4(), uuid.uuid4()
    feed(db,
         completed(tenant, "2026-11-21T05:00:00+00:00", TECH_A, ticket),
         completed(tenant, "2026-11-23T05:00:00+00:00", TECH_B, ticket),
         completed(tenant, "2026-11-22T05:00:00+00:00", TECH_A, ticket))  # older one arriving late
    report = service(db, context(tenant)).technician_daily("2026-11-20", "2026-11-24")
    assert report == {"rows": [row("2026-11-23", TECH_B, 1)], "total_completed": 1}
    with uow(db, context(tenant)) as u:
        assert u.session.query(CompletedWorkOrder).count() == 1
        assert u.session.query(EventArchive).count() == 3


def test_other_tenant_sees_nothing(db):
    tenant, other = uuid.uuid4(), uuid.uuid4()
    feed(db, created(tenant, "2026-11-21T01:00:00+00:00"), completed(tenant, "2026-11-21T05:00:00+00:00", TECH_A))
    stranger = service(db, context(other))
    assert stranger.technician_daily("2026-11-21", "2026-11-21") == {"rows": [], "total_completed": 0}
    assert stranger.technician_daily("2026-11-21", "2026-11-21", technician_id=str(TECH_A))["rows"] == []
    summary = stranger.work_order_summary("2026-11-21", "2026-11-21")
    assert (summary["total_created"], summary["total_completed"]) == (0, 0)
    with uow(db, context(other)) as u:
        assert u.session.query(EventArchive).count() == 0
    assert service(db, context(tenant)).technician_daily("2026-11-21", "2026-11-21")["total_completed"] == 1


@pytest.mark.parametrize("args, field", [
    ({"date_from": "2026-11-21", "date_to": "2026-11-22", "tz": "Mars/Olympus"}, "tz"),
    ({"date_from": "2026-11-21", "date_to": "2026-11-22", "tz": "../etc/passwd"}, "tz"),
    ({"date_from": "2026-11-21", "date_to": "2026-11-22", "tz": "Asia"}, "tz"),  # a folder of zones
    ({"date_from": "2026-11-21", "date_to": "2026-11-22", "tz": "localtime"}, "tz"),  # the server's, not IANA
    ({"date_from": "2026-11-21", "date_to": "2026-11-22", "tz": "x" * 300}, "tz"),
    ({"date_from": "2026-13-01", "date_to": "2026-11-22"}, "date_from"),
    ({"date_from": "2026-11-21", "date_to": "yesterday"}, "date_to"),
    ({"date_from": "2026-11-22", "date_to": "2026-11-21"}, "date_to"),
    ({"date_from": "2026-01-01", "date_to": "2027-01-02"}, "date_to"),  # 367 days
    ({"date_from": "2026-11-21", "date_to": "2026-11-22", "technician_id": "bob"}, "technician_id"),
])
def test_bad_range_names_the_field(db, args, field):
    with pytest.raises(ValidationFailed) as err:
        service(db, context()).technician_daily(**args)
    assert [e["field"] for e in err.value.errors] == [field]


def test_range_of_366_days_is_allowed(db):
    summary = service(db, context()).work_order_summary("2028-01-01", "2028-12-31")  # a leap year
    assert len(summary["rows"]) == 366
    with pytest.raises(ValidationFailed) as err:
        service(db, context()).work_order_summary("2026-11-21", "2026-11-22", tz="")
    assert err.value.errors == [{"field": "tz", "message": "unknown IANA time zone"}]
    with pytest.raises(ValidationFailed) as err:
        service(db, context()).work_order_summary("2026-01-01", "2027-01-02")
    assert err.value.errors == [{"field": "date_to", "message": "range must be at most 366 days"}]


def test_rebuild_by_replaying_the_archive_gives_the_live_figures(db):
    tenant, other = uuid.uuid4(), uuid.uuid4()
    tech_a, tech_b = uuid.uuid4(), uuid.uuid4()
    reopened = uuid.uuid4()
    events = [
        created(tenant, "2026-11-20T01:00:00+00:00"), created(tenant, "2026-11-21T16:30:00+00:00"),
        completed(tenant, "2026-11-20T09:00:00+00:00", tech_a),
        completed(tenant, "2026-11-21T17:30:00+00:00", tech_b),           # the 22nd in Shanghai
        completed(tenant, "2026-11-22T03:00:00+00:00", tech_a, ticket_id=reopened),
        completed(tenant, "2026-11-21T03:00:00+00:00", tech_b, ticket_id=reopened),  # older, arrives late
        completed(other, "2026-11-21T03:00:00+00:00", tech_b),
    ]
    feed(db, *events, events[2])  # and a redelivery
    admin = context(tenant_id=tenant, role="admin")
    reports = service(db, admin, method="rpc")

    def figures():
        daily = reports.technician_daily("2026-11-19", "2026-11-23")
        summary = reports.work_order_summary("2026-11-19", "2026-11-23")
        with uow(db, admin) as u:
            rows = sorted((str(r.ticket_id), str(r.technician_id), r.completed_at.isoformat())
                          for r in u.session.query(CompletedWorkOrder))
        return daily, summary, rows

    live = figures()
    assert live[0]["total_completed"] == 3 and live[1]["total_created"] == 2
    job = reports.start_rebuild()  # runs inline here (InlineRebuilds); in the background in the service
    done = reports.rebuild_status(job["job_id"])
    assert (done["status"], done["total"], done["replayed"]) == ("done", 6, 6)  # each archived event once
    assert figures() == live
    # the other tenant's read model was not touched by this tenant's rebuild
    other_reports = service(db, context(tenant_id=other, role="admin"), method="rpc")
    assert other_reports.technician_daily("2026-11-19", "2026-11-23")["total_completed"] == 1


def test_only_an_admin_may_rebuild(db):
    from svc_common.errors import Forbidden
    with pytest.raises(Forbidden):
        service(db, context(role="dispatcher"), method="rpc").start_rebuild()


def test_a_reopened_order_in_one_batch_and_across_batches_keeps_its_latest_completion(db):
    """The first read models are written as one upsert per batch: the latest completion wins within
    a batch (whatever the order) and across batches (an earlier one arriving later changes nothing)."""
    from reports import handlers
    from svc_common.contracts import EventEnvelope
    tenant, ticket = uuid.uuid4(), uuid.uuid4()
    first = [completed(tenant, "2026-11-23T05:00:00+00:00", TECH_B, ticket),
             completed(tenant, "2026-11-21T05:00:00+00:00", TECH_A, ticket), created(tenant, "2026-11-20T05:00:00+00:00", ticket)]
    later = [completed(tenant, "2026-11-22T05:00:00+00:00", TECH_A, ticket),
             created(tenant, "2026-11-20T06:00:00+00:00", ticket, number="WO000002")]
    for batch in (first, later):
        with uow(db, context(tenant)) as u:
            handlers.ingest(u, [EventEnvelope.model_validate(e) for e in batch])
    reports = service(db, context(tenant))
    assert reports.technician_daily("2026-11-20", "2026-11-24") == {"rows": [row("2026-11-23", TECH_B, 1)],
                                                                    "total_completed": 1}
    summary = reports.work_order_summary("2026-11-20", "2026-11-20")
    assert (summary["total_created"], summary["total_completed"]) == (1, 0)

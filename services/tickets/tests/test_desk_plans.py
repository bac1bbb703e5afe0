"""Planned and recurring work (计划任务): RRULE plans create each due order exactly once."""
import datetime as dt
import threading
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from svc_common.db import utcnow
from svc_common.errors import ValidationFailed
from svc_common.testing import context, outbox_events, uow
from svc_common.validation import parse
from tickets.desk import plans
from tickets.desk.models import Plan, PlanOccurrence
from tickets.desk.schemas import PlanIn
from tickets.models import Ticket

UTC = dt.timezone.utc


def snapshot(customer_id, equipment_id=None):
    return {"customer_id": str(customer_id), "customer_name": "申能物业", "contact_name": "王经理",
            "contact_phone": "13800138000", "address": "上海", "latitude": Decimal("31.235929"),
            "longitude": Decimal("121.506058"), "equipment_id": str(equipment_id) if equipment_id else None,
            "equipment_model": "格力" if equipment_id else None, "serial_number": "SN" if equipment_id else None,
            "under_warranty": True if equipment_id else None}


def new_plan(db, ctx, **fields):
    data = parse(PlanIn, {"name": "季度保养", "customer_id": str(uuid.uuid4()), "rrule": "FREQ=MONTHLY;INTERVAL=3",
                          "starts_at": "2026-01-10T01:00:00+00:00", "description": "清洗滤网，检查冷媒",
                          "mode": "pool", **fields})
    with uow(db, ctx) as u:
        return plans.create_plan(u, data)


def generate(db, plan, now, role="admin"):
    ctx = context(tenant_id=plan.tenant_id, role=role, actor_id=plan.created_by)
    snaps = {t: snapshot(plan.customer_id, e) for t, e in plans.targets(plan)}
    with uow(db, ctx) as u:
        return plans.generate_due(u, plan.id, now, snaps)


def count(db, model):
    with db.session(None) as s:
        return s.scalar(sa.select(sa.func.count()).select_from(model))


def test_each_due_occurrence_makes_one_order_and_a_rerun_makes_none(db, office):
    plan = new_plan(db, office)
    assert plan.next_occurrence_at == dt.datetime(2026, 1, 10, 1, tzinfo=UTC)
    now = dt.datetime(2026, 7, 11, tzinfo=UTC)
    with db.session(None) as s:
        assert plans.due_plans(s, now) == [(office.tenant_id, plan.id)]
    created = generate(db, plan, now)
    assert [t.description.split("（")[1][:10] for t in created] == ["2026-01-10", "2026-04-10", "2026-07-10"]
    assert all(t.status == "pooled" and t.type == "maintenance" for t in created)
    assert generate(db, plan, now) == []
    assert count(db, Ticket) == 3 and count(db, PlanOccurrence) == 3
    events = [e["data"] for e in outbox_events(db) if e["type"] == "ticket.created"]
    assert [e["plan_id"] for e in events] == [str(plan.id)] * 3
    with uow(db, office) as u:
        fresh = plans.get_plan(u, plan.id)
        assert fresh.next_occurrence_at == dt.datetime(2026, 10, 10, 1, tzinfo=UTC)
        orders = plans.plan_orders(u, plan.id, upcoming=2)
    assert [p["number"] for p in orders["past"]] == ["WO000001", "WO000002", "WO000003"]
    assert [u_["occurrence_at"].date().isoformat() for u_ in orders["upcoming"]] == ["2026-10-10", "2027-01-10"]
    with db.session(None) as s:
        assert plans.due_plans(s, now) == []


def test_an_instance_with_a_stale_view_creates_nothing_twice(db, office):
    """A restart (or a second instance) that still sees the old schedule finds the claims and skips."""
    plan = new_plan(db, office)
    now = dt.datetime(2026, 4, 11, tzinfo=UTC)
    assert len(generate(db, plan, now)) == 2
    with uow(db, office) as u:  # roll the schedule back, as a stale reader would have it
        row = u.session.get(Plan, plan.id)
        row.next_occurrence_at = row.starts_at
    assert generate(db, plan, now) == []
    assert count(db, Ticket) == 2


def test_concurrent_generators_create_each_order_once(db, office):
    plan = new_plan(db, office, rrule="FREQ=WEEKLY", starts_at="2026-01-05T00:00:00+00:00")
    now = dt.datetime(2026, 3, 1, tzinfo=UTC)
    results, errors = [], []

    def run():
        try:
            results.append(len(generate(db, plan, now)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(results) == 8 == count(db, Ticket) == count(db, PlanOccurrence)


def test_lead_time_creates_orders_ahead(db, office):
    plan = new_plan(db, office, rrule="FREQ=MONTHLY", starts_at="2026-02-01T00:00:00+00:00", lead_days=7)
    assert plan.next_create_at == dt.datetime(2026, 1, 25, tzinfo=UTC)
    assert generate(db, plan, dt.datetime(2026, 1, 24, tzinfo=UTC)) == []
    assert len(generate(db, plan, dt.datetime(2026, 1, 26, tzinfo=UTC))) == 1


def test_equipment_group_assigned_to_a_named_technician(db, office, roster):
    tech = roster.user("李工")
    equipment = [uuid.uuid4(), uuid.uuid4()]
    plan = new_plan(db, office, mode="assign", technician_id=str(tech), equipment_ids=[str(e) for e in equipment],
                    rrule="FREQ=YEARLY", starts_at="2026-03-01T00:00:00+00:00", ticket_type="inspection")
    created = generate(db, plan, dt.datetime(2026, 3, 2, tzinfo=UTC))
    assert sorted(t.equipment_id for t in created) == sorted(equipment)
    assert {(t.status, t.assignee_id, t.type) for t in created} == {("assigned", tech, "inspection")}


def test_pause_resume_end_and_states(db, office):
    plan = new_plan(db, office)
    with uow(db, office) as u:
        assert plans.state(plans.set_paused(u, plan.id, True)) == "paused"
    now = dt.datetime(2026, 7, 11, tzinfo=UTC)
    with db.session(None) as s:
        assert plans.due_plans(s, now) == []
    assert generate(db, plan, now) == []
    with uow(db, office) as u:
        assert plans.state(plans.set_paused(u, plan.id, False)) == "running"
        assert plans.state(plans.end_plan(u, plan.id)) == "expired"
    assert generate(db, plan, now) == []
    with uow(db, office) as u:
        assert plans.list_plans(u, plan_state="expired")[1] == 1
        assert plans.list_plans(u, plan_state="running")[1] == 0


def test_a_plan_whose_rule_ran_out_is_expired(db, office):
    plan = new_plan(db, office, rrule="FREQ=DAILY;COUNT=2", starts_at="2026-01-01T00:00:00+00:00")
    assert len(generate(db, plan, utcnow())) == 2
    with uow(db, office) as u:
        assert plans.state(plans.get_plan(u, plan.id)) == "expired"


def test_bad_plans_are_field_errors(db, office):
    for fields, field in (({"rrule": "FREQ=SOMETIMES"}, "rrule"), ({"ticket_type": "nope"}, "ticket_type"),
                          ({"mode": "assign"}, "technician_id"),
                          ({"mode": "assign", "technician_id": str(uuid.uuid4())}, "technician_id"),
                          ({"ends_at": "2025-01-01T00:00:00+00:00"}, "ends_at"),
                          ({"rrule": "FREQ=DAILY;UNTIL=20260101T000000Z",
                            "starts_at": "2026-02-01T00:00:00+00:00"}, "rrule")):
        with pytest.raises(ValidationFailed) as err:
            new_plan(db, office, **fields)
        assert err.value.errors[0]["field"] == field, fields
    with pytest.raises(ValidationFailed) as err:
        parse(PlanIn, {"name": "x", "customer_id": str(uuid.uuid4()), "rrule": "FREQ=DAILY",
                       "starts_at": "2026-01-01T00:00:00", "description": "x"})
    assert err.value.errors[0]["field"] == "starts_at"  # naive times refused
    assert count(db, Plan) == 0


def test_rule_hours_are_local_to_the_plan_even_across_daylight_saving(db, office):
    plan = new_plan(db, office, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0;COUNT=3",
                    starts_at="2026-03-07T00:00:00-05:00", timezone="America/New_York")
    created = generate(db, plan, dt.datetime(2026, 3, 10, tzinfo=UTC))
    with uow(db, office) as u:
        past = [p["occurrence_at"] for p in plans.plan_orders(u, plan.id)["past"]]
    assert len(created) == 3
    assert [t.hour for t in past] == [14, 13, 13]  # 09:00 EST, then 09:00 EDT
    shanghai = new_plan(db, office, rrule="FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", starts_at="2026-01-01T00:00:00+08:00")
    assert shanghai.next_occurrence_at == dt.datetime(2026, 1, 5, 1, tzinfo=UTC)  # Monday 09:00 in Shanghai
    with pytest.raises(ValidationFailed) as err:
        new_plan(db, office, timezone="Mars/Olympus")
    assert err.value.errors[0]["field"] == "timezone"


def test_a_technician_who_left_leaves_the_order_in_the_queue_not_the_plan_stuck(db, office, roster):
    tech = roster.user("王工")
    plan = new_plan(db, office, mode="assign", technician_id=str(tech), rrule="FREQ=DAILY;COUNT=1",
                    starts_at="2026-01-01T00:00:00+00:00")
    from svc_common.contracts import UserV1
    from tickets import handlers as tickets
    with uow(db, office) as u:  # the user is deactivated after the plan was made
        tickets.apply_user_event(u, "user.deactivated", UserV1(user_id=tech, name="王工", username="w",
                                                                role="technician", active=False))
    created = generate(db, plan, dt.datetime(2026, 1, 2, tzinfo=UTC))
    assert [(t.status, t.assignee_id) for t in created] == [("pending_dispatch", None)]
    with uow(db, office) as u:
        assert plans.state(plans.get_plan(u, plan.id)) == "expired"

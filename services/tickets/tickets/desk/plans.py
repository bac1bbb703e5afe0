"""Planned and recurring work (计划任务, 保养计划): plans with an RFC 5545 RRULE, and the generation
of their work orders, exactly once per (plan, occurrence, equipment)."""
import datetime as dt
import uuid

import sqlalchemy as sa

from svc_common.db import insert_if_absent, utcnow
from svc_common.errors import ServiceError, field_error
from svc_common.uow import UnitOfWork
from tickets import handlers as tickets
from tickets.models import Technician, Ticket
from tickets.schemas import AssignIn, PublishIn, TicketIn

from . import domain
from .models import Plan, PlanOccurrence
from .schemas import PlanIn

CUSTOMER_TARGET = "customer"


def _schedule(plan: Plan, after: dt.datetime | None) -> None:
    plan.next_occurrence_at = domain.next_occurrence(plan.rrule, plan.starts_at, plan.ends_at, after,
                                                     plan.timezone)
    plan.next_create_at = (plan.next_occurrence_at - dt.timedelta(days=plan.lead_days)
                           if plan.next_occurrence_at else None)


def state(plan: Plan) -> str:
    return domain.plan_state(plan.paused, plan.ended, plan.next_occurrence_at)


def create_plan(uow: UnitOfWork, data: PlanIn) -> Plan:
    domain.require_desk(uow.ctx.actor_role)
    tickets.get_type(uow, data.ticket_type, "ticket_type")
    if data.ends_at is not None and data.ends_at <= data.starts_at:
        raise field_error("ends_at", "must be after starts_at")
    if data.mode == "assign":
        if data.technician_id is None:
            raise field_error("technician_id", "required when mode is assign")
        tech = uow.session.get(Technician, data.technician_id)
        if tech is None or not tech.active:
            raise field_error("technician_id", "no active technician with this id")
    starts_at = data.starts_at.astimezone(dt.timezone.utc)
    domain.parse_rule(data.rrule, starts_at, data.timezone)
    plan = Plan(name=data.name, customer_id=data.customer_id, equipment_ids=[str(e) for e in data.equipment_ids],
                rrule=data.rrule.strip(), starts_at=starts_at, timezone=data.timezone,
                ends_at=data.ends_at.astimezone(dt.timezone.utc) if data.ends_at else None,
                lead_days=data.lead_days, ticket_type=data.ticket_type, description=data.description,
                priority=data.priority, mode=data.mode, technician_id=data.technician_id,
                pool_team_id=data.pool_team_id, paused=data.paused, ended=False, created_by=uow.ctx.actor_id,
                created_at=utcnow())
    _schedule(plan, None)
    if plan.next_occurrence_at is None:
        raise field_error("rrule", "the rule has no occurrence between starts_at and ends_at")
    uow.session.add(plan)
    uow.session.flush()
    return plan


def get_plan(uow: UnitOfWork, plan_id: uuid.UUID) -> Plan:
    return uow.get_or_404(Plan, plan_id, "plan_id", "plan")


def list_plans(uow: UnitOfWork, customer_id: uuid.UUID | None = None, plan_state: str | None = None,
               offset: int = 0, limit: int = 50) -> tuple[list[Plan], int]:
    query = sa.select(Plan)
    if customer_id:
        query = query.where(Plan.customer_id == customer_id)
    if plan_state == "running":
        query = query.where(Plan.paused.is_(False), Plan.ended.is_(False), Plan.next_occurrence_at.is_not(None))
    elif plan_state == "paused":
        query = query.where(Plan.paused.is_(True), Plan.ended.is_(False), Plan.next_occurrence_at.is_not(None))
    elif plan_state == "expired":
        query = query.where(sa.or_(Plan.ended.is_(True), Plan.next_occurrence_at.is_(None)))
    elif plan_state is not None:
        raise field_error("state", "running, paused or expired")
    total = uow.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = uow.session.scalars(query.order_by(Plan.created_at.desc(), Plan.id).offset(offset).limit(limit))
    return list(rows), total


def set_paused(uow: UnitOfWork, plan_id: uuid.UUID, paused: bool) -> Plan:
    domain.require_desk(uow.ctx.actor_role)
    plan = get_plan(uow, plan_id)
    if plan.ended:
        raise field_error("plan_id", "the plan has ended")
    plan.paused = paused
    uow.session.flush()
    return plan


def end_plan(uow: UnitOfWork, plan_id: uuid.UUID) -> Plan:
    domain.require_desk(uow.ctx.actor_role)
    plan = get_plan(uow, plan_id)
    plan.ended = True
    plan.next_create_at = None  # the timer never looks at it again
    uow.session.flush()
    return plan


def plan_orders(uow: UnitOfWork, plan_id: uuid.UUID, upcoming: int = 5) -> dict:
    """Past occurrences (with their orders) and the next `upcoming` dates."""
    plan = get_plan(uow, plan_id)
    past = list(uow.session.scalars(sa.select(PlanOccurrence).where(PlanOccurrence.plan_id == plan.id)
                                    .order_by(PlanOccurrence.occurrence_at, PlanOccurrence.target)))
    statuses = {}
    ids = [p.ticket_id for p in past if p.ticket_id]
    if ids:
        statuses = {t.id: (t.number, t.status) for t in uow.session.scalars(sa.select(Ticket).where(Ticket.id.in_(ids)))}
    dates = []
    if state(plan) != "expired":
        after = None
        cursor = plan.next_occurrence_at
        while cursor is not None and len(dates) < upcoming:
            dates.append(cursor)
            after = cursor
            cursor = domain.next_occurrence(plan.rrule, plan.starts_at, plan.ends_at, after, plan.timezone)
    return {
        "past": [{"occurrence_at": p.occurrence_at, "target": p.target, "ticket_id": p.ticket_id,
                  "number": statuses.get(p.ticket_id, (None, None))[0],
                  "status": statuses.get(p.ticket_id, (None, None))[1]} for p in past],
        "upcoming": [{"occurrence_at": d, "create_at": d - dt.timedelta(days=plan.lead_days)} for d in dates],
    }


# -- generation (the timer) -------------------------------------------------------------------------------

def due_plans(session, now: dt.datetime, limit: int = 200) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant_id, plan_id) of plans with an order to create by now (across tenants: the timer's scan)."""
    rows = session.execute(sa.select(Plan.tenant_id, Plan.id).where(
        Plan.paused.is_(False), Plan.ended.is_(False), Plan.next_create_at.is_not(None), Plan.next_create_at <= now,
    ).order_by(Plan.next_create_at, Plan.id).limit(limit)).all()
    return [(r[0], r[1]) for r in rows]


def targets(plan: Plan) -> list[tuple[str, uuid.UUID | None]]:
    """One order per equipment of the plan, or one for the customer."""
    if plan.equipment_ids:
        return [(str(e), uuid.UUID(str(e))) for e in plan.equipment_ids]
    return [(CUSTOMER_TARGET, None)]


def generate_due(uow: UnitOfWork, plan_id: uuid.UUID, now: dt.datetime, snapshots: dict,
                 limit: int = 50) -> list[Ticket]:
    """Create the orders due by `now`. Each (plan, occurrence, target) is claimed by inserting its row
    in this same transaction: a concurrent instance blocks on the unique key and then skips it, a
    rolled-back attempt leaves it unclaimed for the next scan. `snapshots`: target → customer
    snapshot (looked up before the transaction)."""
    plan = get_plan(uow, plan_id)
    if plan.paused or plan.ended or plan.next_occurrence_at is None:
        return []
    lead = dt.timedelta(days=plan.lead_days)
    created = []
    due = domain.occurrences(plan.rrule, plan.starts_at, plan.ends_at,
                             plan.next_occurrence_at - dt.timedelta(microseconds=1), now + lead, limit,
                             plan.timezone)
    for when in due:
        for target, equipment_id in targets(plan):
            claimed = insert_if_absent(uow.session, PlanOccurrence.__table__, {
                "id": uuid.uuid4(), "tenant_id": uow.ctx.tenant_id, "plan_id": plan.id, "occurrence_at": when,
                "target": target, "ticket_id": None, "created_at": utcnow()})
            if not claimed:
                continue
            ticket = tickets.create_ticket(uow, TicketIn(
                type=plan.ticket_type, customer_id=plan.customer_id, equipment_id=equipment_id,
                description=f"{plan.name}（{when.date().isoformat()}）\n{plan.description}"[:5000],
                priority=plan.priority, plan_id=plan.id), snapshots[target])
            _dispatch(uow, plan, ticket)
            uow.session.execute(sa.update(PlanOccurrence.__table__).where(
                PlanOccurrence.__table__.c.plan_id == plan.id, PlanOccurrence.__table__.c.occurrence_at == when,
                PlanOccurrence.__table__.c.target == target).values(ticket_id=ticket.id))
            created.append(ticket)
    if due:
        _schedule(plan, due[-1])
    uow.session.flush()
    return created


def _dispatch(uow: UnitOfWork, plan: Plan, ticket: Ticket) -> None:
    """Named technician or the grab pool; if that fails (the technician left), the order stays in
    the dispatch queue rather than blocking the plan."""
    try:
        with uow.session.begin_nested():
            if plan.mode == "assign" and plan.technician_id:
                tickets.assign_ticket(uow, ticket.id, AssignIn(technician_id=plan.technician_id,
                                                               note=f"计划任务 {plan.name}"))
            elif plan.mode == "pool":
                tickets.publish_to_pool(uow, ticket.id, PublishIn(team_id=plan.pool_team_id,
                                                                  note=f"计划任务 {plan.name}"))
    except ServiceError:
        pass


# -- orders for equipment due (customers' maintenance / inspection reminders) -------------------------------

def due_order_key(kind: str, equipment_id, due_date) -> str:
    """One order per equipment and due date, whichever event (due, overdue, redelivered) asks first:
    the key is stored as the order's request id, unique per tenant."""
    return f"{kind}-due:{equipment_id}:{due_date}"


def create_due_order(uow: UnitOfWork, kind: str, due, snapshot: dict) -> Ticket | None:
    """`uow.ctx.request_id` must be `due_order_key(...)`; None if that order exists already."""
    if tickets.created_by_this_request(uow) is not None:
        return None
    label = {"maintenance": "保养", "inspection": "巡检"}[kind]
    return tickets.create_ticket(uow, TicketIn(
        type=kind, customer_id=due.customer_id, equipment_id=due.equipment_id,
        description=f"{due.model}（{due.serial_number}）{label}到期：{due.due_date.isoformat()}"), snapshot)

"""Use cases of the tickets service: plain Python over a unit of work (no nameko)."""
import base64
import binascii
import datetime as dt
import time
import uuid
from decimal import Decimal

import sqlalchemy as sa

from svc_common.contracts import (
    CustomerCreatedV1, CustomerUpdatedV1, EquipmentRegisteredV1, EquipmentUpdatedV1, ServiceSnapshotV1,
    TeamUpdatedV1, UserV1,
)
from svc_common.db import insert_if_absent, utcnow
from svc_common.errors import Conflict, Forbidden, NotFound, ValidationFailed, field_error
from svc_common.uow import UnitOfWork

from . import domain, spatial
from .config_cache import CACHE, SettingsView, TeamView, TypeView
from .domain import Action, Flow, Status
from .models import (
    CustomerReplica, EquipmentReplica, PartUsed, StoredFile, TeamReplica, Technician, Ticket, TicketType,
    TenantSettings, TimelineEntry,
)
from .schemas import (
    AssignIn, BatchAssignIn, BranchIn, GrabIn, UnitIn, CheckInIn, FileIn, IncompleteIn, OutsourceIn, PositionIn, PublishIn,
    ReassignIn, ReceiptIn, SettingsIn, SettleIn, TicketIn, TicketTypeIn, TicketTypePatch, VisitIn,
)
from .storage import Storage

# A roster change committed a little after a newer one (another process's transaction) must still be
# seen: the index re-reads rows changed this long before the newest change it has seen.
WATERMARK_SLACK = dt.timedelta(seconds=2)
# Automatic decisions within this long of the last look reuse the index as it is (other processes'
# roster changes show up at most this late; this process's own changes mark it stale at once).
INDEX_RECHECK_SECONDS = 0.25
DEFAULT_RULES = ["skill", "area", "team", "nearest", "least_open", "round_robin"]


# -- timeline and transitions ----------------------------------------------------------------

def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)  # uuid, Decimal


POSITION_FRESH = dt.timedelta(hours=1)


def _where(uow: UnitOfWork, data: dict) -> None:
    """From where: a technician's action carries their last known position if it is recent
    (an action that brings its own position, like a check-in, keeps that)."""
    if "latitude" in data or uow.ctx.actor_role != "technician" or uow.ctx.actor_id is None:
        return
    tech = uow.session.get(Technician, uow.ctx.actor_id)
    if tech is not None and tech.position_at is not None and utcnow() - tech.position_at <= POSITION_FRESH:
        data["where"] = {"latitude": tech.latitude, "longitude": tech.longitude,
                         "at": tech.position_at.isoformat()}


def _record(uow: UnitOfWork, ticket: Ticket, action: Action, from_status: str | None,
            note: str | None = None, **data) -> None:
    _where(uow, data)
    ticket.timeline.append(TimelineEntry(
        seq=len(ticket.timeline) + 1, action=action.value, from_status=from_status, to_status=ticket.status,
        actor_id=uow.ctx.actor_id, actor_role=uow.ctx.actor_role, note=note,
        data={k: _plain(v) for k, v in data.items()}, at=utcnow()))


def _move(uow: UnitOfWork, ticket: Ticket, action: Action, target: Status | str, note: str | None = None,
          **data) -> None:
    """Change state (the caller has checked it is allowed), add the time spent, record it."""
    now = utcnow()
    previous = ticket.status
    if target != previous:
        ticket.state_seconds = domain.add_state_time(ticket.state_seconds, previous, ticket.status_since, now)
        ticket.status_since = now
    ticket.status = Status(target).value
    _record(uow, ticket, action, previous, note, **data)


def _transition(uow: UnitOfWork, ticket: Ticket, action: Action, note: str | None = None, **data) -> None:
    _move(uow, ticket, action, domain.next_status(ticket.status, action), note, **data)


def event_fields(ticket: Ticket) -> dict:
    """Fields every ticket event carries."""
    return {"ticket_id": ticket.id, "number": ticket.number, "type": ticket.type, "customer_id": ticket.customer_id,
            "technician_id": ticket.assignee_id, "team_id": ticket.team_id, "branch_id": ticket.branch_id,
            "priority": ticket.priority, "customer_name": ticket.customer_name}


# -- settings, types, teams ----------------------------------------------------------------------

def get_settings(uow: UnitOfWork) -> TenantSettings:
    row = uow.session.scalar(sa.select(TenantSettings))
    if row is None:
        row = TenantSettings(check_in_radius_m=500, working_hours=None, sla_rules={}, dispatch_rules=list(DEFAULT_RULES))
    return row


def settings_view(uow: UnitOfWork) -> SettingsView:
    """The settings to apply (read-only, cached per process: see config_cache)."""
    return CACHE.get(uow, "settings", lambda u: SettingsView.of(get_settings(u)))


def update_settings(uow: UnitOfWork, data: SettingsIn) -> TenantSettings:
    domain.require_dispatcher(uow.ctx.actor_role)
    row = uow.session.scalar(sa.select(TenantSettings))
    if row is None:
        row = get_settings(uow)
        uow.session.add(row)
    if data.check_in_radius_m is not None:
        row.check_in_radius_m = data.check_in_radius_m
    if data.working_hours is not None:
        try:
            import zoneinfo
            zoneinfo.ZoneInfo(data.working_hours.timezone)
        except Exception:
            raise field_error("working_hours.timezone", "unknown IANA time zone") from None
        if data.working_hours.end <= data.working_hours.start:
            raise field_error("working_hours.end", "must be after start")
        if any(d not in range(1, 8) for d in data.working_hours.days):
            raise field_error("working_hours.days", "ISO weekdays 1–7")
        row.working_hours = data.working_hours.model_dump(mode="json")
    if data.sla_rules is not None:
        row.sla_rules = {k: v.model_dump(mode="json", exclude_none=True) for k, v in data.sla_rules.items()}
    if data.dispatch_rules is not None:
        row.dispatch_rules = list(data.dispatch_rules)
    uow.session.flush()
    return row


def ensure_types(uow: UnitOfWork) -> None:
    """Every tenant starts with the built-in types (they can be disabled, not deleted)."""
    if uow.session.scalar(sa.select(sa.func.count()).select_from(TicketType)) >= len(domain.BUILTIN_TYPES):
        return
    for order, (code, (zh, en)) in enumerate(domain.BUILTIN_TYPES.items()):
        insert_if_absent(uow.session, TicketType.__table__, {
            "id": uuid.uuid4(), "tenant_id": uow.ctx.tenant_id, "code": code, "name": zh, "name_en": en,
            "builtin": True, "enabled": True, "sort_order": order, "fields": [], "flow": {}, "team_ids": [],
            "updated_at": utcnow()})


def _my_teams(uow: UnitOfWork, teams: dict | None = None) -> set[str] | None:
    """The caller's teams (member or manager) for type visibility; None = sees every type."""
    if uow.ctx.actor_role == "admin" or uow.ctx.actor_id is None:
        return None
    me = str(uow.ctx.actor_id)
    teams = teams if teams is not None else _teams(uow)
    mine = {str(t.team_id) for t in teams.values() if me in t.member_ids or me in t.manager_ids}
    if uow.ctx.actor_role == "dispatcher" and not any(me in t.manager_ids for t in teams.values()):
        return None  # the centre's dispatchers see every type
    parents = _parents(teams)
    return mine | {str(a) for t in list(mine) for a in domain.ancestors(uuid.UUID(t), parents)}


def visible(kind: TicketType | TypeView, teams: set[str] | None) -> bool:
    return teams is None or not kind.team_ids or bool(set(kind.team_ids) & teams)


def list_types(uow: UnitOfWork, enabled_only: bool = False) -> list[TicketType]:
    """Types in display order; a team sees the types open to it (or to a parent), or to everyone."""
    ensure_types(uow)
    query = sa.select(TicketType).order_by(TicketType.sort_order, TicketType.code)
    if enabled_only:
        query = query.where(TicketType.enabled.is_(True))
    teams = _my_teams(uow)
    return [t for t in uow.session.scalars(query) if visible(t, teams)]


def type_views(uow: UnitOfWork) -> dict[str, TypeView]:
    """The tenant's types by code (read-only, cached per process: see config_cache)."""
    return CACHE.get(uow, "types", lambda u: {t.code: TypeView.of(t) for t in u.session.scalars(sa.select(TicketType))})


def type_view(uow: UnitOfWork, code: str, field: str = "type") -> TypeView:
    """A type to apply, not to edit; unknown here (a tenant's first use, or one created a moment ago
    by another instance): asked of the database, which creates the built-in types on first use."""
    kind = type_views(uow).get(code)
    return kind if kind is not None else TypeView.of(get_type(uow, code, field))


def get_type(uow: UnitOfWork, code: str, field: str = "type") -> TicketType:
    row = uow.session.scalar(sa.select(TicketType).where(TicketType.code == code))
    if row is None:  # a tenant's first use: the built-in types are created then
        ensure_types(uow)
        row = uow.session.scalar(sa.select(TicketType).where(TicketType.code == code))
    if row is None:
        raise field_error(field, f"no work-order type {code}")
    return row


def _check_fields(fields) -> list[dict]:
    defs = [f.model_dump(mode="json", exclude_none=True) for f in fields]
    domain.validate_field_definitions(defs)
    return defs


def create_type(uow: UnitOfWork, data: TicketTypeIn) -> TicketType:
    domain.require_dispatcher(uow.ctx.actor_role)
    ensure_types(uow)
    if uow.session.scalar(sa.select(TicketType.id).where(TicketType.code == data.code)):
        raise Conflict(f"type {data.code} exists", [{"field": "code", "message": "already exists"}])
    last = uow.session.scalar(sa.select(sa.func.max(TicketType.sort_order))) or 0
    row = TicketType(code=data.code, name=data.name, name_en=data.name_en, enabled=data.enabled,
                     sort_order=last + 1, fields=_check_fields(data.fields), flow=data.flow.model_dump(mode="json"),
                     team_ids=[str(t) for t in data.team_ids], builtin=False)
    uow.session.add(row)
    uow.session.flush()
    return row


def update_type(uow: UnitOfWork, code: str, data: TicketTypePatch) -> TicketType:
    domain.require_dispatcher(uow.ctx.actor_role)
    row = get_type(uow, code, "code")
    for name in ("name", "name_en", "enabled"):
        if getattr(data, name) is not None:
            setattr(row, name, getattr(data, name))
    if data.fields is not None:
        row.fields = _check_fields(data.fields)
    if data.flow is not None:
        row.flow = data.flow.model_dump(mode="json")
    if data.team_ids is not None:
        row.team_ids = [str(t) for t in data.team_ids]
    uow.session.flush()
    return row


def reorder_types(uow: UnitOfWork, codes: list[str]) -> list[TicketType]:
    domain.require_dispatcher(uow.ctx.actor_role)
    rows = {t.code: t for t in list_types(uow)}
    for i, code in enumerate(codes):
        if code not in rows:
            raise field_error(f"codes.{i}", "no such type")
    rest = [c for c in sorted(rows, key=lambda c: rows[c].sort_order) if c not in codes]
    for order, code in enumerate(list(dict.fromkeys(codes)) + rest):
        rows[code].sort_order = order
    uow.session.flush()
    return list_types(uow)


def _flow(uow: UnitOfWork, ticket: Ticket) -> Flow:
    kind = type_views(uow).get(ticket.type)
    return kind.rules if kind is not None else Flow.from_dict(None)


def _teams(uow: UnitOfWork) -> dict[uuid.UUID, TeamView]:
    """The tenant's teams (read-only, cached per process: see config_cache)."""
    return CACHE.get(uow, "teams", lambda u: {t.team_id: TeamView.of(t) for t in u.session.scalars(sa.select(TeamReplica))})


def _parents(teams: dict) -> dict:
    return {t.team_id: t.parent_id for t in teams.values()}


def _managed(teams: dict, user_id) -> set:
    return {t.team_id for t in teams.values() if str(user_id) in t.manager_ids}


def _team(teams: dict, team_id, field: str, kinds: tuple[str, ...] | None = None) -> TeamView:
    team = teams.get(team_id)
    if team is None:
        raise field_error(field, "no such team")
    if kinds and team.kind not in kinds:
        raise field_error(field, f"must be a team of kind {' or '.join(kinds)}")
    return team


def _require_office(uow: UnitOfWork, ticket: Ticket, teams: dict | None = None) -> dict:
    """Dispatch-side actions: an admin, a centre-level dispatcher (manages no team), or a manager of
    the branch holding the order or of one of its parents."""
    teams = teams if teams is not None else _teams(uow)
    role = uow.ctx.actor_role
    if role == "admin":
        return teams
    managed = _managed(teams, uow.ctx.actor_id)
    if role == "dispatcher" and not managed:
        return teams
    if ticket.branch_id is not None and managed:
        chain = {ticket.branch_id, *domain.ancestors(ticket.branch_id, _parents(teams))}
        if managed & chain:
            return teams
    if ticket.branch_id is None and role == "dispatcher" and ticket.created_by == uow.ctx.actor_id:
        return teams  # their own order, not yet in any branch's queue
    raise Forbidden("only the office holding this work order (or a parent of it) may do this")


def apply_team_event(uow: UnitOfWork, team: TeamUpdatedV1) -> None:
    row = uow.session.get(TeamReplica, team.team_id) or TeamReplica(team_id=team.team_id)
    row.name, row.parent_id, row.kind = team.name, team.parent_id, team.kind
    members = [str(m) for m in team.member_ids] if team.active else []
    row.member_ids, row.manager_ids = members, [str(m) for m in team.manager_ids]
    row.updated_at = utcnow()
    uow.session.add(row)
    key = str(team.team_id)
    for tech in uow.session.scalars(sa.select(Technician)):
        has, should = key in (tech.team_ids or []), str(tech.user_id) in members
        if has != should:
            tech.team_ids = [t for t in tech.team_ids if t != key] + ([key] if should else [])
            tech.updated_at = utcnow()
    spatial.index_for(uow.ctx.tenant_id).stale = True


def list_teams(uow: UnitOfWork) -> list[TeamReplica]:
    return list(uow.session.scalars(sa.select(TeamReplica).order_by(TeamReplica.name)))


# -- create, read, list --------------------------------------------------------------------------

def created_by_this_request(uow: UnitOfWork) -> Ticket | None:
    """The order this very RPC call already created, if it is a redelivery of it."""
    if uow.ctx.request_id is None:
        return None
    return uow.session.scalar(sa.select(Ticket).where(Ticket.request_id == uow.ctx.request_id))


def create_ticket(uow: UnitOfWork, data: TicketIn, snapshot: dict) -> Ticket:
    """`snapshot` is the customer as the replica or customers.get_service_snapshot gave it."""
    domain.require_dispatcher(uow.ctx.actor_role)
    kind = type_view(uow, data.type)
    if not kind.enabled:
        raise field_error("type", f"work-order type {data.type} is disabled")
    teams = _teams(uow)
    if not visible(kind, _my_teams(uow, teams)):
        raise field_error("type", f"work-order type {data.type} is not open to your team")
    custom = domain.validate_custom_fields(kind.fields, data.custom_fields)
    if data.team_id is not None:
        _team(teams, data.team_id, "team_id")
    # A dispatcher of a branch creates into their own branch's queue.
    managed = _managed(teams, uow.ctx.actor_id) if uow.ctx.actor_role == "dispatcher" else set()
    branch_id = min(managed, key=str) if len(managed) == 1 else None
    now = utcnow()
    ticket = Ticket(
        request_id=uow.ctx.request_id, type=data.type, status=Status.PENDING_DISPATCH.value,
        priority=data.priority, description=data.description, created_by=uow.ctx.actor_id,
        team_id=data.team_id, branch_id=branch_id, skill=data.skill, area=data.area, custom_fields=custom,
        assistant_ids=[], branch_path=[str(branch_id)] if branch_id else [], overdue=[], receipt={},
        state_seconds={}, status_since=now, created_at=now,
        **ServiceSnapshotV1.model_validate(snapshot).model_dump(),
    )
    settings = settings_view(uow)
    due = domain.sla_deadlines(now, data.priority, settings.sla_rules, settings.hours)
    ticket.respond_due_at, ticket.arrive_due_at, ticket.complete_due_at = (
        due.get("respond"), due.get("arrive"), due.get("complete"))
    ticket.parts_used = []  # a new order has none; saves a lazy load when it is returned
    _record(uow, ticket, Action.CREATE, None)
    ticket.number = uow.next_number("work_order", "WO")
    uow.session.add(ticket)
    uow.session.flush()
    uow.emit("ticket.created", {
        "ticket_id": ticket.id, "number": ticket.number, "type": ticket.type, "customer_id": ticket.customer_id,
        "equipment_id": ticket.equipment_id, "created_by": ticket.created_by, "priority": ticket.priority,
        "team_id": ticket.team_id, "dispatcher_id": uow.ctx.actor_id, "plan_id": data.plan_id,
        "service_request_id": data.service_request_id, "customer_name": ticket.customer_name,
        "branch_id": ticket.branch_id})
    if data.auto_dispatch:
        auto_dispatch(uow, ticket.id)
    return ticket


def get_ticket(uow: UnitOfWork, ticket_id: uuid.UUID) -> Ticket:
    return uow.get_or_404(Ticket, ticket_id, "ticket_id", "work order")


def require_visible(uow: UnitOfWork, ticket: Ticket) -> Ticket:
    """Data scope of reading one order, as the lists have it: the centre sees all; a branch's
    dispatcher their branches' orders (and below) and their own; a technician the orders they
    work, helped on, acted on, or may grab. Others get 404, as for another tenant's order."""
    role, me = uow.ctx.actor_role, uow.ctx.actor_id
    if role == "dispatcher":
        teams = _teams(uow)
        managed = _managed(teams, me)
        if not managed or ticket.created_by == me:
            return ticket
        parents = _parents(teams)
        if ticket.branch_id is not None and managed & {ticket.branch_id, *domain.ancestors(ticket.branch_id, parents)}:
            return ticket
    elif role == "technician":
        if me in (ticket.assignee_id, ticket.created_by) or str(me) in ticket.assistant_ids \
                or any(e.actor_id == me for e in ticket.timeline):
            return ticket
        if ticket.status == Status.POOLED.value:
            tech = uow.session.get(Technician, me)
            mine = {uuid.UUID(t) for t in (tech.team_ids if tech else [])}
            parents = _parents(_teams(uow))
            if ticket.pool_team_id is None or ticket.pool_team_id in mine | {
                    a for t in mine for a in domain.ancestors(t, parents)}:
                return ticket
    else:
        return ticket  # admin, warehouse manager, system
    raise NotFound(f"work order {ticket.id} not found", [{"field": "ticket_id", "message": "not found"}])


def _contains_id(column, user_id):
    """JSON list of ids contains `user_id` (portable: SQLite and PostgreSQL)."""
    return sa.cast(column, sa.String).like(f'%"{user_id}"%')


SORTS = {"created_at": Ticket.created_at, "number": Ticket.number, "priority": Ticket.priority,
         "updated_at": Ticket.updated_at, "complete_due_at": Ticket.complete_due_at}


def list_tickets(uow: UnitOfWork, status: str | None = None, assignee_id: uuid.UUID | None = None,
                 customer_id: uuid.UUID | None = None, offset: int = 0, limit: int = 50, *,
                 type: str | None = None, priority: str | None = None, team_id: uuid.UUID | None = None,
                 branch_id: uuid.UUID | None = None, scope: str | None = None, exceptions: bool = False,
                 pool: bool = False, q: str | None = None, sort: str = "-created_at",
                 reassignment_pending: bool = False) -> tuple[list[Ticket], int]:
    query = sa.select(Ticket)
    me = uow.ctx.actor_id
    if status:
        states = [s.strip() for s in status.split(",") if s.strip()]
        for s in states:
            if s not in Status.__members__.values():
                raise field_error("status", f"unknown status {s}")
        query = query.where(Ticket.status.in_(states))
    if assignee_id:
        query = query.where(Ticket.assignee_id == assignee_id)
    if customer_id:
        query = query.where(Ticket.customer_id == customer_id)
    if type:
        query = query.where(Ticket.type == type)
    if priority:
        query = query.where(Ticket.priority == priority)
    if team_id:
        query = query.where(Ticket.team_id == team_id)
    teams = None
    if branch_id:
        teams = _teams(uow)
        query = query.where(Ticket.branch_id.in_(domain.subtree(branch_id, _parents(teams))))
    if scope is not None:
        if scope == "mine":
            query = query.where(Ticket.assignee_id == me)
        elif scope == "created":
            query = query.where(Ticket.created_by == me)
        elif scope == "collaborating":
            query = query.where(_contains_id(Ticket.assistant_ids, me))
        else:
            raise field_error("scope", "one of mine, created, collaborating")
    if reassignment_pending:  # 待审批改派
        query = query.where(Ticket.reassignment_request.is_not(None),
                            sa.cast(Ticket.reassignment_request, sa.String) != "null")
    if exceptions:
        query = query.where(sa.or_(sa.cast(Ticket.overdue, sa.String) != "[]", Ticket.check_in_flagged.is_(True)))
    if pool:
        tech = uow.session.get(Technician, me) if me else None
        mine = {uuid.UUID(t) for t in (tech.team_ids if tech else []) or []}
        teams = teams if teams is not None else _teams(uow)
        parents = _parents(teams)
        eligible = mine | {a for t in mine for a in domain.ancestors(t, parents)}  # a branch's pool: its sub-branches too
        query = query.where(Ticket.status == Status.POOLED.value, sa.or_(
            Ticket.pool_team_id.is_(None), Ticket.pool_team_id.in_(eligible)))
    if q:
        pattern = f"%{q.strip().lower()}%"
        query = query.where(sa.or_(sa.func.lower(Ticket.number).like(pattern),
                                   sa.func.lower(Ticket.customer_name).like(pattern)))
    # Data scope: a branch's dispatcher sees their branches' orders (and below), a technician
    # their own, the ones they help on and the pool; the centre sees everything.
    role = uow.ctx.actor_role
    if role == "dispatcher":
        teams = teams if teams is not None else _teams(uow)
        managed = _managed(teams, me)
        if managed:
            parents = _parents(teams)
            visible = set().union(*(domain.subtree(t, parents) for t in managed))
            query = query.where(sa.or_(Ticket.branch_id.in_(visible), Ticket.created_by == me))
    elif role == "technician" and not pool:
        query = query.where(sa.or_(Ticket.assignee_id == me, Ticket.created_by == me,
                                   _contains_id(Ticket.assistant_ids, me)))
    key = sort.lstrip("-")
    if key not in SORTS:
        raise field_error("sort", f"one of {', '.join(SORTS)} (prefix - for descending)")
    column = SORTS[key].desc() if sort.startswith("-") else SORTS[key].asc()
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.session.scalars(query.order_by(column, Ticket.id).offset(offset).limit(limit))
    return list(rows), total


def update_fields(uow: UnitOfWork, ticket_id: uuid.UUID, values: dict) -> Ticket:
    ticket = get_ticket(uow, ticket_id)
    if uow.ctx.actor_role not in domain.DISPATCH_ROLES:
        _require_field_actor(uow, ticket)
    domain.check_allowed(ticket.status, Action.UPDATE_FIELDS)
    kind = type_view(uow, ticket.type)
    merged = {**ticket.custom_fields, **values}
    ticket.custom_fields = domain.validate_custom_fields(kind.fields, merged)
    _record(uow, ticket, Action.UPDATE_FIELDS, ticket.status, fields=sorted(values))
    uow.session.flush()
    return ticket


# -- dispatch ------------------------------------------------------------------------------------

def _technician(uow: UnitOfWork, user_id: uuid.UUID, field: str, branch_id=None, teams=None) -> Technician:
    tech = uow.session.get(Technician, user_id)
    if tech is None or tech.tenant_id != uow.ctx.tenant_id or not tech.active or tech.role != "technician":
        raise field_error(field, "no active technician with this id")
    if branch_id is not None:
        teams = teams if teams is not None else _teams(uow)
        allowed = {str(t) for t in domain.subtree(branch_id, _parents(teams))}
        if not allowed & set(tech.team_ids or []):
            raise field_error(field, "technician is not a member of the branch holding this order")
    return tech


def _assign(uow: UnitOfWork, ticket: Ticket, technician_id: uuid.UUID, assistant_ids: list[uuid.UUID],
            note: str | None, mode: str, action: Action = Action.ASSIGN, teams=None, **data) -> None:
    if ticket.outsource_status == "offered":
        raise Conflict("the external team has not accepted this order yet",
                       [{"field": "status", "message": "outsourcing offered, not accepted"}])
    domain.check_allowed(ticket.status, action)
    tech = _technician(uow, technician_id, "technician_id", ticket.branch_id, teams)
    for i, a in enumerate(assistant_ids):
        if a == technician_id:
            raise field_error(f"assistant_ids.{i}", "the primary technician cannot also assist")
        _technician(uow, a, f"assistant_ids.{i}", ticket.branch_id, teams)
    flow = _flow(uow, ticket)
    target = Status.ASSIGNED if flow.acceptance_required else Status.ACCEPTED
    ticket.assignee_id = tech.user_id
    ticket.assistant_ids = [str(a) for a in dict.fromkeys(assistant_ids)]
    ticket.pool_team_id = None
    now = utcnow()
    ticket.assigned_at = now
    if target == Status.ACCEPTED:
        ticket.accepted_at = now
        _met_late(uow, ticket, "respond")
    # Not a roster change for the dispatch index (updated_at stays): at high dispatch rates every
    # decision would re-read every technician assigned within the watermark slack.
    tech.last_assigned_at = now
    spatial.index_for(uow.ctx.tenant_id).assigned(tech.user_id, now)
    _move(uow, ticket, action, target, note, technician_id=tech.user_id, assistant_ids=ticket.assistant_ids,
          mode=mode, **data)
    uow.session.flush()
    uow.emit("ticket.assigned", {**event_fields(ticket), "assigned_by": uow.ctx.actor_id,
                                 "assistant_ids": ticket.assistant_ids, "dispatcher_id": uow.ctx.actor_id,
                                 "mode": mode})


def assign_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, data: AssignIn, mode: str = "manual") -> Ticket:
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = get_ticket(uow, ticket_id)
    teams = _require_office(uow, ticket)
    _assign(uow, ticket, data.technician_id, data.assistant_ids, data.note, mode, teams=teams)
    return ticket


def batch_assign(uow: UnitOfWork, data: BatchAssignIn) -> list[Ticket]:
    """All or nothing: a failing order fails the batch, naming it (ticket_ids.N)."""
    domain.require_dispatcher(uow.ctx.actor_role)
    out = []
    for i, ticket_id in enumerate(dict.fromkeys(data.ticket_ids)):
        try:
            if data.branch_id is not None:
                ticket = dispatch_to_branch(uow, ticket_id, BranchIn(branch_id=data.branch_id, note=data.note))
            else:
                ticket = get_ticket(uow, ticket_id)
                teams = _require_office(uow, ticket)
                _assign(uow, ticket, data.technician_id, data.assistant_ids, data.note, "batch", teams=teams)
        except (Conflict, NotFound, ValidationFailed, Forbidden) as exc:
            errors = [{"field": f"ticket_ids.{i}", "message": exc.message}]
            raise type(exc)(f"ticket_ids.{i}: {exc.message}", errors) from None
        out.append(ticket)
    return out


def reassign_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, data: ReassignIn) -> Ticket:
    """转派: another technician, with a reason."""
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = get_ticket(uow, ticket_id)
    teams = _require_office(uow, ticket)
    previous = ticket.assignee_id
    if previous == data.technician_id:
        raise field_error("technician_id", "already the assigned technician")
    assistants = data.assistant_ids if data.assistant_ids is not None else [
        uuid.UUID(a) for a in ticket.assistant_ids if uuid.UUID(a) != data.technician_id]
    _assign(uow, ticket, data.technician_id, assistants, data.reason, "reassign", Action.REASSIGN, teams=teams,
            from_technician_id=previous)
    uow.emit("ticket.reassigned", {**event_fields(ticket), "from_technician_id": previous, "reason": data.reason,
                                   "assistant_ids": ticket.assistant_ids, "dispatcher_id": uow.ctx.actor_id})
    return ticket


def accept_ticket(uow: UnitOfWork, ticket_id: uuid.UUID) -> Ticket:
    ticket = get_ticket(uow, ticket_id)
    domain.require_assignee_or_dispatcher(uow.ctx.actor_role, uow.ctx.actor_id, ticket.assignee_id)
    _transition(uow, ticket, Action.ACCEPT)
    ticket.accepted_at = utcnow()
    _met_late(uow, ticket, "respond")
    uow.session.flush()
    uow.emit("ticket.accepted", {k: v for k, v in event_fields(ticket).items()
                                 if k not in ("priority", "customer_name")})
    return ticket


def refuse_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, reason: str) -> Ticket:
    """The technician refuses (拒单): back to the queue it came from, with the reason."""
    ticket = get_ticket(uow, ticket_id)
    if ticket.assignee_id is None or uow.ctx.actor_id != ticket.assignee_id:
        raise Forbidden("only the assigned technician may refuse")
    technician = ticket.assignee_id
    _transition(uow, ticket, Action.REFUSE, reason, technician_id=technician)
    ticket.assignee_id, ticket.assistant_ids, ticket.assigned_at = None, [], None
    uow.session.flush()
    uow.emit("ticket.refused", {**event_fields(ticket), "technician_id": technician, "reason": reason})
    return ticket


def publish_to_pool(uow: UnitOfWork, ticket_id: uuid.UUID, data: PublishIn) -> Ticket:
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = get_ticket(uow, ticket_id)
    teams = _require_office(uow, ticket)
    pool_team = data.team_id or ticket.branch_id  # a branch's pool is for its own technicians
    if data.team_id is not None:
        _team(teams, data.team_id, "team_id")
        if ticket.branch_id is not None and ticket.branch_id not in {
                data.team_id, *domain.ancestors(data.team_id, _parents(teams))}:
            raise field_error("team_id", "must be the branch holding the order or a team below it")
    _transition(uow, ticket, Action.PUBLISH, data.note, pool_team_id=pool_team)
    ticket.pool_team_id = pool_team
    uow.session.flush()
    uow.emit("ticket.published_to_pool", {**event_fields(ticket), "pool_team_id": pool_team,
                                          "dispatcher_id": uow.ctx.actor_id})
    return ticket


def grab_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, data: GrabIn | None = None) -> Ticket:
    """抢单: the first eligible technician wins; everyone after gets 409 (the version lock settles
    a race between two that read the order as pooled at the same time)."""
    ticket = get_ticket(uow, ticket_id)
    if uow.ctx.actor_role != "technician":
        raise Forbidden("only technicians grab orders from the pool")
    domain.check_allowed(ticket.status, Action.GRAB)
    tech = _technician(uow, uow.ctx.actor_id, "actor_id")
    if ticket.pool_team_id is not None:
        teams = _teams(uow)
        allowed = {str(t) for t in domain.subtree(ticket.pool_team_id, _parents(teams))}
        if not allowed & set(tech.team_ids or []):
            raise Forbidden("this order is in another team's pool")
    now = utcnow()
    ticket.assignee_id, ticket.assistant_ids = tech.user_id, []
    ticket.assigned_at = ticket.accepted_at = now
    tech.last_assigned_at = now
    spatial.index_for(uow.ctx.tenant_id).assigned(tech.user_id, now)
    planned = data.planned_at.astimezone(dt.timezone.utc) if data and data.planned_at else None
    ticket.next_visit_at = planned  # when the grabber expects to be there
    _transition(uow, ticket, Action.GRAB, technician_id=tech.user_id, planned_at=planned)
    _met_late(uow, ticket, "respond")
    uow.session.flush()
    uow.emit("ticket.grabbed", {**event_fields(ticket), "technician_id": tech.user_id})
    return ticket


# -- automatic dispatch ---------------------------------------------------------------------------

INDEX_COLUMNS = (Technician.user_id, Technician.name, Technician.role, Technician.active, Technician.on_duty,
                 Technician.skills, Technician.areas, Technician.team_ids, Technician.latitude, Technician.longitude,
                 Technician.last_assigned_at, Technician.updated_at)


def _candidate(t) -> domain.Candidate:
    return domain.Candidate(
        user_id=t.user_id, name=t.name, skills=frozenset(t.skills or []), areas=frozenset(t.areas or []),
        team_ids=frozenset(t.team_ids or []), latitude=t.latitude, longitude=t.longitude,
        last_assigned_at=t.last_assigned_at)


def refresh_index(uow: UnitOfWork) -> spatial.TechnicianIndex:
    """The tenant's technician index, brought up to date with roster rows changed since its last
    look (every five minutes a full reload, in case a clock skew hid a change). Plain column rows,
    not ORM objects: this runs on every automatic decision."""
    index = spatial.index_for(uow.ctx.tenant_id)
    with index.lock:
        now = time.monotonic()
        if not index.stale and now - index.checked_at < INDEX_RECHECK_SECONDS:
            return index  # looked a moment ago; positions are "last known" anyway
        index.stale, index.checked_at = False, now
        full = index.watermark is None or now - index.loaded_at > 300
        query = sa.select(*INDEX_COLUMNS).where(Technician.tenant_id == uow.ctx.tenant_id)
        if not full:
            query = query.where(Technician.updated_at >= index.watermark - WATERMARK_SLACK)
        else:
            index.by_id.clear()
            index.cells.clear()
            index.loaded_at = time.monotonic()
        for t in uow.session.execute(query):
            if t.active and t.on_duty and t.role == "technician":
                index.upsert(_candidate(t))
            else:
                index.remove(t.user_id)
            if index.watermark is None or t.updated_at > index.watermark:
                index.watermark = t.updated_at
        if index.watermark is None:
            index.watermark = utcnow()
    return index


def auto_dispatch(uow: UnitOfWork, ticket_id: uuid.UUID) -> Ticket:
    """Pick a technician by the tenant's rules in order and explain the choice in the timeline."""
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = get_ticket(uow, ticket_id)
    teams = _require_office(uow, ticket)
    domain.check_allowed(ticket.status, Action.ASSIGN)
    index = refresh_index(uow)
    candidates = index.candidates()
    if ticket.branch_id is not None:
        allowed = {str(t) for t in domain.subtree(ticket.branch_id, _parents(teams))}
        candidates = [c for c in candidates if allowed & c.team_ids]
    rules = settings_view(uow).dispatch_rules or DEFAULT_RULES
    site = (float(ticket.latitude), float(ticket.longitude)) if ticket.latitude is not None \
        and ticket.longitude is not None else None

    def open_counts(pool):
        counts = dict(uow.session.execute(
            sa.select(Ticket.assignee_id, sa.func.count()).where(
                Ticket.status.in_([s.value for s in domain.OPEN_STATES]), Ticket.assignee_id.is_not(None))
            .group_by(Ticket.assignee_id)).all())
        for c in pool:
            c.open_count = counts.get(c.user_id, 0)

    decision = domain.choose_technician(
        candidates, rules, skill=ticket.skill, area=ticket.area,
        team_id=str(ticket.team_id) if ticket.team_id else None, site=site,
        nearest=lambda pool, s: index.nearest(pool, s), open_counts=open_counts)
    if decision.technician_id is None:
        raise Conflict("no available technician for automatic dispatch",
                       [{"field": "technician_id", "message": "; ".join(decision.explanation)}])
    _assign(uow, ticket, decision.technician_id, [], "; ".join(decision.explanation), "auto", teams=teams,
            rules=rules, distance_m=decision.distance_m)
    return ticket


def record_position(uow: UnitOfWork, data: PositionIn) -> Technician:
    tech = uow.session.get(Technician, uow.ctx.actor_id) if uow.ctx.actor_id else None
    if tech is None:
        raise NotFound("you are not on the technician roster", [{"field": "actor_id", "message": "not found"}])
    tech.latitude, tech.longitude = float(data.latitude), float(data.longitude)
    tech.position_at = tech.updated_at = utcnow()
    if data.on_duty is not None:
        tech.on_duty = data.on_duty
    uow.session.flush()
    spatial.index_for(uow.ctx.tenant_id).stale = True
    return tech


# -- hierarchical networks (网点) --------------------------------------------------------------------

def dispatch_to_branch(uow: UnitOfWork, ticket_id: uuid.UUID, data: BranchIn) -> Ticket:
    """The holder passes the order down to one of its branches (or theirs); it waits in that queue."""
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = get_ticket(uow, ticket_id)
    teams = _require_office(uow, ticket)
    target = _team(teams, data.branch_id, "branch_id", ("branch", "center", "team"))
    if ticket.branch_id is not None and ticket.branch_id not in domain.ancestors(target.team_id, _parents(teams)):
        raise field_error("branch_id", "must be a branch below the one holding the order")
    domain.check_allowed(ticket.status, Action.DISPATCH_TO_BRANCH)
    previous = ticket.branch_id
    ticket.branch_id, ticket.pool_team_id = target.team_id, None
    ticket.branch_path = [*ticket.branch_path, str(target.team_id)]
    _move(uow, ticket, Action.DISPATCH_TO_BRANCH, Status.PENDING_DISPATCH, data.note,
          branch_id=target.team_id, branch=target.name, from_branch_id=previous)
    uow.session.flush()
    uow.emit("ticket.reassigned", {**event_fields(ticket), "from_branch_id": previous, "reason": data.note,
                                   "dispatcher_id": uow.ctx.actor_id})
    return ticket


def request_reassignment(uow: UnitOfWork, ticket_id: uuid.UUID, reason: str) -> Ticket:
    """申请改派: the branch holding the order asks its parent to take it back."""
    ticket = get_ticket(uow, ticket_id)
    teams = _teams(uow)
    if ticket.branch_id is None or ticket.branch_id not in _managed(teams, uow.ctx.actor_id):
        raise Forbidden("only a manager of the branch holding the order may request reassignment")
    domain.check_allowed(ticket.status, Action.REQUEST_REASSIGNMENT)
    if ticket.reassignment_request:
        raise Conflict("a reassignment request is already pending",
                       [{"field": "reassignment_request", "message": "pending"}])
    parent = teams[ticket.branch_id].parent_id
    ticket.reassignment_request = {"requested_by": str(uow.ctx.actor_id), "reason": reason,
                                   "branch_id": str(ticket.branch_id), "parent_id": str(parent) if parent else None,
                                   "at": utcnow().isoformat()}
    _move(uow, ticket, Action.REQUEST_REASSIGNMENT, ticket.status, reason, parent_id=parent)
    uow.session.flush()
    uow.emit("ticket.reassignment_requested", {**event_fields(ticket), "requested_by": uow.ctx.actor_id,
                                               "parent_id": parent, "reason": reason})
    return ticket


def _require_parent_office(uow: UnitOfWork, ticket: Ticket) -> dict:
    """The approver of a reassignment request: the parent of the requesting branch (or above)."""
    if not ticket.reassignment_request:
        raise Conflict("no reassignment request is pending", [{"field": "reassignment_request", "message": "none"}])
    teams = _teams(uow)
    role = uow.ctx.actor_role
    managed = _managed(teams, uow.ctx.actor_id)
    if role == "admin" or (role == "dispatcher" and not managed):
        return teams
    if managed & set(domain.ancestors(ticket.branch_id, _parents(teams))):
        return teams
    raise Forbidden("only the parent of the requesting branch may decide")


def approve_reassignment(uow: UnitOfWork, ticket_id: uuid.UUID, note: str | None) -> Ticket:
    ticket = get_ticket(uow, ticket_id)
    teams = _require_parent_office(uow, ticket)
    domain.check_allowed(ticket.status, Action.APPROVE_REASSIGNMENT)
    previous_branch, previous_tech = ticket.branch_id, ticket.assignee_id
    request = ticket.reassignment_request
    parent = teams[previous_branch].parent_id if previous_branch in teams else None
    ticket.branch_id, ticket.reassignment_request = parent, None
    ticket.assignee_id, ticket.assistant_ids, ticket.assigned_at, ticket.accepted_at = None, [], None, None
    ticket.branch_path = [*ticket.branch_path, str(parent) if parent else "center"]
    _move(uow, ticket, Action.APPROVE_REASSIGNMENT, Status.PENDING_DISPATCH, note,
          from_branch_id=previous_branch, branch_id=parent)
    uow.session.flush()
    uow.emit("ticket.reassigned", {**event_fields(ticket), "from_branch_id": previous_branch,
                                   "from_technician_id": previous_tech, "reason": request.get("reason"),
                                   "dispatcher_id": uow.ctx.actor_id})
    return ticket


def reject_reassignment(uow: UnitOfWork, ticket_id: uuid.UUID, reason: str) -> Ticket:
    """驳回: the order stays with the branch."""
    ticket = get_ticket(uow, ticket_id)
    _require_parent_office(uow, ticket)
    domain.check_allowed(ticket.status, Action.REJECT_REASSIGNMENT)
    requested_by = ticket.reassignment_request.get("requested_by")
    ticket.reassignment_request = None
    _move(uow, ticket, Action.REJECT_REASSIGNMENT, ticket.status, reason)
    uow.session.flush()
    uow.emit("ticket.reassignment_rejected", {**event_fields(ticket), "requested_by": requested_by, "reason": reason})
    return ticket


def outsource_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, data: OutsourceIn) -> Ticket:
    """委外: offer the order to an external team, which accepts or declines."""
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = get_ticket(uow, ticket_id)
    teams = _require_office(uow, ticket)
    team = _team(teams, data.team_id, "team_id", ("external",))
    domain.check_allowed(ticket.status, Action.OUTSOURCE)
    previous = ticket.branch_id
    ticket.outsourced_from_id, ticket.branch_id, ticket.outsource_status = previous, team.team_id, "offered"
    ticket.assignee_id, ticket.pool_team_id = None, None
    _move(uow, ticket, Action.OUTSOURCE, Status.PENDING_DISPATCH, data.note, team_id=team.team_id, team=team.name)
    uow.session.flush()
    uow.emit("ticket.reassigned", {**event_fields(ticket), "from_branch_id": previous, "reason": data.note or "outsourced",
                                   "dispatcher_id": uow.ctx.actor_id})
    return ticket


def answer_outsource(uow: UnitOfWork, ticket_id: uuid.UUID, accept: bool, reason: str | None) -> Ticket:
    ticket = get_ticket(uow, ticket_id)
    teams = _teams(uow)
    if ticket.outsource_status != "offered":
        raise Conflict("this order is not offered to an external team",
                       [{"field": "outsource_status", "message": f"is {ticket.outsource_status}"}])
    if ticket.branch_id not in _managed(teams, uow.ctx.actor_id):
        raise Forbidden("only a manager of the external team may answer")
    if accept:
        domain.check_allowed(ticket.status, Action.ACCEPT_OUTSOURCE)
        ticket.outsource_status = "accepted"
        _move(uow, ticket, Action.ACCEPT_OUTSOURCE, ticket.status, reason)
        uow.session.flush()
        return ticket
    if not reason:
        raise field_error("reason", "a reason is required to decline")
    domain.check_allowed(ticket.status, Action.DECLINE_OUTSOURCE)
    external = ticket.branch_id
    ticket.branch_id, ticket.outsource_status = ticket.outsourced_from_id, "declined"
    _move(uow, ticket, Action.DECLINE_OUTSOURCE, ticket.status, reason, team_id=external)
    uow.session.flush()
    uow.emit("ticket.reassignment_rejected", {**event_fields(ticket), "requested_by": None, "reason": reason})
    return ticket


# -- field execution -----------------------------------------------------------------------------

def _require_field_actor(uow: UnitOfWork, ticket: Ticket, teams: dict | None = None) -> bool:
    """The assignee (or an assistant, for receipts); or the office holding the order acting for them
    (the technician's phone failed): returns True when it is the office."""
    me = uow.ctx.actor_id
    if me is not None and (me == ticket.assignee_id):
        return False
    if uow.ctx.actor_role in domain.DISPATCH_ROLES:
        _require_office(uow, ticket, teams)
        return True
    raise Forbidden("only the assigned technician may do this")


def check_in(uow: UnitOfWork, ticket_id: uuid.UUID, data: CheckInIn) -> Ticket:
    ticket = get_ticket(uow, ticket_id)
    by_office = _require_field_actor(uow, ticket)
    distance = None
    if ticket.latitude is not None and ticket.longitude is not None:
        distance = domain.distance_m(data.latitude, data.longitude, ticket.latitude, ticket.longitude)
    radius = settings_view(uow).check_in_radius_m
    flagged = distance is not None and distance > radius
    _transition(uow, ticket, Action.CHECK_IN, "beyond check-in radius" if flagged else None,
                latitude=data.latitude, longitude=data.longitude, accuracy_m=data.accuracy_m, distance_m=distance,
                radius_m=radius, beyond_radius=flagged, by_office=by_office)
    ticket.checked_in_at = utcnow()
    ticket.check_in_latitude, ticket.check_in_longitude = data.latitude, data.longitude
    ticket.check_in_distance_m, ticket.check_in_accuracy_m, ticket.check_in_flagged = distance, data.accuracy_m, flagged
    _met_late(uow, ticket, "arrive")
    tech = uow.session.get(Technician, ticket.assignee_id) if not by_office else None
    if tech is not None:  # a check-in is also a position
        tech.latitude, tech.longitude = float(data.latitude), float(data.longitude)
        tech.position_at = tech.updated_at = utcnow()
        spatial.index_for(uow.ctx.tenant_id).stale = True
    uow.session.flush()
    uow.emit("ticket.checked_in", {
        "ticket_id": ticket.id, "number": ticket.number, "technician_id": ticket.assignee_id,
        "latitude": data.latitude, "longitude": data.longitude, "distance_m": distance, "type": ticket.type,
        "customer_id": ticket.customer_id, "team_id": ticket.team_id, "accuracy_m": data.accuracy_m,
        "beyond_radius": flagged})
    return ticket


def upload_file(uow: UnitOfWork, ticket_id: uuid.UUID, data: FileIn, storage: Storage) -> StoredFile:
    ticket = get_ticket(uow, ticket_id)
    me = uow.ctx.actor_id
    if not (me == ticket.assignee_id or str(me) in ticket.assistant_ids):
        _require_field_actor(uow, ticket)
    try:
        content = base64.b64decode(data.content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise field_error("content_base64", "not valid base64") from None
    if not content:
        raise field_error("content_base64", "empty file")
    suffix = "." + data.filename.rsplit(".", 1)[-1][:10].lower() if "." in data.filename else ""
    key = storage.put(uow.ctx.tenant_id, content, suffix)
    row = StoredFile(ticket_id=ticket.id, kind=data.kind, filename=data.filename, content_type=data.content_type,
                     size=len(content), storage_key=key, uploaded_by=me)
    uow.session.add(row)
    uow.session.flush()
    return row


def get_file(uow: UnitOfWork, ticket_id: uuid.UUID, file_id: uuid.UUID, storage: Storage) -> tuple[StoredFile, bytes]:
    row = uow.get_or_404(StoredFile, file_id, "file_id", "file")
    if row.ticket_id != ticket_id:
        raise NotFound(f"file {file_id} not found", [{"field": "file_id", "message": "not found"}])
    return row, storage.get(row.storage_key)


def _check_files(uow: UnitOfWork, ticket: Ticket, ids: list[uuid.UUID], field: str, kind: str | None = None) -> None:
    if not ids:
        return
    rows = {f.id: f for f in uow.session.scalars(sa.select(StoredFile).where(StoredFile.id.in_(ids)))}
    for i, file_id in enumerate(ids):
        row = rows.get(file_id)
        if row is None or row.ticket_id != ticket.id:
            raise field_error(f"{field}.{i}" if field.endswith("ids") else field, "no file with this id on this order")
        if kind and row.kind != kind:
            raise field_error(field, f"must be a {kind}")


def pause_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, reason: str | None) -> Ticket:
    ticket = get_ticket(uow, ticket_id)
    _require_field_actor(uow, ticket)
    before = ticket.status
    _transition(uow, ticket, Action.PAUSE, reason)
    ticket.status_before_pause, ticket.paused_at = before, utcnow()
    uow.session.flush()
    uow.emit("ticket.paused", {**event_fields(ticket), "reason": reason, "from_status": before})
    return ticket


def resume_ticket(uow: UnitOfWork, ticket_id: uuid.UUID) -> Ticket:
    """Back to the state it was paused in; the SLA clock did not run while paused."""
    ticket = get_ticket(uow, ticket_id)
    _require_field_actor(uow, ticket)
    domain.check_allowed(ticket.status, Action.RESUME)
    paused = utcnow() - ticket.paused_at
    for name in domain.DEADLINES:
        due = getattr(ticket, f"{name}_due_at")
        if due is not None and name not in ticket.overdue:
            setattr(ticket, f"{name}_due_at", due + paused)
    _move(uow, ticket, Action.RESUME, ticket.status_before_pause, paused_seconds=round(paused.total_seconds(), 3))
    ticket.status_before_pause, ticket.paused_at = None, None
    uow.session.flush()
    uow.emit("ticket.resumed", {**event_fields(ticket), "paused_seconds": round(paused.total_seconds(), 3)})
    return ticket


def add_feedback(uow: UnitOfWork, ticket_id: uuid.UUID, note: str) -> Ticket:
    """过程反馈: anyone working the order (office, branch, technicians on it) notes a special situation."""
    ticket = get_ticket(uow, ticket_id)
    me = uow.ctx.actor_id
    if not (me == ticket.assignee_id or str(me) in ticket.assistant_ids or ticket.created_by == me):
        if uow.ctx.actor_role not in domain.DISPATCH_ROLES:
            raise Forbidden("only people working this order may add feedback")
        _require_office(uow, ticket)
    _record(uow, ticket, Action.FEEDBACK, ticket.status, note)
    uow.session.flush()
    return ticket


def save_unit(uow: UnitOfWork, ticket_id: uuid.UUID, unit: UnitIn) -> Ticket:
    """数据采集: save one installed unit (barcodes, serials, photos) on site; the next unit, then complete."""
    ticket = get_ticket(uow, ticket_id)
    _require_field_actor(uow, ticket)
    if ticket.status != Status.IN_PROGRESS.value:
        raise domain.conflict(ticket.status, "collect unit data on")
    n = len(ticket.receipt.get("units", []))
    _check_files(uow, ticket, unit.photo_ids, "photo_ids")
    ticket.receipt = {**ticket.receipt, "units": [*ticket.receipt.get("units", []), _plain(unit.model_dump())]}
    _record(uow, ticket, Action.COLLECT_UNIT, ticket.status, None, unit=n + 1, barcode=unit.barcode,
            serial_number=unit.serial_number)
    uow.session.flush()
    return ticket


def report_incomplete(uow: UnitOfWork, ticket_id: uuid.UUID, data: IncompleteIn) -> Ticket:
    """The visit ends unfinished (未完成): reason and the next visit; the order awaits it."""
    ticket = get_ticket(uow, ticket_id)
    _require_field_actor(uow, ticket)
    _transition(uow, ticket, Action.INCOMPLETE, data.reason, next_visit_at=data.next_visit_at, notes=data.notes)
    ticket.incomplete_reason = data.reason
    ticket.next_visit_at = data.next_visit_at.astimezone(dt.timezone.utc)
    ticket.checked_in_at = None
    uow.session.flush()
    uow.emit("ticket.incomplete", {**event_fields(ticket), "reason": data.reason, "next_visit_at": data.next_visit_at})
    return ticket


def complete_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, receipt: ReceiptIn) -> Ticket:
    """回执. Stock of the parts used was checked over RPC by the service before this runs."""
    ticket = get_ticket(uow, ticket_id)
    by_office = _require_field_actor(uow, ticket)
    domain.check_allowed(ticket.status, Action.COMPLETE)
    _check_files(uow, ticket, receipt.photo_ids, "photo_ids")
    _check_files(uow, ticket, receipt.file_ids, "file_ids")
    if receipt.signature_id:
        _check_files(uow, ticket, [receipt.signature_id], "signature_id", "signature")
    for i, unit in enumerate(receipt.units):
        _check_files(uow, ticket, unit.photo_ids, f"units.{i}.photo_ids")
    kind = type_view(uow, ticket.type)
    custom = {**ticket.custom_fields, **(receipt.custom_fields or {})}
    ticket.custom_fields = domain.validate_custom_fields(kind.fields, custom)
    now = utcnow()
    on_site = (now - ticket.checked_in_at).total_seconds() if ticket.checked_in_at else None
    _transition(uow, ticket, Action.COMPLETE, receipt.summary, parts=len(receipt.parts_used),
                units=len(receipt.units), completed_by_branch=by_office)
    ticket.completed_at = now
    ticket.summary = receipt.summary
    ticket.completed_by_branch = by_office
    _met_late(uow, ticket, "complete")
    ticket.incomplete_reason, ticket.next_visit_at = None, None
    saved_units = ticket.receipt.get("units", [])
    ticket.receipt = _plain(receipt.model_dump(exclude={"summary", "parts_used", "custom_fields"}))
    ticket.receipt["units"] = saved_units + ticket.receipt["units"]
    ticket.parts_used = [PartUsed(part_id=p.part_id, quantity=p.quantity) for p in receipt.parts_used]
    uow.session.flush()
    uow.emit("ticket.completed", {
        "ticket_id": ticket.id, "number": ticket.number, "type": ticket.type, "technician_id": ticket.assignee_id,
        "dispatcher_id": ticket.created_by, "customer_id": ticket.customer_id, "customer_name": ticket.customer_name,
        "equipment_id": ticket.equipment_id, "contact_name": ticket.contact_name,
        "contact_phone": ticket.contact_phone, "completed_at": now, "summary": receipt.summary,
        "parts_used": [{"part_id": p.part_id, "quantity": p.quantity} for p in receipt.parts_used],
        "assistant_ids": ticket.assistant_ids, "team_id": ticket.team_id, "priority": ticket.priority,
        "service_items": [s.model_dump() for s in receipt.service_items],
        "old_parts": [p.model_dump() for p in receipt.old_parts], "on_site_seconds": on_site,
        "completed_by_branch": by_office, "branch_id": ticket.branch_id})
    flow = _flow(uow, ticket)
    if by_office and flow.after_completion() == [(Action.CLOSE, Status.CLOSED)]:
        # Gree: what the branch reports complete itself (phone failed) it has verified: closed at once.
        _move(uow, ticket, Action.CLOSE, Status.CLOSED, "branch-side completion closes the order")
        ticket.closed_at = utcnow()
        uow.session.flush()
        uow.emit("ticket.closed", {**event_fields(ticket), "closed_at": ticket.closed_at,
                                   "assistant_ids": ticket.assistant_ids})
    return ticket


# -- after completion: approve, settle, visit, close; cancel and reopen ------------------------------

def _after(uow: UnitOfWork, ticket: Ticket, action: Action, note: str | None = None, **data) -> Flow:
    flow = _flow(uow, ticket)
    _move(uow, ticket, action, domain.post_completion_status(ticket.status, action, flow), note, **data)
    return flow


def approve_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, note: str | None) -> Ticket:
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = get_ticket(uow, ticket_id)
    _require_office(uow, ticket)
    _after(uow, ticket, Action.APPROVE, note)
    ticket.approved_at = utcnow()
    uow.session.flush()
    return ticket


def _lines(lines) -> list[dict]:
    return [{**line.model_dump(), "amount": (line.quantity * line.unit_price).quantize(Decimal("0.01"))}
            for line in lines]


def settle_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, data: SettleIn) -> Ticket:
    """审核结算: fees charged to the customer and costs borne, in CNY."""
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = get_ticket(uow, ticket_id)
    _require_office(uow, ticket)
    for i, line in enumerate(data.fee_lines):
        if line.kind == "labour":
            raise field_error(f"fee_lines.{i}.kind", "fee kinds are part, service_item, travel, other")
    for i, line in enumerate(data.cost_lines):
        if line.kind == "service_item":
            raise field_error(f"cost_lines.{i}.kind", "cost kinds are part, labour, travel, other")
    fees, costs = _lines(data.fee_lines), _lines(data.cost_lines)
    fee_total = sum((f["amount"] for f in fees), Decimal("0.00"))
    cost_total = sum((c["amount"] for c in costs), Decimal("0.00"))
    warranty = data.warranty if data.warranty is not None else ticket.under_warranty
    _after(uow, ticket, Action.SETTLE, None, fee_total=fee_total, cost_total=cost_total)
    now = utcnow()
    ticket.settled_at = now
    ticket.settlement = _plain({"currency": "CNY", "warranty": warranty, "fee_lines": fees, "cost_lines": costs,
                                "fee_total": fee_total, "cost_total": cost_total,
                                "gross_profit": fee_total - cost_total})
    uow.session.flush()
    uow.emit("ticket.settled", {**event_fields(ticket), "settled_at": now, "currency": "CNY", "warranty": warranty,
                                "fee_lines": fees, "cost_lines": costs, "fee_total": fee_total,
                                "cost_total": cost_total, "gross_profit": fee_total - cost_total})
    return ticket


def visit_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, data: VisitIn) -> Ticket:
    """回访: the customer was called back; satisfaction 1–5."""
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = get_ticket(uow, ticket_id)
    _require_office(uow, ticket)
    _after(uow, ticket, Action.VISIT, data.comment, satisfaction=data.satisfaction)
    now = utcnow()
    ticket.visited_at, ticket.satisfaction, ticket.visit_comment = now, data.satisfaction, data.comment
    uow.session.flush()
    uow.emit("ticket.visited", {**event_fields(ticket), "visited_at": now, "satisfaction": data.satisfaction,
                                "comment": data.comment})
    return ticket


def close_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, note: str | None) -> Ticket:
    ticket = get_ticket(uow, ticket_id)
    flow = _flow(uow, ticket)
    domain.require_close_role(uow.ctx.actor_role, flow)
    if uow.ctx.actor_role == "technician":
        if uow.ctx.actor_id != ticket.assignee_id:
            raise Forbidden("only the assigned technician may close it")
    else:
        _require_office(uow, ticket)
    _after(uow, ticket, Action.CLOSE, note)
    ticket.closed_at = utcnow()
    uow.session.flush()
    uow.emit("ticket.closed", {**event_fields(ticket), "closed_at": ticket.closed_at, "assistant_ids": ticket.assistant_ids})
    return ticket


def cancel_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, reason: str) -> Ticket:
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = get_ticket(uow, ticket_id)
    _require_office(uow, ticket)
    before = ticket.status
    _transition(uow, ticket, Action.CANCEL, reason)
    ticket.cancel_reason = reason
    uow.session.flush()
    uow.emit("ticket.cancelled", {**event_fields(ticket), "from_status": before, "reason": reason})
    return ticket


def reopen_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, reason: str) -> Ticket:
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = get_ticket(uow, ticket_id)
    _require_office(uow, ticket)
    before = ticket.status
    target = domain.reopen_status(before, _flow(uow, ticket), ticket.assignee_id is not None)
    _move(uow, ticket, Action.REOPEN, target, reason)
    ticket.completed_at = ticket.approved_at = ticket.closed_at = ticket.checked_in_at = None
    ticket.accepted_at = None
    ticket.cancel_reason = None
    uow.session.flush()
    uow.emit("ticket.reopened", {**event_fields(ticket), "from_status": before, "reason": reason})
    return ticket


# -- SLA: overdue orders --------------------------------------------------------------------------

def overdue_candidates(session, now: dt.datetime, limit: int = 500) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant_id, ticket_id) of open orders with a deadline passed (across tenants: the timer's scan)."""
    open_states = [s.value for s in domain.OPEN_STATES if s != Status.PAUSED]
    rows = session.execute(sa.select(Ticket.tenant_id, Ticket.id).where(
        Ticket.status.in_(open_states),
        sa.or_(Ticket.respond_due_at < now, Ticket.arrive_due_at < now, Ticket.complete_due_at < now),
    ).order_by(Ticket.id).limit(limit)).all()
    return [(r[0], r[1]) for r in rows]


def _met_late(uow: UnitOfWork, ticket: Ticket, deadline: str) -> None:
    """A deadline met after its due time, before a scan noticed, is still overdue (once)."""
    due = getattr(ticket, f"{deadline}_due_at")
    now = utcnow()
    if due is not None and due < now and deadline not in ticket.overdue:
        ticket.overdue = [*ticket.overdue, deadline]
        _record(uow, ticket, Action.OVERDUE, ticket.status, f"{deadline} deadline passed", deadline=deadline,
                due_at=due)
        uow.emit("ticket.overdue", {**event_fields(ticket), "deadline": deadline, "due_at": due})


def raise_overdue(uow: UnitOfWork, ticket_id: uuid.UUID, now: dt.datetime) -> list[str]:
    """Raise ticket.overdue once per missed deadline (remembered in `overdue`)."""
    ticket = get_ticket(uow, ticket_id)
    if ticket.status == Status.PAUSED.value or Status(ticket.status) not in domain.OPEN_STATES:
        return []
    raised = []
    for name in domain.DEADLINES:
        due = getattr(ticket, f"{name}_due_at")
        if due is None or due >= now or name in ticket.overdue:
            continue
        if domain.deadline_met(name, ticket.accepted_at, ticket.checked_in_at, ticket.completed_at):
            continue
        raised.append(name)
        ticket.overdue = [*ticket.overdue, name]
        _record(uow, ticket, Action.OVERDUE, ticket.status, f"{name} deadline passed", deadline=name, due_at=due)
        uow.emit("ticket.overdue", {**event_fields(ticket), "deadline": name, "due_at": due})
    if raised:
        uow.session.flush()
    return raised


# -- roster and replicas ----------------------------------------------------------------------------

def apply_user_event(uow: UnitOfWork, event_type: str, user: UserV1) -> None:
    """Keep the roster in step with the gateway's accounts (teams come from team.updated)."""
    member = uow.session.get(Technician, user.user_id)
    if member is None:
        member = Technician(user_id=user.user_id, on_duty=True)
        member.team_ids = [str(t.team_id) for t in uow.session.scalars(sa.select(TeamReplica))
                           if str(user.user_id) in t.member_ids]
        uow.session.add(member)
    member.name, member.role, member.phone = user.name, user.role, user.phone
    member.skills, member.areas = list(user.skills), list(user.areas)
    member.active = user.active and event_type != "user.deactivated"
    member.updated_at = utcnow()
    spatial.index_for(uow.ctx.tenant_id).stale = True


def snapshot_from_replica(uow: UnitOfWork, customer_id: uuid.UUID, equipment_id: uuid.UUID | None,
                          today: dt.date) -> dict | None:
    """The customer snapshot from tickets' own replica, or None if it is not replicated yet.
    One query for customer and equipment, columns only: this runs on every create."""
    columns = [CustomerReplica.customer_id, CustomerReplica.name, CustomerReplica.contact_name,
               CustomerReplica.contact_phone, CustomerReplica.address, CustomerReplica.latitude,
               CustomerReplica.longitude]
    query = sa.select(*columns).where(CustomerReplica.customer_id == customer_id)
    if equipment_id is not None:
        query = sa.select(*columns, EquipmentReplica.equipment_id, EquipmentReplica.model,
                          EquipmentReplica.serial_number, EquipmentReplica.warranty_end,
                          EquipmentReplica.customer_id.label("owner_id")) \
            .join_from(CustomerReplica, EquipmentReplica, EquipmentReplica.equipment_id == equipment_id, isouter=True) \
            .where(CustomerReplica.customer_id == customer_id)
    row = uow.session.execute(query).first()
    if row is None or (equipment_id is not None and row.equipment_id is None):
        return None
    if equipment_id is not None and row.owner_id != row.customer_id:
        raise Conflict("equipment belongs to another customer",
                       [{"field": "equipment_id", "message": "belongs to another customer"}])
    equipment = equipment_id is not None
    return {
        "customer_id": row.customer_id, "customer_name": row.name,
        "contact_name": row.contact_name, "contact_phone": row.contact_phone,
        "address": row.address, "latitude": row.latitude, "longitude": row.longitude,
        "equipment_id": row.equipment_id if equipment else None,
        "equipment_model": row.model if equipment else None,
        "serial_number": row.serial_number if equipment else None,
        "under_warranty": ServiceSnapshotV1.warranty_status(row.warranty_end, today) if equipment else None,
    }


def apply_customer_event(uow: UnitOfWork, customer: CustomerCreatedV1 | CustomerUpdatedV1) -> None:
    row = uow.session.get(CustomerReplica, customer.customer_id) or CustomerReplica(customer_id=customer.customer_id)
    contact = customer.contacts[0] if customer.contacts else None
    address = customer.addresses[0] if customer.addresses else None
    row.name = customer.name
    row.contact_name, row.contact_phone = (contact.name, contact.phone) if contact else (None, None)
    row.address = address.text if address else None
    row.latitude, row.longitude = (address.latitude, address.longitude) if address else (None, None)
    row.updated_at = utcnow()
    uow.session.add(row)


def apply_equipment_event(uow: UnitOfWork, equipment: EquipmentRegisteredV1 | EquipmentUpdatedV1) -> None:
    row = uow.session.get(EquipmentReplica, equipment.equipment_id) or \
        EquipmentReplica(equipment_id=equipment.equipment_id)
    row.customer_id, row.model = equipment.customer_id, equipment.model
    row.serial_number, row.warranty_end = equipment.serial_number, equipment.warranty_end
    row.updated_at = utcnow()
    uow.session.add(row)

"""Work-order rules: the state machine, type flows, custom fields, SLA clocks, who may do what.
Plain Python, no I/O."""
import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from svc_common import geo
from svc_common.errors import Conflict, Forbidden, ValidationFailed, field_error


class Status(StrEnum):
    PENDING_DISPATCH = "pending_dispatch"   # waiting in the centre's or a branch's queue
    POOLED = "pooled"                       # published to the grab pool (工单池)
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"             # checked in on site
    PAUSED = "paused"
    COMPLETED = "completed"                 # receipt submitted
    APPROVED = "approved"                   # completion approved (types with approval)
    SETTLED = "settled"
    VISITED = "visited"                     # return visit done
    CLOSED = "closed"
    CANCELLED = "cancelled"
    PENDING_VERIFICATION = "pending_verification"  # 补录 awaiting the office's verification (desk/records.py)


class Action(StrEnum):
    CREATE = "create"
    ASSIGN = "assign"
    PUBLISH = "publish"
    GRAB = "grab"
    ACCEPT = "accept"
    REFUSE = "refuse"
    REASSIGN = "reassign"
    DISPATCH_TO_BRANCH = "dispatch_to_branch"
    REQUEST_REASSIGNMENT = "request_reassignment"
    APPROVE_REASSIGNMENT = "approve_reassignment"
    REJECT_REASSIGNMENT = "reject_reassignment"
    OUTSOURCE = "outsource"
    ACCEPT_OUTSOURCE = "accept_outsource"
    DECLINE_OUTSOURCE = "decline_outsource"
    CHECK_IN = "check_in"
    PAUSE = "pause"
    RESUME = "resume"
    INCOMPLETE = "incomplete"
    COMPLETE = "complete"
    APPROVE = "approve"
    SETTLE = "settle"
    VISIT = "visit"
    CLOSE = "close"
    CANCEL = "cancel"
    REOPEN = "reopen"
    UPDATE_FIELDS = "update_fields"
    OVERDUE = "overdue"
    FEEDBACK = "feedback"          # 过程反馈
    COLLECT_UNIT = "collect_unit"  # 数据采集, one unit


S = Status
OPEN_STATES = frozenset({S.PENDING_DISPATCH, S.POOLED, S.ASSIGNED, S.ACCEPTED, S.IN_PROGRESS, S.PAUSED})
DONE_STATES = frozenset({S.COMPLETED, S.APPROVED, S.SETTLED, S.VISITED, S.CLOSED})
DISPATCHABLE = frozenset({S.PENDING_DISPATCH, S.POOLED})

# action → (states it is allowed from, state it leads to; None = decided by the handler)
TRANSITIONS: dict[Action, tuple[frozenset[Status], Status | None]] = {
    Action.ASSIGN: (DISPATCHABLE, S.ASSIGNED),
    Action.PUBLISH: (frozenset({S.PENDING_DISPATCH}), S.POOLED),
    Action.GRAB: (frozenset({S.POOLED}), S.ACCEPTED),
    Action.ACCEPT: (frozenset({S.ASSIGNED}), S.ACCEPTED),
    Action.REFUSE: (frozenset({S.ASSIGNED}), S.PENDING_DISPATCH),
    Action.REASSIGN: (frozenset({S.ASSIGNED, S.ACCEPTED}), S.ASSIGNED),
    Action.DISPATCH_TO_BRANCH: (DISPATCHABLE, S.PENDING_DISPATCH),
    Action.REQUEST_REASSIGNMENT: (frozenset({S.PENDING_DISPATCH, S.ASSIGNED, S.ACCEPTED}), None),
    Action.APPROVE_REASSIGNMENT: (frozenset({S.PENDING_DISPATCH, S.ASSIGNED, S.ACCEPTED}), S.PENDING_DISPATCH),
    Action.REJECT_REASSIGNMENT: (frozenset({S.PENDING_DISPATCH, S.ASSIGNED, S.ACCEPTED}), None),
    Action.OUTSOURCE: (DISPATCHABLE, S.PENDING_DISPATCH),
    Action.ACCEPT_OUTSOURCE: (frozenset({S.PENDING_DISPATCH}), S.PENDING_DISPATCH),
    Action.DECLINE_OUTSOURCE: (frozenset({S.PENDING_DISPATCH}), S.PENDING_DISPATCH),
    Action.CHECK_IN: (frozenset({S.ACCEPTED}), S.IN_PROGRESS),
    Action.PAUSE: (frozenset({S.ASSIGNED, S.ACCEPTED, S.IN_PROGRESS}), S.PAUSED),
    Action.RESUME: (frozenset({S.PAUSED}), None),  # back to the state it was paused in
    Action.INCOMPLETE: (frozenset({S.IN_PROGRESS}), S.ACCEPTED),  # a next visit is needed
    Action.COMPLETE: (frozenset({S.IN_PROGRESS}), S.COMPLETED),
    Action.CANCEL: (OPEN_STATES, S.CANCELLED),
    Action.REOPEN: (frozenset({S.COMPLETED, S.APPROVED, S.CLOSED, S.CANCELLED}), None),
    Action.UPDATE_FIELDS: (OPEN_STATES | frozenset({S.COMPLETED}), None),
}

BUILTIN_TYPES: dict[str, tuple[str, str]] = {  # code → (zh-CN, en)
    "install": ("安装", "Installation"), "repair": ("维修", "Repair"), "maintenance": ("保养", "Maintenance"),
    "inspection": ("巡检", "Inspection"), "upgrade": ("升级", "Upgrade"), "training": ("培训", "Training"),
    "complaint": ("投诉", "Complaint"), "delivery": ("送货", "Delivery"),
}
TYPES = tuple(BUILTIN_TYPES)
DISPATCH_ROLES = frozenset({"admin", "dispatcher"})
FIELD_KINDS = ("text", "number", "date", "select", "multi_select", "photo", "signature", "barcode")
DISPATCH_RULES = ("skill", "area", "team", "nearest", "least_open", "round_robin")


def conflict(current: str, action: str) -> Conflict:
    return Conflict(f"cannot {action} a work order that is {current}",
                    [{"field": "status", "message": f"work order is {current}"}])


def check_allowed(current: str, action: Action) -> None:
    allowed_from, _ = TRANSITIONS[action]
    if Status(current) not in allowed_from:
        raise conflict(current, action.value)


def next_status(current: str, action: Action) -> Status:
    """The state `action` leads to, or a 409 naming the current state."""
    check_allowed(current, action)
    target = TRANSITIONS[action][1]
    return target if target is not None else Status(current)


# -- type flows: what follows completion -------------------------------------------------------

@dataclass(frozen=True)
class Flow:
    acceptance_required: bool = True     # False: an assignment counts as accepted
    approval_required: bool = False      # completion is reviewed (审核) before what follows
    settlement: bool = False             # fees and costs settled (结算)
    return_visit: bool = False           # the customer is called back (回访)
    close_roles: tuple[str, ...] = ("admin", "dispatcher")
    reopen_allowed: bool = False

    @classmethod
    def from_dict(cls, data: dict | None) -> "Flow":
        data = dict(data or {})
        if "close_roles" in data:
            data["close_roles"] = tuple(data["close_roles"])
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def after_completion(self) -> list[tuple[Action, Status]]:
        steps = []
        if self.approval_required:
            steps.append((Action.APPROVE, S.APPROVED))
        if self.settlement:
            steps.append((Action.SETTLE, S.SETTLED))
        if self.return_visit:
            steps.append((Action.VISIT, S.VISITED))
        return steps + [(Action.CLOSE, S.CLOSED)]


def post_completion_status(current: str, action: Action, flow: Flow) -> Status:
    """approve → settle → visit → close, each step only if the type's flow has it, in that order."""
    previous = S.COMPLETED
    for step, target in flow.after_completion():
        if step == action:
            if Status(current) != previous:
                raise conflict(current, action.value)
            return target
        previous = target
    raise Conflict(f"work orders of this type have no {action.value} step",
                   [{"field": "status", "message": f"work order is {current}; the type has no {action.value} step"}])


def reopen_status(current: str, flow: Flow, has_assignee: bool) -> Status:
    check_allowed(current, Action.REOPEN)
    if not flow.reopen_allowed:
        raise Conflict("this work-order type does not allow reopening",
                       [{"field": "status", "message": f"work order is {current}; type does not allow reopen"}])
    return S.ASSIGNED if has_assignee else S.PENDING_DISPATCH


def require_close_role(role: str | None, flow: Flow) -> None:
    if role not in flow.close_roles:
        raise Forbidden(f"only {', '.join(flow.close_roles)} may close work orders of this type")


# -- time spent per state ----------------------------------------------------------------------

def add_state_time(durations: dict | None, state: str, since: dt.datetime | None, now: dt.datetime) -> dict:
    """Durations by state in seconds (用时记录), with the time just spent in `state` added."""
    out = dict(durations or {})
    if since is not None:
        out[state] = round(out.get(state, 0) + max((now - since).total_seconds(), 0.0), 3)
    return out


# -- custom fields ---------------------------------------------------------------------------

def validate_field_definitions(fields: list[dict]) -> None:
    seen = set()
    for i, f in enumerate(fields):
        key = f.get("key")
        if key in seen:
            raise field_error(f"fields.{i}.key", "duplicate key")
        seen.add(key)
        if f.get("kind") in ("select", "multi_select") and not f.get("options"):
            raise field_error(f"fields.{i}.options", "a select field needs options")


def validate_custom_fields(definitions: list[dict], values: dict | None, partial: bool = False) -> dict:
    """Check `values` against the type's field definitions; the bad field is named
    (`custom_fields.<key>`). `partial`: an update of some fields, required ones may be absent."""
    values = dict(values or {})
    by_key = {d["key"]: d for d in definitions}
    errors = []
    for key in values:
        if key not in by_key:
            errors.append({"field": f"custom_fields.{key}", "message": "no such field on this work-order type"})
    for key, d in by_key.items():
        name = f"custom_fields.{key}"
        value = values.get(key)
        if value is None or value == "" or value == []:
            if d.get("required") and not partial:
                errors.append({"field": name, "message": f"{d.get('label', key)} is required"})
            values.pop(key, None)
            continue
        message = _field_value_error(d, value)
        if message:
            errors.append({"field": name, "message": message})
        elif d["kind"] == "number":
            values[key] = str(Decimal(str(value)))
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    return values


def _field_value_error(d: dict, value) -> str | None:
    kind = d["kind"]
    if kind in ("text", "barcode", "photo", "signature"):
        if not isinstance(value, str):
            return "must be a string" if kind in ("text", "barcode") else "must be a file id"
        if len(value) > int(d.get("max_length") or 2000):
            return "too long"
    elif kind == "number":
        if isinstance(value, bool):
            return "must be a number"
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return "must be a number"
        if not number.is_finite():
            return "must be a number"
        if d.get("min") is not None and number < Decimal(str(d["min"])):
            return f"must be at least {d['min']}"
        if d.get("max") is not None and number > Decimal(str(d["max"])):
            return f"must be at most {d['max']}"
    elif kind == "date":
        try:
            dt.date.fromisoformat(str(value))
        except ValueError:
            return "must be a date (YYYY-MM-DD)"
    elif kind == "select":
        if value not in (d.get("options") or []):
            return f"must be one of {', '.join(d.get('options') or [])}"
    elif kind == "multi_select":
        if not isinstance(value, list) or any(v not in (d.get("options") or []) for v in value):
            return f"must be a list of {', '.join(d.get('options') or [])}"
    return None


# -- who may do what -------------------------------------------------------------------------

def require_dispatcher(role: str | None) -> None:
    if role not in DISPATCH_ROLES:
        raise Forbidden("only an admin or a dispatcher may do this")


def require_assignee_or_dispatcher(role: str | None, actor_id, assignee_id, assistant_ids=()) -> None:
    """Field actions are the assignee's; the office may act for them (e.g. phone failed)."""
    if role in DISPATCH_ROLES:
        return
    if actor_id is None or actor_id != assignee_id:
        raise Forbidden("only the assigned technician may do this")


# -- branches (网点) ---------------------------------------------------------------------------

def ancestors(team_id, parents: dict) -> list:
    """team_id's parent, grandparent … (cycle-safe)."""
    out, seen = [], {team_id}
    current = parents.get(team_id)
    while current is not None and current not in seen:
        out.append(current)
        seen.add(current)
        current = parents.get(current)
    return out


def subtree(team_id, parents: dict) -> set:
    """team_id and every team below it."""
    return {t for t in parents if t == team_id or team_id in ancestors(t, parents)} | {team_id}


# -- SLA -------------------------------------------------------------------------------------

DEADLINES = ("respond", "arrive", "complete")


@dataclass(frozen=True)
class WorkingHours:
    timezone: str = "Asia/Shanghai"
    days: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7)  # ISO weekdays
    start: dt.time = dt.time(0, 0)
    end: dt.time = dt.time(23, 59, 59, 999999)
    always: bool = True

    @classmethod
    def from_dict(cls, data: dict | None) -> "WorkingHours":
        if not data:
            return cls()
        return cls(timezone=data.get("timezone", "Asia/Shanghai"), days=tuple(data.get("days", (1, 2, 3, 4, 5))),
                   start=dt.time.fromisoformat(data.get("start", "09:00")),
                   end=dt.time.fromisoformat(data.get("end", "18:00")), always=False)


def add_working_minutes(start: dt.datetime, minutes: float, hours: WorkingHours) -> dt.datetime:
    """`start` plus `minutes` of working time (only inside the working days and hours)."""
    if hours.always:
        return start + dt.timedelta(minutes=minutes)
    tz = zoneinfo.ZoneInfo(hours.timezone)
    local = start.astimezone(tz)
    remaining = dt.timedelta(minutes=minutes)
    for _ in range(3660):  # at most ten years of days
        day_start = local.replace(hour=hours.start.hour, minute=hours.start.minute, second=0, microsecond=0)
        day_end = local.replace(hour=hours.end.hour, minute=hours.end.minute, second=0, microsecond=0)
        if local.isoweekday() in hours.days and local < day_end:
            begin = max(local, day_start)
            available = day_end - begin
            if remaining <= available:
                return (begin + remaining).astimezone(dt.timezone.utc)
            remaining -= available
        nxt = (local + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        local = nxt
    raise ValueError("working hours never open")


def sla_deadlines(created_at: dt.datetime, priority: str, rules: dict | None, hours: WorkingHours
                  ) -> dict[str, dt.datetime]:
    """respond/arrive/complete due times for an order of `priority` ({priority: {respond_minutes …}})."""
    rule = (rules or {}).get(priority) or {}
    out = {}
    for name in DEADLINES:
        minutes = rule.get(f"{name}_minutes")
        if minutes:
            out[name] = add_working_minutes(created_at, float(minutes), hours)
    return out


def deadline_met(deadline: str, accepted_at, checked_in_at, completed_at) -> bool:
    return {"respond": accepted_at, "arrive": checked_in_at, "complete": completed_at}[deadline] is not None


# -- geography and automatic dispatch --------------------------------------------------------

def distance_m(lat1, lng1, lat2, lng2) -> float:
    """Great-circle distance in metres, to the decimetre (as timelines and check-ins show it)."""
    return round(geo.distance_m(lat1, lng1, lat2, lng2), 1)


@dataclass
class Candidate:
    user_id: object
    name: str = ""
    skills: frozenset = frozenset()
    areas: frozenset = frozenset()
    team_ids: frozenset = frozenset()
    latitude: float | None = None
    longitude: float | None = None
    open_count: int = 0
    last_assigned_at: dt.datetime | None = None


@dataclass
class Decision:
    technician_id: object | None
    explanation: list[str] = field(default_factory=list)
    distance_m: float | None = None


def validate_dispatch_rules(rules: list[str]) -> None:
    for i, r in enumerate(rules):
        if r not in DISPATCH_RULES:
            raise field_error(f"dispatch_rules.{i}", f"unknown rule; one of {', '.join(DISPATCH_RULES)}")


def choose_technician(candidates: list[Candidate], rules: list[str], skill: str | None = None,
                      area: str | None = None, team_id=None, site: tuple[float, float] | None = None,
                      nearest=None, open_counts=None) -> Decision:
    """Apply the tenant's rules in order: filters (skill, area, team) narrow the candidates, a filter
    that would leave nobody is skipped; the first chooser (nearest, least_open, round_robin) picks.
    `nearest(candidates, site)` may be given to use a spatial index instead of a scan;
    `open_counts(candidates)` fills their open_count when least_open is reached."""
    why: list[str] = []
    pool = list(candidates)
    if not pool:
        return Decision(None, ["no available technician"])
    filters = {"skill": (skill, lambda c: skill in c.skills), "area": (area, lambda c: area in c.areas),
               "team": (team_id, lambda c: team_id in c.team_ids)}
    for rule in rules:
        if rule in filters:
            wanted, keep = filters[rule]
            if wanted is None:
                continue
            narrowed = [c for c in pool if keep(c)]
            if narrowed:
                pool = narrowed
                why.append(f"{rule}={wanted}: {len(pool)} candidates")
            else:
                why.append(f"{rule}={wanted}: nobody matches, rule skipped")
            continue
        if rule == "nearest" and site is not None:
            if nearest is not None:
                found = nearest(pool, site)
            else:
                located = [(distance_m(c.latitude, c.longitude, site[0], site[1]), str(c.user_id), c)
                           for c in pool if c.latitude is not None]
                found = min(located, key=lambda x: (x[0], x[1]))[::2] if located else None
            if found:
                distance, chosen = found
                why.append(f"nearest: {chosen.name or chosen.user_id} at {distance:.0f} m")
                return Decision(chosen.user_id, why, distance)
            why.append("nearest: nobody with a known position, rule skipped")
        elif rule == "least_open":
            if open_counts is not None:
                open_counts(pool)
            chosen = min(pool, key=lambda c: (c.open_count, str(c.user_id)))
            why.append(f"least_open: {chosen.name or chosen.user_id} has {chosen.open_count} open orders")
            return Decision(chosen.user_id, why)
        elif rule == "round_robin":
            epoch = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
            chosen = min(pool, key=lambda c: (c.last_assigned_at or epoch, str(c.user_id)))
            why.append(f"round_robin: {chosen.name or chosen.user_id} waited longest")
            return Decision(chosen.user_id, why)
    chosen = min(pool, key=lambda c: str(c.user_id))
    why.append(f"no choosing rule applied; first of {len(pool)} candidates")
    return Decision(chosen.user_id, why)

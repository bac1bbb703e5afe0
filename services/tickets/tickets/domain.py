"""Work-order rules: the state machine and who may do what. Plain Python, no I/O."""
import math
from decimal import Decimal
from enum import StrEnum

from svc_common.errors import Conflict, Forbidden


class Status(StrEnum):
    PENDING_DISPATCH = "pending_dispatch"
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Action(StrEnum):
    CREATE = "create"
    ASSIGN = "assign"
    ACCEPT = "accept"
    CHECK_IN = "check_in"
    COMPLETE = "complete"


# action → (states it is allowed from, state it leads to)
TRANSITIONS: dict[Action, tuple[frozenset[Status], Status]] = {
    Action.ASSIGN: (frozenset({Status.PENDING_DISPATCH}), Status.ASSIGNED),
    Action.ACCEPT: (frozenset({Status.ASSIGNED}), Status.ACCEPTED),
    Action.CHECK_IN: (frozenset({Status.ACCEPTED}), Status.IN_PROGRESS),
    Action.COMPLETE: (frozenset({Status.IN_PROGRESS}), Status.COMPLETED),
}

TYPES = ("install", "repair", "maintenance", "inspection", "upgrade", "training", "complaint", "delivery")
DISPATCH_ROLES = frozenset({"admin", "dispatcher"})


def next_status(current: str, action: Action) -> Status:
    """The state `action` leads to, or a 409 naming the current state."""
    allowed_from, target = TRANSITIONS[action]
    if Status(current) not in allowed_from:
        raise Conflict(f"cannot {action.value} a work order that is {current}",
                       [{"field": "status", "message": f"work order is {current}"}])
    return target


def require_dispatcher(role: str | None) -> None:
    if role not in DISPATCH_ROLES:
        raise Forbidden("only an admin or a dispatcher may do this")


def require_assignee_or_dispatcher(role: str | None, actor_id, assignee_id) -> None:
    """Field actions are the assignee's; the office may act for them (e.g. phone failed)."""
    if role in DISPATCH_ROLES:
        return
    if actor_id is None or actor_id != assignee_id:
        raise Forbidden("only the assigned technician may do this")


def distance_m(lat1: Decimal, lng1: Decimal, lat2: Decimal, lng2: Decimal) -> float:
    """Great-circle distance (haversine) between a check-in and the site."""
    r = 6_371_000.0
    p1, p2 = math.radians(float(lat1)), math.radians(float(lat2))
    dp, dl = p2 - p1, math.radians(float(lng2) - float(lng1))
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(2 * r * math.asin(math.sqrt(a)), 1)

"""Inventory rules as plain Python: no database, no nameko."""
import uuid
from decimal import Decimal

from svc_common.errors import Conflict, ValidationFailed

# Quantities are kept to 3 decimals (Numeric(18, 3)); one scale everywhere means the
# same quantity reads the same in RPC results, events and the database.
SCALE = Decimal("0.001")


def to_scale(quantity: Decimal) -> Decimal:
    return quantity.quantize(SCALE)


ZERO = to_scale(Decimal(0))


# Location kinds
WAREHOUSE = "warehouse"
PERSONAL = "personal"
PERSONAL_LOCATION_NAME = "个人备件库"

# Stock move kinds (later issues add transfers and returns)
INBOUND = "inbound"
REQUISITION_ISSUE = "requisition_issue"
CONSUMPTION = "consumption"
ADJUSTMENT = "adjustment"

# Requisition lifecycle: requested → approved | rejected, decided once.
REQUESTED = "requested"
APPROVED = "approved"
REJECTED = "rejected"
REQUISITION_STATUSES = (REQUESTED, APPROVED, REJECTED)

# Who may decide requisitions (库管 and administrators).
DECIDER_ROLES = frozenset({"warehouse_manager", "admin"})
TECHNICIAN = "technician"


def ensure_undecided(status: str) -> None:
    if status != REQUESTED:
        raise Conflict(f"requisition is already {status}", [{"field": "status", "message": f"already {status}"}])


def approved_quantities(requested: list[tuple[uuid.UUID, Decimal]],
                        approvals: list[tuple[uuid.UUID, Decimal]] | None) -> list[Decimal]:
    """Quantity to issue for each requested line, in line order.

    No approvals means everything as requested. Otherwise a partial approval: each listed
    part gets its approved quantity (at most what was requested); unlisted lines get 0.
    """
    if approvals is None:
        return [quantity for _, quantity in requested]
    line_of = {part_id: i for i, (part_id, _) in enumerate(requested)}
    result = [ZERO] * len(requested)
    errors = []
    for j, (part_id, quantity) in enumerate(approvals):
        i = line_of.get(part_id)
        if i is None:
            errors.append({"field": f"lines.{j}.part_id", "message": "not on this requisition"})
        elif quantity > requested[i][1]:
            errors.append({"field": f"lines.{j}.approved_quantity",
                           "message": f"more than the {requested[i][1]} requested"})
        else:
            result[i] = quantity
    if not errors and not any(result):
        errors.append({"field": "lines", "message": "approve at least one quantity, or reject the requisition"})
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    return result


def fell_below_minimum(before: Decimal, after: Decimal, minimum: Decimal) -> bool:
    """True when a decrement crosses the low-stock line (alert once, not on every move below it)."""
    return after < minimum <= before

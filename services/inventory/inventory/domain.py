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
TRANSIT = "transit"  # one per tenant: what transfers have shipped and not yet received
PERSONAL_LOCATION_NAME = "个人备件库"
TRANSIT_LOCATION_NAME = "在途"
WAREHOUSE_LEVELS = ("headquarters", "regional", "office")

# Stock move kinds: every movement is one immutable ledger line from → to (None = outside).
INBOUND = "inbound"                    # 入库: outside → warehouse
OUTBOUND = "outbound"                  # 出库: warehouse → outside (sale, scrap, ...)
ADJUSTMENT = "adjustment"              # 盘点/调整: either direction, the difference of a count
TRANSFER_OUT = "transfer_out"          # 调拨出库: warehouse → in transit
TRANSFER_IN = "transfer_in"            # 调拨入库: in transit → warehouse
REQUISITION_ISSUE = "requisition_issue"  # 申领: warehouse → personal stock
RETURN = "return"                      # 退回: personal stock → warehouse
CONSUMPTION = "consumption"            # 工单消耗: personal stock → outside
CONSUMPTION_REVERSAL = "consumption_reversal"  # 冲销: outside → personal stock (order reopened/cancelled)
OLD_PART_RETURN = "old_part_return"    # 旧件返仓: outside → warehouse
MOVE_KINDS = (INBOUND, OUTBOUND, ADJUSTMENT, TRANSFER_OUT, TRANSFER_IN, REQUISITION_ISSUE, RETURN,
              CONSUMPTION, CONSUMPTION_REVERSAL, OLD_PART_RETURN)

# Requisition kinds: issue (申领, warehouse → personal) and return (退回, personal → warehouse).
ISSUE = "issue"
RETURN_REQUEST = "return"

# Transfer lifecycle: in_transit → partially_received → received.
IN_TRANSIT = "in_transit"
PARTIALLY_RECEIVED = "partially_received"
RECEIVED = "received"
TRANSFER_STATUSES = (IN_TRANSIT, PARTIALLY_RECEIVED, RECEIVED)

# Old parts (旧件): held by the technician until returned to a warehouse.
HELD = "held"
RETURNED = "returned"
OLD_PART_STATUSES = (HELD, RETURNED)

# Requisition lifecycle: requested → approved | rejected, decided once.
REQUESTED = "requested"
APPROVED = "approved"
REJECTED = "rejected"
REQUISITION_STATUSES = (REQUESTED, APPROVED, REJECTED)

# Who may decide requisitions (库管 and administrators).
DECIDER_ROLES = frozenset({"warehouse_manager", "admin"})
TECHNICIAN = "technician"
WAREHOUSE_MANAGER = "warehouse_manager"
ADMIN = "admin"


def visible_warehouses(role: str | None, actor_id: uuid.UUID | None,
                       tree: dict[uuid.UUID, tuple[uuid.UUID | None, list[str]]]) -> set[uuid.UUID] | None:
    """Which warehouses a caller sees; None means all of them.

    `tree` maps warehouse id → (parent id, manager ids). A warehouse manager sees the
    warehouses they manage and everything below them, so the manager of headquarters sees
    all and a regional manager sees their region; everyone else sees all warehouses (to pick
    one for a requisition) and the service enforces who may change what.
    """
    if role != WAREHOUSE_MANAGER:
        return None
    me = str(actor_id)
    return subtree([w for w, (_, managers) in tree.items() if me in managers], tree)


def subtree(roots: list[uuid.UUID], tree: dict[uuid.UUID, tuple[uuid.UUID | None, list[str]]]) -> set[uuid.UUID]:
    """The given warehouses and every warehouse below them."""
    children: dict[uuid.UUID | None, list[uuid.UUID]] = {}
    for warehouse_id, (parent_id, _) in tree.items():
        children.setdefault(parent_id, []).append(warehouse_id)
    seen: set[uuid.UUID] = set()
    stack = list(roots)
    while stack:
        warehouse_id = stack.pop()
        if warehouse_id not in seen:
            seen.add(warehouse_id)
            stack.extend(children.get(warehouse_id, []))
    return seen


def ensure_no_cycle(warehouse_id: uuid.UUID, new_parent_id: uuid.UUID | None,
                    parents: dict[uuid.UUID, uuid.UUID | None]) -> None:
    """A warehouse cannot be placed under itself or one of its descendants."""
    node = new_parent_id
    while node is not None:
        if node == warehouse_id:
            raise ValidationFailed("parent_id: a warehouse cannot be nested under itself",
                                   [{"field": "parent_id", "message": "would create a cycle"}])
        node = parents.get(node)


def transfer_status(lines: list[tuple[Decimal, Decimal]]) -> str:
    """Status from (shipped, received) per line."""
    if all(received >= shipped for shipped, received in lines):
        return RECEIVED
    if any(received > 0 for _, received in lines):
        return PARTIALLY_RECEIVED
    return IN_TRANSIT


def receipt_quantities(outstanding: dict[uuid.UUID, Decimal],
                       receipt: list[tuple[uuid.UUID, Decimal]] | None) -> dict[uuid.UUID, Decimal]:
    """What to receive per part: everything outstanding (None) or the listed quantities, each at
    most what is still in transit."""
    if receipt is None:
        result = {part: q for part, q in outstanding.items() if q > 0}
    else:
        result, errors = {}, []
        for j, (part_id, quantity) in enumerate(receipt):
            if part_id not in outstanding:
                errors.append({"field": f"lines.{j}.part_id", "message": "not on this transfer"})
            elif quantity > outstanding[part_id]:
                errors.append({"field": f"lines.{j}.quantity",
                               "message": f"more than the {outstanding[part_id]} in transit"})
            elif quantity > 0:
                result[part_id] = result.get(part_id, ZERO) + quantity
        if errors:
            raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    if not result:
        raise ValidationFailed("lines: nothing to receive", [{"field": "lines", "message": "nothing to receive"}])
    return result


def net_consumed(moves: list[tuple[str, uuid.UUID, uuid.UUID | None, Decimal]]
                 ) -> dict[tuple[uuid.UUID, uuid.UUID | None], Decimal]:
    """What a work order still has consumed, per (part, personal location): consumptions minus the
    reversals already booked. Reversing this (and nothing else) makes a reversal idempotent."""
    net: dict[tuple[uuid.UUID, uuid.UUID | None], Decimal] = {}
    for kind, part_id, location_id, quantity in moves:
        sign = 1 if kind == CONSUMPTION else -1 if kind == CONSUMPTION_REVERSAL else 0
        net[(part_id, location_id)] = net.get((part_id, location_id), ZERO) + sign * quantity
    return {key: q for key, q in net.items() if q > 0}


def stocktake_differences(counted: dict[uuid.UUID, Decimal], on_hand: dict[uuid.UUID, Decimal]
                          ) -> dict[uuid.UUID, Decimal]:
    """Counted minus on hand per part (positive: found more; negative: missing); zeros left out."""
    return {part: counted[part] - on_hand.get(part, ZERO) for part in counted
            if counted[part] != on_hand.get(part, ZERO)}


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

"""Event and RPC contracts produced by tickets."""
import uuid
from decimal import Decimal

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from svc_common.contracts.base import Contract

PRODUCER = "tickets"


class PartUsedV1(Contract):
    part_id: uuid.UUID
    quantity: Decimal = Field(gt=0)


class _TicketEvent(Contract):
    """What every ticket event carries (notify and reports read any of them the same way)."""
    ticket_id: uuid.UUID
    number: str
    type: str | None = None
    customer_id: uuid.UUID | None = None
    technician_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    branch_id: uuid.UUID | None = None
    priority: str | None = None
    customer_name: str | None = None


class ServiceItemUsedV1(Contract):
    service_item_id: uuid.UUID
    quantity: Decimal = Field(gt=0)


class OldPartV1(Contract):
    part_id: uuid.UUID
    quantity: Decimal = Field(gt=0)
    serial_number: str | None = None


class TicketCreatedV1(Contract):
    ticket_id: uuid.UUID
    number: str
    type: str
    customer_id: uuid.UUID
    equipment_id: uuid.UUID | None = None
    created_by: uuid.UUID | None = None
    priority: str | None = None
    team_id: uuid.UUID | None = None
    dispatcher_id: uuid.UUID | None = None
    plan_id: uuid.UUID | None = None
    service_request_id: uuid.UUID | None = None
    customer_name: str | None = None
    branch_id: uuid.UUID | None = None
    backfilled: bool = False  # 补录: work done before it was recorded, entered afterwards (no SLA, no alerts)


class TicketAssignedV1(Contract):
    ticket_id: uuid.UUID
    number: str
    technician_id: uuid.UUID
    assigned_by: uuid.UUID | None = None
    type: str | None = None
    customer_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    branch_id: uuid.UUID | None = None
    assistant_ids: list[uuid.UUID] = []
    dispatcher_id: uuid.UUID | None = None
    priority: str | None = None
    customer_name: str | None = None
    mode: str | None = None  # manual | batch | auto | reassign


class TicketAcceptedV1(Contract):
    ticket_id: uuid.UUID
    number: str
    technician_id: uuid.UUID
    type: str | None = None
    customer_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    branch_id: uuid.UUID | None = None


class TicketCheckedInV1(Contract):
    ticket_id: uuid.UUID
    number: str
    technician_id: uuid.UUID
    latitude: Decimal
    longitude: Decimal
    distance_m: float | None = None
    type: str | None = None
    customer_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    accuracy_m: float | None = None
    beyond_radius: bool | None = None


class TicketCompletedV1(Contract):
    ticket_id: uuid.UUID
    number: str
    type: str
    technician_id: uuid.UUID
    dispatcher_id: uuid.UUID | None = None
    customer_id: uuid.UUID
    customer_name: str
    equipment_id: uuid.UUID | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    completed_at: AwareDatetime
    summary: str
    parts_used: list[PartUsedV1] = []
    assistant_ids: list[uuid.UUID] = []
    team_id: uuid.UUID | None = None
    priority: str | None = None
    service_items: list[ServiceItemUsedV1] = []
    old_parts: list[OldPartV1] = []
    on_site_seconds: float | None = None
    completed_by_branch: bool = False
    branch_id: uuid.UUID | None = None
    backfilled: bool = False  # 补录, verified by the office; parts were used in the past


class TicketPublishedToPoolV1(_TicketEvent):
    pool_team_id: uuid.UUID | None = None
    dispatcher_id: uuid.UUID | None = None


class TicketGrabbedV1(_TicketEvent):
    technician_id: uuid.UUID


class TicketRefusedV1(_TicketEvent):
    technician_id: uuid.UUID
    reason: str


class TicketReassignedV1(_TicketEvent):
    """Another technician (转派), or another branch's queue when `branch_id` changed."""
    from_technician_id: uuid.UUID | None = None
    from_branch_id: uuid.UUID | None = None
    assistant_ids: list[uuid.UUID] = []
    reason: str | None = None
    dispatcher_id: uuid.UUID | None = None


class TicketReassignmentRequestedV1(_TicketEvent):
    requested_by: uuid.UUID | None = None
    parent_id: uuid.UUID | None = None
    reason: str


class TicketReassignmentRejectedV1(_TicketEvent):
    requested_by: uuid.UUID | None = None
    reason: str | None = None


class TicketPausedV1(_TicketEvent):
    reason: str | None = None
    from_status: str


class TicketResumedV1(_TicketEvent):
    paused_seconds: float


class TicketOverdueV1(_TicketEvent):
    deadline: Literal["respond", "arrive", "complete"]
    due_at: AwareDatetime


class TicketCancelledV1(_TicketEvent):
    from_status: str
    reason: str


class TicketReopenedV1(_TicketEvent):
    from_status: str
    reason: str


class TicketClosedV1(_TicketEvent):
    closed_at: AwareDatetime
    assistant_ids: list[uuid.UUID] = []


class MoneyLineV1(Contract):
    kind: str
    ref_id: uuid.UUID | None = None
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


class TicketSettledV1(_TicketEvent):
    settled_at: AwareDatetime
    currency: str = "CNY"
    warranty: bool | None = None
    fee_lines: list[MoneyLineV1] = []
    cost_lines: list[MoneyLineV1] = []
    fee_total: Decimal
    cost_total: Decimal
    gross_profit: Decimal


Stars = Annotated[int, Field(ge=1, le=5)]


class TicketVisitedV1(_TicketEvent):
    visited_at: AwareDatetime
    satisfaction: int | None = Field(None, ge=1, le=5)  # overall stars
    comment: str | None = None
    scores: dict[str, Stars] = {}  # per tenant dimension (quality, efficiency, attitude ...) → stars
    tags: list[str] = []  # quick tags the customer or the visitor picked
    by_customer: bool = False  # rated by the customer on the portal page, not entered by staff


class TicketVisitRequestedV1(_TicketEvent):
    """A return visit (回访) waits for the customer's rating: `rating_path` is the no-login rating page
    under the gateway (notify prefixes the tenant's portal address and texts it to the contact)."""
    visit_id: uuid.UUID
    rating_path: str
    contact_name: str | None = None
    contact_phone: str | None = None


class TicketIncompleteV1(_TicketEvent):
    """A visit ended without finishing (未完成): reason and the next visit."""
    reason: str
    next_visit_at: AwareDatetime | None = None


# event type → {schema_version: contract}
EVENTS: dict[str, dict[int, type[Contract]]] = {
    "ticket.created": {1: TicketCreatedV1},
    "ticket.assigned": {1: TicketAssignedV1},
    "ticket.accepted": {1: TicketAcceptedV1},
    "ticket.checked_in": {1: TicketCheckedInV1},
    "ticket.completed": {1: TicketCompletedV1},
    "ticket.published_to_pool": {1: TicketPublishedToPoolV1},
    "ticket.grabbed": {1: TicketGrabbedV1},
    "ticket.refused": {1: TicketRefusedV1},
    "ticket.reassigned": {1: TicketReassignedV1},
    "ticket.reassignment_requested": {1: TicketReassignmentRequestedV1},
    "ticket.reassignment_rejected": {1: TicketReassignmentRejectedV1},
    "ticket.paused": {1: TicketPausedV1},
    "ticket.resumed": {1: TicketResumedV1},
    "ticket.overdue": {1: TicketOverdueV1},
    "ticket.cancelled": {1: TicketCancelledV1},
    "ticket.reopened": {1: TicketReopenedV1},
    "ticket.closed": {1: TicketClosedV1},
    "ticket.settled": {1: TicketSettledV1},
    "ticket.visited": {1: TicketVisitedV1},
    "ticket.incomplete": {1: TicketIncompleteV1},
    "ticket.visit_requested": {1: TicketVisitRequestedV1},
}

"""Event and RPC contracts produced by inventory."""
import uuid
from decimal import Decimal

from svc_common.contracts.base import Contract

PRODUCER = "inventory"


class RequisitionLineV1(Contract):
    part_id: uuid.UUID
    quantity: Decimal
    approved_quantity: Decimal | None = None


class RequisitionV1(Contract):
    """requisition.* (申领) and stock.return_* (退回, kind "return") share this payload."""
    requisition_id: uuid.UUID
    number: str
    technician_id: uuid.UUID
    warehouse_id: uuid.UUID
    status: str
    lines: list[RequisitionLineV1]
    reason: str | None = None
    kind: str | None = None  # issue | return
    requested_by: uuid.UUID | None = None
    manager_ids: list[uuid.UUID] | None = None


class StockMovedV1(Contract):
    move_id: uuid.UUID
    part_id: uuid.UUID
    quantity: Decimal
    kind: str
    from_location_id: uuid.UUID | None = None
    to_location_id: uuid.UUID | None = None
    ref_type: str | None = None
    ref_id: uuid.UUID | None = None
    ref_number: str | None = None
    unit_cost: Decimal | None = None
    value: Decimal | None = None  # quantity × unit_cost
    technician_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    warehouse_id: uuid.UUID | None = None  # the warehouse end of the movement, if any
    ticket_id: uuid.UUID | None = None
    actor_id: uuid.UUID | None = None


class StockLowV1(Contract):
    """A warehouse's stock of a part crossed below the part's minimum (once per crossing)."""
    part_id: uuid.UUID
    location_id: uuid.UUID
    quantity: Decimal
    minimum: Decimal
    part_code: str | None = None
    part_name: str | None = None
    warehouse_id: uuid.UUID | None = None
    warehouse_name: str | None = None
    manager_ids: list[uuid.UUID] | None = None


class ConsumptionShortfallV1(Contract):
    ticket_id: uuid.UUID
    ticket_number: str
    technician_id: uuid.UUID
    part_id: uuid.UUID
    requested: Decimal
    available: Decimal
    manager_ids: list[uuid.UUID] | None = None
    warehouse_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    number: str | None = None  # the work order's number, as every ticket-related payload names it


class ConsumptionReversedV1(Contract):
    """A completed work order was reopened or cancelled: its consumed parts went back to personal stock."""
    ticket_id: uuid.UUID
    number: str
    technician_id: uuid.UUID | None = None
    reason: str | None = None
    lines: list[RequisitionLineV1]


class TransferLineV1(Contract):
    part_id: uuid.UUID
    quantity: Decimal
    received_quantity: Decimal


class TransferV1(Contract):
    """transfer.shipped (into transit) and transfer.received (whole or partial receipt)."""
    transfer_id: uuid.UUID
    number: str
    from_warehouse_id: uuid.UUID
    to_warehouse_id: uuid.UUID
    status: str
    lines: list[TransferLineV1]
    manager_ids: list[uuid.UUID] | None = None  # of the receiving warehouse


class OldPartReturnedV1(Contract):
    old_part_id: uuid.UUID
    ticket_id: uuid.UUID
    number: str
    technician_id: uuid.UUID
    part_id: uuid.UUID
    quantity: Decimal
    serial_number: str | None = None
    warehouse_id: uuid.UUID


# --- RPC contracts (answers other services rely on) -------------------------------------------------

class StockShortfallV1(Contract):
    part_id: uuid.UUID
    requested: Decimal
    available: Decimal


class StockAvailabilityV1(Contract):
    """inventory.check_stock_available(technician_id, parts=[{part_id, quantity}])."""
    available: bool
    shortfalls: list[StockShortfallV1]


class ServiceItemV1(Contract):
    """inventory.get_service_items(ids): priced service items (服务项目) for settlement."""
    id: uuid.UUID
    code: str
    name: str
    unit: str
    price: Decimal
    cost_price: Decimal | None = None
    active: bool = True


# event type → {schema_version: contract}
EVENTS: dict[str, dict[int, type[Contract]]] = {
    "requisition.requested": {1: RequisitionV1},
    "requisition.approved": {1: RequisitionV1},
    "requisition.rejected": {1: RequisitionV1},
    "stock.moved": {1: StockMovedV1},
    "stock.low": {1: StockLowV1},
    "consumption.shortfall": {1: ConsumptionShortfallV1},
    "consumption.reversed": {1: ConsumptionReversedV1},
    "stock.return_requested": {1: RequisitionV1},
    "stock.return_approved": {1: RequisitionV1},
    "stock.return_rejected": {1: RequisitionV1},
    "transfer.shipped": {1: TransferV1},
    "transfer.received": {1: TransferV1},
    "old_part.returned": {1: OldPartReturnedV1},
}

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
    requisition_id: uuid.UUID
    number: str
    technician_id: uuid.UUID
    warehouse_id: uuid.UUID
    status: str
    lines: list[RequisitionLineV1]
    reason: str | None = None


class StockMovedV1(Contract):
    move_id: uuid.UUID
    part_id: uuid.UUID
    quantity: Decimal
    kind: str
    from_location_id: uuid.UUID | None = None
    to_location_id: uuid.UUID | None = None
    ref_type: str | None = None
    ref_id: uuid.UUID | None = None


class StockLowV1(Contract):
    part_id: uuid.UUID
    location_id: uuid.UUID
    quantity: Decimal
    minimum: Decimal


class ConsumptionShortfallV1(Contract):
    ticket_id: uuid.UUID
    ticket_number: str
    technician_id: uuid.UUID
    part_id: uuid.UUID
    requested: Decimal
    available: Decimal


# event type → {schema_version: contract}
EVENTS: dict[str, dict[int, type[Contract]]] = {
    "requisition.requested": {1: RequisitionV1},
    "requisition.approved": {1: RequisitionV1},
    "requisition.rejected": {1: RequisitionV1},
    "stock.moved": {1: StockMovedV1},
    "stock.low": {1: StockLowV1},
    "consumption.shortfall": {1: ConsumptionShortfallV1},
}

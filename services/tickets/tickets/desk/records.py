"""Back-filled service records (补录) with verification by the office.

A record is a real work order from the start: submitted, the order waits in `pending_verification`
(outside dispatch, the pool and the SLA clock, no deadlines, and no event yet: the rest of the
platform learns of it only once it is verified). Verified, it becomes a completed order as entered
(technician, the past completion time, parts, service items, summary) and emits `ticket.created` and
`ticket.completed` with `backfilled=true`, so inventory takes the parts from the technician's stock and
reports count it. Rejected, it is cancelled with the note and emits nothing."""
import uuid

import sqlalchemy as sa

from svc_common.contracts import ServiceSnapshotV1
from svc_common.db import utcnow
from svc_common.errors import Conflict, field_error
from svc_common.uow import UnitOfWork
from tickets import handlers as tickets
from tickets.domain import Action, Status
from tickets.models import PartUsed, Ticket
from tickets.schemas import ReceiptIn

from . import domain
from .models import ServiceRecord
from .schemas import ServiceRecordIn


def _technician_of(uow: UnitOfWork, data: ServiceRecordIn) -> uuid.UUID:
    """Who did the work: named, or the technician entering it; a roster technician either way (the
    parts come out of their personal stock once verified)."""
    technician_id = data.technician_id
    if technician_id is None and uow.ctx.actor_role == "technician":
        technician_id = uow.ctx.actor_id
    if technician_id is None:
        raise field_error("technician_id", "name the technician who did the work")
    return tickets._technician(uow, technician_id, "technician_id").user_id


def _of_this_request(uow: UnitOfWork) -> ServiceRecord | None:
    """The record this very RPC call already made, if it is a redelivery of it."""
    ticket = tickets.created_by_this_request(uow)
    if ticket is None:
        return None
    return uow.session.scalar(sa.select(ServiceRecord).where(ServiceRecord.ticket_id == ticket.id))


def submit(uow: UnitOfWork, data: ServiceRecordIn, snapshot: dict) -> ServiceRecord:
    """Anyone of the staff enters it (the technician who did the work, the desk); `snapshot` is the
    customer as the replica or customers.get_service_snapshot gave it."""
    again = _of_this_request(uow)
    if again is not None:
        return again
    tickets.get_type(uow, data.ticket_type, "ticket_type")
    now = utcnow()
    domain.check_backfill_time(data.done_at, now)
    technician_id = _technician_of(uow, data)
    ticket = Ticket(
        request_id=uow.ctx.request_id, type=data.ticket_type, status=domain.PENDING_VERIFICATION,
        priority="normal", description=data.summary, created_by=uow.ctx.actor_id, assignee_id=technician_id,
        backfilled=True, assistant_ids=[], branch_path=[], overdue=[], receipt={}, custom_fields={},
        state_seconds={}, status_since=now, created_at=now,
        **ServiceSnapshotV1.model_validate(snapshot).model_dump())
    ticket.parts_used = []
    ticket.number = uow.next_number("work_order", "WO")
    row = ServiceRecord(
        ticket_type=data.ticket_type, customer_id=ticket.customer_id, equipment_id=ticket.equipment_id,
        technician_id=technician_id, done_at=data.done_at, summary=data.summary,
        parts_used=[{"part_id": str(p.ref_id), "quantity": str(p.quantity)} for p in data.parts_used],
        service_items=[{"service_item_id": str(s.ref_id), "quantity": str(s.quantity)} for s in data.service_items],
        status="pending", submitted_by=uow.ctx.actor_id, created_at=now, ticket_number=ticket.number)
    row.number = uow.next_number("service_record", "BL")
    tickets._record(uow, ticket, Action.CREATE, None, "补录，待审核", backfilled=True, record=row.number,
                    done_at=data.done_at)
    uow.session.add(ticket)
    uow.session.flush()
    row.ticket_id = ticket.id
    uow.session.add(row)
    uow.session.flush()
    return row


def _complete(uow: UnitOfWork, row: ServiceRecord, ticket: Ticket, note: str | None) -> None:
    """The order as entered, completed at the past time of the work; its events in this transaction."""
    receipt = ReceiptIn(summary=row.summary, service_items=row.service_items,
                        parts_used=[{"part_id": p["part_id"], "quantity": p["quantity"]} for p in row.parts_used])
    tickets._move(uow, ticket, Action.COMPLETE, Status.COMPLETED, note, backfilled=True, record=row.number,
                  done_at=row.done_at, parts=len(receipt.parts_used))
    ticket.completed_at, ticket.summary = row.done_at, row.summary
    ticket.receipt = tickets._plain(receipt.model_dump(exclude={"summary", "parts_used", "custom_fields"}))
    ticket.parts_used = [PartUsed(part_id=p.part_id, quantity=p.quantity) for p in receipt.parts_used]
    uow.session.flush()
    uow.emit("ticket.created", {
        "ticket_id": ticket.id, "number": ticket.number, "type": ticket.type, "customer_id": ticket.customer_id,
        "equipment_id": ticket.equipment_id, "created_by": ticket.created_by, "priority": ticket.priority,
        "dispatcher_id": uow.ctx.actor_id, "customer_name": ticket.customer_name, "backfilled": True})
    uow.emit("ticket.completed", {
        "ticket_id": ticket.id, "number": ticket.number, "type": ticket.type, "technician_id": ticket.assignee_id,
        "dispatcher_id": uow.ctx.actor_id, "customer_id": ticket.customer_id, "customer_name": ticket.customer_name,
        "equipment_id": ticket.equipment_id, "contact_name": ticket.contact_name,
        "contact_phone": ticket.contact_phone, "completed_at": ticket.completed_at, "summary": ticket.summary,
        "parts_used": [{"part_id": p.part_id, "quantity": p.quantity} for p in receipt.parts_used],
        "service_items": [s.model_dump() for s in receipt.service_items], "priority": ticket.priority,
        "backfilled": True})


def verify(uow: UnitOfWork, record_id: uuid.UUID, approve: bool, note: str | None) -> ServiceRecord:
    domain.require_desk(uow.ctx.actor_role)
    row = uow.get_or_404(ServiceRecord, record_id, "record_id", "service record")
    if row.status != "pending":
        raise Conflict(f"the record is {row.status}", [{"field": "status", "message": row.status}])
    if not approve and not (note and note.strip()):
        raise field_error("note", "a rejection needs a note")
    if row.submitted_by is not None and row.submitted_by == uow.ctx.actor_id and uow.ctx.actor_role != "admin":
        raise Conflict("a record is verified by someone other than who entered it",
                       [{"field": "record_id", "message": "entered by you"}])
    if row.ticket_id is not None:
        ticket = tickets.get_ticket(uow, row.ticket_id)
        if ticket.status != domain.PENDING_VERIFICATION:
            raise Conflict(f"work order {ticket.number} is {ticket.status}",
                           [{"field": "status", "message": f"work order is {ticket.status}"}])
        if approve:
            _complete(uow, row, ticket, note)
        else:
            # Nothing was announced for it, so nothing is withdrawn: no event.
            tickets._move(uow, ticket, Action.CANCEL, Status.CANCELLED, note, backfilled=True, record=row.number)
            ticket.cancel_reason = note
    row.status = "verified" if approve else "rejected"
    row.verified_by, row.verify_note, row.verified_at = uow.ctx.actor_id, note, utcnow()
    uow.session.flush()
    return row


def list_records(uow: UnitOfWork, status: str | None, customer_id: uuid.UUID | None, equipment_id: uuid.UUID | None,
                 offset: int, limit: int) -> tuple[list[ServiceRecord], int]:
    query = sa.select(ServiceRecord)
    if status:
        if status not in ("pending", "verified", "rejected"):
            raise field_error("status", "pending, verified or rejected")
        query = query.where(ServiceRecord.status == status)
    if customer_id:
        query = query.where(ServiceRecord.customer_id == customer_id)
    if equipment_id:
        query = query.where(ServiceRecord.equipment_id == equipment_id)
    total = uow.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = uow.session.scalars(query.order_by(ServiceRecord.done_at.desc(), ServiceRecord.id).offset(offset).limit(limit))
    return list(rows), total

"""Back-filled service records (补录) with verification by the office."""
import uuid

import sqlalchemy as sa

from svc_common.db import utcnow
from svc_common.errors import Conflict, field_error
from svc_common.uow import UnitOfWork
from tickets import handlers as tickets

from . import domain
from .models import ServiceRecord
from .schemas import ServiceRecordIn


def submit(uow: UnitOfWork, data: ServiceRecordIn) -> ServiceRecord:
    """Anyone of the staff enters it (the technician who did the work, the desk); it waits for verification."""
    tickets.get_type(uow, data.ticket_type, "ticket_type")
    if data.done_at > utcnow():
        raise field_error("done_at", "a back-filled record is for work already done")
    row = ServiceRecord(
        ticket_type=data.ticket_type, customer_id=data.customer_id, equipment_id=data.equipment_id,
        technician_id=data.technician_id or (uow.ctx.actor_id if uow.ctx.actor_role == "technician" else None),
        done_at=data.done_at, summary=data.summary,
        parts_used=[{"part_id": str(p.ref_id), "quantity": str(p.quantity)} for p in data.parts_used],
        service_items=[{"service_item_id": str(s.ref_id), "quantity": str(s.quantity)} for s in data.service_items],
        status="pending", submitted_by=uow.ctx.actor_id, created_at=utcnow())
    row.number = uow.next_number("service_record", "BL")
    uow.session.add(row)
    uow.session.flush()
    return row


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

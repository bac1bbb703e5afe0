"""Use cases of the tickets service: plain Python over a unit of work (no nameko)."""
import uuid

import sqlalchemy as sa

import datetime as dt

from svc_common.contracts import (
    CustomerCreatedV1, EquipmentRegisteredV1, ServiceSnapshotV1, TicketAcceptedV1, TicketAssignedV1, TicketCheckedInV1,
    TicketCompletedV1, TicketCreatedV1, UserV1,
)
from svc_common.db import utcnow
from svc_common.errors import Conflict, ValidationFailed
from svc_common.uow import UnitOfWork

from . import domain
from .domain import Action, Status
from .models import CustomerReplica, EquipmentReplica, PartUsed, Technician, Ticket, TimelineEntry
from .schemas import AssignIn, CheckInIn, ReceiptIn, TicketIn


def _record(uow: UnitOfWork, ticket: Ticket, action: Action, from_status: str | None,
            note: str | None = None, **data) -> None:
    ticket.timeline.append(TimelineEntry(
        seq=len(ticket.timeline) + 1, action=action.value, from_status=from_status, to_status=ticket.status,
        actor_id=uow.ctx.actor_id, actor_role=uow.ctx.actor_role, note=note,
        data={k: str(v) if v is not None else None for k, v in data.items()}, at=utcnow()))


def _transition(uow: UnitOfWork, ticket: Ticket, action: Action, note: str | None = None, **data) -> None:
    previous = ticket.status
    ticket.status = domain.next_status(previous, action).value
    _record(uow, ticket, action, previous, note, **data)


def created_by_this_request(uow: UnitOfWork) -> Ticket | None:
    """The order this very RPC call already created, if it is a redelivery of it."""
    if uow.ctx.request_id is None:
        return None
    return uow.session.scalar(sa.select(Ticket).where(Ticket.request_id == uow.ctx.request_id))


def create_ticket(uow: UnitOfWork, data: TicketIn, snapshot: dict) -> Ticket:
    """`snapshot` is the customer as the replica or customers.get_service_snapshot gave it."""
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = Ticket(
        request_id=uow.ctx.request_id, type=data.type, status=Status.PENDING_DISPATCH.value,
        priority=data.priority, description=data.description, created_by=uow.ctx.actor_id,
        **ServiceSnapshotV1.model_validate(snapshot).model_dump(),
    )
    ticket.parts_used = []  # a new order has none; saves a lazy load when it is returned
    _record(uow, ticket, Action.CREATE, None)
    ticket.number = uow.next_number("work_order", "WO")
    uow.session.add(ticket)
    uow.session.flush()
    uow.emit("ticket.created", TicketCreatedV1(
        ticket_id=ticket.id, number=ticket.number, type=ticket.type, customer_id=ticket.customer_id,
        equipment_id=ticket.equipment_id, created_by=ticket.created_by))
    return ticket


def get_ticket(uow: UnitOfWork, ticket_id: uuid.UUID) -> Ticket:
    return uow.get_or_404(Ticket, ticket_id, "ticket_id", "work order")


def list_tickets(uow: UnitOfWork, status: str | None, assignee_id: uuid.UUID | None,
                 customer_id: uuid.UUID | None, offset: int, limit: int) -> tuple[list[Ticket], int]:
    query = sa.select(Ticket)
    if status:
        query = query.where(Ticket.status == status)
    if assignee_id:
        query = query.where(Ticket.assignee_id == assignee_id)
    if customer_id:
        query = query.where(Ticket.customer_id == customer_id)
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.session.scalars(query.order_by(Ticket.created_at.desc(), Ticket.id).offset(offset).limit(limit))
    return list(rows), total


def assign_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, data: AssignIn) -> Ticket:
    domain.require_dispatcher(uow.ctx.actor_role)
    ticket = get_ticket(uow, ticket_id)
    technician = uow.session.get(Technician, data.technician_id)
    if technician is None or technician.tenant_id != uow.ctx.tenant_id or not technician.active \
            or technician.role != "technician":
        raise ValidationFailed("technician_id: no active technician with this id",
                               [{"field": "technician_id", "message": "no active technician with this id"}])
    _transition(uow, ticket, Action.ASSIGN, data.note, technician_id=technician.user_id)
    ticket.assignee_id = technician.user_id
    ticket.assigned_at = utcnow()
    uow.session.flush()
    uow.emit("ticket.assigned", TicketAssignedV1(
        ticket_id=ticket.id, number=ticket.number, technician_id=technician.user_id, assigned_by=uow.ctx.actor_id))
    return ticket


def accept_ticket(uow: UnitOfWork, ticket_id: uuid.UUID) -> Ticket:
    ticket = get_ticket(uow, ticket_id)
    domain.require_assignee_or_dispatcher(uow.ctx.actor_role, uow.ctx.actor_id, ticket.assignee_id)
    _transition(uow, ticket, Action.ACCEPT)
    ticket.accepted_at = utcnow()
    uow.session.flush()
    uow.emit("ticket.accepted", TicketAcceptedV1(
        ticket_id=ticket.id, number=ticket.number, technician_id=ticket.assignee_id))
    return ticket


def check_in(uow: UnitOfWork, ticket_id: uuid.UUID, data: CheckInIn) -> Ticket:
    ticket = get_ticket(uow, ticket_id)
    domain.require_assignee_or_dispatcher(uow.ctx.actor_role, uow.ctx.actor_id, ticket.assignee_id)
    distance = None
    if ticket.latitude is not None and ticket.longitude is not None:
        distance = domain.distance_m(data.latitude, data.longitude, ticket.latitude, ticket.longitude)
    _transition(uow, ticket, Action.CHECK_IN, latitude=data.latitude, longitude=data.longitude, distance_m=distance)
    ticket.checked_in_at = utcnow()
    ticket.check_in_latitude, ticket.check_in_longitude = data.latitude, data.longitude
    ticket.check_in_distance_m = distance
    uow.session.flush()
    uow.emit("ticket.checked_in", TicketCheckedInV1(
        ticket_id=ticket.id, number=ticket.number, technician_id=ticket.assignee_id,
        latitude=data.latitude, longitude=data.longitude, distance_m=distance))
    return ticket


def complete_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, receipt: ReceiptIn) -> Ticket:
    ticket = get_ticket(uow, ticket_id)
    domain.require_assignee_or_dispatcher(uow.ctx.actor_role, uow.ctx.actor_id, ticket.assignee_id)
    _transition(uow, ticket, Action.COMPLETE, receipt.summary, parts=len(receipt.parts_used))
    ticket.completed_at = utcnow()
    ticket.summary = receipt.summary
    ticket.parts_used = [PartUsed(part_id=p.part_id, quantity=p.quantity) for p in receipt.parts_used]
    uow.session.flush()
    uow.emit("ticket.completed", TicketCompletedV1(
        ticket_id=ticket.id, number=ticket.number, type=ticket.type, technician_id=ticket.assignee_id,
        dispatcher_id=ticket.created_by, customer_id=ticket.customer_id, customer_name=ticket.customer_name,
        equipment_id=ticket.equipment_id, contact_name=ticket.contact_name, contact_phone=ticket.contact_phone,
        completed_at=ticket.completed_at, summary=receipt.summary,
        parts_used=[{"part_id": p.part_id, "quantity": p.quantity} for p in receipt.parts_used]))
    return ticket


def apply_user_event(uow: UnitOfWork, event_type: str, user: UserV1) -> None:
    """Keep the roster in step with the gateway's accounts."""
    member = uow.session.get(Technician, user.user_id)
    if member is None:
        member = Technician(user_id=user.user_id)
        uow.session.add(member)
    member.name, member.role, member.phone = user.name, user.role, user.phone
    member.active = user.active and event_type != "user.deactivated"
    member.updated_at = utcnow()


# -- replicas of customers and equipment --------------------------------------------------------

def snapshot_from_replica(uow: UnitOfWork, customer_id: uuid.UUID, equipment_id: uuid.UUID | None,
                          today: dt.date) -> dict | None:
    """The customer snapshot from tickets' own replica, or None if it is not replicated yet."""
    customer = uow.session.get(CustomerReplica, customer_id)
    equipment = uow.session.get(EquipmentReplica, equipment_id) if equipment_id else None
    if customer is None or (equipment_id is not None and equipment is None):
        return None
    if equipment is not None and equipment.customer_id != customer.customer_id:
        raise Conflict("equipment belongs to another customer",
                       [{"field": "equipment_id", "message": "belongs to another customer"}])
    return {
        "customer_id": customer.customer_id, "customer_name": customer.name,
        "contact_name": customer.contact_name, "contact_phone": customer.contact_phone,
        "address": customer.address, "latitude": customer.latitude, "longitude": customer.longitude,
        "equipment_id": equipment.equipment_id if equipment else None,
        "equipment_model": equipment.model if equipment else None,
        "serial_number": equipment.serial_number if equipment else None,
        "under_warranty": ServiceSnapshotV1.warranty_status(equipment.warranty_end, today) if equipment else None,
    }


def apply_customer_event(uow: UnitOfWork, customer: CustomerCreatedV1) -> None:
    row = uow.session.get(CustomerReplica, customer.customer_id) or CustomerReplica(customer_id=customer.customer_id)
    contact = customer.contacts[0] if customer.contacts else None
    address = customer.addresses[0] if customer.addresses else None
    row.name = customer.name
    row.contact_name, row.contact_phone = (contact.name, contact.phone) if contact else (None, None)
    row.address = address.text if address else None
    row.latitude, row.longitude = (address.latitude, address.longitude) if address else (None, None)
    row.updated_at = utcnow()
    uow.session.add(row)


def apply_equipment_event(uow: UnitOfWork, equipment: EquipmentRegisteredV1) -> None:
    row = uow.session.get(EquipmentReplica, equipment.equipment_id) or \
        EquipmentReplica(equipment_id=equipment.equipment_id)
    row.customer_id, row.model = equipment.customer_id, equipment.model
    row.serial_number, row.warranty_end = equipment.serial_number, equipment.warranty_end
    row.updated_at = utcnow()
    uow.session.add(row)

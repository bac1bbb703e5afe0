"""Service-desk use cases (服务台): settings, request types, requests and their conversion into work
orders. Plain Python over a unit of work; work orders are made by the work-order handlers."""
import base64
import binascii
import datetime as dt
import uuid

import sqlalchemy as sa

from svc_common.db import insert_if_absent, utcnow
from svc_common.errors import Conflict, Forbidden, NotFound, field_error
from svc_common.uow import UnitOfWork
from tickets import domain as ticket_domain
from tickets import handlers as tickets
from tickets.models import StoredFile, Ticket
from tickets.schemas import TicketIn

from . import domain
from .domain import RStatus
from .models import DeskSettings, NoteTemplate, RequestNote, RequestType, ServiceRequest
from .schemas import (
    ConvertIn, DeskSettingsIn, NoteTemplateIn, RequestCompleteIn, RequestIn, RequestNoteIn, RequestTypeIn,
)

# -- settings -----------------------------------------------------------------------------------------


def get_settings(uow: UnitOfWork) -> DeskSettings:
    row = uow.session.scalar(sa.select(DeskSettings))
    if row is None:
        row = DeskSettings(reopen_allowed=False, approval_note_required=False, assignment_rules=[],
                           satisfaction_dimensions=list(domain.DEFAULT_DIMENSIONS),
                           satisfaction_tags=list(domain.DEFAULT_TAGS), auto_return_visit=True,
                           kb_approval_required=False, settlement_approval_required=False,
                           settlement_approver_role="dispatcher", settlement_approver_ids=[], report_fields=[])
    return row


def update_settings(uow: UnitOfWork, data: DeskSettingsIn) -> DeskSettings:
    domain.require_desk(uow.ctx.actor_role)
    row = get_settings(uow)
    if row.id is None:
        uow.session.add(row)
    for name in ("reopen_allowed", "approval_note_required", "auto_return_visit", "kb_approval_required",
                 "settlement_approval_required"):
        if getattr(data, name) is not None:
            setattr(row, name, getattr(data, name))
    if data.assignment_rules is not None:
        for i, rule in enumerate(data.assignment_rules):
            if rule.event_type:
                get_request_type(uow, rule.event_type, f"assignment_rules.{i}.event_type")
        row.assignment_rules = [r.model_dump(mode="json") for r in data.assignment_rules]
    if data.satisfaction_dimensions is not None:
        keys = [d.key for d in data.satisfaction_dimensions]
        if len(set(keys)) != len(keys):
            raise field_error("satisfaction_dimensions", "duplicate key")
        row.satisfaction_dimensions = [d.model_dump(mode="json") for d in data.satisfaction_dimensions]
    if data.settlement_approver_role is not None:
        row.settlement_approver_role = data.settlement_approver_role
    if data.settlement_approver_ids is not None:
        row.settlement_approver_ids = [str(i) for i in data.settlement_approver_ids]
    if data.report_fields is not None:
        row.report_fields = list(dict.fromkeys(data.report_fields))
    if data.satisfaction_tags is not None:
        row.satisfaction_tags = list(dict.fromkeys(data.satisfaction_tags))
    uow.session.flush()
    return row


# -- request types (事件类型) -----------------------------------------------------------------------------

def ensure_request_types(uow: UnitOfWork) -> None:
    if uow.session.scalar(sa.select(sa.func.count()).select_from(RequestType)) >= len(domain.BUILTIN_REQUEST_TYPES):
        return
    for order, (code, (zh, en, ticket_type)) in enumerate(domain.BUILTIN_REQUEST_TYPES.items()):
        insert_if_absent(uow.session, RequestType.__table__, {
            "id": uuid.uuid4(), "tenant_id": uow.ctx.tenant_id, "code": code, "name": zh, "name_en": en,
            "enabled": True, "fields": [], "approval_required": False, "components": [], "ticket_type": ticket_type,
            "due_minutes": None, "sort_order": order})


def list_request_types(uow: UnitOfWork) -> list[RequestType]:
    ensure_request_types(uow)
    return list(uow.session.scalars(sa.select(RequestType).order_by(RequestType.sort_order, RequestType.code)))


def get_request_type(uow: UnitOfWork, code: str, field: str = "event_type") -> RequestType:
    ensure_request_types(uow)
    row = uow.session.scalar(sa.select(RequestType).where(RequestType.code == code))
    if row is None:
        raise field_error(field, f"no service-request type {code}")
    return row


def save_request_type(uow: UnitOfWork, data: RequestTypeIn) -> RequestType:
    """Create a type, or replace the definition of an existing one (same code)."""
    domain.require_desk(uow.ctx.actor_role)
    ensure_request_types(uow)
    fields = [f.model_dump(mode="json", exclude_none=True) for f in data.fields]
    ticket_domain.validate_field_definitions(fields)
    if data.ticket_type:
        tickets.get_type(uow, data.ticket_type, "ticket_type")
    row = uow.session.scalar(sa.select(RequestType).where(RequestType.code == data.code))
    if row is None:
        last = uow.session.scalar(sa.select(sa.func.max(RequestType.sort_order))) or 0
        row = RequestType(code=data.code, sort_order=last + 1)
        uow.session.add(row)
    row.name, row.name_en, row.enabled, row.fields = data.name, data.name_en, data.enabled, fields
    row.approval_required, row.ticket_type, row.due_minutes = data.approval_required, data.ticket_type, data.due_minutes
    row.components = list(dict.fromkeys(data.components))
    uow.session.flush()
    return row


# -- note templates -----------------------------------------------------------------------------------

def list_templates(uow: UnitOfWork) -> list[NoteTemplate]:
    return list(uow.session.scalars(sa.select(NoteTemplate).order_by(NoteTemplate.title)))


def create_template(uow: UnitOfWork, data: NoteTemplateIn) -> NoteTemplate:
    domain.require_desk(uow.ctx.actor_role)
    row = NoteTemplate(title=data.title, body=data.body)
    uow.session.add(row)
    uow.session.flush()
    return row


def delete_template(uow: UnitOfWork, template_id: uuid.UUID) -> None:
    domain.require_desk(uow.ctx.actor_role)
    uow.session.delete(uow.get_or_404(NoteTemplate, template_id, "template_id", "note template"))


# -- requests -----------------------------------------------------------------------------------------

def _note(uow: UnitOfWork, request: ServiceRequest, action: str, body: str | None = None, minutes: int = 0) -> None:
    uow.session.add(RequestNote(request_id=request.id, action=action, body=body, minutes=minutes,
                                author_id=uow.ctx.actor_id, at=utcnow()))
    request.minutes_spent = (request.minutes_spent or 0) + minutes


def _move(uow: UnitOfWork, request: ServiceRequest, action: str, target: RStatus | str, note: str | None = None,
          minutes: int = 0) -> None:
    now = utcnow()
    if target != request.status:
        request.state_seconds = domain.add_state_time(request.state_seconds, request.status, request.status_since, now)
        request.status_since = now
    request.status = RStatus(target).value
    _note(uow, request, action, note, minutes)


def _attachments(uow: UnitOfWork, files, storage) -> list[dict]:
    out = []
    for i, f in enumerate(files):
        try:
            content = base64.b64decode(f.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise field_error(f"attachments.{i}.content_base64", "not valid base64") from None
        suffix = "." + f.filename.rsplit(".", 1)[-1][:10].lower() if "." in f.filename else ""
        out.append({"filename": f.filename, "content_type": f.content_type, "size": len(content),
                    "storage_key": storage.put(uow.ctx.tenant_id, content, suffix)})
    return out


def create_request(uow: UnitOfWork, data: RequestIn, storage=None, source_ref: str | None = None) -> ServiceRequest:
    """Anyone of the tenant may raise a request (staff for a caller, the portal, an integration);
    the QR page's reports arrive as events (`source_ref` keeps them single)."""
    if source_ref is not None:
        found = uow.session.scalar(sa.select(ServiceRequest).where(ServiceRequest.source_ref == source_ref))
        if found is not None:
            return found
    kind = get_request_type(uow, data.event_type)
    if not kind.enabled:
        raise field_error("event_type", f"service-request type {data.event_type} is disabled")
    custom = ticket_domain.validate_custom_fields(kind.fields, data.custom_fields)
    components = domain.validate_components(kind.components or [], data.components)
    settings = get_settings(uow)
    assignee = data.assignee_id
    if assignee is not None:
        domain.require_desk(uow.ctx.actor_role)
    else:
        rule = domain.match_assignee(settings.assignment_rules, data.event_type, data.channel)
        assignee = uuid.UUID(str(rule)) if rule else None
    files = _attachments(uow, data.attachments, storage) if data.attachments else []
    now = utcnow()
    request = ServiceRequest(
        source_ref=source_ref, channel=data.channel, event_type=data.event_type,
        status=(RStatus.PENDING if assignee else RStatus.PENDING_ASSIGNMENT).value, subject=data.subject,
        description=data.description, customer_id=data.customer_id, equipment_id=data.equipment_id,
        contact_name=data.contact_name, contact_phone=data.contact_phone, custom_fields=custom,
        components=components, attachments=files, assignee_id=assignee, created_by=uow.ctx.actor_id,
        state_seconds={}, status_since=now,
        minutes_spent=0, timed_out=False, created_at=now,
        due_at=now + dt.timedelta(minutes=kind.due_minutes) if kind.due_minutes else None)
    request.number = uow.next_number("service_request", "SR")
    uow.session.add(request)
    uow.session.flush()
    _note(uow, request, "create", None)
    uow.emit("service_request.created", {
        "request_id": request.id, "number": request.number, "channel": request.channel,
        "event_type": request.event_type, "customer_id": request.customer_id, "equipment_id": request.equipment_id})
    return request


def get_request(uow: UnitOfWork, request_id: uuid.UUID) -> ServiceRequest:
    return uow.get_or_404(ServiceRequest, request_id, "request_id", "service request")


def list_requests(uow: UnitOfWork, status: str | None = None, event_type: str | None = None,
                  channel: str | None = None, assignee_id: uuid.UUID | None = None, scope: str | None = None,
                  exceptions: bool = False, q: str | None = None, customer_id: uuid.UUID | None = None,
                  offset: int = 0, limit: int = 50) -> tuple[list[ServiceRequest], int]:
    query = sa.select(ServiceRequest)
    if status:
        states = [s.strip() for s in status.split(",") if s.strip()]
        for s in states:
            if s not in RStatus.__members__.values():
                raise field_error("status", f"unknown status {s}")
        query = query.where(ServiceRequest.status.in_(states))
    if event_type:
        query = query.where(ServiceRequest.event_type == event_type)
    if channel:
        query = query.where(ServiceRequest.channel == channel)
    if assignee_id:
        query = query.where(ServiceRequest.assignee_id == assignee_id)
    if customer_id:
        query = query.where(ServiceRequest.customer_id == customer_id)
    if scope == "mine":
        query = query.where(ServiceRequest.assignee_id == uow.ctx.actor_id)
    elif scope == "created":
        query = query.where(ServiceRequest.created_by == uow.ctx.actor_id)
    elif scope is not None:
        raise field_error("scope", "mine or created")
    if exceptions:  # 异常事件: paused or timed out
        query = query.where(sa.or_(ServiceRequest.status == RStatus.PAUSED.value, ServiceRequest.timed_out.is_(True)))
    if q:
        like = f"%{q.strip()}%"
        query = query.where(sa.or_(ServiceRequest.number.ilike(like), ServiceRequest.subject.ilike(like),
                                   ServiceRequest.contact_name.ilike(like), ServiceRequest.contact_phone.ilike(like)))
    total = uow.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = uow.session.scalars(query.order_by(ServiceRequest.created_at.desc(), ServiceRequest.id)
                               .offset(offset).limit(limit))
    return list(rows), total


def status_counts(uow: UnitOfWork) -> dict[str, int]:
    """The desk's tabs: 待分配 / 待处理 / 处理中 / 已完成 / 已取消 / 异常事件 / 全部."""
    rows = uow.session.execute(sa.select(ServiceRequest.status, sa.func.count()).group_by(ServiceRequest.status))
    counts = {s.value: 0 for s in RStatus}
    counts.update({status: n for status, n in rows})
    counts["exceptions"] = uow.session.scalar(sa.select(sa.func.count()).select_from(ServiceRequest).where(
        sa.or_(ServiceRequest.status == RStatus.PAUSED.value, ServiceRequest.timed_out.is_(True))))
    counts["all"] = sum(counts[s.value] for s in RStatus)
    return counts


def notes(uow: UnitOfWork, request_id: uuid.UUID) -> list[RequestNote]:
    get_request(uow, request_id)
    return list(uow.session.scalars(sa.select(RequestNote).where(RequestNote.request_id == request_id)
                                    .order_by(RequestNote.at, RequestNote.id)))


def _require_handler(uow: UnitOfWork, request: ServiceRequest) -> None:
    """Working a request is the desk's or its assignee's."""
    if uow.ctx.actor_role in domain.DESK_ROLES:
        return
    if uow.ctx.actor_id is None or uow.ctx.actor_id != request.assignee_id:
        raise Forbidden("only the desk or the request's assignee may do this")


def assign_request(uow: UnitOfWork, request_id: uuid.UUID, assignee_id: uuid.UUID, note: str | None) -> ServiceRequest:
    domain.require_desk(uow.ctx.actor_role)
    request = get_request(uow, request_id)
    target = domain.request_target(request.status, "assign")
    request.assignee_id = assignee_id
    _move(uow, request, "assign", target, note)
    uow.session.flush()
    return request


def start_request(uow: UnitOfWork, request_id: uuid.UUID) -> ServiceRequest:
    request = get_request(uow, request_id)
    _require_handler(uow, request)
    _move(uow, request, "start", domain.request_target(request.status, "start"))
    uow.session.flush()
    return request


def pause_request(uow: UnitOfWork, request_id: uuid.UUID, reason: str) -> ServiceRequest:
    request = get_request(uow, request_id)
    _require_handler(uow, request)
    target = domain.request_target(request.status, "pause")
    request.status_before_pause = request.status
    _move(uow, request, "pause", target, reason)
    uow.session.flush()
    return request


def resume_request(uow: UnitOfWork, request_id: uuid.UUID) -> ServiceRequest:
    request = get_request(uow, request_id)
    _require_handler(uow, request)
    domain.request_target(request.status, "resume")
    _move(uow, request, "resume", request.status_before_pause or RStatus.PENDING)
    request.status_before_pause = None
    uow.session.flush()
    return request


def add_note(uow: UnitOfWork, request_id: uuid.UUID, data: RequestNoteIn) -> RequestNote:
    request = get_request(uow, request_id)
    _require_handler(uow, request)
    body = data.body
    if data.template_id is not None:
        template = uow.get_or_404(NoteTemplate, data.template_id, "template_id", "note template")
        body = template.body if not body else f"{template.body}\n{body}"
    if not body and not data.minutes:
        raise field_error("body", "a note needs text, a template or minutes spent")
    _note(uow, request, "note", body, data.minutes)
    request.updated_at = utcnow()
    uow.session.flush()
    return uow.session.scalars(sa.select(RequestNote).where(RequestNote.request_id == request.id)
                               .order_by(RequestNote.at.desc())).first()


def update_components(uow: UnitOfWork, request_id: uuid.UUID, values: dict) -> ServiceRequest:
    """Fill in or change add-on components (e.g. the tracking number once shipped)."""
    request = get_request(uow, request_id)
    _require_handler(uow, request)
    if RStatus(request.status) not in domain.OPEN:
        raise Conflict(f"service request is {request.status}", [{"field": "status", "message": request.status}])
    kind = get_request_type(uow, request.event_type)
    merged = {name: {**(request.components or {}).get(name, {}), **block} for name, block in values.items()}
    request.components = {**(request.components or {}), **domain.validate_components(kind.components or [], merged)}
    _note(uow, request, "components", ", ".join(sorted(values)))
    uow.session.flush()
    return request


def _require_note(uow: UnitOfWork, note: str | None) -> None:
    if get_settings(uow).approval_note_required and not (note and note.strip()):
        raise field_error("note", "审批备注必填 / an approval note is required")


def request_approval(uow: UnitOfWork, request_id: uuid.UUID, note: str | None) -> ServiceRequest:
    request = get_request(uow, request_id)
    _require_handler(uow, request)
    domain.request_target(request.status, "request_approval")
    _require_note(uow, note)
    if request.approval and request.approval.get("status") == "pending":
        raise Conflict("an approval is already pending", [{"field": "approval", "message": "pending"}])
    request.approval = {"status": "pending", "requested_by": str(uow.ctx.actor_id) if uow.ctx.actor_id else None,
                        "note": note, "requested_at": utcnow().isoformat()}
    _note(uow, request, "request_approval", note)
    uow.session.flush()
    return request


def decide_approval(uow: UnitOfWork, request_id: uuid.UUID, approve: bool, note: str | None) -> ServiceRequest:
    domain.require_desk(uow.ctx.actor_role)
    request = get_request(uow, request_id)
    if not request.approval or request.approval.get("status") != "pending":
        raise Conflict("no approval is pending", [{"field": "approval", "message": "none pending"}])
    _require_note(uow, note)
    request.approval = {**request.approval, "status": "approved" if approve else "rejected",
                        "decided_by": str(uow.ctx.actor_id) if uow.ctx.actor_id else None,
                        "decision_note": note, "decided_at": utcnow().isoformat()}
    _note(uow, request, "approve" if approve else "reject", note)
    uow.session.flush()
    return request


def complete_request(uow: UnitOfWork, request_id: uuid.UUID, data: RequestCompleteIn) -> ServiceRequest:
    request = get_request(uow, request_id)
    _require_handler(uow, request)
    target = domain.request_target(request.status, "complete")
    kind = get_request_type(uow, request.event_type)
    if kind.approval_required and (request.approval or {}).get("status") != "approved":
        raise Conflict("this type of request needs an approval before it is done",
                       [{"field": "approval", "message": (request.approval or {}).get("status", "not requested")}])
    _move(uow, request, "complete", target, data.note, data.minutes)
    request.outcome, request.done_at = data.outcome, utcnow()
    uow.session.flush()
    uow.emit("service_request.closed", {"request_id": request.id, "number": request.number,
                                        "channel": request.channel, "outcome": data.outcome})
    return request


def cancel_request(uow: UnitOfWork, request_id: uuid.UUID, reason: str) -> ServiceRequest:
    domain.require_desk(uow.ctx.actor_role)
    request = get_request(uow, request_id)
    _move(uow, request, "cancel", domain.request_target(request.status, "cancel"), reason)
    request.outcome, request.done_at = "cancelled", utcnow()
    uow.session.flush()
    uow.emit("service_request.closed", {"request_id": request.id, "number": request.number,
                                        "channel": request.channel, "outcome": "cancelled"})
    return request


def reopen_request(uow: UnitOfWork, request_id: uuid.UUID, reason: str) -> ServiceRequest:
    """退回事件: a done request goes back to not-done, when the tenant allows it."""
    domain.require_desk(uow.ctx.actor_role)
    request = get_request(uow, request_id)
    target = domain.request_target(request.status, "reopen")
    if not get_settings(uow).reopen_allowed:
        raise Conflict("returning done requests is not enabled (服务台设置: 允许退回事件)",
                       [{"field": "status", "message": "reopen not allowed"}])
    _move(uow, request, "reopen", target, reason)
    request.outcome, request.done_at = None, None
    uow.session.flush()
    return request


def mark_timed_out(uow: UnitOfWork, request_id: uuid.UUID, now: dt.datetime) -> bool:
    request = get_request(uow, request_id)
    if request.timed_out or RStatus(request.status) not in domain.OPEN or request.due_at is None or request.due_at > now:
        return False
    request.timed_out = True
    _note(uow, request, "timed_out", None)
    uow.session.flush()
    return True


def timed_out_candidates(session, now: dt.datetime, limit: int = 500) -> list[tuple[uuid.UUID, uuid.UUID]]:
    open_states = [s.value for s in domain.OPEN]
    rows = session.execute(sa.select(ServiceRequest.tenant_id, ServiceRequest.id).where(
        ServiceRequest.status.in_(open_states), ServiceRequest.timed_out.is_(False), ServiceRequest.due_at < now,
    ).order_by(ServiceRequest.id).limit(limit)).all()
    return [(r[0], r[1]) for r in rows]


# -- conversion into a work order (服务事件转工单) -------------------------------------------------------

def conversion_target(uow: UnitOfWork, request_id: uuid.UUID, data: ConvertIn) -> tuple[uuid.UUID, uuid.UUID | None]:
    """The customer and equipment the order will be for (to look up their snapshot first)."""
    request = get_request(uow, request_id)
    customer_id = data.customer_id or request.customer_id
    if customer_id is None:
        raise field_error("customer_id", "the request has no customer; give one to convert it")
    return customer_id, data.equipment_id or request.equipment_id


def convert_request(uow: UnitOfWork, request_id: uuid.UUID, data: ConvertIn, snapshot: dict
                    ) -> tuple[ServiceRequest, Ticket]:
    """One transaction: the work order (by the work-order handler, so its rules and `ticket.created`
    apply), its attachments, the link both ways, and `service_request.converted`."""
    domain.require_desk(uow.ctx.actor_role)
    request = get_request(uow, request_id)
    if request.ticket_id is not None:
        raise Conflict(f"service request {request.number} is already converted",
                       [{"field": "ticket_id", "message": "already converted"}])
    target = domain.request_target(request.status, "convert")
    kind = get_request_type(uow, request.event_type)
    customer_id, equipment_id = conversion_target(uow, request_id, data)
    description = data.description or "\n".join(p for p in (request.subject, request.description) if p)
    ticket_in = TicketIn(type=data.type or kind.ticket_type or "repair", customer_id=customer_id,
                         equipment_id=equipment_id, description=description[:5000], priority=data.priority,
                         team_id=data.team_id, custom_fields=data.custom_fields, service_request_id=request.id,
                         auto_dispatch=data.auto_dispatch)
    ticket = tickets.create_ticket(uow, ticket_in, snapshot)
    for a in request.attachments or []:
        kind_of = "photo" if str(a.get("content_type", "")).startswith("image/") else "file"
        uow.session.add(StoredFile(ticket_id=ticket.id, kind=kind_of, filename=a["filename"],
                                   content_type=a["content_type"], size=a["size"], storage_key=a["storage_key"],
                                   uploaded_by=request.created_by))
    request.ticket_id = ticket.id
    if request.customer_id is None:
        request.customer_id, request.equipment_id = customer_id, equipment_id
    if request.assignee_id is None:
        request.assignee_id = uow.ctx.actor_id
    _move(uow, request, "convert", target, f"→ {ticket.number}")
    uow.session.flush()
    uow.emit("service_request.converted", {"request_id": request.id, "number": request.number,
                                           "ticket_id": ticket.id, "channel": request.channel})
    return request, ticket


def request_of_ticket(uow: UnitOfWork, ticket_id: uuid.UUID) -> ServiceRequest:
    """The other direction of the link: the request a work order came from."""
    tickets.get_ticket(uow, ticket_id)
    row = uow.session.scalar(sa.select(ServiceRequest).where(ServiceRequest.ticket_id == ticket_id))
    if row is None:
        raise NotFound("this work order did not come from the service desk",
                       [{"field": "ticket_id", "message": "no service request"}])
    return row


def close_with_ticket(uow: UnitOfWork, ticket_id: uuid.UUID) -> ServiceRequest | None:
    """On ticket.closed: the request the order came from is done too (outcome work_order_closed)."""
    request = uow.session.scalar(sa.select(ServiceRequest).where(ServiceRequest.ticket_id == ticket_id))
    if request is None or RStatus(request.status) not in domain.OPEN - {RStatus.PAUSED}:
        return None
    _move(uow, request, "complete", RStatus.DONE, "工单已关闭 / work order closed")
    request.outcome, request.done_at = "work_order_closed", utcnow()
    uow.session.flush()
    uow.emit("service_request.closed", {"request_id": request.id, "number": request.number,
                                        "channel": request.channel, "outcome": request.outcome})
    return request


# -- the QR page's fault reports (equipment.fault_reported) → requests -----------------------------------

def apply_fault_report(uow: UnitOfWork, event) -> ServiceRequest:
    """A fault reported on the QR page is a qr_scan request of type `fault` (once per report)."""
    subject = f"{event.model} {event.serial_number}: {event.description}" if event.model else event.description
    data = RequestIn(channel="qr_scan", event_type="fault", subject=subject[:200] or "扫码报修",
                     description=f"{event.description}\n[{event.number}]", customer_id=event.customer_id,
                     equipment_id=event.equipment_id, contact_phone=event.contact_phone or None)
    return create_request(uow, data, None, source_ref=f"fault_report:{event.report_id}")

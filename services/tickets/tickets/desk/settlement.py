"""Settlement (审核结算) and return visits (回访, 满意度) of work orders.

Amounts are Decimal throughout (strings in JSON). Settling drives the work-order `settle`
transition, so `ticket.settled` carries these lines; a rating drives `visit` (`ticket.visited`)."""
import datetime as dt
import secrets
import uuid
from decimal import Decimal

import sqlalchemy as sa

from svc_common.db import utcnow
from svc_common.errors import Conflict, Forbidden, NotFound, field_error
from svc_common.uow import UnitOfWork
from tickets import handlers as tickets
from tickets.domain import DONE_STATES, Action, Flow, Status
from tickets.models import Ticket, TimelineEntry
from tickets.schemas import MoneyLineIn, SettleIn

from . import domain
from .handlers import get_settings
from .models import ReportLink, ReturnVisit, Settlement
from .schemas import ManualVisitIn, ReportSendIn, SettlementIn, VisitRateIn

SETTLEABLE = frozenset({Status.COMPLETED.value, Status.APPROVED.value})


def receipt_refs(ticket: Ticket) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Part ids and service-item ids of the receipt (to price them from the catalog first)."""
    parts = [p.part_id for p in ticket.parts_used]
    items = [uuid.UUID(str(s["service_item_id"])) for s in (ticket.receipt or {}).get("service_items", [])]
    return parts, items


def _flow(uow: UnitOfWork, ticket: Ticket) -> Flow:
    return Flow.from_dict(tickets.get_type(uow, ticket.type).flow)


def _price(prices: dict, kind: str, ref_id, which: str, field: str) -> tuple[Decimal, str]:
    """(unit price, name) from the catalog prices the RPC layer fetched."""
    book = prices.get("parts" if kind == "part" else "service_items", {})
    entry = book.get(str(ref_id)) if ref_id else None
    if entry is None:
        raise field_error(field, f"no catalog price for this {kind}; give unit_price")
    value = entry.get(which)
    if value is None:
        raise field_error(field, f"the catalog has no {which} for this {kind}; give unit_price")
    return Decimal(str(value)), entry.get("name") or str(ref_id)


def build_settlement(uow: UnitOfWork, ticket_id: uuid.UUID, stage: str, data: SettlementIn, prices: dict
                     ) -> Settlement:
    """The quote (before the work) or the final settlement draft (after it), replacing an unsettled one."""
    domain.require_desk(uow.ctx.actor_role)
    ticket = tickets.get_ticket(uow, ticket_id)
    row = uow.session.scalar(sa.select(Settlement).where(Settlement.ticket_id == ticket.id, Settlement.stage == stage))
    if row is not None and row.status == "settled":
        raise Conflict("the order is settled; its settlement is locked", [{"field": "status", "message": "settled"}])
    if stage == "final" and ticket.status not in SETTLEABLE:
        raise Conflict(f"work order {ticket.number} is {ticket.status}; settle it after completion",
                       [{"field": "status", "message": f"work order is {ticket.status}"}])
    if stage == "quote" and ticket.status in DONE_STATES | {Status.CANCELLED}:
        raise Conflict("a quote is given before the work",
                       [{"field": "status", "message": f"work order is {ticket.status}"}])
    warranty = data.warranty if data.warranty is not None else ticket.under_warranty
    fees, costs = [], []
    if stage == "final" and data.from_receipt:
        for i, p in enumerate(ticket.parts_used):
            sale, name = _price(prices, "part", p.part_id, "sale_price", f"parts_used.{i}")
            cost, _ = _price(prices, "part", p.part_id, "cost_price", f"parts_used.{i}")
            fees.append(domain.money_line("part", name, p.quantity,
                                          Decimal("0") if domain.free_under_warranty("part", warranty) else sale,
                                          p.part_id))
            costs.append(domain.money_line("part", name, p.quantity, cost, p.part_id))
        for i, s in enumerate((ticket.receipt or {}).get("service_items", [])):
            ref, qty = s["service_item_id"], Decimal(str(s["quantity"]))
            price, name = _price(prices, "service_item", ref, "price", f"service_items.{i}")
            free = domain.free_under_warranty("service_item", warranty)
            fees.append(domain.money_line("service_item", name, qty, Decimal("0") if free else price, ref))
            entry = prices.get("service_items", {}).get(str(ref)) or {}
            if entry.get("cost_price") is not None:
                costs.append(domain.money_line("labour", name, qty, Decimal(str(entry["cost_price"])), ref))
    for side, lines, kinds, out, which in (("fee_lines", data.fee_lines, domain.FEE_KINDS, fees, "sale"),
                                           ("cost_lines", data.cost_lines, domain.COST_KINDS, costs, "cost")):
        for i, line in enumerate(lines):
            field = f"{side}.{i}"
            if line.kind not in kinds:
                raise field_error(f"{field}.kind", f"one of {', '.join(kinds)}")
            price, name = line.unit_price, line.description
            if price is None or not name:
                if line.kind not in ("part", "service_item"):
                    raise field_error(f"{field}.unit_price" if price is None else f"{field}.description", "required")
                which_price = ("sale_price" if line.kind == "part" else "price") if which == "sale" else "cost_price"
                catalog_price, catalog_name = _price(prices, line.kind, line.ref_id, which_price, f"{field}.ref_id")
                price = catalog_price if price is None else price
                name = name or catalog_name
            if which == "sale" and domain.free_under_warranty(line.kind, warranty):
                price = Decimal("0")
            out.append(domain.money_line(line.kind, name, line.quantity, price, line.ref_id))
    fee_total, cost_total, profit = domain.totals(fees, costs)
    if row is None:
        row = Settlement(ticket_id=ticket.id, stage=stage, created_at=utcnow())
        uow.session.add(row)
    row.number, row.customer_name = ticket.number, ticket.customer_name
    row.status, row.warranty, row.fee_lines, row.cost_lines = "draft", warranty, fees, costs
    row.fee_total, row.cost_total, row.gross_profit, row.note = fee_total, cost_total, profit, data.note
    row.approved_by = row.approved_at = None
    uow.session.flush()
    return row


def get_settlement(uow: UnitOfWork, ticket_id: uuid.UUID, stage: str = "final") -> Settlement:
    row = uow.session.scalar(sa.select(Settlement).where(Settlement.ticket_id == ticket_id, Settlement.stage == stage))
    if row is None:
        raise NotFound(f"no {stage} settlement for work order {ticket_id}",
                       [{"field": "ticket_id", "message": f"no {stage} settlement"}])
    return row


def _require_approver(uow: UnitOfWork) -> None:
    """审核 is for the named approvers when the tenant names some, else for its approver role."""
    domain.require_desk(uow.ctx.actor_role)
    settings = get_settings(uow)
    if settings.settlement_approver_ids:
        if str(uow.ctx.actor_id) not in settings.settlement_approver_ids:
            raise Forbidden("only the named settlement approvers may approve")
    elif settings.settlement_approver_role == "admin" and uow.ctx.actor_role != "admin":
        raise Forbidden("only an admin may approve settlements")


def reject_settlement(uow: UnitOfWork, ticket_id: uuid.UUID, note: str | None) -> Settlement:
    """退回: back to a draft to correct, with the reason."""
    _require_approver(uow)
    if not (note and note.strip()):
        raise field_error("note", "a rejection needs a note")
    row = get_settlement(uow, ticket_id)
    if row.status == "settled":
        raise Conflict("the order is settled; its settlement is locked", [{"field": "status", "message": "settled"}])
    row.status, row.approved_by, row.approved_at, row.note = "draft", None, None, f"退回: {note.strip()}"
    uow.session.flush()
    return row


def approve_settlement(uow: UnitOfWork, ticket_id: uuid.UUID, note: str | None) -> Settlement:
    _require_approver(uow)
    row = get_settlement(uow, ticket_id)
    if row.status != "draft":
        raise Conflict(f"the settlement is {row.status}", [{"field": "status", "message": row.status}])
    row.status, row.approved_by, row.approved_at = "approved", uow.ctx.actor_id, utcnow()
    if note:
        row.note = note
    uow.session.flush()
    return row


def settle(uow: UnitOfWork, ticket_id: uuid.UUID) -> Settlement:
    """Lock the final settlement and move the order on (work-order `settle` → ticket.settled with these
    lines); then an automatic return visit if the type has one and the tenant wants it."""
    domain.require_desk(uow.ctx.actor_role)
    row = get_settlement(uow, ticket_id)
    if row.status == "settled":
        raise Conflict("already settled", [{"field": "status", "message": "settled"}])
    if row.status != "approved" and get_settings(uow).settlement_approval_required:
        raise Conflict("the settlement needs its approval (审核) first", [{"field": "status", "message": row.status}])

    def wire(lines):
        return [MoneyLineIn(kind=x["kind"], ref_id=x["ref_id"], description=x["description"][:200],
                            quantity=Decimal(x["quantity"]), unit_price=Decimal(x["unit_price"])) for x in lines]
    ticket = tickets.settle_ticket(uow, ticket_id, SettleIn(warranty=row.warranty, fee_lines=wire(row.fee_lines),
                                                            cost_lines=wire(row.cost_lines)))
    now = utcnow()
    row.status, row.settled_at = "settled", now
    if row.approved_by is None:
        row.approved_by, row.approved_at = uow.ctx.actor_id, now
    uow.session.flush()
    if _flow(uow, ticket).return_visit and get_settings(uow).auto_return_visit:
        request_visit(uow, ticket.id)
    return row


def batch_settle(uow: UnitOfWork, ticket_ids: list[uuid.UUID]) -> list[Settlement]:
    """All or none: one order that cannot be settled fails the batch, naming it."""
    out = []
    for i, ticket_id in enumerate(ticket_ids):
        try:
            out.append(settle(uow, ticket_id))
        except (Conflict, NotFound) as exc:
            raise type(exc)(f"ticket_ids.{i}: {exc.message}",
                            [{"field": f"ticket_ids.{i}", "message": exc.message}]) from None
    return out


def settlement_queue(uow: UnitOfWork, status: str | None, offset: int, limit: int) -> dict:
    """结算 queue with its totals: unsettled count and amount, settled in the last 30 days."""
    query = sa.select(Settlement).where(Settlement.stage == "final")
    if status:
        if status not in ("draft", "approved", "settled", "unsettled"):
            raise field_error("status", "draft, approved, settled or unsettled")
        query = query.where(Settlement.status.in_(["draft", "approved"]) if status == "unsettled"
                            else Settlement.status == status)
    total = uow.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = list(uow.session.scalars(query.order_by(Settlement.created_at.desc(), Settlement.id)
                                    .offset(offset).limit(limit)))
    unsettled = uow.session.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Settlement.fee_total), 0))
                                    .where(Settlement.stage == "final",
                                           Settlement.status.in_(["draft", "approved"]))).one()
    since = utcnow() - dt.timedelta(days=30)
    settled = uow.session.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Settlement.fee_total), 0),
                                            sa.func.coalesce(sa.func.sum(Settlement.gross_profit), 0))
                                  .where(Settlement.stage == "final", Settlement.status == "settled",
                                         Settlement.settled_at >= since)).one()
    awaiting = uow.session.scalar(sa.select(sa.func.count()).select_from(Ticket).where(
        Ticket.status.in_(SETTLEABLE), ~sa.exists().where(Settlement.ticket_id == Ticket.id,
                                                          Settlement.stage == "final")))
    cent = Decimal("0.01")
    return {"rows": rows, "total": total, "totals": {
        "unsettled_count": unsettled[0], "unsettled_amount": str(Decimal(str(unsettled[1])).quantize(cent)),
        "completed_without_settlement": awaiting,
        "settled_30d_count": settled[0], "settled_30d_amount": str(Decimal(str(settled[1])).quantize(cent)),
        "settled_30d_gross_profit": str(Decimal(str(settled[2])).quantize(cent))}}


# -- return visits ----------------------------------------------------------------------------------------

def request_visit(uow: UnitOfWork, ticket_id: uuid.UUID) -> ReturnVisit:
    """An automatic return visit: a token for the portal page the customer's SMS links to."""
    ticket = tickets.get_ticket(uow, ticket_id)
    if ticket.status not in SETTLEABLE | {Status.SETTLED.value}:
        raise Conflict(f"work order {ticket.number} is {ticket.status}; return visits follow completion",
                       [{"field": "status", "message": f"work order is {ticket.status}"}])
    open_visit = uow.session.scalar(sa.select(ReturnVisit).where(ReturnVisit.ticket_id == ticket.id,
                                                                 ReturnVisit.status == "requested"))
    if open_visit is not None:
        return open_visit
    row = ReturnVisit(ticket_id=ticket.id, mode="auto", status="requested", token=secrets.token_urlsafe(24),
                      scores={}, tags=[], created_at=utcnow())
    uow.session.add(row)
    uow.session.flush()
    # notify texts the rating link to the customer's contact (短信回访)
    uow.emit("ticket.visit_requested", {**tickets.event_fields(ticket), "visit_id": row.id,
                                        "rating_path": f"/api/v1/public/visits/{row.token}/page",
                                        "contact_name": ticket.contact_name, "contact_phone": ticket.contact_phone})
    return row


def visit_after_completion(uow: UnitOfWork, ticket_id: uuid.UUID) -> ReturnVisit | None:
    """On ticket.completed: types whose next step is the return visit get their rating link now
    (types with settlement get it when settled; with an approval step, the desk asks by hand)."""
    ticket = tickets.get_ticket(uow, ticket_id)
    if ticket.backfilled:
        return None  # 补录: the work was done long ago; no rating link is texted for it
    flow = _flow(uow, ticket)
    if not flow.return_visit or flow.settlement or flow.approval_required or not get_settings(uow).auto_return_visit:
        return None
    return request_visit(uow, ticket.id)


def _visit_order(uow: UnitOfWork, ticket: Ticket, visit: ReturnVisit, by_customer: bool) -> None:
    """回访 on the order: its `visit` step when its type has one, and `ticket.visited` with the stars per
    dimension and the tags either way (satisfaction reports count every rating)."""
    if ticket.status not in DONE_STATES:
        raise Conflict(f"work order {ticket.number} is {ticket.status}; return visits follow completion",
                       [{"field": "status", "message": f"work order is {ticket.status}"}])
    comment = "；".join(p for p in (" ".join(visit.tags), visit.comment or "") if p) or None
    details = {"satisfaction": visit.satisfaction, "scores": visit.scores, "tags": visit.tags,
               "by_customer": by_customer}
    if _flow(uow, ticket).return_visit:
        tickets._after(uow, ticket, Action.VISIT, comment, **details)
    else:
        tickets._record(uow, ticket, Action.VISIT, ticket.status, comment, **details)
    now = utcnow()
    ticket.visited_at, ticket.satisfaction, ticket.visit_comment = now, visit.satisfaction, comment
    uow.session.flush()
    uow.emit("ticket.visited", {**tickets.event_fields(ticket), "visited_at": now, "comment": visit.comment,
                                **details})


def _rate(uow: UnitOfWork, visit: ReturnVisit, data: VisitRateIn, by_customer: bool) -> ReturnVisit:
    settings = get_settings(uow)
    scores = domain.check_scores(data.scores, settings.satisfaction_dimensions)
    allowed = set(settings.satisfaction_tags)
    for i, tag in enumerate(data.tags):
        if tag not in allowed:
            raise field_error(f"tags.{i}", "not one of the tenant's quick tags")
    visit.scores, visit.tags, visit.comment = scores, list(dict.fromkeys(data.tags)), data.comment
    visit.satisfaction = domain.overall_satisfaction(scores)
    visit.status, visit.rated_at = "rated", utcnow()
    _visit_order(uow, tickets.get_ticket(uow, visit.ticket_id), visit, by_customer)
    uow.session.flush()
    return visit


def manual_visit(uow: UnitOfWork, data: ManualVisitIn) -> ReturnVisit:
    """回访 by phone: the desk enters what the customer said."""
    domain.require_desk(uow.ctx.actor_role)
    ticket = tickets.get_ticket(uow, data.ticket_id)
    tickets._require_office(uow, ticket)
    visit = uow.session.scalar(sa.select(ReturnVisit).where(ReturnVisit.ticket_id == ticket.id,
                                                            ReturnVisit.status == "requested"))
    if visit is None:
        visit = ReturnVisit(ticket_id=ticket.id, mode="manual", status="requested", scores={}, tags=[],
                            created_at=utcnow())
        uow.session.add(visit)
    visit.mode, visit.token, visit.visitor_id = "manual", None, uow.ctx.actor_id
    return _rate(uow, visit, data, by_customer=False)


def visit_by_token(session, token: str) -> ReturnVisit:
    """Across tenants (the portal page has only the token)."""
    row = session.scalar(sa.select(ReturnVisit).where(ReturnVisit.token == token))
    if row is None:
        raise NotFound("this rating link is unknown or used", [{"field": "token", "message": "not found"}])
    return row


def rate_by_token(uow: UnitOfWork, token: str, data: VisitRateIn) -> ReturnVisit:
    """The customer rates on the portal page: the token is their only key, and it rates this visit only."""
    if uow.ctx.actor_role != domain.CUSTOMER_ROLE:
        raise Forbidden("the rating page is the customer's")
    visit = visit_by_token(uow.session, token)
    if visit.tenant_id != uow.ctx.tenant_id:
        raise NotFound("this rating link is unknown or used", [{"field": "token", "message": "not found"}])
    if visit.status != "requested":
        raise Conflict("already rated, thank you", [{"field": "token", "message": "already rated"}])
    return _rate(uow, visit, data, by_customer=True)


def list_visits(uow: UnitOfWork, ticket_id: uuid.UUID | None, status: str | None, offset: int, limit: int
                ) -> tuple[list[ReturnVisit], int]:
    query = sa.select(ReturnVisit)
    if ticket_id:
        query = query.where(ReturnVisit.ticket_id == ticket_id)
    if status:
        query = query.where(ReturnVisit.status == status)
    total = uow.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    return list(uow.session.scalars(query.order_by(ReturnVisit.created_at.desc()).offset(offset).limit(limit))), total


# -- service report links (portal) --------------------------------------------------------------------------

def report_link(uow: UnitOfWork, ticket_id: uuid.UUID) -> ReportLink:
    """The order's portal link to its service report (one per order, made on first ask)."""
    domain.require_desk(uow.ctx.actor_role)
    ticket = tickets.get_ticket(uow, ticket_id)
    row = uow.session.scalar(sa.select(ReportLink).where(ReportLink.ticket_id == ticket.id))
    if row is None:
        row = ReportLink(ticket_id=ticket.id, token=secrets.token_urlsafe(24), created_by=uow.ctx.actor_id,
                         created_at=utcnow())
        uow.session.add(row)
        uow.session.flush()
    return row


def report_link_by_token(session, token: str) -> ReportLink:
    row = session.scalar(sa.select(ReportLink).where(ReportLink.token == token))
    if row is None:
        raise NotFound("this report link is unknown", [{"field": "token", "message": "not found"}])
    return row


def send_report(uow: UnitOfWork, ticket_id: uuid.UUID, data: ReportSendIn) -> dict:
    """The service report to the customer by e-mail (notify attaches the PDF) or SMS (the portal link):
    the order's portal link, `service_report.sent` for notify, and a line on the order's timeline."""
    domain.require_desk(uow.ctx.actor_role)
    ticket = tickets.get_ticket(uow, ticket_id)
    if ticket.status not in DONE_STATES:
        raise Conflict(f"work order {ticket.number} is {ticket.status}; its report follows completion",
                       [{"field": "status", "message": f"work order is {ticket.status}"}])
    to = domain.report_recipient(data.channel, data.to, ticket.contact_phone)
    link = report_link(uow, ticket.id)
    path = f"/api/v1/public/service-reports/{link.token}" + ("?locale=en" if data.locale == "en" else "")
    by_email = data.channel == "email"
    ticket.timeline.append(TimelineEntry(
        seq=len(ticket.timeline) + 1, action="send_report", from_status=ticket.status, to_status=ticket.status,
        actor_id=uow.ctx.actor_id, actor_role=uow.ctx.actor_role,
        note=f"服务报告已通过{'邮件' if by_email else '短信'}发送至 {to}",
        data={"channel": data.channel, "to": to, "locale": data.locale}, at=utcnow()))
    uow.session.flush()
    uow.emit("service_report.sent", {
        "ticket_id": ticket.id, "number": ticket.number, "customer_id": ticket.customer_id,
        "customer_name": ticket.customer_name, "channel": data.channel,
        "recipient_email": to if by_email else None, "recipient_phone": None if by_email else to,
        "contact_name": ticket.contact_name, "report_path": path, "locale": data.locale})
    return {"ticket_id": ticket.id, "number": ticket.number, "channel": data.channel, "to": to,
            "locale": data.locale, "token": link.token, "report_path": path}

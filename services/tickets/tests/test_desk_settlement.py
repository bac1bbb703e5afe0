"""Settlement (审核结算) and return visits (回访, 满意度), driving the work-order transitions."""
import uuid
from decimal import Decimal

import pytest

from svc_common.context import RequestContext
from svc_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from svc_common.testing import context, outbox_events, uow
from svc_common.validation import parse
from tickets import handlers as tickets
from tickets.desk import settlement
from tickets.desk.schemas import DeskSettingsIn, ManualVisitIn, ReportSendIn, SettlementIn, VisitRateIn
from tickets.desk.handlers import update_settings
from tickets.schemas import AssignIn, CheckInIn, ReceiptIn, TicketIn, TicketTypeIn, VisitIn

PART, ITEM = uuid.uuid4(), uuid.uuid4()
PRICES = {"parts": {str(PART): {"name": "启动电容", "sale_price": "80.00", "cost_price": "35.50"}},
          "service_items": {str(ITEM): {"name": "上门检修", "price": "120.00", "cost_price": "60.00"}}}


def completed_order(db, office, roster, warranty=False, flow=None):
    tech = roster.user("李工")
    with uow(db, office) as u:
        code = tickets.create_type(u, TicketTypeIn(code=f"svc{uuid.uuid4().hex[:6]}", name="有偿维修",
                                                   flow=flow or {"settlement": True, "return_visit": True})).code
        customer = uuid.uuid4()
        ticket = tickets.create_ticket(u, TicketIn(type=code, customer_id=customer, description="不制冷"), {
            "customer_id": customer, "customer_name": "申能物业", "contact_name": "王经理",
            "contact_phone": "13800138000", "address": "上海", "latitude": Decimal("31.2"),
            "longitude": Decimal("121.5"), "equipment_id": None, "equipment_model": None, "serial_number": None,
            "under_warranty": warranty})
    with uow(db, office) as u:
        tickets.assign_ticket(u, ticket.id, AssignIn(technician_id=tech))
    me = roster.as_(tech)
    with uow(db, me) as u:
        tickets.accept_ticket(u, ticket.id)
    with uow(db, me) as u:
        tickets.check_in(u, ticket.id, CheckInIn(latitude=Decimal("31.2"), longitude=Decimal("121.5")))
    with uow(db, me) as u:
        tickets.complete_ticket(u, ticket.id, parse(ReceiptIn, {
            "summary": "更换启动电容", "parts_used": [{"part_id": str(PART), "quantity": "2"}],
            "service_items": [{"service_item_id": str(ITEM), "quantity": "1"}]}))
    return ticket


def build(db, ctx, ticket_id, stage="final", **body):
    with uow(db, ctx) as u:
        return settlement.build_settlement(u, ticket_id, stage, parse(SettlementIn, body), PRICES)


def test_settlement_prices_the_receipt_and_drives_settle_with_its_lines(db, office, roster):
    ticket = completed_order(db, office, roster)
    row = build(db, office, ticket.id, fee_lines=[{"kind": "travel", "description": "远程交通费", "quantity": "1",
                                                   "unit_price": "30"}],
                cost_lines=[{"kind": "labour", "description": "工时", "quantity": "1.5", "unit_price": "40.00"}])
    assert [(x["kind"], x["amount"]) for x in row.fee_lines] == [("part", "160.00"), ("service_item", "120.00"),
                                                                 ("travel", "30.00")]
    assert [(x["kind"], x["amount"]) for x in row.cost_lines] == [("part", "71.00"), ("labour", "60.00"),
                                                                  ("labour", "60.00")]
    assert (row.fee_total, row.cost_total, row.gross_profit) == (Decimal("310.00"), Decimal("191.00"),
                                                                Decimal("119.00"))
    with uow(db, office) as u:
        queue = settlement.settlement_queue(u, "unsettled", 0, 50)
        assert queue["totals"]["unsettled_count"] == 1 and queue["totals"]["unsettled_amount"] == "310.00"
    with uow(db, office) as u:
        assert settlement.approve_settlement(u, ticket.id, "核对无误").status == "approved"
    with uow(db, office) as u:
        done = settlement.settle(u, ticket.id)
    assert done.status == "settled"
    settled = [e["data"] for e in outbox_events(db) if e["type"] == "ticket.settled"][0]
    assert (settled["fee_total"], settled["cost_total"], settled["gross_profit"]) == ("310.00", "191.00", "119.00")
    assert [x["description"] for x in settled["fee_lines"]] == ["启动电容", "上门检修", "远程交通费"]
    with uow(db, office) as u:
        assert tickets.get_ticket(u, ticket.id).status == "settled"
        totals = settlement.settlement_queue(u, None, 0, 50)["totals"]
        assert totals["settled_30d_count"] == 1 and totals["settled_30d_gross_profit"] == "119.00"
    with pytest.raises(Conflict), uow(db, office) as u:  # settled orders are locked
        settlement.build_settlement(u, ticket.id, "final", SettlementIn(), PRICES)


def test_under_warranty_parts_and_service_items_are_free(db, office, roster):
    ticket = completed_order(db, office, roster, warranty=True)
    row = build(db, office, ticket.id)
    assert row.warranty is True and row.fee_total == Decimal("0.00")
    assert row.gross_profit == Decimal("-131.00")  # the company bears the costs
    paid = build(db, office, ticket.id, warranty=False)  # the desk decides it is out of warranty after all
    assert paid.fee_total == Decimal("280.00")


def test_quote_before_the_work_and_bad_lines(db, office, roster):
    with uow(db, office) as u:
        customer = uuid.uuid4()
        order = tickets.create_ticket(u, TicketIn(type="repair", customer_id=customer, description="报价"), {
            "customer_id": customer, "customer_name": "客户", "contact_name": None, "contact_phone": None,
            "address": None, "latitude": None, "longitude": None, "equipment_id": None, "equipment_model": None,
            "serial_number": None, "under_warranty": None})
    quote = build(db, office, order.id, "quote", fee_lines=[{"kind": "part", "ref_id": str(PART), "quantity": "1"}])
    assert quote.stage == "quote" and quote.fee_lines[0]["unit_price"] == "80.00" and quote.fee_total == Decimal("80.00")
    with pytest.raises(Conflict), uow(db, office) as u:  # final amounts come after the work
        settlement.build_settlement(u, order.id, "final", SettlementIn(), PRICES)
    for body, field in (({"fee_lines": [{"kind": "labour", "description": "x", "quantity": "1", "unit_price": "1"}]},
                         "fee_lines.0.kind"),
                        ({"fee_lines": [{"kind": "other", "description": "x", "quantity": "1"}]},
                         "fee_lines.0.unit_price"),
                        ({"cost_lines": [{"kind": "part", "ref_id": str(uuid.uuid4()), "quantity": "1"}]},
                         "cost_lines.0.ref_id")):
        with pytest.raises(ValidationFailed) as err:
            build(db, office, order.id, "quote", **body)
        assert err.value.errors[0]["field"] == field
    with pytest.raises(ValidationFailed):
        parse(SettlementIn, {"fee_lines": [{"kind": "other", "description": "x", "quantity": "1",
                                            "unit_price": "1.001"}]})


def test_batch_settlement_is_all_or_none(db, office, roster):
    a, b = completed_order(db, office, roster), completed_order(db, office, roster)
    build(db, office, a.id)
    with pytest.raises(NotFound) as err, uow(db, office) as u:
        settlement.batch_settle(u, [a.id, b.id])
    assert err.value.errors[0]["field"] == "ticket_ids.1"
    with uow(db, office) as u:
        assert settlement.get_settlement(u, a.id).status == "draft"
    build(db, office, b.id)
    with uow(db, office) as u:
        assert [r.status for r in settlement.batch_settle(u, [a.id, b.id])] == ["settled", "settled"]


def test_settling_opens_an_automatic_visit_the_customer_rates_by_token(db, office, roster):
    ticket = completed_order(db, office, roster)
    build(db, office, ticket.id)
    with uow(db, office) as u:
        settlement.settle(u, ticket.id)
    with uow(db, office) as u:
        visit = settlement.list_visits(u, ticket.id, None, 0, 10)[0][0]
    assert visit.mode == "auto" and visit.status == "requested" and len(visit.token) >= 24
    customer = RequestContext(tenant_id=office.tenant_id, actor_role="customer")  # the portal: no user
    with pytest.raises(ValidationFailed) as err, uow(db, customer) as u:
        settlement.rate_by_token(u, visit.token, VisitRateIn(scores={"quality": 6}))
    assert err.value.errors[0]["field"] == "scores.quality"
    with pytest.raises(ValidationFailed), uow(db, customer) as u:
        settlement.rate_by_token(u, visit.token, VisitRateIn(scores={"quality": 5}, tags=["随便"]))
    with uow(db, customer) as u:
        rated = settlement.rate_by_token(u, visit.token, VisitRateIn(
            scores={"quality": 5, "efficiency": 4, "attitude": 4}, tags=["专业"], comment="很好"))
    assert rated.satisfaction == 4 and rated.status == "rated"
    visited = [e for e in outbox_events(db) if e["type"] == "ticket.visited"][0]
    assert visited["data"]["satisfaction"] == 4 and visited["data"]["comment"] == "很好"
    assert visited["data"]["scores"] == {"quality": 5, "efficiency": 4, "attitude": 4}
    assert visited["data"]["tags"] == ["专业"] and visited["data"]["by_customer"] is True
    assert visited["actor"] == {"id": None, "role": "customer"}
    with uow(db, office) as u:
        order = tickets.get_ticket(u, ticket.id)
        assert order.status == "visited" and order.visit_comment == "专业；很好"
        assert (order.timeline[-1].action, order.timeline[-1].actor_role, order.timeline[-1].actor_id) == (
            "visit", "customer", None)
    with pytest.raises(Conflict), uow(db, customer) as u:
        settlement.rate_by_token(u, visit.token, VisitRateIn(scores={"quality": 1}))
    with pytest.raises(NotFound), uow(db, customer) as u:
        settlement.rate_by_token(u, "nope", VisitRateIn())
    elsewhere = RequestContext(tenant_id=uuid.uuid4(), actor_role="customer")
    with pytest.raises(NotFound), uow(db, elsewhere) as u:  # a token never crosses tenants
        settlement.rate_by_token(u, visit.token, VisitRateIn())


def test_the_portal_customer_has_no_staff_rights(db, office, roster):
    ticket = completed_order(db, office, roster, flow={"return_visit": True})
    with uow(db, context(tenant_id=office.tenant_id, role="system")) as u:
        visit = settlement.visit_after_completion(u, ticket.id)
    customer = RequestContext(tenant_id=office.tenant_id, actor_role="customer")
    staff_only = (
        lambda u: settlement.manual_visit(u, ManualVisitIn(ticket_id=ticket.id, scores={"quality": 5})),
        lambda u: tickets.visit_ticket(u, ticket.id, VisitIn(satisfaction=5)),
        lambda u: settlement.report_link(u, ticket.id),
        lambda u: settlement.build_settlement(u, ticket.id, "final", parse(SettlementIn, {}), PRICES),
        lambda u: settlement.send_report(u, ticket.id, ReportSendIn(channel="sms")),
        lambda u: tickets.close_ticket(u, ticket.id, None),
        lambda u: tickets.cancel_ticket(u, ticket.id, "x"),
        lambda u: update_settings(u, DeskSettingsIn(auto_return_visit=False)),
    )
    for action in staff_only:
        with pytest.raises(Forbidden), uow(db, customer) as u:
            action(u)
    # and staff do not rate in the customer's name: the desk enters a phone visit instead
    with pytest.raises(Forbidden), uow(db, office) as u:
        settlement.rate_by_token(u, visit.token, VisitRateIn(scores={"quality": 5}))
    with uow(db, office) as u:
        assert tickets.get_ticket(u, ticket.id).status == "completed"
    assert [e for e in outbox_events(db) if e["type"] == "ticket.visited"] == []


def test_manual_visit_with_tenant_dimensions(db, office, roster):
    ticket = completed_order(db, office, roster, flow={"return_visit": True})
    with uow(db, office) as u:
        update_settings(u, DeskSettingsIn(satisfaction_dimensions=[{"key": "overall", "label": "总体"}],
                                          auto_return_visit=False))
    with uow(db, office) as u:
        visit = settlement.manual_visit(u, ManualVisitIn(ticket_id=ticket.id, scores={"overall": 3},
                                                         tags=["需改进"], comment="到场晚了"))
    assert visit.mode == "manual" and visit.satisfaction == 3 and visit.visitor_id == office.actor_id
    with uow(db, office) as u:
        assert tickets.get_ticket(u, ticket.id).satisfaction == 3
    visited = [e for e in outbox_events(db) if e["type"] == "ticket.visited"][0]
    assert (visited["data"]["scores"], visited["data"]["tags"], visited["data"]["by_customer"]) == (
        {"overall": 3}, ["需改进"], False)
    assert visited["actor"] == {"id": str(office.actor_id), "role": "dispatcher"}


def test_a_rating_counts_when_the_type_has_no_visit_step_and_never_before_completion(db, office, roster):
    ticket = completed_order(db, office, roster, flow={"acceptance_required": True})  # no visit step
    with uow(db, office) as u:
        settlement.manual_visit(u, ManualVisitIn(ticket_id=ticket.id, scores={"quality": 4}))
    with uow(db, office) as u:
        order = tickets.get_ticket(u, ticket.id)
        assert (order.status, order.satisfaction, order.timeline[-1].action) == ("completed", 4, "visit")
    assert [e["data"]["scores"] for e in outbox_events(db) if e["type"] == "ticket.visited"] == [{"quality": 4}]
    with uow(db, office) as u:
        fresh = tickets.create_ticket(u, TicketIn(type="repair", customer_id=uuid.uuid4(), description="x"), {
            "customer_id": uuid.uuid4(), "customer_name": "x"})
    with pytest.raises(Conflict), uow(db, office) as u:
        settlement.manual_visit(u, ManualVisitIn(ticket_id=fresh.id, scores={"quality": 4}))


def test_completion_opens_the_visit_when_it_is_the_next_step(db, office, roster):
    direct = completed_order(db, office, roster, flow={"return_visit": True})
    settled_first = completed_order(db, office, roster)
    with uow(db, context(tenant_id=office.tenant_id, role="system")) as u:
        assert settlement.visit_after_completion(u, direct.id).mode == "auto"
        assert settlement.visit_after_completion(u, settled_first.id) is None  # comes with settlement
        assert settlement.visit_after_completion(u, direct.id).id == settlement.list_visits(
            u, direct.id, None, 0, 5)[0][0].id  # one open visit per order


def test_settling_waits_for_the_approval_when_the_tenant_requires_it(db, office, roster):
    ticket = completed_order(db, office, roster)
    with uow(db, office) as u:
        update_settings(u, DeskSettingsIn(settlement_approval_required=True))
    build(db, office, ticket.id)
    with pytest.raises(Conflict) as err, uow(db, office) as u:
        settlement.settle(u, ticket.id)
    assert err.value.errors == [{"field": "status", "message": "draft"}]
    with uow(db, office) as u:
        settlement.approve_settlement(u, ticket.id, None)
    with pytest.raises(ValidationFailed), uow(db, office) as u:
        settlement.reject_settlement(u, ticket.id, " ")
    with uow(db, office) as u:  # the approver sends it back after all
        rejected = settlement.reject_settlement(u, ticket.id, "交通费有误")
        assert (rejected.status, rejected.approved_by, rejected.note) == ("draft", None, "退回: 交通费有误")
    with pytest.raises(Conflict), uow(db, office) as u:
        settlement.settle(u, ticket.id)
    with uow(db, office) as u:
        settlement.approve_settlement(u, ticket.id, None)
    with uow(db, office) as u:
        assert settlement.settle(u, ticket.id).status == "settled"


def test_settlement_approvers_by_role_or_by_name(db, office, roster):
    from svc_common.errors import Forbidden
    ticket = completed_order(db, office, roster)
    build(db, office, ticket.id)
    admin = context(tenant_id=office.tenant_id, role="admin")
    with uow(db, admin) as u:
        update_settings(u, DeskSettingsIn(settlement_approver_role="admin"))
    with pytest.raises(Forbidden), uow(db, office) as u:
        settlement.approve_settlement(u, ticket.id, None)
    with uow(db, admin) as u:
        update_settings(u, DeskSettingsIn(settlement_approver_ids=[office.actor_id]))
    with pytest.raises(Forbidden), uow(db, admin) as u:
        settlement.approve_settlement(u, ticket.id, None)
    with uow(db, office) as u:  # the named dispatcher may, whatever the role rule says
        assert settlement.approve_settlement(u, ticket.id, "核对").approved_by == office.actor_id


def test_the_service_report_goes_to_the_customer_by_email_or_sms(db, office, roster):
    ticket = completed_order(db, office, roster)

    def send(ctx=office, **body):
        with uow(db, ctx) as u:
            return settlement.send_report(u, ticket.id, parse(ReportSendIn, body))

    by_sms = send(channel="sms")  # to the order's contact phone
    assert (by_sms["to"], by_sms["locale"]) == ("13800138000", "zh-CN")
    assert by_sms["report_path"] == f"/api/v1/public/service-reports/{by_sms['token']}"
    by_email = send(channel="email", to="Wang.Li@Example.COM", locale="en")
    assert by_email["to"] == "Wang.Li@example.com" and by_email["token"] == by_sms["token"]  # one link per order
    assert by_email["report_path"].endswith("?locale=en")
    assert send(channel="sms", to="+86 139-1234-5678")["to"] == "13912345678"
    for body in ({"channel": "email"}, {"channel": "email", "to": "not-an-address"}, {"channel": "sms", "to": "12345"}):
        with pytest.raises(ValidationFailed) as err:
            send(**body)
        assert err.value.errors[0]["field"] == "to"
    with pytest.raises(ValidationFailed) as err:
        send(channel="fax")
    assert err.value.errors[0]["field"] == "channel"
    with pytest.raises(Forbidden):
        send(roster.as_(ticket.assignee_id), channel="sms")

    sent = [e for e in outbox_events(db) if e["type"] == "service_report.sent"]
    assert [(e["data"]["channel"], e["data"]["recipient_email"], e["data"]["recipient_phone"], e["data"]["locale"])
            for e in sent] == [("sms", None, "13800138000", "zh-CN"), ("email", "Wang.Li@example.com", None, "en"),
                               ("sms", None, "13912345678", "zh-CN")]
    assert sent[1]["data"]["number"] == ticket.number and sent[1]["data"]["customer_name"] == "申能物业"
    assert sent[1]["data"]["contact_name"] == "王经理" and sent[1]["data"]["report_path"] == by_email["report_path"]
    with uow(db, office) as u:
        lines = [(e.action, e.actor_role, e.note, e.data["channel"]) for e in tickets.get_ticket(u, ticket.id).timeline
                 if e.action == "send_report"]
    assert lines[:2] == [("send_report", "dispatcher", "服务报告已通过短信发送至 13800138000", "sms"),
                         ("send_report", "dispatcher", "服务报告已通过邮件发送至 Wang.Li@example.com", "email")]


def test_no_report_is_sent_before_the_work_is_done(db, office):
    with uow(db, office) as u:
        fresh = tickets.create_ticket(u, TicketIn(type="repair", customer_id=uuid.uuid4(), description="x"), {
            "customer_id": uuid.uuid4(), "customer_name": "x", "contact_phone": "13800138000"})
    with pytest.raises(Conflict), uow(db, office) as u:
        settlement.send_report(u, fresh.id, ReportSendIn(channel="sms"))
    assert [e for e in outbox_events(db) if e["type"] == "service_report.sent"] == []

"""A small, fully worked set of events of one tenant (three days in Shanghai) with known figures.

Local days are Asia/Shanghai (UTC+8): 2026-11-10T16:30Z is 2026-11-11 00:30 local.
Order A: repair, team T1, technician A; accepted after 30 min, arrived after 60, done after 120.
Order B: maintenance plan PL, team T1, technician B (assistant A); overdue, completed, reopened,
         completed again 750 min after creation.
Order C: cancelled. Order D: planned, still waiting for dispatch.
Return visits: A 5 stars (质量 5, 态度 4, 准时; by the customer), B 3 stars (质量 3; 准时, 等待久).
"""
import uuid

TENANT = uuid.UUID("00000000-0000-0000-0000-00000000a001")
T1, T2 = uuid.UUID(int=0x71), uuid.UUID(int=0x72)
TECH_A, TECH_B = uuid.UUID(int=0xA), uuid.UUID(int=0xB)
C1, C2, C3 = uuid.UUID(int=0xC1), uuid.UUID(int=0xC2), uuid.UUID(int=0xC3)
A, B, C, D = (uuid.UUID(int=0xD0 + i) for i in range(4))
PLAN = uuid.UUID(int=0x9)
S1, P1, P2, WH1 = uuid.UUID(int=0x51), uuid.UUID(int=0xF1), uuid.UUID(int=0xF2), uuid.UUID(int=0x111)
R1, R2, R3 = uuid.UUID(int=0x81), uuid.UUID(int=0x82), uuid.UUID(int=0x83)


def envelope(event_type: str, at: str, data: dict, tenant=TENANT) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": event_type, "schema_version": 1,
            "occurred_at": at + ("+00:00" if "+" not in at else ""), "tenant_id": str(tenant),
            "correlation_id": None, "actor": None, "data": _json(data)}


def _json(value):
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return str(value) if isinstance(value, uuid.UUID) else value


def ticket(event_type: str, at: str, order: uuid.UUID, **data) -> dict:
    base = {"A": ("WO000001", "repair", C1, T1, TECH_A), "B": ("WO000002", "maintenance", C2, T1, TECH_B),
            "C": ("WO000003", "repair", C1, T2, TECH_A), "D": ("WO000004", "maintenance", C3, T2, None)}
    number, type_, customer, team, tech = base["ABCD"[[A, B, C, D].index(order)]]
    payload = {"ticket_id": order, "number": number, "type": type_, "customer_id": customer, "team_id": team}
    if tech and event_type != "ticket.created":
        payload["technician_id"] = tech
    payload.update(data)
    return envelope(event_type, at, payload)


def line(kind, amount, ref_id=None, quantity="1", unit_price=None):
    return {"kind": kind, "ref_id": ref_id, "description": kind, "quantity": quantity,
            "unit_price": unit_price or amount, "amount": amount}


def events(tenant=TENANT) -> list[dict]:
    evs = [
        envelope("user.created", "2026-11-01T00:00:00", {"user_id": TECH_A, "name": "张工", "username": "a",
                                                         "role": "technician"}),
        envelope("user.created", "2026-11-01T00:00:00", {"user_id": TECH_B, "name": "李工", "username": "b",
                                                         "role": "technician"}),
        envelope("team.updated", "2026-11-01T00:00:00", {"team_id": T1, "name": "一组", "kind": "team",
                                                         "member_ids": [TECH_A, TECH_B], "manager_ids": []}),
        envelope("team.updated", "2026-11-01T00:00:00", {"team_id": T2, "name": "二组", "kind": "team",
                                                         "member_ids": [], "manager_ids": []}),
        envelope("customer.created", "2026-11-01T00:00:00", {"customer_id": C1, "name": "上海申能"}),
        envelope("customer.created", "2026-11-10T06:00:00", {"customer_id": C2, "name": "浦东物业"}),
        envelope("customer.created", "2026-11-11T03:00:00", {"customer_id": C3, "name": "新客户"}),
        # service desk
        envelope("service_request.created", "2026-11-10T00:30:00", {"request_id": R1, "number": "SR01",
                                                                    "channel": "phone", "event_type": "报修",
                                                                    "customer_id": C1}),
        envelope("service_request.converted", "2026-11-10T01:00:00", {"request_id": R1, "number": "SR01",
                                                                      "ticket_id": A, "channel": "phone"}),
        envelope("service_request.created", "2026-11-10T05:00:00", {"request_id": R2, "number": "SR02",
                                                                    "channel": "portal", "event_type": "咨询"}),
        envelope("service_request.closed", "2026-11-10T05:30:00", {"request_id": R2, "number": "SR02",
                                                                   "channel": "portal", "outcome": "resolved"}),
        envelope("service_request.created", "2026-11-11T01:00:00", {"request_id": R3, "number": "SR03",
                                                                    "channel": "phone", "event_type": "报修"}),
        # order A
        ticket("ticket.created", "2026-11-10T01:00:00", A, priority="high", service_request_id=R1),
        ticket("ticket.assigned", "2026-11-10T01:10:00", A),
        ticket("ticket.accepted", "2026-11-10T01:30:00", A),
        ticket("ticket.checked_in", "2026-11-10T02:00:00", A, latitude="31.2", longitude="121.5"),
        envelope("stock.moved", "2026-11-10T03:00:00", {
            "move_id": uuid.UUID(int=0x301), "part_id": P1, "quantity": "1", "kind": "consumption",
            "unit_cost": "20.00", "value": "20.00", "technician_id": TECH_A, "customer_id": C1,
            "warehouse_id": WH1, "ticket_id": A}),
        envelope("stock.moved", "2026-11-10T03:00:00", {  # an inbound move: not consumption
            "move_id": uuid.UUID(int=0x300), "part_id": P1, "quantity": "50", "kind": "inbound"}),
        ticket("ticket.completed", "2026-11-10T03:00:00", A, completed_at="2026-11-10T03:00:00+00:00",
               customer_name="上海申能", summary="ok", on_site_seconds=3600,
               service_items=[{"service_item_id": S1, "quantity": "2"}]),
        ticket("ticket.settled", "2026-11-11T02:00:00", A, settled_at="2026-11-11T02:00:00+00:00", currency="CNY",
               warranty=False, fee_lines=[line("service_item", "100.00", S1, "2", "50.00"), line("part", "30.50", P1)],
               cost_lines=[line("part", "20.00", P1), line("labour", "20.25")],
               fee_total="130.50", cost_total="40.25", gross_profit="90.25"),
        ticket("ticket.closed", "2026-11-11T03:00:00", A),
        ticket("ticket.visited", "2026-11-11T06:00:00", A, visited_at="2026-11-11T06:00:00+00:00", satisfaction=5,
               comment="好", scores={"质量": 5, "态度": 4}, tags=["准时"], by_customer=True),
        # order B
        ticket("ticket.created", "2026-11-10T16:30:00", B, plan_id=PLAN, priority="normal"),
        ticket("ticket.grabbed", "2026-11-10T17:30:00", B),
        ticket("ticket.checked_in", "2026-11-10T18:30:00", B, latitude="31.2", longitude="121.5"),
        ticket("ticket.overdue", "2026-11-10T20:00:00", B, deadline="complete", due_at="2026-11-10T20:00:00+00:00"),
        ticket("ticket.completed", "2026-11-10T21:00:00", B, completed_at="2026-11-10T21:00:00+00:00",
               customer_name="浦东物业", summary="ok"),
        ticket("ticket.reopened", "2026-11-11T01:00:00", B, from_status="completed", reason="复发"),
        envelope("stock.moved", "2026-11-11T05:00:00", {
            "move_id": uuid.UUID(int=0x302), "part_id": P2, "quantity": "2", "kind": "consumption",
            "unit_cost": "15.50", "technician_id": TECH_B, "customer_id": C2, "ticket_id": B}),
        ticket("ticket.completed", "2026-11-11T05:00:00", B, completed_at="2026-11-11T05:00:00+00:00",
               customer_name="浦东物业", summary="ok", assistant_ids=[TECH_A]),
        ticket("ticket.settled", "2026-11-12T01:00:00", B, settled_at="2026-11-12T01:00:00+00:00", currency="CNY",
               warranty=True, fee_lines=[line("other", "200.00")],
               cost_lines=[line("part", "31.00", P2), line("labour", "119.10")],
               fee_total="200.00", cost_total="150.10", gross_profit="49.90"),
        ticket("ticket.visited", "2026-11-12T02:00:00", B, visited_at="2026-11-12T02:00:00+00:00", satisfaction=3,
               scores={"质量": 3}, tags=["准时", "等待久"]),
        # order C, D
        ticket("ticket.created", "2026-11-11T02:00:00", C),
        ticket("ticket.cancelled", "2026-11-11T04:00:00", C, from_status="pending_dispatch", reason="客户取消"),
        ticket("ticket.created", "2026-11-12T02:00:00", D, plan_id=PLAN),
    ]
    if tenant != TENANT:
        for e in evs:
            e["tenant_id"] = str(tenant)
    return evs

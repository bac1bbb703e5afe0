"""Inventory handlers against a real SQLite database (unit tier, no broker)."""
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from inventory import catalog, handlers
from inventory.models import StockMove
from inventory.schemas import ApprovalIn, PartIn, ReceiveIn, RejectIn, RequisitionIn
from inventory_testkit import assert_ledger_matches_balances, events, seed, snapshot, ticket_completed
from svc_common.context import system_context
from svc_common.contracts import EventEnvelope
from svc_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from svc_common.testing import context, uow
from svc_common.uow import UnitOfWork
from svc_common.validation import parse

CONSUMER = "inventory.on_ticket_completed"  # what Platform.event_uow names the service's handler


def request(db, ctx, world, *lines, technician_id=None):
    body = {"warehouse_id": str(world.warehouse_id),
            "lines": [{"part_id": str(p), "quantity": q} for p, q in lines]}
    if technician_id:
        body["technician_id"] = str(technician_id)
    with uow(db, ctx) as u:
        return handlers.request_requisition(u, parse(RequisitionIn, body))


def approve(db, ctx, requisition_id, lines=None):
    data = parse(ApprovalIn, {"lines": None if lines is None else
                              [{"part_id": str(p), "approved_quantity": q} for p, q in lines]})
    with uow(db, ctx) as u:
        return handlers.approve_requisition(u, requisition_id, data)


def stock(db, ctx, location_id) -> dict[uuid.UUID, Decimal]:
    with uow(db, ctx) as u:
        return {i["part_id"]: i["quantity"] for i in handlers.get_stock(u, location_id)["items"]}


def personal(db, ctx, technician_id) -> dict:
    with uow(db, ctx) as u:
        result = handlers.get_personal_stock(u, technician_id)
        return {"location": result["location"], "items": {i["part_id"]: i["quantity"] for i in result["items"]}}


def process_ticket_completed(db, envelope: dict) -> bool:
    """Exactly what InventoryService.on_ticket_completed does, without nameko."""
    event = EventEnvelope.model_validate(envelope)
    with UnitOfWork(db, system_context(event.tenant_id, event.correlation_id)) as u:
        if not u.consume(CONSUMER, event.event_id):
            return False
        handlers.consume_parts_for_work_order(u, event.payload())
        return True


def issue(db, world, tech, *lines):
    """Requisition + approval: put parts into a technician's personal stock."""
    requisition = request(db, tech, world, *lines)
    return approve(db, world.manager, requisition.id)


# --- stock in, ledger and balances ---------------------------------------------------------------

def test_receive_stock_writes_ledger_balances_and_events(db, world):
    with uow(db, world.admin) as u:
        moves = handlers.receive_stock(u, world.warehouse_id, parse(ReceiveIn, {
            "lines": [{"part_id": str(world.compressor_id), "quantity": "2.5"}], "note": "采购入库"}))
    [move] = moves
    assert (move.kind, move.to_location_id, move.from_location_id) == ("inbound", world.warehouse_id, None)
    assert move.actor_id == world.admin.actor_id and move.note == "采购入库"
    assert stock(db, world.admin, world.warehouse_id) == {world.compressor_id: Decimal("12.5"),
                                                         world.filter_id: Decimal(5)}
    moved = events(db, "stock.moved")
    assert len(moved) == 3 and moved[-1]["data"]["quantity"] == "2.500"
    assert_ledger_matches_balances(db)


def test_receive_into_unknown_warehouse_or_part_names_the_field(db, world):
    with pytest.raises(NotFound) as err, uow(db, world.admin) as u:
        handlers.receive_stock(u, uuid.uuid4(), parse(ReceiveIn, {
            "lines": [{"part_id": str(world.compressor_id), "quantity": "1"}]}))
    assert err.value.errors[0]["field"] == "warehouse_id"
    with pytest.raises(NotFound) as err, uow(db, world.admin) as u:
        handlers.receive_stock(u, world.warehouse_id, parse(ReceiveIn, {
            "lines": [{"part_id": str(world.compressor_id), "quantity": "1"},
                      {"part_id": str(uuid.uuid4()), "quantity": "1"}]}))
    assert err.value.errors[0]["field"] == "lines.1.part_id"


def test_duplicate_part_code_is_conflict_on_code(db, world):
    before = snapshot(db)
    with pytest.raises(Conflict) as err, uow(db, world.admin) as u:
        catalog.create_part(u, parse(PartIn, {"code": "CMP-01", "name": "另一个"}))
    assert err.value.errors == [{"field": "code", "message": "already exists"}]
    assert snapshot(db) == before
    with uow(db, context()) as u:  # codes are unique per tenant only
        assert catalog.create_part(u, parse(PartIn, {"code": "CMP-01", "name": "压缩机"})).unit == "个"


def test_ledger_is_append_only(db, world):
    with pytest.raises(PermissionError), uow(db, world.admin) as u:
        move = u.session.scalars(sa.select(StockMove)).first()
        move.quantity = Decimal(1000)
        u.session.flush()


# --- requisitions ---------------------------------------------------------------------------------

def test_requisition_request_then_approve_issues_into_personal_stock(db, world):
    requisition = request(db, world.tech, world, (world.compressor_id, "3"))
    assert (requisition.number, requisition.status) == ("REQ000001", "requested")
    assert requisition.technician_id == world.tech.actor_id  # defaults to the caller
    assert events(db, "requisition.requested")[0]["data"]["lines"][0]["quantity"] == "3.000"
    # Personal stock is created lazily, on the first issue.
    assert personal(db, world.tech, world.tech.actor_id) == {"location": None, "items": {}}

    approved = approve(db, world.manager, requisition.id)
    assert approved.status == "approved" and approved.decided_by == world.manager.actor_id
    assert approved.lines[0].approved_quantity == Decimal(3)
    assert stock(db, world.admin, world.warehouse_id)[world.compressor_id] == Decimal(7)
    mine = personal(db, world.tech, world.tech.actor_id)
    assert mine["location"].kind == "personal" and mine["items"] == {world.compressor_id: Decimal(3)}

    with uow(db, world.admin) as u:
        moves, total = handlers.list_moves(u, requisition.id, None, None, 0, 100)
    assert total == 1
    assert (moves[0].kind, moves[0].ref_type, moves[0].ref_number) == ("requisition_issue", "requisition", "REQ000001")
    assert (moves[0].from_location_id, moves[0].to_location_id) == (world.warehouse_id, mine["location"].id)
    assert events(db, "requisition.approved")[0]["data"]["status"] == "approved"
    assert_ledger_matches_balances(db)

    # Decided once: neither a second approval nor a rejection changes anything.
    before = snapshot(db)
    with pytest.raises(Conflict) as err:
        approve(db, world.manager, requisition.id)
    assert "approved" in err.value.message
    with pytest.raises(Conflict), uow(db, world.manager) as u:
        handlers.reject_requisition(u, requisition.id, "库存不足")
    assert snapshot(db) == before


def test_second_issue_reuses_the_personal_location(db, world):
    issue(db, world, world.tech, (world.compressor_id, "1"))
    issue(db, world, world.tech, (world.compressor_id, "2"), (world.filter_id, "1"))
    mine = personal(db, world.tech, world.tech.actor_id)
    assert mine["items"] == {world.compressor_id: Decimal(3), world.filter_id: Decimal(1)}
    assert_ledger_matches_balances(db)


def test_partial_approval_issues_only_what_was_approved(db, world):
    requisition = request(db, world.tech, world, (world.compressor_id, "3"), (world.filter_id, "2"))
    approved = approve(db, world.admin, requisition.id, [(world.compressor_id, "2")])
    assert [(line.quantity, line.approved_quantity) for line in approved.lines] == [
        (Decimal(3), Decimal(2)), (Decimal(2), Decimal(0))]
    assert personal(db, world.tech, world.tech.actor_id)["items"] == {world.compressor_id: Decimal(2)}
    assert stock(db, world.admin, world.warehouse_id) == {world.compressor_id: Decimal(8), world.filter_id: Decimal(5)}
    data = events(db, "requisition.approved")[0]["data"]
    assert [line["approved_quantity"] for line in data["lines"]] == ["2.000", "0.000"]
    assert_ledger_matches_balances(db)


@pytest.mark.parametrize("lines, field", [
    ([("other", "1")], "lines.0.part_id"),
    ([("compressor", "4")], "lines.0.approved_quantity"),
    ([("compressor", "0")], "lines"),
])
def test_bad_partial_approval_is_rejected_and_writes_nothing(db, world, lines, field):
    requisition = request(db, world.tech, world, (world.compressor_id, "3"))
    before = snapshot(db)
    ids = {"compressor": world.compressor_id, "other": world.filter_id}
    with pytest.raises(ValidationFailed) as err:
        approve(db, world.manager, requisition.id, [(ids[p], q) for p, q in lines])
    assert err.value.errors[0]["field"] == field
    assert snapshot(db) == before


def test_reject_records_reason_and_moves_nothing(db, world):
    requisition = request(db, world.tech, world, (world.compressor_id, "3"))
    with uow(db, world.manager) as u:
        rejected = handlers.reject_requisition(u, requisition.id, "本月配额已用完")
    assert (rejected.status, rejected.reject_reason) == ("rejected", "本月配额已用完")
    assert events(db, "requisition.rejected")[0]["data"]["reason"] == "本月配额已用完"
    assert stock(db, world.admin, world.warehouse_id)[world.compressor_id] == Decimal(10)
    with pytest.raises(Conflict) as err:
        approve(db, world.manager, requisition.id)
    assert err.value.errors == [{"field": "status", "message": "already rejected"}]
    with pytest.raises(ValidationFailed):
        parse(RejectIn, {"reason": "  "})


def test_over_request_is_conflict_and_writes_nothing(db, world):
    before = snapshot(db)
    with pytest.raises(Conflict) as err:
        request(db, world.tech, world, (world.filter_id, "1"), (world.compressor_id, "11"))
    assert err.value.errors == [{"field": "lines.1.quantity", "message": "only 10.000 in stock"}]
    assert snapshot(db) == before


def test_over_approval_is_conflict_and_writes_nothing(db, world):
    # Both fit at request time; the first approval leaves too little for the second.
    first = request(db, world.tech, world, (world.compressor_id, "6"))
    second = request(db, world.tech2, world, (world.filter_id, "2"), (world.compressor_id, "6"))
    approve(db, world.manager, first.id)
    before = snapshot(db)
    with pytest.raises(Conflict) as err:
        approve(db, world.manager, second.id)
    assert err.value.errors == [{"field": "lines.1.approved_quantity", "message": "only 4.000 in stock"}]
    # Nothing written: no moves, balances, events, status change, nor the lazily created personal location.
    assert snapshot(db) == before
    assert personal(db, world.tech2, world.tech2.actor_id)["location"] is None
    with uow(db, world.admin) as u:
        assert handlers.get_requisition(u, second.id).status == "requested"
    assert_ledger_matches_balances(db)


def test_technicians_cannot_decide_or_request_for_others(db, world):
    requisition = request(db, world.tech, world, (world.compressor_id, "1"))
    before = snapshot(db)
    with pytest.raises(Forbidden):
        approve(db, world.tech, requisition.id)
    with pytest.raises(Forbidden), uow(db, world.tech) as u:
        handlers.reject_requisition(u, requisition.id, "不需要")
    with pytest.raises(Forbidden) as err:
        request(db, world.tech, world, (world.compressor_id, "1"), technician_id=world.tech2.actor_id)
    assert err.value.errors[0]["field"] == "technician_id"
    with pytest.raises(Forbidden):  # other roles outside warehouse_manager/admin neither
        approve(db, context(world.admin.tenant_id, role="dispatcher"), requisition.id)
    assert snapshot(db) == before
    # A manager may request on a technician's behalf.
    on_behalf = request(db, world.manager, world, (world.compressor_id, "1"), technician_id=world.tech2.actor_id)
    assert on_behalf.technician_id == world.tech2.actor_id and on_behalf.requested_by == world.manager.actor_id


def test_list_requisitions_filters_and_pages(db, world):
    a = request(db, world.tech, world, (world.compressor_id, "1"))
    b = request(db, world.tech2, world, (world.compressor_id, "1"))
    c = request(db, world.tech, world, (world.filter_id, "1"))
    approve(db, world.manager, a.id)
    with uow(db, world.admin) as u:
        rows, total = handlers.list_requisitions(u, None, None, 0, 2)
        assert total == 3 and [r.number for r in rows] == ["REQ000001", "REQ000002"]
        rows, total = handlers.list_requisitions(u, "requested", world.tech.actor_id, 0, 50)
        assert (total, [r.id for r in rows]) == (1, [c.id])
        assert handlers.list_requisitions(u, None, world.tech2.actor_id, 0, 50)[0][0].id == b.id


def test_stock_low_is_emitted_when_a_warehouse_crosses_its_minimum(db, world):
    issue(db, world, world.tech, (world.compressor_id, "7"))  # 10 → 3: at the minimum, not below
    assert events(db, "stock.low") == []
    issue(db, world, world.tech, (world.compressor_id, "1"))  # 3 → 2: below
    [low] = events(db, "stock.low")
    assert low["data"] == {"part_id": str(world.compressor_id), "location_id": str(world.warehouse_id),
                           "quantity": "2.000", "minimum": "3.000", "part_code": "CMP-01", "part_name": "压缩机",
                           "warehouse_id": str(world.warehouse_id), "warehouse_name": "上海总仓",
                           "manager_ids": [str(world.manager.actor_id)]}
    issue(db, world, world.tech, (world.compressor_id, "1"))  # still below: no repeated alert
    assert len(events(db, "stock.low")) == 1


def test_fractional_quantities_stay_exact(db, world):
    with uow(db, world.admin) as u:
        cable = catalog.create_part(u, parse(PartIn, {"code": "CBL", "name": "铜管", "unit": "米"}))
        handlers.receive_stock(u, world.warehouse_id, parse(ReceiveIn, {"lines": [
            {"part_id": str(cable.id), "quantity": "0.1"}, {"part_id": str(cable.id), "quantity": "0.2"}]}))
    issue(db, world, world.tech, (cable.id, "0.3"))
    assert stock(db, world.admin, world.warehouse_id)[cable.id] == Decimal(0)
    assert_ledger_matches_balances(db)


# --- consumption on work orders -----------------------------------------------------------------

def test_completed_work_order_consumes_from_personal_stock(db, world):
    issue(db, world, world.tech, (world.compressor_id, "3"))
    envelope = ticket_completed(world.admin.tenant_id, world.tech.actor_id, [(world.compressor_id, "2")])
    assert process_ticket_completed(db, envelope)
    mine = personal(db, world.tech, world.tech.actor_id)
    assert mine["items"] == {world.compressor_id: Decimal(1)}
    ticket_id = uuid.UUID(envelope["data"]["ticket_id"])
    with uow(db, world.admin) as u:
        [move], total = handlers.list_moves(u, ticket_id, None, None, 0, 100)
        assert handlers.list_shortfalls(u) == []
    assert (move.kind, move.ref_type, move.ref_number) == ("consumption", "work_order", "WO000001")
    assert (move.from_location_id, move.to_location_id, move.quantity) == (mine["location"].id, None, Decimal(2))
    assert move.actor_id == world.tech.actor_id
    assert events(db, "stock.moved")[-1]["data"]["ref_id"] == str(ticket_id)
    assert_ledger_matches_balances(db)


def test_shortfall_consumes_what_is_there_and_records_the_rest(db, world):
    issue(db, world, world.tech, (world.compressor_id, "1"))
    unknown_part = uuid.uuid4()
    envelope = ticket_completed(world.admin.tenant_id, world.tech.actor_id, [
        (world.compressor_id, "3"), (world.filter_id, "1"), (unknown_part, "1")])
    assert process_ticket_completed(db, envelope)  # never fails for a shortfall
    assert personal(db, world.tech, world.tech.actor_id)["items"] == {world.compressor_id: Decimal(0)}
    with uow(db, world.admin) as u:
        shortfalls = {s.part_id: (s.requested, s.available) for s in handlers.list_shortfalls(u)}
    assert shortfalls == {world.compressor_id: (Decimal(3), Decimal(1)), world.filter_id: (Decimal(1), Decimal(0)),
                          unknown_part: (Decimal(1), Decimal(0))}
    reported = {e["data"]["part_id"]: e["data"] for e in events(db, "consumption.shortfall")}
    assert reported[str(world.compressor_id)]["available"] == "1.000"
    assert reported[str(world.compressor_id)]["ticket_number"] == "WO000001"
    assert_ledger_matches_balances(db)


def test_technician_without_personal_stock_gets_a_shortfall(db, world):
    envelope = ticket_completed(world.admin.tenant_id, world.tech2.actor_id, [(world.compressor_id, "1")])
    assert process_ticket_completed(db, envelope)
    assert personal(db, world.tech2, world.tech2.actor_id)["location"] is None
    assert len(events(db, "consumption.shortfall")) == 1


def test_redelivered_ticket_completed_consumes_once(db, world):
    issue(db, world, world.tech, (world.compressor_id, "3"))
    envelope = ticket_completed(world.admin.tenant_id, world.tech.actor_id, [(world.compressor_id, "2")])
    assert process_ticket_completed(db, envelope) is True
    after_first = snapshot(db)
    assert process_ticket_completed(db, envelope) is False
    assert snapshot(db) == after_first
    assert personal(db, world.tech, world.tech.actor_id)["items"] == {world.compressor_id: Decimal(1)}


# --- tenancy and input ----------------------------------------------------------------------------

def test_other_tenant_sees_nothing(db, world):
    requisition = request(db, world.tech, world, (world.compressor_id, "1"))
    issue(db, world, world.tech, (world.compressor_id, "2"))
    other = seed(db)  # a second company with its own data
    stranger = other.manager
    with uow(db, stranger) as u:
        for call in (lambda: handlers.get_stock(u, world.warehouse_id),
                     lambda: handlers.get_requisition(u, requisition.id),
                     lambda: handlers.approve_requisition(u, requisition.id, ApprovalIn()),
                     lambda: handlers.reject_requisition(u, requisition.id, "x"),
                     lambda: handlers.receive_stock(u, world.warehouse_id, parse(ReceiveIn, {
                         "lines": [{"part_id": str(other.compressor_id), "quantity": "1"}]}))):
            with pytest.raises(NotFound):
                call()
        assert [p.id for p in catalog.list_parts(u)[0]] == [other.compressor_id, other.filter_id]
        assert [w.id for w in handlers.list_warehouses(u)] == [other.warehouse_id]
        assert handlers.list_requisitions(u, None, None, 0, 50) == ([], 0)
        assert handlers.list_moves(u, requisition.id, None, None, 0, 50) == ([], 0)
        assert handlers.get_personal_stock(u, world.tech.actor_id) == {"location": None, "items": []}
    with pytest.raises(NotFound) as err:  # cannot request from another tenant's warehouse either
        request(db, other.tech, world, (world.compressor_id, "1"))
    assert err.value.errors[0]["field"] == "warehouse_id"
    # An event of the other tenant naming our part cannot touch our stock: there it is unknown.
    ours = (stock(db, world.admin, world.warehouse_id), personal(db, world.tech, world.tech.actor_id)["items"])
    process_ticket_completed(db, ticket_completed(other.admin.tenant_id, world.tech.actor_id,
                                                  [(world.compressor_id, "1")]))
    assert (stock(db, world.admin, world.warehouse_id), personal(db, world.tech, world.tech.actor_id)["items"]) == ours
    with uow(db, other.admin) as u:
        assert [s.part_id for s in handlers.list_shortfalls(u)] == [world.compressor_id]


def test_bad_requisition_input_names_the_field(world):
    base = {"warehouse_id": str(world.warehouse_id)}
    cases = [
        ({"lines": []}, "lines"),
        ({"lines": [{"part_id": str(world.compressor_id), "quantity": "0"}]}, "lines.0.quantity"),
        ({"lines": [{"part_id": str(world.compressor_id), "quantity": "1.0001"}]}, "lines.0.quantity"),
        ({"lines": [{"part_id": str(world.compressor_id), "quantity": "1"}] * 2}, "lines"),
        ({"lines": [{"part_id": "nope", "quantity": "1"}]}, "lines.0.part_id"),
    ]
    for body, field in cases:
        with pytest.raises(ValidationFailed) as err:
            parse(RequisitionIn, dict(base, **body))
        assert err.value.errors[0]["field"] == field, body

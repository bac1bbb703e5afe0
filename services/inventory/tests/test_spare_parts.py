"""Spare parts (issue 4) through the nameko service layer over SQLite: JSON in, JSON out, as over RPC."""
import base64
import csv
import io
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from openpyxl import Workbook, load_workbook

from inventory.models import Balance
from inventory.service import InventoryService
from inventory_testkit import assert_ledger_matches_balances, events, snapshot
from svc_common.context import system_context
from svc_common.contracts import EventEnvelope
from svc_common.db import utcnow
from svc_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from svc_common.testing import context, service_worker
from svc_common.uow import UnitOfWork

from inventory import handlers


def rpc(db, ctx) -> InventoryService:
    return service_worker(InventoryService, db, ctx)


@pytest.fixture
def co(db):
    """A company: HQ (managed by hq) → East (managed by east) → Shanghai office; West (no manager)."""
    admin = context()
    t = admin.tenant_id
    c = SimpleNamespace(admin=admin, hq=context(t, role="warehouse_manager"),
                        east=context(t, role="warehouse_manager"), tech=context(t, role="technician"),
                        tech2=context(t, role="technician"), dispatcher=context(t, role="dispatcher"))
    a = rpc(db, admin)
    c.HQ = a.create_warehouse({"name": "总部仓", "level": "headquarters", "manager_ids": [str(c.hq.actor_id)]})["id"]
    c.EAST = a.create_warehouse({"name": "华东仓", "level": "regional", "parent_id": c.HQ,
                                 "manager_ids": [str(c.east.actor_id)]})["id"]
    c.SH = a.create_warehouse({"name": "上海办事处", "level": "office", "parent_id": c.EAST})["id"]
    c.WEST = a.create_warehouse({"name": "西南仓", "level": "regional", "parent_id": c.HQ})["id"]
    c.part = a.create_part({"code": "CMP-01", "name": "压缩机", "min_stock": "2", "cost_price": "350.00",
                            "sale_price": "500.00"})["id"]
    c.filter = a.create_part({"code": "FLT-01", "name": "过滤网", "unit": "片", "cost_price": "12.50"})["id"]
    a.receive_stock(c.EAST, [{"part_id": c.part, "quantity": "10"}, {"part_id": c.filter, "quantity": "20"}])
    a.receive_stock(c.WEST, [{"part_id": c.part, "quantity": "4"}])
    return c


def give(db, c, tech, *lines, warehouse=None):
    req = rpc(db, tech).request_requisition({"warehouse_id": warehouse or c.EAST,
                                             "lines": [{"part_id": p, "quantity": q} for p, q in lines]})
    return rpc(db, c.east).approve_requisition(req["id"])


def personal(db, c, tech) -> dict:
    return {i["part_id"]: i["quantity"] for i in rpc(db, c.admin).get_personal_stock(str(tech.actor_id))["items"]}


def warehouse(db, c, warehouse_id) -> dict:
    return {i["part_id"]: i["quantity"] for i in rpc(db, c.admin).get_stock(warehouse_id)["items"]}


def deliver(db, event_type: str, tenant_id, data: dict, event_id=None) -> None:
    """What InventoryService's event handlers do, without a broker (handle_once semantics)."""
    envelope = EventEnvelope(event_id=event_id or uuid.uuid4(), type=event_type, occurred_at=utcnow(),
                             tenant_id=tenant_id, data=data)
    handler = {"ticket.completed": handlers.consume_parts_for_work_order,
               "ticket.reopened": handlers.reverse_consumption, "ticket.cancelled": handlers.reverse_consumption}
    with UnitOfWork(db, system_context(tenant_id)) as u:
        if u.consume(f"inventory.on_{event_type.replace('.', '_')}", envelope.event_id):
            handler[event_type](u, envelope.data)


def completed(c, tech, parts, ticket_id=None, number="WO000001", customer_id=None, old_parts=None) -> dict:
    data = {"ticket_id": str(ticket_id or uuid.uuid4()), "number": number, "type": "repair",
            "technician_id": str(tech.actor_id), "customer_id": str(customer_id or uuid.uuid4()),
            "customer_name": "申能物业", "completed_at": utcnow().isoformat(), "summary": "更换",
            "parts_used": [{"part_id": p, "quantity": q} for p, q in parts],
            # fields tickets adds for this issue: read even though TicketCompletedV1 may not declare them yet
            "service_items": [], "assistant_ids": []}
    if old_parts is not None:
        data["old_parts"] = old_parts
    return data


# --- catalog ---------------------------------------------------------------------------------------------

def test_catalog_parts_with_category_tree_prices_and_unique_codes(db, co):
    a = rpc(db, co.admin)
    aircon = a.create_category({"name": "空调"})
    compressors = a.create_category({"name": "压缩机", "parent_id": aircon["id"]})
    assert compressors["path"] == "空调/压缩机"
    with pytest.raises(Conflict):
        a.create_category({"name": "压缩机", "parent_id": aircon["id"]})
    part = a.create_part({"code": "CMP-02", "name": "涡旋压缩机", "category_id": compressors["id"], "model": "ZR72",
                          "unit": "台", "sale_price": "1280.50", "cost_price": "900", "barcode": "6901234567890",
                          "image_ref": "parts/cmp-02.jpg", "notes": "格力 5 匹", "min_stock": "1"})
    assert (part["sale_price"], part["cost_price"], part["model"]) == ("1280.50", "900.00", "ZR72")
    with pytest.raises(Conflict) as err:
        a.create_part({"code": "CMP-02", "name": "重复"})
    assert err.value.errors == [{"field": "code", "message": "already exists"}]
    with pytest.raises(ValidationFailed) as err:
        a.create_part({"code": "X", "name": "x", "sale_price": "1.234"})
    assert err.value.errors[0]["field"] == "sale_price"
    # Searching a category includes its subcategories; barcode finds one part.
    assert [p["code"] for p in a.list_parts(category_id=aircon["id"])["items"]] == ["CMP-02"]
    assert a.list_parts(barcode="6901234567890")["items"][0]["id"] == part["id"]
    assert a.list_parts(q="压缩")["total"] == 2
    updated = a.update_part(part["id"], {"sale_price": "1300.00", "active": False})
    assert (updated["sale_price"], updated["active"], updated["name"]) == ("1300.00", False, "涡旋压缩机")
    with pytest.raises(Forbidden):
        rpc(db, co.tech).create_part({"code": "T", "name": "t"})


def test_service_items_with_prices_and_the_rpc_tickets_uses(db, co):
    a = rpc(db, co.admin)
    visit = a.create_service_item({"code": "SV-01", "name": "上门费", "price": "80.00"})
    clean = a.create_service_item({"code": "SV-02", "name": "深度清洗", "price": "150", "cost_price": "40",
                                   "category": "保养"})
    with pytest.raises(Conflict):
        a.create_service_item({"code": "SV-01", "name": "x", "price": "1"})
    with pytest.raises(Forbidden):
        rpc(db, co.hq).create_service_item({"code": "SV-03", "name": "x", "price": "1"})
    got = rpc(db, co.dispatcher).get_service_items([clean["id"], visit["id"], str(uuid.uuid4())])
    assert [(i["code"], i["price"], i["unit"]) for i in got] == [("SV-01", "80.00", "次"), ("SV-02", "150.00", "次")]
    with pytest.raises(ValidationFailed) as err:
        a.get_service_items(["nope"])
    assert err.value.errors[0]["field"] == "ids.0"
    assert a.update_service_item(visit["id"], {"price": "90.00"})["price"] == "90.00"


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return base64.b64encode(out.getvalue().encode()).decode()


def test_import_is_all_or_nothing_with_a_row_by_row_report(db, co):
    a = rpc(db, co.admin)
    before = snapshot(db)
    bad = _csv([["编号", "名称", "类别", "单位", "销售价", "出库价", "安全库存"],
                ["P-1", "电容", "电气/电容", "个", "12.5", "8", "5"],
                ["P-2", "", "电气", "个", "abc", "8", ""],       # row 3: no name, bad price
                ["P-1", "重复", "", "个", "1", "1", ""],          # row 4: duplicate code in the file
                ["P-4", "风机", "", "个", "1", "1", "-1"]])       # row 5: negative minimum
    with pytest.raises(ValidationFailed) as err:
        a.import_catalog("parts", "csv", bad)
    fields = [e["field"] for e in err.value.errors]
    assert fields == ["rows.3.name", "rows.3.sale_price", "rows.4.code", "rows.5.min_stock"]
    assert "nothing was imported" in err.value.message
    assert snapshot(db) == before  # not even the good row, nor its category

    good = _csv([["code", "name", "category", "unit", "sale_price", "cost_price", "min_stock", "active"],
                 ["P-1", "电容", "电气/电容", "个", "12.5", "8", "5", "是"],
                 ["CMP-01", "压缩机(新)", "", "台", "520", "360", "2", "yes"]])
    assert a.import_catalog("parts", "csv", good) == {"created": 1, "updated": 1, "rows": 2}
    parts = {p["code"]: p for p in a.list_parts()["items"]}
    assert (parts["P-1"]["sale_price"], parts["P-1"]["min_stock"]) == ("12.50", "5.000")
    assert (parts["CMP-01"]["name"], parts["CMP-01"]["unit"]) == ("压缩机(新)", "台")
    assert [c["path"] for c in a.list_categories()["items"]] == ["电气", "电气/电容"]


def test_export_then_import_round_trips_in_xlsx_and_csv(db, co):
    a = rpc(db, co.admin)
    a.create_category({"name": "空调"})
    exported = a.export_catalog("parts", "xlsx")
    assert exported["filename"] == "parts.xlsx"
    sheet = load_workbook(io.BytesIO(base64.b64decode(exported["content_base64"]))).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("编号", "名称", "类别") and [r[0] for r in rows[1:]] == ["CMP-01", "FLT-01"]
    assert a.import_catalog("parts", "xlsx", exported["content_base64"]) == {"created": 0, "updated": 2, "rows": 2}
    assert {p["code"]: p["cost_price"] for p in a.list_parts()["items"]} == {"CMP-01": "350.00", "FLT-01": "12.50"}
    # An XLSX written by someone else, with a bad row: the report names its row.
    book = Workbook()
    book.active.append(["编号", "名称", "价格"])
    book.active.append(["SV-1", "上门费", 80])
    book.active.append(["SV-2", "清洗", "免费"])
    out = io.BytesIO()
    book.save(out)
    with pytest.raises(ValidationFailed) as err:
        a.import_catalog("service_items", "xlsx", base64.b64encode(out.getvalue()).decode())
    assert [e["field"] for e in err.value.errors] == ["rows.3.price"]
    csv_file = a.export_catalog("service_items", "csv")
    assert base64.b64decode(csv_file["content_base64"]).decode("utf-8-sig").startswith("编号,名称")
    with pytest.raises(ValidationFailed) as err:
        a.import_catalog("parts", "xlsx", base64.b64encode(b"not a workbook").decode())
    assert err.value.errors[0]["field"] == "file"


# --- warehouses: tree, visibility, who may change what ---------------------------------------------------

def test_headquarters_sees_all_a_regional_manager_sees_theirs(db, co):
    names = lambda ctx: sorted(w["name"] for w in rpc(db, ctx).list_warehouses()["items"])  # noqa: E731
    assert names(co.hq) == ["上海办事处", "华东仓", "总部仓", "西南仓"]
    assert names(co.east) == ["上海办事处", "华东仓"]
    assert len(names(co.tech)) == 4  # technicians pick any warehouse to requisition from
    with pytest.raises(NotFound):
        rpc(db, co.east).get_stock(co.WEST)
    with pytest.raises(Forbidden):
        rpc(db, co.east).receive_stock(co.WEST, [{"part_id": co.part, "quantity": "1"}])
    rpc(db, co.east).receive_stock(co.SH, [{"part_id": co.part, "quantity": "1"}])  # below their region: fine
    rpc(db, co.hq).receive_stock(co.WEST, [{"part_id": co.part, "quantity": "1"}])  # HQ: anywhere
    # A regional manager opens offices in their region only; the tree cannot loop.
    rpc(db, co.east).create_warehouse({"name": "杭州办事处", "parent_id": co.EAST})
    with pytest.raises(Forbidden):
        rpc(db, co.east).create_warehouse({"name": "成都办事处", "parent_id": co.WEST})
    with pytest.raises(ValidationFailed) as err:
        rpc(db, co.admin).update_warehouse(co.EAST, {"parent_id": co.SH})
    assert err.value.errors[0]["field"] == "parent_id"
    # The stock report of a region includes its offices; the east manager never sees the west.
    report = rpc(db, co.east).stock_report()
    assert {r["warehouse_name"] for r in report["items"]} == {"华东仓", "上海办事处"}
    assert rpc(db, co.admin).stock_report(warehouse_id=co.EAST)["total"] == 3
    assert rpc(db, co.admin).stock_report(warehouse_id=co.EAST, include_children=False)["total"] == 2
    by_part = rpc(db, co.admin).stock_report(by_part=True)["items"]  # east 10 + office 1 + west 4 + 1
    assert [(r["part_code"], r["quantity"], r["warehouses"], r["value"]) for r in by_part] == [
        ("CMP-01", "16.000", 3, "5600.00"), ("FLT-01", "20.000", 1, "250.00")]
    assert [r["quantity"] for r in rpc(db, co.east).stock_report(by_part=True)["items"]] == ["11.000", "20.000"]


def test_only_the_warehouse_s_own_managers_decide_its_requisitions(db, co):
    req = rpc(db, co.tech).request_requisition({"warehouse_id": co.WEST,
                                                "lines": [{"part_id": co.part, "quantity": "1"}]})
    with pytest.raises(Forbidden):
        rpc(db, co.east).approve_requisition(req["id"])
    assert rpc(db, co.hq).approve_requisition(req["id"])["status"] == "approved"  # HQ manages all
    assert rpc(db, co.east).list_requisitions()["total"] == 0  # not addressed to their region
    assert rpc(db, co.tech2).list_requisitions()["total"] == 0  # not theirs


# --- movements: outbound, stocktake, negative switch, ledger check --------------------------------------

def test_every_movement_kind_is_a_ledger_line_and_the_check_agrees(db, co):
    east = rpc(db, co.east)
    out = east.issue_stock(co.EAST, [{"part_id": co.filter, "quantity": "3"}], "报废: 受潮")
    assert (out[0]["kind"], out[0]["note"], out[0]["to_location_id"]) == ("outbound", "报废: 受潮", None)
    with pytest.raises(ValidationFailed):
        east.issue_stock(co.EAST, [{"part_id": co.filter, "quantity": "1"}], None)  # the reason is required
    before = snapshot(db)
    with pytest.raises(Conflict) as err:
        east.issue_stock(co.EAST, [{"part_id": co.filter, "quantity": "1"}, {"part_id": co.part, "quantity": "11"}],
                         "销售")
    assert err.value.errors[0]["field"] == "lines.1.quantity"
    assert snapshot(db) == before  # all lines or none

    # books say 10 compressors and 17 filters; the count finds 9 and 18
    counted = east.stocktake(co.EAST, [{"part_id": co.part, "counted": "9"}, {"part_id": co.filter, "counted": "18"}])
    assert sorted((m["part_id"] == co.part, m["kind"], m["quantity"], m["from_location_id"], m["to_location_id"])
                  for m in counted["items"]) == [(False, "adjustment", "1.000", None, co.EAST),
                                                 (True, "adjustment", "1.000", co.EAST, None)]
    assert warehouse(db, co, co.EAST) == {co.part: "9.000", co.filter: "18.000"}
    assert east.stocktake(co.EAST, [{"part_id": co.part, "counted": "9"}])["total"] == 0  # nothing to book

    kinds = {m["kind"] for m in rpc(db, co.admin).list_moves(limit=500)["items"]}
    assert {"inbound", "outbound", "adjustment"} <= kinds
    moves = rpc(db, co.admin).list_moves(kind="adjustment", location_id=co.EAST)
    assert moves["total"] == 2 and all(m["actor_id"] == str(co.east.actor_id) for m in moves["items"])
    check = rpc(db, co.admin).check_ledger()
    assert check["agree"] and check["mismatches"] == [] and check["moves"] == 6
    assert_ledger_matches_balances(db)


def test_the_check_finds_a_balance_that_disagrees_with_the_ledger(db, co):
    with db.engine.begin() as conn:  # corrupt one balance behind the ledger's back
        conn.execute(sa.update(Balance).where(Balance.location_id == uuid.UUID(co.WEST)).values(quantity=99))
    check = rpc(db, co.hq).check_ledger()
    assert not check["agree"]
    assert check["mismatches"] == [{"location_id": co.WEST, "part_id": co.part, "balance": "99.000",
                                    "ledger": "4.000"}]
    with pytest.raises(Forbidden):
        rpc(db, co.tech).check_ledger()


def test_negative_stock_is_refused_unless_the_tenant_allows_it(db, co):
    a = rpc(db, co.admin)
    assert a.get_settings() == {"allow_negative_stock": False}
    with pytest.raises(Conflict):
        a.issue_stock(co.WEST, [{"part_id": co.part, "quantity": "5"}], "销售")
    with pytest.raises(Forbidden):
        rpc(db, co.hq).update_settings({"allow_negative_stock": True})
    assert a.update_settings({"allow_negative_stock": True}) == {"allow_negative_stock": True}
    a.issue_stock(co.WEST, [{"part_id": co.part, "quantity": "5"}], "先发货后补库")
    assert warehouse(db, co, co.WEST) == {co.part: "-1.000"}
    # consumption beyond personal stock is then booked in full, without a shortfall
    deliver(db, "ticket.completed", co.admin.tenant_id, completed(co, co.tech, [(co.filter, "2")]))
    assert personal(db, co, co.tech) == {co.filter: "-2.000"}
    assert events(db, "consumption.shortfall") == []
    assert rpc(db, co.admin).check_ledger()["agree"]
    # The switch is per tenant: another company still cannot go below zero.
    other = context()
    o = rpc(db, other)
    wh = o.create_warehouse({"name": "仓"})
    part = o.create_part({"code": "P", "name": "件"})
    with pytest.raises(Conflict):
        o.issue_stock(wh["id"], [{"part_id": part["id"], "quantity": "1"}], "x")


# --- transfers -------------------------------------------------------------------------------------------

def test_transfer_goes_in_transit_and_is_received_in_parts(db, co):
    east, hq = rpc(db, co.east), rpc(db, co.hq)
    with pytest.raises(Forbidden):  # the west warehouse is not theirs to ship from
        east.create_transfer({"from_warehouse_id": co.WEST, "to_warehouse_id": co.EAST,
                              "lines": [{"part_id": co.part, "quantity": "1"}]})
    transfer = east.create_transfer({"from_warehouse_id": co.EAST, "to_warehouse_id": co.WEST, "note": "支援西南",
                                     "lines": [{"part_id": co.part, "quantity": "6"},
                                               {"part_id": co.filter, "quantity": "4"}]})
    assert (transfer["number"], transfer["status"]) == ("TRF000001", "in_transit")
    assert warehouse(db, co, co.EAST) == {co.part: "4.000", co.filter: "16.000"}
    assert warehouse(db, co, co.WEST) == {co.part: "4.000"}  # nothing arrived yet
    shipped = events(db, "transfer.shipped")[0]["data"]
    assert shipped["status"] == "in_transit" and shipped["manager_ids"] == [str(co.hq.actor_id)]

    with pytest.raises(Forbidden):  # receiving is the destination's business
        east.receive_transfer(transfer["id"])
    with pytest.raises(ValidationFailed) as err:
        hq.receive_transfer(transfer["id"], {"lines": [{"part_id": co.part, "quantity": "7"}]})
    assert err.value.errors[0]["field"] == "lines.0.quantity"
    partial = hq.receive_transfer(transfer["id"], {"lines": [{"part_id": co.part, "quantity": "4"}]})
    assert partial["status"] == "partially_received"
    assert [(ln["quantity"], ln["received_quantity"]) for ln in partial["lines"]] == [("6.000", "4.000"),
                                                                                    ("4.000", "0.000")]
    assert warehouse(db, co, co.WEST) == {co.part: "8.000"}
    done = hq.receive_transfer(transfer["id"])  # the rest
    assert done["status"] == "received" and done["received_at"]
    assert warehouse(db, co, co.WEST) == {co.part: "10.000", co.filter: "4.000"}
    with pytest.raises(Conflict):
        hq.receive_transfer(transfer["id"])
    kinds = [m["kind"] for m in hq.list_moves(ref_id=transfer["id"])["items"]]
    assert sorted(kinds) == ["transfer_in", "transfer_in", "transfer_in", "transfer_out", "transfer_out"]
    assert hq.list_transfers(status="received")["total"] == 1
    assert_ledger_matches_balances(db)  # in transit nets to zero once all is received
    with db.engine.connect() as conn:
        assert all(q == 0 for q in conn.execute(sa.select(Balance.quantity).join(
            handlers.Location, handlers.Location.id == Balance.location_id).where(
            handlers.Location.kind == "transit")).scalars())


# --- personal stock: requisition, return, consumption, reversal, old parts ---------------------------------

def test_return_to_the_warehouse_goes_through_approval(db, co):
    give(db, co, co.tech, (co.part, "3"))
    with pytest.raises(Conflict):  # cannot return more than held
        rpc(db, co.tech).request_return({"warehouse_id": co.EAST, "lines": [{"part_id": co.part, "quantity": "4"}]})
    ret = rpc(db, co.tech).request_return({"warehouse_id": co.EAST, "note": "用不上",
                                           "lines": [{"part_id": co.part, "quantity": "2"}]})
    assert (ret["kind"], ret["number"], ret["status"]) == ("return", "RET000001", "requested")
    assert personal(db, co, co.tech) == {co.part: "3.000"}  # nothing moves before approval
    approved = rpc(db, co.east).approve_requisition(ret["id"], [{"part_id": co.part, "approved_quantity": "1"}])
    assert approved["status"] == "approved"
    assert personal(db, co, co.tech) == {co.part: "2.000"}
    assert warehouse(db, co, co.EAST)[co.part] == "8.000"
    [move] = rpc(db, co.admin).list_moves(ref_id=ret["id"])["items"]
    assert (move["kind"], move["technician_id"]) == ("return", str(co.tech.actor_id))
    assert events(db, "stock.return_approved")[0]["data"]["kind"] == "return"
    ret2 = rpc(db, co.tech).request_return({"warehouse_id": co.EAST, "lines": [{"part_id": co.part, "quantity": "1"}]})
    rpc(db, co.east).reject_requisition(ret2["id"], "请先送检")
    assert events(db, "stock.return_rejected")[0]["data"]["reason"] == "请先送检"
    assert rpc(db, co.admin).list_requisitions(kind="return")["total"] == 2


def test_consumption_is_idempotent_records_shortfalls_for_the_manager_and_reverses(db, co):
    give(db, co, co.tech, (co.part, "2"), (co.filter, "1"))
    ticket, customer = uuid.uuid4(), uuid.uuid4()
    event_id = uuid.uuid4()
    data = completed(co, co.tech, [(co.part, "1"), (co.filter, "3")], ticket, customer_id=customer)
    deliver(db, "ticket.completed", co.admin.tenant_id, data, event_id)
    deliver(db, "ticket.completed", co.admin.tenant_id, data, event_id)  # redelivery: nothing twice
    assert personal(db, co, co.tech) == {co.part: "1.000", co.filter: "0.000"}
    [shortfall] = rpc(db, co.east).list_shortfalls()["items"]  # the manager of the tech's warehouse sees it
    assert (shortfall["requested"], shortfall["available"]) == ("3.000", "1.000")
    assert shortfall["manager_ids"] == [str(co.east.actor_id)] and shortfall["warehouse_id"] == co.EAST
    [raised] = events(db, "consumption.shortfall")
    assert raised["data"]["manager_ids"] == [str(co.east.actor_id)]
    with pytest.raises(Forbidden):  # not the west's (nor a technician's) exception to close
        rpc(db, context(co.admin.tenant_id, role="warehouse_manager")).resolve_shortfall(shortfall["id"], "x")
    resolved = rpc(db, co.east).resolve_shortfall(shortfall["id"], "补录申领 REQ000002")
    assert (resolved["status"], resolved["resolved_by"]) == ("resolved", str(co.east.actor_id))
    with pytest.raises(Conflict):
        rpc(db, co.east).resolve_shortfall(shortfall["id"], "again")
    assert rpc(db, co.east).list_shortfalls(status="open")["total"] == 0
    consumed = [m for m in events(db, "stock.moved") if m["data"]["kind"] == "consumption"]
    assert {(m["data"]["value"], m["data"]["customer_id"], m["data"]["ticket_id"]) for m in consumed} == {
        ("350.00", str(customer), str(ticket)), ("12.50", str(customer), str(ticket))}

    reopened = {"ticket_id": str(ticket), "number": "WO000001", "type": "repair", "customer_id": str(customer),
                "from_status": "completed", "reason": "客户反馈仍不制冷"}
    event_id = uuid.uuid4()
    deliver(db, "ticket.reopened", co.admin.tenant_id, reopened, event_id)
    deliver(db, "ticket.reopened", co.admin.tenant_id, reopened, event_id)  # redelivery
    deliver(db, "ticket.cancelled", co.admin.tenant_id, reopened)  # a later cancel: nothing left to reverse
    assert personal(db, co, co.tech) == {co.part: "2.000", co.filter: "1.000"}
    reversal = rpc(db, co.admin).list_moves(ref_id=str(ticket), kind="consumption_reversal")["items"]
    assert len(reversal) == 2 and reversal[0]["note"] == "客户反馈仍不制冷"
    assert events(db, "consumption.reversed")[0]["data"]["number"] == "WO000001"
    # The original consumption lines stay: history is never edited.
    assert rpc(db, co.admin).list_moves(ref_id=str(ticket), kind="consumption")["total"] == 2
    # Completed again after the reopen: consumed again.
    deliver(db, "ticket.completed", co.admin.tenant_id, completed(co, co.tech, [(co.part, "1")], ticket))
    assert personal(db, co, co.tech)[co.part] == "1.000"
    report = {r["work_order_id"]: r for r in rpc(db, co.admin).consumption_report()["items"]}
    assert report[str(ticket)]["quantity"] == "1.000" and report[str(ticket)]["value"] == "350.00"
    assert_ledger_matches_balances(db)


def test_old_parts_are_held_until_returned_to_a_warehouse(db, co):
    ticket = uuid.uuid4()
    deliver(db, "ticket.completed", co.admin.tenant_id, completed(
        co, co.tech, [], ticket, number="WO000007",
        old_parts=[{"part_id": co.part, "quantity": "1", "serial_number": "SN-OLD-1"}]))
    [old] = rpc(db, co.tech).list_old_parts(status="held")["items"]
    assert (old["ticket_number"], old["serial_number"], old["technician_id"]) == (
        "WO000007", "SN-OLD-1", str(co.tech.actor_id))
    assert rpc(db, co.tech2).list_old_parts()["total"] == 0
    with pytest.raises(Forbidden):
        rpc(db, co.tech).return_old_part(old["id"], {"warehouse_id": co.EAST})
    returned = rpc(db, co.east).return_old_part(old["id"], {"warehouse_id": co.SH})
    assert returned["status"] == "returned" and returned["warehouse_id"] == co.SH
    [move] = rpc(db, co.admin).list_moves(kind="old_part_return")["items"]
    assert (move["ref_number"], move["to_location_id"], move["unit_cost"]) == ("WO000007", co.SH, "0.00")
    with pytest.raises(Conflict):
        rpc(db, co.east).return_old_part(old["id"], {"warehouse_id": co.SH})
    assert events(db, "old_part.returned")[0]["data"]["serial_number"] == "SN-OLD-1"


def test_check_stock_available_answers_tickets(db, co):
    give(db, co, co.tech, (co.part, "2"))
    svc = rpc(db, co.admin)
    assert svc.check_stock_available(str(co.tech.actor_id), [{"part_id": co.part, "quantity": "2"}]) == {
        "available": True, "shortfalls": []}
    answer = svc.check_stock_available(str(co.tech.actor_id), [{"part_id": co.part, "quantity": "1.5"},
                                                               {"part_id": co.part, "quantity": "1"},
                                                               {"part_id": co.filter, "quantity": "1"}])
    assert answer == {"available": False, "shortfalls": [
        {"part_id": co.part, "requested": "2.500", "available": "2.000"},
        {"part_id": co.filter, "requested": "1.000", "available": "0.000"}]}
    assert svc.check_stock_available(str(co.tech2.actor_id), [])["available"] is True
    with pytest.raises(ValidationFailed) as err:
        svc.check_stock_available("x", [])
    assert err.value.errors[0]["field"] == "technician_id"


def test_managers_see_every_technician_s_holdings_a_technician_only_theirs(db, co):
    give(db, co, co.tech, (co.part, "2"))
    give(db, co, co.tech2, (co.filter, "5"))
    holdings = rpc(db, co.east).personal_holdings()
    assert holdings["total"] == 2
    assert {(h["technician_id"], h["quantity"], h["value"]) for h in holdings["items"]} == {
        (str(co.tech.actor_id), "2.000", "700.00"), (str(co.tech2.actor_id), "5.000", "62.50")}
    mine = rpc(db, co.tech).personal_holdings()
    assert [h["technician_id"] for h in mine["items"]] == [str(co.tech.actor_id)]
    with pytest.raises(Forbidden):
        rpc(db, co.tech).get_personal_stock(str(co.tech2.actor_id))


def test_reports_group_consumption_and_export(db, co):
    give(db, co, co.tech, (co.part, "3"))
    give(db, co, co.tech2, (co.filter, "4"))
    customer = uuid.uuid4()
    deliver(db, "ticket.completed", co.admin.tenant_id,
            completed(co, co.tech, [(co.part, "2")], customer_id=customer, number="WO1"))
    deliver(db, "ticket.completed", co.admin.tenant_id,
            completed(co, co.tech2, [(co.filter, "4")], customer_id=customer, number="WO2"))
    svc = rpc(db, co.admin)
    by = lambda group: svc.consumption_report(group_by=group)["items"]  # noqa: E731
    assert [(r["work_order_number"], r["quantity"], r["value"]) for r in by("work_order")] in (
        [("WO1", "2.000", "700.00"), ("WO2", "4.000", "50.00")], [("WO2", "4.000", "50.00"), ("WO1", "2.000", "700.00")])
    assert [(r["customer_id"], r["value"]) for r in by("customer")] == [(str(customer), "750.00")]
    assert {r["technician_id"]: r["quantity"] for r in by("technician")} == {
        str(co.tech.actor_id): "2.000", str(co.tech2.actor_id): "4.000"}
    assert {r["part_code"] for r in by("part")} == {"CMP-01", "FLT-01"}
    today = utcnow().date().isoformat()
    assert [(r["period"], r["value"]) for r in by("day")] == [(today, "750.00")]
    assert [r["period"] for r in by("month")] == [today[:7]]
    assert svc.consumption_report(group_by="work_order", date_from="2000-01-01T00:00:00Z",
                                  date_to="2000-02-01T00:00:00Z")["items"] == []
    assert rpc(db, co.tech).consumption_report(group_by="technician")["items"][0]["technician_id"] == str(
        co.tech.actor_id)
    with pytest.raises(ValidationFailed):
        svc.consumption_report(group_by="year")

    for report, filters in (("stock", {}), ("moves", {"kind": "consumption"}), ("personal", {}),
                            ("consumption", {"group_by": "customer"})):
        for fmt in ("xlsx", "csv"):
            exported = svc.export_report(report, fmt, filters)
            content = base64.b64decode(exported["content_base64"])
            if fmt == "xlsx":
                rows = list(load_workbook(io.BytesIO(content)).active.iter_rows(values_only=True))
            else:
                rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
            assert len(rows) > 1, (report, fmt)
    moves = list(csv.reader(io.StringIO(base64.b64decode(
        svc.export_report("moves", "csv", {"kind": "consumption"})["content_base64"]).decode("utf-8-sig"))))
    assert [r[1] for r in moves[1:]] == ["consumption", "consumption"] and moves[1][2] in ("CMP-01", "FLT-01")
    with pytest.raises(ValidationFailed):
        svc.export_report("stock", "pdf", {})


def test_stock_low_names_the_part_warehouse_and_its_managers_once_per_crossing(db, co):
    give(db, co, co.tech, (co.part, "8"))  # 10 → 2: at the minimum
    assert events(db, "stock.low") == []
    give(db, co, co.tech, (co.part, "1"))  # 2 → 1: crossed
    give(db, co, co.tech, (co.part, "1"))  # 1 → 0: still below, no repeat
    [low] = events(db, "stock.low")
    assert (low["data"]["part_code"], low["data"]["warehouse_name"], low["data"]["manager_ids"]) == (
        "CMP-01", "华东仓", [str(co.east.actor_id)])
    rpc(db, co.east).receive_stock(co.EAST, [{"part_id": co.part, "quantity": "5"}])  # back above
    give(db, co, co.tech, (co.part, "4"))  # 5 → 1: a new crossing, a new alert
    assert len(events(db, "stock.low")) == 2
    low_rows = rpc(db, co.admin).stock_report(below_minimum=True)["items"]
    assert [(r["warehouse_name"], r["part_code"]) for r in low_rows] == [("华东仓", "CMP-01")]

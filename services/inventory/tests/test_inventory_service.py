"""The nameko service layer, without a broker: JSON in → handler → JSON out.

worker_factory gives a worker whose `platform` is the real WorkerPlatform over SQLite,
so ids arrive as strings and results must be JSON, as over RPC.
"""
import json
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from inventory.service import InventoryService
from inventory_testkit import ticket_completed
from svc_common.errors import Conflict, ValidationFailed
from svc_common.testing import context, service_worker


def service(db, ctx, method: str = "rpc") -> InventoryService:
    return service_worker(InventoryService, db, ctx, method)


@pytest.fixture
def people():
    admin = context()
    return SimpleNamespace(admin=admin, manager=context(admin.tenant_id, role="warehouse_manager"),
                           tech=context(admin.tenant_id, role="technician"))


def test_requisition_flow_over_rpc(db, people):
    admin = service(db, people.admin)
    warehouse = admin.create_warehouse({"name": "北京仓", "manager_ids": [str(people.manager.actor_id)]})
    assert warehouse["kind"] == "warehouse" and warehouse["manager_ids"] == [str(people.manager.actor_id)]
    part = admin.create_part({"code": "FAN-1", "name": "风扇电机", "min_stock": "1"})
    with pytest.raises(Conflict) as err:
        admin.create_part({"code": "FAN-1", "name": "重复"})
    assert err.value.errors[0]["field"] == "code"
    moves = admin.receive_stock(warehouse["id"], [{"part_id": part["id"], "quantity": "4"}], note="首批")
    assert [(m["kind"], m["quantity"]) for m in moves] == [("inbound", "4.000")]
    assert admin.list_parts()["total"] == 1 and admin.list_warehouses()["items"][0]["name"] == "北京仓"

    requisition = service(db, people.tech).request_requisition(
        {"warehouse_id": warehouse["id"], "lines": [{"part_id": part["id"], "quantity": "3"}], "note": "明天上门"})
    assert (requisition["number"], requisition["technician_id"]) == ("REQ000001", str(people.tech.actor_id))
    approved = service(db, people.manager).approve_requisition(
        requisition["id"], lines=[{"part_id": part["id"], "approved_quantity": "2"}])
    assert approved["status"] == "approved" and approved["lines"][0]["approved_quantity"] == "2.000"

    stock = admin.get_stock(warehouse["id"])
    assert stock["location"]["id"] == warehouse["id"]
    assert stock["items"] == [{"part_id": part["id"], "part_code": "FAN-1", "part_name": "风扇电机", "unit": "个",
                               "quantity": "2.000"}]
    mine = admin.get_personal_stock(str(people.tech.actor_id))
    assert mine["location"]["owner_user_id"] == str(people.tech.actor_id)
    assert [i["quantity"] for i in mine["items"]] == ["2.000"]
    assert admin.get_requisition(requisition["id"])["status"] == "approved"

    listed = admin.list_moves(location_id=warehouse["id"], offset=1, limit=1)
    assert (listed["total"], listed["offset"], listed["limit"], len(listed["items"])) == (2, 1, 1, 1)
    assert listed["items"][0]["ref_number"] == "REQ000001"
    assert admin.list_requisitions(status="approved", technician_id=str(people.tech.actor_id))["total"] == 1
    assert admin.list_requisitions(status="requested")["total"] == 0
    for result in (warehouse, part, moves, requisition, approved, stock, mine, listed):
        json.dumps(result)  # what nameko will serialize


def test_reject_over_rpc(db, people):
    admin = service(db, people.admin)
    warehouse = admin.create_warehouse({"name": "仓", "manager_ids": [str(people.manager.actor_id)]})
    part = admin.create_part({"code": "P", "name": "件"})
    admin.receive_stock(warehouse["id"], [{"part_id": part["id"], "quantity": "1"}])
    requisition = admin.request_requisition({"warehouse_id": warehouse["id"], "lines": [{"part_id": part["id"],
                                             "quantity": "1"}], "technician_id": str(people.tech.actor_id)})
    rejected = service(db, people.manager).reject_requisition(requisition["id"], "  型号不对  ")
    assert (rejected["status"], rejected["reject_reason"]) == ("rejected", "型号不对")


@pytest.mark.parametrize("call, field", [
    (lambda s: s.get_stock("nope"), "location_id"),
    (lambda s: s.get_personal_stock(None), "technician_id"),
    (lambda s: s.get_requisition("12"), "requisition_id"),
    (lambda s: s.approve_requisition("bad"), "requisition_id"),
    (lambda s: s.approve_requisition("bad", lines=[{"part_id": "x", "approved_quantity": "1"}]), "lines.0.part_id"),
    (lambda s: s.reject_requisition("bad", ""), "reason"),
    (lambda s: s.receive_stock("bad", []), "lines"),
    (lambda s: s.create_warehouse({"name": "x", "manager_ids": ["me"]}), "manager_ids.0"),
    (lambda s: s.create_part({"code": "", "name": "x", "min_stock": "-1"}), "code"),
    (lambda s: s.list_moves(part_id="nope"), "part_id"),
    (lambda s: s.list_moves(offset=-1), "offset"),
    (lambda s: s.list_moves(limit="many"), "limit"),
    (lambda s: s.list_requisitions(status="lost"), "status"),
])
def test_bad_arguments_are_422_naming_the_field(db, people, call, field):
    with pytest.raises(ValidationFailed) as err:
        call(service(db, people.admin))
    assert err.value.errors[0]["field"] == field


def test_ticket_completed_entrypoint_consumes_once(db, people):
    admin = service(db, people.admin)
    warehouse = admin.create_warehouse({"name": "仓", "manager_ids": [str(people.manager.actor_id)]})
    part = admin.create_part({"code": "P", "name": "件"})
    admin.receive_stock(warehouse["id"], [{"part_id": part["id"], "quantity": "5"}])
    requisition = service(db, people.tech).request_requisition(
        {"warehouse_id": warehouse["id"], "lines": [{"part_id": part["id"], "quantity": "5"}]})
    service(db, people.manager).approve_requisition(requisition["id"])

    envelope = ticket_completed(people.admin.tenant_id, people.tech.actor_id, [(part["id"], "2")])
    consumer = service(db, people.admin, method="on_ticket_completed")
    consumer.on_ticket_completed(envelope)
    consumer.on_ticket_completed(envelope)  # redelivery

    mine = admin.get_personal_stock(str(people.tech.actor_id))
    assert [i["quantity"] for i in mine["items"]] == ["3.000"]
    ticket_moves = admin.list_moves(ref_id=envelope["data"]["ticket_id"])
    assert [(m["kind"], m["ref_type"]) for m in ticket_moves["items"]] == [("consumption", "work_order")]
    with db.engine.connect() as conn:
        claims = conn.execute(sa.select(db.tables.processed_events.c.consumer)).scalars().all()
    assert claims == ["inventory.on_ticket_completed"]

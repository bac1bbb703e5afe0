"""The tickets service layer for field execution: the parts check over RPC (stubbed inventory),
the SLA timer, files through the storage setting (worker_factory, SQLite, no broker)."""
import base64
import datetime as dt
import uuid

import pytest
from nameko.exceptions import MethodNotFound
from tickets_testkit import make_ticket

from svc_common.errors import Conflict
from svc_common.testing import outbox_events, service_worker, uow
from tickets import handlers
from tickets.schemas import AssignIn, CheckInIn, SettingsIn
from tickets.service import TicketsService


def in_progress(db, office, roster):
    tech = roster.user()
    ticket = make_ticket(db, office)
    with uow(db, office) as u:
        handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech))
    with uow(db, roster.as_(tech)) as u:
        handlers.accept_ticket(u, ticket.id)
    with uow(db, roster.as_(tech)) as u:
        handlers.check_in(u, ticket.id, CheckInIn(latitude="31.236", longitude="121.506"))
    return ticket, tech


def test_completion_with_parts_asks_inventory_and_a_shortfall_is_a_409_naming_the_line(db, office, roster):
    ticket, tech = in_progress(db, office, roster)
    worker = service_worker(TicketsService, db, roster.as_(tech))
    part_a, part_b = str(uuid.uuid4()), str(uuid.uuid4())
    worker.inventory.check_stock_available.return_value = {
        "available": False, "shortfalls": [{"part_id": part_b, "requested": "2", "available": "1"}]}
    receipt = {"summary": "换件", "parts_used": [{"part_id": part_a, "quantity": "1"},
                                                 {"part_id": part_b, "quantity": "2"}]}
    with pytest.raises(Conflict) as err:
        worker.complete_ticket(str(ticket.id), receipt)
    assert err.value.errors[0]["field"] == "parts_used.1.quantity"
    worker.inventory.check_stock_available.assert_called_once_with(
        technician_id=str(tech), parts=[{"part_id": part_a, "quantity": "1"}, {"part_id": part_b, "quantity": "2"}])
    assert worker.get_ticket(str(ticket.id))["status"] == "in_progress"  # nothing written
    worker.inventory.check_stock_available.return_value = {"available": True, "shortfalls": []}
    assert worker.complete_ticket(str(ticket.id), receipt)["status"] == "completed"


def test_an_inventory_without_the_check_does_not_block_completion(db, office, roster):
    ticket, tech = in_progress(db, office, roster)
    worker = service_worker(TicketsService, db, roster.as_(tech))
    worker.inventory.check_stock_available.side_effect = MethodNotFound("check_stock_available")
    done = worker.complete_ticket(str(ticket.id), {"summary": "ok", "parts_used": [
        {"part_id": str(uuid.uuid4()), "quantity": "1"}]})
    assert done["status"] == "completed"


def test_the_sla_timer_raises_overdue_once(db, office, roster):
    with uow(db, office) as u:
        handlers.update_settings(u, SettingsIn.model_validate({"sla_rules": {"normal": {"respond_minutes": 0.001}}}))
    ticket = make_ticket(db, office)
    worker = service_worker(TicketsService, db, office, method="raise_overdue")
    import time
    time.sleep(0.1)
    worker.raise_overdue()
    worker.raise_overdue()
    overdue = [e for e in outbox_events(db) if e["type"] == "ticket.overdue"]
    assert len(overdue) == 1 and overdue[0]["data"]["deadline"] == "respond"
    assert overdue[0]["data"]["ticket_id"] == str(ticket.id)
    assert dt.datetime.fromisoformat(overdue[0]["data"]["due_at"]) < dt.datetime.now(dt.timezone.utc)


def test_files_go_to_the_configured_storage_folder(db, office, roster, tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETS_STORAGE_DIR", str(tmp_path / "store"))
    ticket, tech = in_progress(db, office, roster)
    worker = service_worker(TicketsService, db, roster.as_(tech))
    uploaded = worker.upload_ticket_file(str(ticket.id), {"kind": "photo", "filename": "机组.jpg",
                                                          "content_type": "image/jpeg",
                                                          "content_base64": base64.b64encode(b"JPEG").decode()})
    assert uploaded["size"] == 4 and list((tmp_path / "store").rglob("*.jpg"))
    fetched = worker.get_ticket_file(str(ticket.id), uploaded["id"])
    assert base64.b64decode(fetched["content_base64"]) == b"JPEG"

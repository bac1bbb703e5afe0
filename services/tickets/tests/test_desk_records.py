"""Back-filled service records (补录) and their verification."""
import datetime as dt
import uuid

import pytest

from svc_common.errors import Conflict, ValidationFailed
from svc_common.testing import context, uow
from svc_common.validation import parse
from tickets.desk import records
from tickets.desk.schemas import ServiceRecordIn

CUSTOMER = uuid.uuid4()


def submit(db, ctx, **fields):
    body = {"ticket_type": "repair", "customer_id": str(CUSTOMER), "done_at": "2026-11-01T08:00:00+08:00",
            "summary": "电话指导更换保险丝", "parts_used": [{"ref_id": str(uuid.uuid4()), "quantity": "1"}], **fields}
    with uow(db, ctx) as u:
        return records.submit(u, parse(ServiceRecordIn, body))


def test_a_technician_back_fills_and_the_office_verifies(db, office):
    tech = context(tenant_id=office.tenant_id, role="technician")
    record = submit(db, tech)
    assert record.number == "BL000001" and record.status == "pending" and record.technician_id == tech.actor_id
    assert record.done_at == dt.datetime(2026, 11, 1, 0, 0, tzinfo=dt.timezone.utc)
    with pytest.raises(Exception) as err, uow(db, tech) as u:
        records.verify(u, record.id, True, None)
    assert type(err.value).__name__ == "Forbidden"
    with pytest.raises(ValidationFailed), uow(db, office) as u:
        records.verify(u, record.id, False, None)
    with uow(db, office) as u:
        verified = records.verify(u, record.id, True, "已核实")
    assert verified.status == "verified" and verified.verified_by == office.actor_id
    with pytest.raises(Conflict), uow(db, office) as u:
        records.verify(u, record.id, False, "再改")
    with uow(db, office) as u:
        assert records.list_records(u, "verified", CUSTOMER, None, 0, 10)[1] == 1


def test_the_one_who_entered_it_does_not_verify_it_and_bad_records_are_refused(db, office):
    own = submit(db, office)
    with pytest.raises(Conflict), uow(db, office) as u:
        records.verify(u, own.id, True, None)
    for fields, field in (({"done_at": "2999-01-01T00:00:00+00:00"}, "done_at"), ({"ticket_type": "nope"}, "ticket_type")):
        with pytest.raises(ValidationFailed) as err:
            submit(db, office, **fields)
        assert err.value.errors[0]["field"] == field

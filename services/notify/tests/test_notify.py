"""Notify against a real SQLite database (unit tier, no broker).

Events go through the nameko service (worker_factory) with a real platform, so the
idempotency claim is the one event_uow makes with UnitOfWork.consume.
"""
import datetime as dt
import json
import uuid
from types import SimpleNamespace

import pytest
from jinja2.exceptions import UndefinedError
from nameko.testing.services import worker_factory

from notify import handlers, templates
from notify.models import PLATFORM, Base, Delivery, InboxMessage
from notify.service import NotifyService
from notify.sms import FileSmsProvider, SmsProvider
from svc_common.contracts import EventEnvelope
from svc_common.errors import Forbidden, NotFound, ValidationFailed
from svc_common.nameko_deps import WorkerPlatform
from svc_common.testing import context, outbox_events, sqlite_database, uow


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


@pytest.fixture
def sms(tmp_path):
    return FileSmsProvider(tmp_path / "sms" / "sms.log")  # parent folder does not exist yet


class BrokenSms(SmsProvider):
    name = "broken"

    def send(self, phone, text):
        raise ConnectionError("gateway timeout")


def service(db, sms, ctx=None, method="on_ticket_completed"):
    """The nameko service with a real platform over `db`, called as `ctx` (RPC) or as a consumer."""
    worker_ctx = SimpleNamespace(data=ctx.to_context_data() if ctx else {},
                                 entrypoint=SimpleNamespace(method_name=method))
    return worker_factory(NotifyService, platform=WorkerPlatform(db, worker_ctx, "notify"), sms=sms)


def completed(tenant_id, **data):
    payload = {
        "ticket_id": str(uuid.uuid4()), "number": "WO000042", "type": "repair",
        "technician_id": str(uuid.uuid4()), "dispatcher_id": str(uuid.uuid4()),
        "customer_id": str(uuid.uuid4()), "customer_name": "上海申能空调",
        "contact_name": "王经理", "contact_phone": "13800138000",
        "completed_at": "2026-11-21T17:00:00+00:00", "summary": "更换压缩机电容，试机正常",
    }
    payload.update(data)
    return {"event_id": str(uuid.uuid4()), "type": "ticket.completed", "schema_version": 1,
            "occurred_at": "2026-11-21T17:00:01+00:00", "tenant_id": str(tenant_id),
            "correlation_id": "corr-1", "actor": None, "data": payload}


def sms_lines(sms):
    if not sms.path.exists():
        return []
    return [json.loads(line) for line in sms.path.read_text(encoding="utf-8").splitlines()]


def test_completion_notifies_dispatcher_in_inbox_and_customer_by_sms(db, sms):
    tenant = uuid.uuid4()
    envelope = completed(tenant)
    dispatcher = context(tenant, role="dispatcher", actor_id=uuid.UUID(envelope["data"]["dispatcher_id"]))

    service(db, sms).on_ticket_completed(envelope)

    inbox = service(db, sms, dispatcher).list_inbox()
    assert inbox["total"] == 1 and inbox["unread"] == 1
    [message] = inbox["items"]
    assert message["title"] == "工单已完成"
    assert message["body"] == "工单 WO000042（上海申能空调）已由工程师完成：更换压缩机电容，试机正常"
    assert (message["ref_type"], message["ref_id"]) == ("ticket", envelope["data"]["ticket_id"])

    [line] = sms_lines(sms)
    assert line["phone"] == "13800138000"
    assert line["text"] == "【售后服务】尊敬的王经理，您的服务工单WO000042已完成，感谢您的支持。"
    assert line["message_id"] and dt.datetime.fromisoformat(line["time"]).tzinfo is not None

    log = service(db, sms, dispatcher).list_deliveries()
    assert sorted((d["channel"], d["status"], d["attempts"]) for d in log["items"]) == [
        ("in_app", "sent", 1), ("sms", "sent", 1)]
    sms_delivery = next(d for d in log["items"] if d["channel"] == "sms")
    assert sms_delivery["provider_message_id"] == line["message_id"]
    assert sms_delivery["event_id"] == envelope["event_id"] and sms_delivery["event_type"] == "ticket.completed"

    events = outbox_events(db)
    assert [e["type"] for e in events] == ["notification.sent", "notification.sent"]
    assert {e["data"]["channel"] for e in events} == {"in_app", "sms"}
    assert all(e["tenant_id"] == str(tenant) and e["correlation_id"] == "corr-1" for e in events)


def test_same_envelope_twice_sends_nothing_the_second_time(db, sms):
    tenant = uuid.uuid4()
    envelope = completed(tenant)
    consumer = service(db, sms)
    consumer.on_ticket_completed(envelope)
    consumer.on_ticket_completed(envelope)  # redelivery

    assert len(sms_lines(sms)) == 1
    with uow(db, context(tenant)) as u:
        assert u.session.query(InboxMessage).count() == 1
        assert u.session.query(Delivery).count() == 2
    assert len(outbox_events(db)) == 2


def test_missing_dispatcher_or_phone_is_skipped(db, sms):
    tenant = uuid.uuid4()
    service(db, sms).on_ticket_completed(completed(tenant, dispatcher_id=None, contact_phone=None))
    assert sms_lines(sms) == []
    with uow(db, context(tenant)) as u:
        assert u.session.query(InboxMessage).count() == 0
        assert u.session.query(Delivery).count() == 0


def test_en_locale_renders_english(db, sms):
    tenant = uuid.uuid4()
    event = EventEnvelope.model_validate(completed(tenant, contact_name=None))
    with uow(db, context(tenant, role="system")) as u:
        handlers.notify_ticket_completed(u, event, event.payload(), sms, locale="en")
    with uow(db, context(tenant)) as u:
        message = u.session.query(InboxMessage).one()
    assert message.title == "Work order completed"
    assert message.body == ("Work order WO000042 (上海申能空调) was completed by the technician: "
                            "更换压缩机电容，试机正常")
    [line] = sms_lines(sms)
    assert line["text"].startswith("[After-sales service] Dear customer, your service work order WO000042 ")
    # a regional variant falls back to its language, an unknown locale to zh-CN
    assert templates.render("ticket.completed", "in_app", "en-US", event.data)["title"] == "Work order completed"
    assert templates.render("ticket.completed", "in_app", "fr", event.data)["title"] == "工单已完成"


def test_missing_template_variable_fails_loudly(db, sms, monkeypatch):
    with pytest.raises(UndefinedError):
        templates.render("ticket.completed", "sms", "zh-CN", {"contact_name": "王经理"})
    with pytest.raises(LookupError):
        templates.render("ticket.nonexistent", "sms", "zh-CN", {})

    # Through the consumer: nothing is sent or written, and the event stays unclaimed for a retry.
    monkeypatch.setitem(templates.TEMPLATES, ("ticket.completed", "in_app"),
                        {"zh-CN": {"title": "{{ ticket_title }}", "body": "-"}})
    tenant = uuid.uuid4()
    envelope = completed(tenant)
    with pytest.raises(UndefinedError):
        service(db, sms).on_ticket_completed(envelope)
    assert sms_lines(sms) == [] and outbox_events(db) == []
    monkeypatch.undo()
    service(db, sms).on_ticket_completed(envelope)
    assert len(sms_lines(sms)) == 1


def test_provider_failure_is_logged_and_raised_then_the_retry_sends(db, sms):
    tenant = uuid.uuid4()
    envelope = completed(tenant)
    with pytest.raises(handlers.DeliveryFailed, match="gateway timeout"):
        service(db, BrokenSms()).on_ticket_completed(envelope)

    with uow(db, context(tenant)) as u:
        [failed] = u.session.query(Delivery).all()  # the in-app part rolled back with the event
        assert (failed.channel, failed.status, failed.attempts, failed.provider) == ("sms", "failed", 1, "broken")
        assert "gateway timeout" in failed.error
        assert u.session.query(InboxMessage).count() == 0
    assert [e["type"] for e in outbox_events(db)] == ["notification.failed"]

    service(db, sms).on_ticket_completed(envelope)  # the consumer's retry
    with uow(db, context(tenant)) as u:
        retried = u.session.get(Delivery, failed.id)
        assert (retried.status, retried.attempts, retried.error, retried.provider) == ("sent", 2, None, "file")
        assert u.session.query(InboxMessage).count() == 1
    assert len(sms_lines(sms)) == 1
    assert [e["type"] for e in outbox_events(db)] == ["notification.failed", "notification.sent", "notification.sent"]
    assert outbox_events(db)[0]["data"]["notification_id"] == str(failed.id)


def test_user_b_cannot_read_or_mark_user_a_inbox(db, sms):
    tenant = uuid.uuid4()
    envelope = completed(tenant)
    service(db, sms).on_ticket_completed(envelope)
    user_a = context(tenant, role="dispatcher", actor_id=uuid.UUID(envelope["data"]["dispatcher_id"]))
    user_b = context(tenant, role="dispatcher")
    [message] = service(db, sms, user_a).list_inbox()["items"]

    as_b = service(db, sms, user_b)
    assert as_b.list_inbox() == {"items": [], "total": 0, "offset": 0, "limit": 50, "unread": 0}
    with pytest.raises(NotFound):
        as_b.mark_read(message["id"])
    assert as_b.mark_all_read() == {"updated": 0}
    assert service(db, sms, user_a).list_inbox(unread_only=True)["total"] == 1

    as_a = service(db, sms, user_a)
    assert as_a.mark_read(message["id"])["read_at"] is not None
    assert as_a.list_inbox(unread_only=True)["items"] == []
    assert as_a.list_inbox()["unread"] == 0


def test_mark_all_read_and_paging(db, sms):
    tenant, dispatcher = uuid.uuid4(), uuid.uuid4()
    consumer = service(db, sms)
    for _ in range(3):
        consumer.on_ticket_completed(completed(tenant, dispatcher_id=str(dispatcher), contact_phone=None))
    me = service(db, sms, context(tenant, role="dispatcher", actor_id=dispatcher))
    first = me.list_inbox(limit=2)
    assert (len(first["items"]), first["total"], first["unread"]) == (2, 3, 3)
    assert len(me.list_inbox(offset=2, limit=2)["items"]) == 1
    assert me.mark_all_read() == {"updated": 3}
    assert me.list_inbox()["unread"] == 0
    with pytest.raises(ValidationFailed) as err:
        me.list_inbox(limit=0)
    assert err.value.errors[0]["field"] == "limit"
    with pytest.raises(ValidationFailed) as err:
        me.mark_read("not-a-uuid")
    assert err.value.errors[0]["field"] == "message_id"


def test_other_tenant_sees_nothing(db, sms):
    tenant = uuid.uuid4()
    envelope = completed(tenant)
    service(db, sms).on_ticket_completed(envelope)
    dispatcher = uuid.UUID(envelope["data"]["dispatcher_id"])
    [message] = service(db, sms, context(tenant, actor_id=dispatcher)).list_inbox()["items"]

    # Same user id, another tenant: not even the owner's id crosses the tenant boundary.
    stranger = service(db, sms, context(uuid.uuid4(), role="admin", actor_id=dispatcher))
    assert stranger.list_inbox()["total"] == 0
    assert stranger.list_deliveries()["total"] == 0
    with pytest.raises(NotFound):
        stranger.mark_read(message["id"])
    assert stranger.mark_all_read() == {"updated": 0}
    assert service(db, sms, context(tenant, actor_id=dispatcher)).list_inbox()["unread"] == 1


def test_delivery_log_is_for_admins_and_dispatchers(db, sms):
    tenant = uuid.uuid4()
    service(db, sms).on_ticket_completed(completed(tenant))
    assert service(db, sms, context(tenant, role="admin")).list_deliveries(channel="sms")["total"] == 1
    assert service(db, sms, context(tenant, role="dispatcher")).list_deliveries()["total"] == 2
    with pytest.raises(Forbidden):
        service(db, sms, context(tenant, role="technician")).list_deliveries()
    with pytest.raises(ValidationFailed) as err:
        service(db, sms, context(tenant, role="admin")).list_deliveries(channel="fax")
    assert err.value.errors[0]["field"] == "channel"

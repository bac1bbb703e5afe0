"""Notify against a real SQLite database (unit tier, no broker): the completion flow, the inbox,
idempotency, the delivery log, retries → failed list → resend, tenant isolation.

Events go through the nameko service (worker_factory) with a real platform, so the
idempotency claim is the one event_uow makes with UnitOfWork.consume.
"""
import datetime as dt
import uuid

import pytest
from conftest import completed, envelope, service, sms_lines

from notify import handlers, templates
from notify.models import Delivery, InboxMessage
from notify.providers import Provider, ProviderError, Registry, Sent
from svc_common.contracts import EventEnvelope
from svc_common.errors import Forbidden, NotFound, ValidationFailed
from svc_common.testing import context, outbox_events, uow


class Flaky(Provider):
    """An SMS provider that fails (transiently or not) until told otherwise."""
    channel, kind = "sms", "flaky"
    calls: list = []
    mode = "transient"  # transient | permanent | ok

    def send(self, message):
        Flaky.calls.append(message.recipient)
        if Flaky.mode == "ok":
            return Sent("flaky-1", '{"ok": true}')
        raise ProviderError("gateway timeout" if Flaky.mode == "transient" else "template not approved",
                            transient=Flaky.mode == "transient", response='{"Code": "x"}')


@pytest.fixture
def flaky(tmp_path):
    Flaky.calls, Flaky.mode = [], "transient"
    return Registry(sms_log_path=str(tmp_path / "sms.log"), extra={("sms", "flaky"): Flaky})


def test_completion_notifies_dispatcher_in_inbox_and_customer_by_sms(db, registry):
    tenant = uuid.uuid4()
    env = completed(tenant)
    dispatcher = context(tenant, role="dispatcher", actor_id=uuid.UUID(env["data"]["dispatcher_id"]))

    service(db, registry).on_notifiable_event([env])

    inbox = service(db, registry, dispatcher).list_inbox()
    assert inbox["total"] == 1 and inbox["unread"] == 1
    [message] = inbox["items"]
    assert message["title"] == "工单已完成" and message["category"] == "ticket"
    assert message["body"] == "工单 WO000042（上海申能空调）已由工程师完成：更换压缩机电容，试机正常"
    assert (message["ref_type"], message["ref_id"]) == ("ticket", env["data"]["ticket_id"])
    assert service(db, registry, dispatcher).unread_count() == {"unread": 1}

    [line] = sms_lines(registry)
    assert line["phone"] == "13800138000"
    assert line["text"] == "【售后服务】尊敬的王经理，您的服务工单WO000042已完成，感谢您的支持。"
    assert line["message_id"] and dt.datetime.fromisoformat(line["time"]).tzinfo is not None

    log = service(db, registry, dispatcher).list_deliveries()
    assert sorted((d["channel"], d["status"], d["attempts"]) for d in log["items"]) == [
        ("in_app", "sent", 1), ("sms", "sent", 1)]
    sms_delivery = next(d for d in log["items"] if d["channel"] == "sms")
    assert sms_delivery["provider_message_id"] == line["message_id"] and sms_delivery["provider"] == "file"
    assert sms_delivery["event_id"] == env["event_id"] and sms_delivery["event_type"] == "ticket.completed"

    events = outbox_events(db)
    assert [e["type"] for e in events] == ["notification.sent", "notification.sent"]
    assert {e["data"]["channel"] for e in events} == {"in_app", "sms"}
    assert all(e["tenant_id"] == str(tenant) and e["data"]["source_event_id"] == env["event_id"] for e in events)


def test_each_notification_event_carries_the_correlation_id_of_its_own_request(db, registry):
    # one batch (one transaction) holds the completions of two requests
    tenant = uuid.uuid4()
    first, second = completed(tenant), completed(tenant, contact_phone="13900000001")
    first["correlation_id"], second["correlation_id"] = "req-a", "req-b"
    service(db, registry, method="on_ticket_completed").on_ticket_completed([first, second])

    caused = {(e["data"]["source_event_id"], e["data"]["channel"]): e["correlation_id"] for e in outbox_events(db)}
    assert caused == {(first["event_id"], "in_app"): "req-a", (first["event_id"], "sms"): "req-a",
                      (second["event_id"], "in_app"): "req-b", (second["event_id"], "sms"): "req-b"}


def test_a_requested_return_visit_texts_the_rating_link_to_the_contact(db, registry):
    tenant = uuid.uuid4()
    service(db, registry, context(tenant)).save_settings({"portal_url": "https://svc.example.com/"})
    service(db, registry).on_notifiable_event([completed(tenant)])
    [completion] = sms_lines(registry)
    assert "评价" not in completion["text"]     # the link comes with the visit, not with completion
    service(db, registry).on_notifiable_event([envelope(
        "ticket.visit_requested", tenant, ticket_id=str(uuid.uuid4()), number="WO000042", type="repair",
        customer_id=str(uuid.uuid4()), visit_id=str(uuid.uuid4()), rating_path="/api/v1/public/visits/tok123/page",
        contact_name="王经理", contact_phone="13800138000")])
    visit = sms_lines(registry)[-1]
    assert visit["phone"] == "13800138000"
    assert visit["text"] == ("【售后服务】尊敬的王经理，请为工单WO000042的服务评价："
                             "https://svc.example.com/api/v1/public/visits/tok123/page")


def test_same_envelope_twice_sends_nothing_the_second_time(db, registry):
    tenant = uuid.uuid4()
    env = completed(tenant)
    consumer = service(db, registry, method="on_ticket_completed")  # ticket.completed's own entrypoint
    consumer.on_ticket_completed([env])
    consumer.on_ticket_completed([env])  # redelivery

    assert len(sms_lines(registry)) == 1
    with uow(db, context(tenant)) as u:
        assert u.session.query(InboxMessage).count() == 1
        assert u.session.query(Delivery).count() == 2
    assert len(outbox_events(db)) == 2


def test_a_queued_delivery_is_sent_once_even_if_two_instances_dispatch_it(db, registry):
    tenant = uuid.uuid4()
    event = EventEnvelope.model_validate(completed(tenant, dispatcher_id=None))
    with uow(db, context(tenant, role="system")) as u:
        [job] = handlers.fan_out(u, event)
    factory = lambda: uow(db, context(tenant, role="system"))  # noqa: E731
    assert handlers.send_jobs(lambda _tenant: factory(), registry, [job]) == {job.delivery_id: "sent"}
    assert handlers.send_jobs(lambda _tenant: factory(), registry, [job]) == {}  # a second sender finds it taken
    assert handlers.dispatch(factory, registry, job.delivery_id) is None  # ... and so does the timer
    assert len(sms_lines(registry)) == 1


def test_missing_dispatcher_or_phone_is_skipped(db, registry):
    tenant = uuid.uuid4()
    service(db, registry).on_notifiable_event([completed(tenant, dispatcher_id=None, contact_phone=None)])
    assert sms_lines(registry) == []
    with uow(db, context(tenant)) as u:
        assert u.session.query(InboxMessage).count() == 0
        assert u.session.query(Delivery).count() == 0


def test_invalid_phone_is_a_failed_delivery_not_an_sms(db, registry):
    tenant = uuid.uuid4()
    service(db, registry).on_notifiable_event([completed(tenant, contact_phone="12345")])
    assert sms_lines(registry) == []
    log = service(db, registry, context(tenant)).list_deliveries(status="failed")
    [failed] = log["items"]
    assert (failed["channel"], failed["recipient"], failed["error"]) == ("sms", "12345", "invalid phone number")
    assert [e["type"] for e in outbox_events(db)] == ["notification.sent", "notification.failed"]


def test_en_locale_renders_english(db, registry):
    tenant = uuid.uuid4()
    service(db, registry, context(tenant)).save_settings({"locale": "en"})
    service(db, registry).on_notifiable_event([completed(tenant, contact_name=None)])
    with uow(db, context(tenant)) as u:
        message = u.session.query(InboxMessage).one()
    assert message.title == "Work order completed"
    assert message.body == ("Work order WO000042 (上海申能空调) was completed by the technician: "
                            "更换压缩机电容，试机正常")
    [line] = sms_lines(registry)
    assert line["text"].startswith("[After-sales service] Dear customer, your service work order WO000042 ")
    # a regional variant falls back to its language, an unknown locale to zh-CN
    data = completed(tenant)["data"]
    assert templates.render("ticket.completed", "in_app", "en-US", data)["title"] == "Work order completed"
    assert templates.render("ticket.completed", "in_app", "fr", data)["title"] == "工单已完成"


def test_transient_failures_retry_then_fail_then_an_admin_resends(db, flaky):
    tenant = uuid.uuid4()
    admin = context(tenant, role="admin")
    service(db, flaky, admin).configure_provider("sms", {"kind": "flaky"})
    env = completed(tenant)
    service(db, flaky).on_notifiable_event([env])  # the event itself succeeds: the failure is the delivery's

    assert Flaky.calls == ["13800138000"] * 3  # FAST policy: three attempts
    failed_list = service(db, flaky, admin).list_deliveries(status="failed")
    [failed] = failed_list["items"]
    assert (failed["status"], failed["attempts"], failed["provider"]) == ("failed", 3, "flaky")
    assert failed["error"] == "gateway timeout" and failed["provider_response"] == '{"Code": "x"}'
    assert [e["type"] for e in outbox_events(db)] == ["notification.sent", "notification.failed"]
    # the inbox message was not held back by the SMS failure
    with uow(db, context(tenant)) as u:
        assert u.session.query(InboxMessage).count() == 1

    with pytest.raises(Forbidden):
        service(db, flaky, context(tenant, role="dispatcher")).resend_delivery(failed["id"])
    Flaky.mode = "ok"
    resent = service(db, flaky, admin).resend_delivery(failed["id"])
    assert (resent["status"], resent["attempts"], resent["error"], resent["provider_message_id"]) == (
        "sent", 4, None, "flaky-1")
    assert outbox_events(db)[-1]["type"] == "notification.sent"
    with pytest.raises(ValidationFailed) as err:
        service(db, flaky, admin).resend_delivery(failed["id"])  # already sent
    assert err.value.errors[0]["field"] == "status"


def test_permanent_failure_is_not_retried(db, flaky):
    tenant = uuid.uuid4()
    service(db, flaky, context(tenant)).configure_provider("sms", {"kind": "flaky"})
    Flaky.mode = "permanent"
    service(db, flaky).on_notifiable_event([completed(tenant)])
    assert len(Flaky.calls) == 1
    [failed] = service(db, flaky, context(tenant)).list_deliveries(status="failed")["items"]
    assert failed["attempts"] == 1 and failed["error"] == "template not approved"


def test_a_crash_after_commit_leaves_the_row_queued_and_the_timer_sends_it(db, registry, monkeypatch):
    tenant = uuid.uuid4()
    event = EventEnvelope.model_validate(completed(tenant, dispatcher_id=None))
    with uow(db, context(tenant, role="system")) as u:
        handlers.fan_out(u, event)  # committed, never dispatched (the process died here)
    worker = service(db, registry, method="release_due")
    worker.release_due()
    assert sms_lines(registry) == []  # not yet stale: it may still be in flight in its own worker
    later = handlers.utcnow() + handlers.STALE_QUEUED + dt.timedelta(seconds=1)
    monkeypatch.setattr(handlers, "utcnow", lambda: later)
    monkeypatch.setattr("notify.service.utcnow", lambda: later)
    worker.release_due()
    assert len(sms_lines(registry)) == 1


def test_user_b_cannot_read_or_mark_user_a_inbox(db, registry):
    tenant = uuid.uuid4()
    env = completed(tenant)
    service(db, registry).on_notifiable_event([env])
    user_a = context(tenant, role="dispatcher", actor_id=uuid.UUID(env["data"]["dispatcher_id"]))
    user_b = context(tenant, role="dispatcher")
    [message] = service(db, registry, user_a).list_inbox()["items"]

    as_b = service(db, registry, user_b)
    assert as_b.list_inbox() == {"items": [], "total": 0, "offset": 0, "limit": 50, "unread": 0}
    with pytest.raises(NotFound):
        as_b.mark_read(message["id"])
    assert as_b.mark_all_read() == {"updated": 0}
    assert service(db, registry, user_a).list_inbox(unread_only=True)["total"] == 1

    as_a = service(db, registry, user_a)
    assert as_a.mark_read(message["id"])["read_at"] is not None
    assert as_a.list_inbox(unread_only=True)["items"] == []
    assert as_a.list_inbox()["unread"] == 0 and as_a.unread_count() == {"unread": 0}


def test_mark_all_read_paging_and_categories(db, registry):
    tenant, dispatcher = uuid.uuid4(), uuid.uuid4()
    consumer = service(db, registry)
    for _ in range(3):
        consumer.on_notifiable_event([completed(tenant, dispatcher_id=str(dispatcher), contact_phone=None)])
    consumer.on_notifiable_event([envelope("ticket.accepted", tenant, ticket_id=str(uuid.uuid4()), number="WO9",
                                          customer_name="甲", dispatcher_id=str(dispatcher))])
    me = service(db, registry, context(tenant, role="dispatcher", actor_id=dispatcher))
    first = me.list_inbox(limit=2)
    assert (len(first["items"]), first["total"], first["unread"]) == (2, 4, 4)
    assert len(me.list_inbox(offset=2, limit=2)["items"]) == 2
    assert me.list_inbox(category="ticket")["total"] == 4 and me.list_inbox(category="parts")["total"] == 0
    assert me.mark_all_read() == {"updated": 4}
    assert me.list_inbox()["unread"] == 0
    with pytest.raises(ValidationFailed) as err:
        me.list_inbox(limit=0)
    assert err.value.errors[0]["field"] == "limit"
    with pytest.raises(ValidationFailed) as err:
        me.mark_read("not-a-uuid")
    assert err.value.errors[0]["field"] == "message_id"


def test_other_tenant_sees_nothing(db, registry):
    tenant = uuid.uuid4()
    env = completed(tenant)
    service(db, registry).on_notifiable_event([env])
    dispatcher = uuid.UUID(env["data"]["dispatcher_id"])
    [message] = service(db, registry, context(tenant, actor_id=dispatcher)).list_inbox()["items"]

    # Same user id, another tenant: not even the owner's id crosses the tenant boundary.
    stranger = service(db, registry, context(uuid.uuid4(), role="admin", actor_id=dispatcher))
    assert stranger.list_inbox()["total"] == 0
    assert stranger.list_deliveries()["total"] == 0
    with pytest.raises(NotFound):
        stranger.mark_read(message["id"])
    delivery = service(db, registry, context(tenant)).list_deliveries()["items"][0]
    with pytest.raises(NotFound):
        stranger.resend_delivery(delivery["id"])
    assert stranger.mark_all_read() == {"updated": 0}
    assert service(db, registry, context(tenant, actor_id=dispatcher)).list_inbox()["unread"] == 1


def test_delivery_log_is_for_admins_and_dispatchers(db, registry):
    tenant = uuid.uuid4()
    service(db, registry).on_notifiable_event([completed(tenant)])
    assert service(db, registry, context(tenant, role="admin")).list_deliveries(channel="sms")["total"] == 1
    assert service(db, registry, context(tenant, role="dispatcher")).list_deliveries()["total"] == 2
    assert service(db, registry, context(tenant)).list_deliveries(event_type="ticket.completed")["total"] == 2
    with pytest.raises(Forbidden):
        service(db, registry, context(tenant, role="technician")).list_deliveries()
    with pytest.raises(ValidationFailed) as err:
        service(db, registry, context(tenant, role="admin")).list_deliveries(channel="fax")
    assert err.value.errors[0]["field"] == "channel"


def test_a_batch_of_many_events_and_tenants_is_rate_limited_and_idempotent(db, registry):
    """Events arrive in batches (one transaction per tenant): limits count across the batch, and copies
    redelivered inside the batch or in a later one change nothing."""
    burst, other = uuid.uuid4(), uuid.uuid4()
    envelopes = [completed(burst, dispatcher_id=None) for _ in range(30)] + \
        [completed(other, contact_phone=f"1390000000{i}") for i in range(3)]
    consumer = service(db, registry, method="on_ticket_completed")
    consumer.on_ticket_completed(envelopes + envelopes[:5])
    consumer.on_ticket_completed(envelopes)

    phones = [line["phone"] for line in sms_lines(registry)]
    assert phones.count("13800138000") == 10  # the per-recipient limit holds within one batch
    assert sorted(p for p in phones if p != "13800138000") == ["13900000000", "13900000001", "13900000002"]
    with uow(db, context(burst)) as u:
        statuses = [d.status for d in u.session.query(Delivery)]
        assert (statuses.count("sent"), statuses.count("rate_limited"), len(statuses)) == (10, 20, 30)
    with uow(db, context(other)) as u:
        assert u.session.query(Delivery).count() == 6 and u.session.query(InboxMessage).count() == 3
    assert len(outbox_events(db)) == 10 + 6  # notification.sent; a rate-limited message is no event

"""Who gets what: rules and their recipients, the user/team replicas, lists, mutes, quiet hours,
rate limits, templates checked at save time, settings, provider credentials (unit tier)."""
import datetime as dt
import uuid

import pytest
from conftest import add_user, completed, envelope, service, sms_lines

from notify import domain, handlers, templates
from notify.models import Delivery, InboxMessage
from svc_common.contracts import EventEnvelope
from svc_common.errors import Forbidden, ValidationFailed
from svc_common.testing import context, uow

UTC = dt.timezone.utc


def deliveries(db, tenant):
    with uow(db, context(tenant)) as u:
        return sorted((d.channel, d.recipient, d.status) for d in u.session.query(Delivery))


def inbox_users(db, tenant):
    with uow(db, context(tenant)) as u:
        return sorted(str(m.user_id) for m in u.session.query(InboxMessage))


def assigned(tenant, technician, **data):
    return envelope("ticket.assigned", tenant, ticket_id=str(uuid.uuid4()), number="WO000007", type="repair",
                    customer_id=str(uuid.uuid4()), customer_name="申能", technician_id=str(technician), **data)


def test_default_rule_of_every_handled_event_renders_from_minimal_data(db, registry):
    """A new tenant has a sensible rule per event, and each renders even when optional fields are absent."""
    tenant = uuid.uuid4()
    user = add_user(db, registry, tenant, role="admin", email="boss@example.com")
    for event_type in domain.HANDLED_EVENTS:
        rule = domain.DEFAULT_RULES[event_type]
        assert rule["recipients"] and rule["channels"], event_type
        for channel in ("in_app", "sms", "email", "robot"):
            parts = templates.builtin(event_type, channel, "zh-CN")
            assert parts is not None, (event_type, channel)
            assert templates.check(event_type, channel, parts) == [], (event_type, channel)
            for locale in templates.LOCALES:
                absent = {name: None for name in templates.variables_of(event_type)}
                rendered = templates.render(event_type, channel, locale, {**absent, "number": "WO1"})
                assert all("None" not in text for text in rendered.values()), (event_type, channel, rendered)
    service(db, registry).on_notifiable_event([envelope("customer.change_requested", tenant,
                                                       customer_id=str(uuid.uuid4()), customer_name="甲公司")])
    assert inbox_users(db, tenant) == [str(user)]


def test_assignment_reaches_assignee_and_collaborators_by_inbox_and_sms_from_the_user_replica(db, registry):
    tenant = uuid.uuid4()
    tech = add_user(db, registry, tenant, phone="13900000001")
    helper = add_user(db, registry, tenant, name="李工", phone="+86 139-0000-0002")
    no_phone = add_user(db, registry, tenant, name="王工", phone=None)
    service(db, registry).on_notifiable_event([assigned(tenant, tech, assistant_ids=[str(helper), str(no_phone)])])
    assert inbox_users(db, tenant) == sorted(map(str, (tech, helper, no_phone)))
    assert sorted(line["phone"] for line in sms_lines(registry)) == ["13900000001", "13900000002"]
    assert sms_lines(registry)[0]["text"] == "【售后服务】您有新工单WO000007（申能），请及时接单。"


def test_deactivated_users_are_not_notified(db, registry):
    tenant = uuid.uuid4()
    tech = add_user(db, registry, tenant)
    service(db, registry, method="on_user_event").on_user_event(envelope(
        "user.deactivated", tenant, user_id=str(tech), name="张工", username="zhang", role="technician",
        phone="13900000001", active=False))
    service(db, registry).on_notifiable_event([assigned(tenant, tech)])
    assert deliveries(db, tenant) == [] and sms_lines(registry) == []


def test_team_list_role_and_named_users_recipients(db, registry):
    tenant = uuid.uuid4()
    admin = context(tenant)
    a = add_user(db, registry, tenant, name="甲")
    b = add_user(db, registry, tenant, name="乙", team_ids=[])
    c = add_user(db, registry, tenant, name="丙", role="dispatcher")
    named = add_user(db, registry, tenant, name="丁", role="admin")
    team = uuid.uuid4()
    service(db, registry, method="on_team_updated").on_team_updated(envelope(
        "team.updated", tenant, team_id=str(team), name="一组", parent_id=None, kind="team", member_ids=[str(a)],
        manager_ids=[]))
    # b joins the team through its own user.updated (team_ids), as the accounts contract allows
    service(db, registry, method="on_user_event").on_user_event(envelope(
        "user.updated", tenant, user_id=str(b), name="乙", username="b", role="technician", phone="13900000003",
        team_ids=[str(team)]))
    service(db, registry, admin).save_rule("ticket.published_to_pool", {
        "channels": ["in_app"], "recipients": [{"kind": "team"}, {"kind": "role", "role": "dispatcher"},
                                               {"kind": "users", "user_ids": [str(named)]},
                                               {"kind": "list", "list": "pool"}]})
    subscriber = add_user(db, registry, tenant, name="戊")
    service(db, registry, context(tenant, role="technician", actor_id=subscriber)).subscribe_list("pool")
    service(db, registry).on_notifiable_event([envelope(
        "ticket.published_to_pool", tenant, ticket_id=str(uuid.uuid4()), number="WO8", customer_name="乙方",
        team_id=str(team))])
    assert inbox_users(db, tenant) == sorted(map(str, (a, b, c, named, subscriber)))
    lists = {item["name"]: item for item in service(db, registry, context(tenant, actor_id=subscriber)).list_lists()["items"]}
    assert lists["pool"]["subscribed"] is True and lists["pool"]["user_ids"] == [str(subscriber)]


def test_warehouse_managers_from_the_event_or_else_every_keeper(db, registry):
    tenant = uuid.uuid4()
    keeper = add_user(db, registry, tenant, role="warehouse_manager")
    named = uuid.uuid4()
    service(db, registry).on_notifiable_event([envelope("requisition.requested", tenant, requisition_id=str(uuid.uuid4()),
                                                       number="REQ1", technician_id=str(uuid.uuid4()),
                                                       manager_ids=[str(named)])])
    assert inbox_users(db, tenant) == [str(named)]
    service(db, registry).on_notifiable_event([envelope("requisition.requested", tenant, requisition_id=str(uuid.uuid4()),
                                                       number="REQ2", technician_id=str(uuid.uuid4()))])
    assert inbox_users(db, tenant) == sorted([str(named), str(keeper)])


def test_a_tenant_rule_replaces_the_default_and_can_be_reset(db, registry):
    tenant = uuid.uuid4()
    admin = service(db, registry, context(tenant))
    tech = add_user(db, registry, tenant)
    saved = admin.save_rule("ticket.assigned", {"channels": ["in_app"], "recipients": [{"kind": "assignee"}]})
    assert saved["default"] is False and saved["channels"] == ["in_app"]
    service(db, registry).on_notifiable_event([assigned(tenant, tech)])
    assert [d[0] for d in deliveries(db, tenant)] == ["in_app"]
    rules = {r["event_type"]: r for r in admin.list_rules()["items"]}
    assert rules["ticket.assigned"]["default"] is False and rules["ticket.created"]["default"] is True
    assert admin.reset_rule("ticket.assigned")["default"] is True
    service(db, registry).on_notifiable_event([assigned(tenant, tech)])
    assert sorted(d[0] for d in deliveries(db, tenant)) == ["in_app", "in_app", "sms"]
    admin.save_rule("ticket.assigned", {"enabled": False, "channels": ["in_app"], "recipients": [{"kind": "assignee"}]})
    service(db, registry).on_notifiable_event([assigned(tenant, tech)])
    assert len(deliveries(db, tenant)) == 3


def test_rule_validation_names_the_field(db, registry):
    admin = service(db, registry, context(uuid.uuid4()))
    with pytest.raises(ValidationFailed) as err:
        admin.save_rule("ticket.nonsense", {"channels": ["in_app"], "recipients": []})
    assert err.value.errors[0]["field"] == "event_type"
    with pytest.raises(ValidationFailed) as err:
        admin.save_rule("ticket.assigned", {"channels": ["fax"], "recipients": []})
    assert err.value.errors[0]["field"] == "channels.0"
    with pytest.raises(ValidationFailed) as err:
        admin.save_rule("ticket.assigned", {"channels": ["sms"], "recipients": [{"kind": "list", "list": "nope"}]})
    assert err.value.errors[0]["field"].startswith("recipients.0")
    with pytest.raises(Forbidden):
        service(db, registry, context(uuid.uuid4(), role="technician")).save_rule(
            "ticket.assigned", {"channels": ["sms"], "recipients": []})


def test_a_user_mutes_a_channel_for_themselves(db, registry):
    tenant = uuid.uuid4()
    tech = add_user(db, registry, tenant)
    me = service(db, registry, context(tenant, role="technician", actor_id=tech))
    assert me.save_preferences({"muted_channels": ["sms"]})["muted_channels"] == ["sms"]
    service(db, registry).on_notifiable_event([assigned(tenant, tech)])
    assert deliveries(db, tenant) == [("in_app", str(tech), "sent"), ("sms", "13900000001", "muted")]
    assert sms_lines(registry) == []
    # someone else's preferences are the admin's business only
    with pytest.raises(Forbidden):
        service(db, registry, context(tenant, role="technician")).get_preferences(str(tech))
    assert service(db, registry, context(tenant)).get_preferences(str(tech))["muted_channels"] == ["sms"]


def test_quiet_hours_defer_non_urgent_sms_until_they_end_and_the_timer_releases_it(db, registry, monkeypatch):
    tenant = uuid.uuid4()
    tech = add_user(db, registry, tenant)
    service(db, registry, context(tenant, role="technician", actor_id=tech)).save_preferences(
        {"quiet_start": "22:00", "quiet_end": "08:00"})
    night = dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))  # Shanghai
    event = EventEnvelope.model_validate(assigned(tenant, tech))
    with uow(db, context(tenant, role="system")) as u:
        assert handlers.fan_out(u, event, now=night.astimezone(UTC)) == []
    with uow(db, context(tenant)) as u:
        sms = u.session.query(Delivery).filter_by(channel="sms").one()
        assert sms.status == "deferred"
        assert sms.send_after == dt.datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # 08:00 Shanghai
    assert inbox_users(db, tenant) == [str(tech)]  # the inbox is silent anyway: not deferred

    # urgent (an overdue order) ignores quiet hours
    overdue = EventEnvelope.model_validate(envelope("ticket.overdue", tenant, ticket_id=str(uuid.uuid4()), number="WO2",
                                                    customer_name="甲", technician_id=str(tech), deadline="arrive"))
    with uow(db, context(tenant, role="system")) as u:
        assert len(handlers.fan_out(u, overdue, now=night.astimezone(UTC))) == 1

    worker = service(db, registry, method="release_due")
    monkeypatch.setattr("notify.service.utcnow", lambda: dt.datetime(2026, 11, 22, 23, 59, tzinfo=UTC))
    worker.release_due()  # only the urgent one (left queued above, so the timer takes it)
    assert [line["text"] for line in sms_lines(registry)] == ["【售后服务】工单WO2已超时，请尽快处理。"]
    morning = dt.datetime(2026, 11, 23, 0, 1, tzinfo=UTC)
    monkeypatch.setattr("notify.service.utcnow", lambda: morning)
    monkeypatch.setattr(handlers, "utcnow", lambda: morning)
    worker.release_due()
    assert [line["text"] for line in sms_lines(registry)][1:] == ["【售后服务】您有新工单WO000007（申能），请及时接单。"]


def test_tenant_quiet_hours_apply_to_the_customers_contact(db, registry):
    tenant = uuid.uuid4()
    service(db, registry, context(tenant)).save_settings({"quiet_start": "21:00", "quiet_end": "09:00",
                                                         "timezone": "Asia/Shanghai"})
    event = EventEnvelope.model_validate(completed(tenant))
    with uow(db, context(tenant, role="system")) as u:
        handlers.fan_out(u, event, now=dt.datetime(2026, 11, 22, 14, 0, tzinfo=UTC))  # 22:00 in Shanghai
    assert ("sms", "13800138000", "deferred") in deliveries(db, tenant)


def test_quiet_until():
    cst = "Asia/Shanghai"
    at = lambda h, m=0: dt.datetime(2026, 1, 1, h, m, tzinfo=dt.timezone(dt.timedelta(hours=8))).astimezone(UTC)  # noqa: E731
    assert domain.quiet_until(at(23), "22:00", "08:00", cst) == at(8) + dt.timedelta(days=1)
    assert domain.quiet_until(at(7, 59), "22:00", "08:00", cst) == at(8)
    assert domain.quiet_until(at(8), "22:00", "08:00", cst) is None
    assert domain.quiet_until(at(13), "12:00", "14:00", cst) == at(14)
    assert domain.quiet_until(at(13), None, None, cst) is None


def test_a_burst_to_one_phone_is_rate_limited(db, registry):
    tenant = uuid.uuid4()
    consumer = service(db, registry)
    for _ in range(30):
        consumer.on_notifiable_event([completed(tenant, dispatcher_id=None)])
    assert len(sms_lines(registry)) == 10  # default: 10 SMS per recipient per hour
    statuses = [d[2] for d in deliveries(db, tenant)]
    assert statuses.count("sent") == 10 and statuses.count("rate_limited") == 20


def test_the_tenant_limit_caps_a_flood_to_many_phones(db, registry):
    tenant = uuid.uuid4()
    service(db, registry, context(tenant)).save_settings({"per_tenant_per_minute": {"sms": 5}})
    consumer = service(db, registry)
    for i in range(8):
        consumer.on_notifiable_event([completed(tenant, dispatcher_id=None, contact_phone=f"1380013{i:04d}")])
    assert len(sms_lines(registry)) == 5


def test_template_is_checked_when_saved_and_used_when_sending(db, registry):
    tenant = uuid.uuid4()
    admin = service(db, registry, context(tenant))
    with pytest.raises(ValidationFailed) as err:
        admin.save_template("ticket.completed", "sms", "zh-CN", {"parts": {"text": "{{ number }} {{ secret_field }}"}})
    assert err.value.errors[0]["field"] == "parts.text" and "secret_field" in err.value.errors[0]["message"]
    with pytest.raises(ValidationFailed) as err:
        admin.save_template("ticket.completed", "in_app", "zh-CN", {"parts": {"title": "{% if %}", "body": "x"}})
    assert err.value.errors[0]["field"] == "parts.title" and "syntax" in err.value.errors[0]["message"]
    with pytest.raises(ValidationFailed) as err:
        admin.save_template("ticket.completed", "in_app", "zh-CN", {"parts": {"title": "{{ number.__class__.__mro__ }}",
                                                                             "body": "x"}})
    assert err.value.errors[0]["field"] == "parts.title"
    with pytest.raises(ValidationFailed) as err:
        admin.save_template("ticket.completed", "sms", "zh-CN", {"parts": {"subject": "x"}})
    assert {e["field"] for e in err.value.errors} == {"parts.subject", "parts.text"}
    with pytest.raises(ValidationFailed) as err:
        admin.save_template("ticket.completed", "sms", "fr", {"parts": {"text": "x"}})
    assert err.value.errors[0]["field"] == "locale"

    admin.save_template("ticket.completed", "sms", "zh-CN", {"parts": {"text": "【申能】{{ number }}已完工，{{ contact_name }}"}})
    service(db, registry).on_notifiable_event([completed(tenant)])
    assert sms_lines(registry)[0]["text"] == "【申能】WO000042已完工，王经理"
    listed = admin.list_templates("ticket.completed")["items"]
    own = next(t for t in listed if (t["channel"], t["locale"]) == ("sms", "zh-CN"))
    assert own["custom"] is True and "summary" in own["variables"]
    admin.reset_template("ticket.completed", "sms", "zh-CN")
    service(db, registry).on_notifiable_event([completed(tenant)])
    assert sms_lines(registry)[1]["text"].startswith("【售后服务】")


def test_settings_are_validated(db, registry):
    admin = service(db, registry, context(uuid.uuid4()))
    for bad, field in (({"timezone": "Mars/Base"}, "timezone"), ({"quiet_start": "25:00"}, "quiet_start"),
                       ({"portal_url": "ftp://x"}, "portal_url"), ({"per_tenant_per_minute": {"sms": 0}},
                                                                   "per_tenant_per_minute")):
        with pytest.raises(ValidationFailed) as err:
            admin.save_settings(bad)
        assert err.value.errors[0]["field"] == field
    assert admin.get_settings()["locale"] == "zh-CN"
    with pytest.raises(ValidationFailed) as err:
        admin.save_preferences({"quiet_start": "22:00"})
    assert "quiet_end" in err.value.message


def test_provider_secrets_are_never_returned_and_are_kept_on_update(db, registry):
    tenant = uuid.uuid4()
    admin = service(db, registry, context(tenant))
    tencent = {"kind": "tencent", "settings": {"secret_id": "AKIDexample", "sdk_app_id": "1400000000",
                                               "sign_name": "申能售后", "templates": {"*": {"code": "1234", "params": ["number"]}}},
               "secrets": {"secret_key": "very-secret-key-123456"}}
    saved = admin.configure_provider("sms", tencent)
    assert saved["secrets"] == {"secret_key": "****3456"}
    again = admin.configure_provider("sms", {**tencent, "secrets": {}})  # no secret given: the stored one stays
    assert again["secrets"] == {"secret_key": "****3456"}
    assert "very-secret" not in str(admin.list_providers())
    for bad, field in (({**tencent, "kind": "carrier-pigeon"}, "kind"),
                       ({**tencent, "settings": {**tencent["settings"], "templates": {"ticket.assigned": {"code": "1", "params": ["pin"]}}}},
                        "settings.templates.ticket.assigned.params"),
                       ({**tencent, "secrets": {"token": "x"}}, "secrets.token")):
        with pytest.raises(ValidationFailed) as err:
            admin.configure_provider("sms", bad)
        assert err.value.errors[0]["field"] == field
    with pytest.raises(ValidationFailed) as err:
        service(db, registry, context(uuid.uuid4())).configure_provider("robot", {"kind": "dingtalk"})
    assert err.value.errors[0]["field"] == "secrets.access_token"
    with pytest.raises(Forbidden):
        service(db, registry, context(tenant, role="dispatcher")).list_providers()


def test_daily_digest_counts_yesterday_and_goes_to_subscribers_once(db, registry, monkeypatch):
    tenant = uuid.uuid4()
    boss = add_user(db, registry, tenant, role="admin", email="boss@example.com")
    service(db, registry, context(tenant)).set_list_members("daily_digest", {"user_ids": [str(boss)]})
    yesterday = dt.datetime(2026, 11, 21, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    consumer = service(db, registry)
    for _ in range(2):
        consumer.on_notifiable_event([envelope("ticket.created", tenant, occurred_at=yesterday,
                                              ticket_id=str(uuid.uuid4()), number="WO1", customer_name="甲")])
    consumer.on_notifiable_event([completed(tenant, occurred_at=yesterday)])
    consumer.on_notifiable_event([envelope("ticket.visited", tenant, occurred_at=yesterday, ticket_id=str(uuid.uuid4()),
                                          number="WO1", satisfaction=4)])
    consumer.on_notifiable_event([envelope("ticket.visited", tenant, occurred_at=yesterday, ticket_id=str(uuid.uuid4()),
                                          number="WO2", satisfaction=5)])
    worker = service(db, registry, method="release_due")
    for now in (dt.datetime(2026, 11, 21, 23, 0, tzinfo=UTC),   # 07:00 local: not yet
                dt.datetime(2026, 11, 22, 0, 5, tzinfo=UTC),    # 08:05 local: due
                dt.datetime(2026, 11, 22, 0, 10, tzinfo=UTC)):  # already sent today
        monkeypatch.setattr("notify.service.utcnow", lambda now=now: now)
        worker.release_due()
    boss_inbox = service(db, registry, context(tenant, actor_id=boss)).list_inbox()["items"]
    digests = [m for m in boss_inbox if m["category"] == "digest"]
    assert len(digests) == 1
    assert digests[0]["title"] == "2026-11-21 管理员日报"
    assert digests[0]["body"] == "新建工单 2，完成 1，超时 0；回访 2 次，平均满意度 4.5；库存预警 0。"


def test_nobody_is_told_of_what_they_did_themselves(db, registry):
    tenant = uuid.uuid4()
    dispatcher = add_user(db, registry, tenant, role="dispatcher")
    env = envelope("ticket.refused", tenant, ticket_id=str(uuid.uuid4()), number="WO3", customer_name="甲",
                   technician_id=str(uuid.uuid4()), dispatcher_id=str(dispatcher), reason="不在服务区域")
    service(db, registry).on_notifiable_event([{**env, "actor": {"id": str(dispatcher), "role": "dispatcher"}}])
    assert deliveries(db, tenant) == []
    # the technician refused (another event): the dispatcher hears of it
    service(db, registry).on_notifiable_event([{**env, "event_id": str(uuid.uuid4())}])
    assert sorted(d[0] for d in deliveries(db, tenant)) == ["in_app", "sms"]
    with uow(db, context(tenant)) as u:
        assert u.session.query(InboxMessage).one().body == "工单 WO3（甲）被工程师拒绝：不在服务区域，请重新派单。"


def test_an_interrupted_send_fails_rather_than_repeats(db, registry, monkeypatch):
    tenant = uuid.uuid4()
    event = EventEnvelope.model_validate(completed(tenant, dispatcher_id=None))
    with uow(db, context(tenant, role="system")) as u:
        [job] = handlers.fan_out(u, event)
    queued = job.delivery_id
    with uow(db, context(tenant, role="system")) as u:
        assert handlers.claim_jobs(u, [job], handlers.utcnow())  # ... and the process died sending
    later = handlers.utcnow() + handlers.STALE_SENDING + dt.timedelta(seconds=1)
    monkeypatch.setattr("notify.service.utcnow", lambda: later)
    service(db, registry, method="release_due").release_due()
    with uow(db, context(tenant)) as u:
        delivery = u.session.get(Delivery, queued)
        assert delivery.status == "failed" and "interrupted" in delivery.error
    assert sms_lines(registry) == []


def test_events_without_a_named_dispatcher_reach_every_dispatcher_and_the_pool_team(db, registry):
    tenant = uuid.uuid4()
    d1 = add_user(db, registry, tenant, role="dispatcher", name="调度甲", phone=None)
    d2 = add_user(db, registry, tenant, role="dispatcher", name="调度乙", phone=None)
    member = add_user(db, registry, tenant, name="池成员")
    pool_team = uuid.uuid4()
    service(db, registry, method="on_team_updated").on_team_updated(envelope(
        "team.updated", tenant, team_id=str(pool_team), name="抢单组", kind="team", member_ids=[str(member)],
        manager_ids=[]))
    service(db, registry).on_notifiable_event([envelope(  # tickets' refusal names no dispatcher
        "ticket.refused", tenant, ticket_id=str(uuid.uuid4()), number="WO4", customer_name="甲",
        technician_id=str(member), reason="配件未到")])
    assert inbox_users(db, tenant) == sorted(map(str, (d1, d2)))
    service(db, registry).on_notifiable_event([envelope(
        "ticket.published_to_pool", tenant, ticket_id=str(uuid.uuid4()), number="WO5", customer_name="乙",
        pool_team_id=str(pool_team))])
    assert str(member) in inbox_users(db, tenant)


def test_secrets_are_masked():  # the address rules themselves: svc_common/tests/test_addresses.py
    assert domain.mask("very-secret-key-123456") == "****3456" and domain.mask("short") == "****"


def test_a_customer_change_request_links_to_the_customer(db, registry):
    tenant = uuid.uuid4()
    admin_user = add_user(db, registry, tenant, role="admin")
    customer = str(uuid.uuid4())
    service(db, registry).on_notifiable_event([envelope(
        "customer.change_requested", tenant, request_id=str(uuid.uuid4()), number="CR000001", customer_id=customer,
        customer_name="甲公司", changes=[{"field": "phone", "old": "1", "new": "2"}], reason="换号")])
    [message] = service(db, registry, context(tenant, actor_id=admin_user)).list_inbox()["items"]
    assert (message["ref_type"], message["ref_id"], message["category"]) == ("customer", customer, "approval")
    assert message["body"] == "客户 甲公司 的资料变更申请 CR000001 待您审批。换号"

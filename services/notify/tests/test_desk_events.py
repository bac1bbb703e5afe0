"""The service desk's events (unit tier, real SQLite, a real SMTP server process): announcements to
their audience's inbox, service reports by e-mail (PDF attached, fetched from tickets at send time,
retried when it cannot be) or SMS, and back-filled orders (补录) that tell no customer anything."""
import base64
import email
import uuid
from email import policy as email_policy

import pytest
from conftest import add_user, completed, envelope, service, sms_lines

from notify.models import Delivery, InboxMessage
from svc_common.testing import context, outbox_events, uow

PDF = b"%PDF-1.4\n% a service report\n%%EOF\n"
PORTAL = "https://svc.example.com"
REPORT_PATH = "/api/v1/public/service-reports/tok-42"


class FakeTickets:
    """tickets.service_report_pdf as notify calls it: records the call and the context it carried."""

    def __init__(self, failures=0):
        self.failures, self.calls, self.worker = failures, [], None

    def service_report_pdf(self, ticket_id=None, locale="zh-CN", token=None):
        self.calls.append({"context": dict(self.worker.platform.worker_ctx.data), "ticket_id": ticket_id,
                           "pdf_locale": locale})
        if self.failures:
            self.failures -= 1
            raise RuntimeError("tickets is restarting")
        return {"filename": "WO000042.pdf", "content_type": "application/pdf",
                "content_base64": base64.b64encode(PDF).decode()}


def with_tickets(db, registry, tickets, ctx=None, method="on_notifiable_event"):
    worker = service(db, registry, ctx, method=method, tickets=tickets)
    tickets.worker = worker
    return worker


def inbox(db, tenant):
    with uow(db, context(tenant)) as u:
        return {str(m.user_id): (m.title, m.body, m.category, m.ref_type, str(m.ref_id))
                for m in u.session.query(InboxMessage)}


def deliveries(db, tenant):
    with uow(db, context(tenant)) as u:
        return sorted((d.channel, d.recipient, d.status) for d in u.session.query(Delivery))


def announcement(tenant, audience, author=None, **data):
    return envelope("announcement.published", tenant, **{
        "announcement_id": str(uuid.uuid4()), "title": "春节值班安排", "summary": "2月10日至17日每天两人值班，详见公告。",
        "audience": audience, "author_id": str(author) if author else None, **data})


def report_sent(tenant, channel, **data):
    return envelope("service_report.sent", tenant, **{
        "ticket_id": str(uuid.uuid4()), "number": "WO000042", "customer_id": str(uuid.uuid4()),
        "customer_name": "上海申能空调", "channel": channel, "contact_name": "王经理", "report_path": REPORT_PATH,
        "locale": "zh-CN", **data})


def test_an_announcement_reaches_its_audience_inbox(db, registry):
    tenant = uuid.uuid4()
    admin = add_user(db, registry, tenant, role="admin", name="管理员")
    tech = add_user(db, registry, tenant, role="technician", name="张工")
    keeper = add_user(db, registry, tenant, role="warehouse_manager", name="库管")
    dispatcher = add_user(db, registry, tenant, role="dispatcher", name="调度")
    team = uuid.uuid4()
    service(db, registry, method="on_team_updated").on_team_updated(envelope(
        "team.updated", tenant, team_id=str(team), name="一组", member_ids=[str(dispatcher)], manager_ids=[]))
    author = {"id": str(admin), "role": "admin"}

    everyone = announcement(tenant, "all", admin)
    service(db, registry).on_notifiable_event([{**everyone, "actor": author}])
    received = inbox(db, tenant)
    assert set(received) == {str(tech), str(keeper), str(dispatcher)}  # not the author who published it
    assert received[str(tech)] == ("【公告】春节值班安排", "2月10日至17日每天两人值班，详见公告。", "announcement",
                                   "announcement", everyone["data"]["announcement_id"])
    assert {d[0] for d in deliveries(db, tenant)} == {"in_app"}  # the default rule: the inbox only

    service(db, registry).on_notifiable_event([announcement(tenant, "roles", roles=["technician", "warehouse_manager"])])
    service(db, registry).on_notifiable_event([announcement(tenant, "teams", team_ids=[str(team)])])
    with uow(db, context(tenant)) as u:
        per_user = {}
        for m in u.session.query(InboxMessage):
            per_user[str(m.user_id)] = per_user.get(str(m.user_id), 0) + 1
    assert per_user == {str(tech): 2, str(keeper): 2, str(dispatcher): 2}


def test_a_tenant_rule_adds_channels_to_an_announcement_but_never_takes_the_inbox_away(db, registry, smtp_server):
    port, folder = smtp_server
    tenant = uuid.uuid4()
    admin = service(db, registry, context(tenant))
    admin.save_settings({"locale": "en"})
    admin.configure_provider("email", {"kind": "smtp", "settings": {
        "host": "127.0.0.1", "port": port, "from_address": "service@shenneng.example", "username": "mailer"},
        "secrets": {"password": "mail-pass"}})
    tech = add_user(db, registry, tenant, role="technician", email="zhang@shenneng.example")
    admin.save_rule("announcement.published", {"channels": ["in_app", "email"], "recipients": [{"kind": "audience"}]})
    service(db, registry).on_notifiable_event([announcement(tenant, "all", title="Spring duty", summary="Two on duty.")])
    assert inbox(db, tenant)[str(tech)][:2] == ("[Announcement] Spring duty", "Two on duty.")
    [mail] = [email.message_from_bytes(p.read_bytes(), policy=email_policy.default) for p in folder.glob("*.eml")]
    assert str(mail["Subject"]) == "[Announcement] Spring duty" and mail.get_content().strip() == "Two on duty."

    admin.save_rule("announcement.published", {"enabled": False, "channels": ["email"], "recipients": []})
    service(db, registry).on_notifiable_event([announcement(tenant, "all")])
    with uow(db, context(tenant)) as u:
        assert u.session.query(InboxMessage).count() == 2
        assert u.session.query(Delivery).filter_by(channel="email").count() == 1


def test_a_service_report_is_emailed_with_its_pdf_and_portal_link(db, registry, smtp_server):
    port, folder = smtp_server
    tenant = uuid.uuid4()
    admin = service(db, registry, context(tenant))
    admin.save_settings({"portal_url": PORTAL + "/"})
    admin.configure_provider("email", {"kind": "smtp", "settings": {
        "host": "127.0.0.1", "port": port, "from_address": "service@shenneng.example", "username": "mailer"},
        "secrets": {"password": "mail-pass"}})
    tickets = FakeTickets()
    event = report_sent(tenant, "email", recipient_email="Wang@Shenneng.example")
    with_tickets(db, registry, tickets).on_notifiable_event([event])

    [call] = tickets.calls
    assert (call["ticket_id"], call["pdf_locale"]) == (event["data"]["ticket_id"], "zh-CN")
    assert (call["context"]["tenant_id"], call["context"]["actor_role"]) == (str(tenant), "system")  # its tenant
    [eml] = folder.glob("*.eml")
    mail = email.message_from_bytes(eml.read_bytes(), policy=email_policy.default)
    assert mail["To"] == "Wang@shenneng.example" and str(mail["Subject"]) == "工单 WO000042 服务报告"
    body = mail.get_body(("plain",)).get_content()
    assert body.startswith("尊敬的王经理：") and PORTAL + REPORT_PATH in body
    [pdf] = list(mail.iter_attachments())
    assert (pdf.get_filename(), pdf.get_content_type(), pdf.get_content()) == ("WO000042.pdf", "application/pdf", PDF)
    assert deliveries(db, tenant) == [("email", "Wang@shenneng.example", "sent")]  # the customer has no inbox
    assert [e["type"] for e in outbox_events(db)] == ["notification.sent"]


def test_a_report_whose_pdf_cannot_be_fetched_retries_then_fails_then_an_admin_resends_it(db, registry,
                                                                                         smtp_server):
    port, folder = smtp_server
    tenant = uuid.uuid4()
    admin_ctx = context(tenant, role="admin")
    service(db, registry, admin_ctx).configure_provider("email", {"kind": "smtp", "settings": {
        "host": "127.0.0.1", "port": port, "from_address": "service@shenneng.example", "username": "mailer"},
        "secrets": {"password": "mail-pass"}})
    tickets = FakeTickets(failures=3)  # FAST policy: three attempts, all fail
    with_tickets(db, registry, tickets).on_notifiable_event([report_sent(tenant, "email", locale="en",
                                                                         recipient_email="wang@example.com")])
    assert len(tickets.calls) == 3 and list(folder.glob("*.eml")) == []
    [failed] = service(db, registry, admin_ctx).list_deliveries(status="failed")["items"]
    assert failed["attempts"] == 3 and "could not be fetched" in failed["error"]

    resent = with_tickets(db, registry, tickets, admin_ctx).resend_delivery(failed["id"])
    assert (resent["status"], resent["attempts"]) == ("sent", 4)
    assert tickets.calls[-1]["pdf_locale"] == "en" and tickets.calls[-1]["context"]["actor_role"] == "system"
    [eml] = folder.glob("*.eml")
    mail = email.message_from_bytes(eml.read_bytes(), policy=email_policy.default)
    assert str(mail["Subject"]) == "Service report of work order WO000042"
    assert [a.get_filename() for a in mail.iter_attachments()] == ["WO000042.pdf"]


def test_a_report_by_email_without_a_mail_server_is_a_failed_delivery_not_silence(db, registry):
    tenant = uuid.uuid4()
    tickets = FakeTickets()
    with_tickets(db, registry, tickets).on_notifiable_event([report_sent(tenant, "email",
                                                                         recipient_email="wang@example.com")])
    [failed] = service(db, registry, context(tenant)).list_deliveries(status="failed")["items"]
    assert failed["channel"] == "email" and failed["error"] == "no email provider configured"
    assert tickets.calls == []


def test_a_service_report_by_sms_texts_the_link(db, registry):
    tenant = uuid.uuid4()
    service(db, registry, context(tenant)).save_settings({"portal_url": PORTAL, "quiet_start": "00:00",
                                                         "quiet_end": "23:59"})
    service(db, registry).on_notifiable_event([report_sent(tenant, "sms", recipient_phone="13912345678")])
    [line] = sms_lines(registry)  # asked for by the desk: not held back by the tenant's quiet hours
    assert line["phone"] == "13912345678"
    assert line["text"] == f"【售后服务】尊敬的王经理，工单WO000042的服务报告已生成，请查看：{PORTAL}{REPORT_PATH}"
    assert deliveries(db, tenant) == [("sms", "13912345678", "sent")]


@pytest.mark.parametrize("backfilled", [False, True])
def test_back_filled_orders_send_no_customer_sms_and_no_dispatch_notice(db, registry, backfilled):
    tenant = uuid.uuid4()
    watcher = add_user(db, registry, tenant, role="dispatcher", phone=None)
    admin = service(db, registry, context(tenant))
    admin.set_list_members("pending_dispatch", {"user_ids": [str(watcher)]})
    admin.set_list_members("pending_settlement", {"user_ids": [str(watcher)]})
    consumer = service(db, registry)
    consumer.on_notifiable_event([envelope("ticket.created", tenant, ticket_id=str(uuid.uuid4()), number="WO000042",
                                           type="repair", customer_name="甲", backfilled=backfilled)])
    service(db, registry, method="on_ticket_completed").on_ticket_completed(
        [completed(tenant, dispatcher_id=str(watcher), backfilled=backfilled)])
    with uow(db, context(tenant)) as u:
        titles = sorted(m.title for m in u.session.query(InboxMessage))
    if backfilled:
        assert titles == ["工单已完成"]  # settlement still follows; nothing to dispatch
        assert sms_lines(registry) == []
        assert "sms" not in {d[0] for d in deliveries(db, tenant)}
    else:
        assert titles == ["工单已完成", "新工单待分配"]
        assert [line["phone"] for line in sms_lines(registry)] == ["13800138000"]

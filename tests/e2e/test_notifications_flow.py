"""Notifications end to end, through the gateway with every service running as a process:
a work order assigned → the technician's inbox, an SMS through Tencent Cloud SMS and a DingTalk
robot message (both local servers checking signatures as the providers do); mute and quiet
hours; a failing provider → retries → failed list → resend; configuration over the API; the
service desk's announcements, service reports e-mailed with their PDF (a real SMTP server process)
and back-filled orders that tell the customer nothing."""
import datetime as dt
import email
import importlib.util
import socket
import subprocess
import sys
import uuid
from email import policy as email_policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devstack.ephemeral import running_stack
from tests import servers
from tests.api import Api, eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("notify_fake_providers",
                                               ROOT / "services" / "notify" / "tests" / "fake_providers.py")
fakes = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fakes
_spec.loader.exec_module(fakes)

CUSTOMER = {"name": "上海申能大厦物业", "contacts": [{"name": "王经理", "phone": "13912345678"}],
            "addresses": [{"text": "上海市浦东新区世纪大道100号", "latitude": "31.235929", "longitude": "121.506058"}]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """This module's own stack: quick retries and a fast timer, so the test need not wait."""
    servers.require_postgres()
    servers.require_rabbitmq()
    env = {"NOTIFY_SEND_ATTEMPTS": "3", "NOTIFY_BACKOFF_SECONDS": "0.05", "NOTIFY_BACKOFF_MAX_SECONDS": "0.2",
           "NOTIFY_TIMER_SECONDS": "0.5"}
    with running_stack(tmp_path_factory.mktemp("notify-stack"), extra_env=env) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack):
    with Api(stack.gateway_url) as client:
        yield client


@pytest.fixture(scope="module")
def fake_sms():
    with fakes.FakeTencentSms("AKID-e2e", "tencent-secret-key") as server:
        yield server


@pytest.fixture(scope="module")
def fake_robot():
    with fakes.FakeDingTalk("ding-token", "SEC-e2e-secret") as server:
        yield server


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory):
    """notify's test SMTP server (aiosmtpd) as a process of its own: (port, folder of received .eml)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path_factory.mktemp("mail")
    proc = subprocess.Popen([sys.executable, str(ROOT / "services" / "notify" / "tests" / "smtp_server.py"),
                             str(port), str(folder), "mailer", "mail-pass"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def listening():
            assert proc.poll() is None, proc.stderr.read()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False
        eventually(listening)
        yield port, folder
    finally:
        proc.terminate()
        proc.wait(10)


def assigned_order(api, co, customer_id):
    order = api.ok("POST", "/work-orders", co["dispatcher"], json={"type": "repair", "customer_id": customer_id,
                                                                 "description": "空调不制冷"})

    def attempt():  # tickets learns technicians from user.created events
        r = api.request("POST", f"/work-orders/{order['id']}/assign", co["dispatcher"],
                        json={"technician_id": co["ids"]["tech"]})
        if r.status_code == 422 and "technician_id" in r.text:
            return None
        assert r.status_code == 200, r.text
        return r.json()
    eventually(attempt)
    return order


def deliveries(api, co, **query):
    params = "&".join(f"{k}={v}" for k, v in {"limit": 200, **query}.items())
    return api.ok("GET", f"/notification-deliveries?{params}", co["admin"])["items"]


def of_order(items, order, channel, event_type="ticket.assigned"):
    return [d for d in items if d["channel"] == channel and d["event_type"] == event_type
            and order["number"] in d["text"]]


def robot_posts(fake_robot, order, title="您有新的工单"):
    """The robot messages about this order's assignment (its creation is posted to the group too)."""
    return [r for r in fake_robot.requests if order["number"] in r["text"]["content"]
            and r["text"]["content"].startswith(title + "\n")]


def configure(api, co, fake_sms, fake_robot):
    admin = co["admin"]
    sms = api.ok("PUT", "/notification-providers/sms", admin, json={
        "kind": "tencent", "settings": {"secret_id": "AKID-e2e", "sdk_app_id": "1400123456", "sign_name": "申能售后",
                                        "endpoint": fake_sms.url + "/",
                                        "templates": {"ticket.assigned": {"code": "880001", "params": ["number", "customer_name"]},
                                                      "*": {"code": "880000", "params": ["text"]}}},
        "secrets": {"secret_key": "tencent-secret-key"}})
    assert sms["secrets"] == {"secret_key": "****-key"}
    api.ok("PUT", "/notification-providers/robot", admin, json={
        "kind": "dingtalk", "settings": {"endpoint": fake_robot.url + "/robot/send"},
        "secrets": {"access_token": "ding-token", "secret": "SEC-e2e-secret"}})
    listed = api.request("GET", "/notification-providers", admin)
    assert "tencent-secret-key" not in listed.text and "SEC-e2e-secret" not in listed.text and "ding-token" not in listed.text
    assert api.request("GET", "/notification-providers", co["dispatcher"]).status_code == 403
    rule = api.ok("PUT", "/notification-rules/ticket.assigned", admin, json={
        "channels": ["in_app", "sms", "robot"], "recipients": [{"kind": "assignee"}, {"kind": "collaborators"}]})
    assert rule["default"] is False


def test_assignment_reaches_inbox_sms_and_robot_then_mute_and_quiet_hours(api, stack, fake_sms, fake_robot):
    co = api.new_company()
    configure(api, co, fake_sms, fake_robot)
    tech = co["tech"]
    customer = api.ok("POST", "/customers", co["admin"], json=CUSTOMER)

    # 1. assigned → inbox, SMS (Tencent, signed), robot (DingTalk, signed)
    first = assigned_order(api, co, customer["id"])
    inbox = eventually(lambda: [m for m in api.ok("GET", "/notifications", tech)["items"]
                                if first["number"] in m["body"]])
    assert inbox[0]["title"] == "您有新的工单" and inbox[0]["ref_id"] == first["id"]
    sms = eventually(lambda: [r for r in fake_sms.requests if r["TemplateParamSet"][0] == first["number"]])
    assert sms[0]["PhoneNumberSet"] == ["+8613800000009"] and sms[0]["TemplateId"] == "880001"
    assert sms[0]["TemplateParamSet"] == [first["number"], CUSTOMER["name"]]
    eventually(lambda: robot_posts(fake_robot, first))
    eventually(lambda: robot_posts(fake_robot, first, title="新工单待分配"))  # default rule of ticket.created
    assert fake_sms.rejected == [] and fake_robot.rejected == []
    log = eventually(lambda: [d for d in of_order(deliveries(api, co), first, "sms") if d["status"] == "sent"])
    assert log[0]["provider"] == "tencent" and log[0]["attempts"] == 1 and log[0]["provider_message_id"]

    # inbox API: unread count, mark read, mark all read
    unread = api.ok("GET", "/notifications/unread-count", tech)["unread"]
    assert unread >= 1
    assert api.ok("POST", f"/notifications/{inbox[0]['id']}/read", tech)["read_at"] is not None
    assert api.ok("GET", "/notifications/unread-count", tech)["unread"] == unread - 1
    api.ok("POST", "/notifications/read-all", tech)
    assert api.ok("GET", "/notifications?unread_only=true", tech)["total"] == 0
    assert api.request("POST", f"/notifications/{inbox[0]['id']}/read", co["dispatcher"]).status_code == 404

    # 2. the technician mutes SMS: the next assignment reaches the inbox and the robot, not the phone
    assert api.ok("PUT", "/notification-preferences/me", tech, json={"muted_channels": ["sms"]})["muted_channels"] == ["sms"]
    second = assigned_order(api, co, customer["id"])
    eventually(lambda: [m for m in api.ok("GET", "/notifications", tech)["items"] if second["number"] in m["body"]])
    eventually(lambda: robot_posts(fake_robot, second))
    muted = eventually(lambda: of_order(deliveries(api, co), second, "sms"))
    assert muted[0]["status"] == "muted"
    assert not [r for r in fake_sms.requests if r["TemplateParamSet"][0] == second["number"]]

    # 3. quiet hours from this minute to the next: the SMS waits, then the timer sends it
    now = dt.datetime.now(ZoneInfo("Asia/Shanghai"))
    start, end = now.strftime("%H:%M"), (now + dt.timedelta(minutes=1)).strftime("%H:%M")
    api.ok("PUT", "/notification-preferences/me", tech, json={"muted_channels": [], "quiet_start": start,
                                                               "quiet_end": end})
    third = assigned_order(api, co, customer["id"])
    deferred = eventually(lambda: of_order(deliveries(api, co), third, "sms"))
    if deferred[0]["status"] == "deferred":  # (unless the minute turned over in between)
        assert deferred[0]["send_after"] is not None
        assert not [r for r in fake_sms.requests if r["TemplateParamSet"][0] == third["number"]]
    eventually(lambda: [r for r in fake_sms.requests if r["TemplateParamSet"][0] == third["number"]], timeout=90)
    eventually(lambda: of_order(deliveries(api, co, status="sent"), third, "sms"))


def test_failing_provider_retries_then_failed_list_then_resend(api, stack, fake_sms, fake_robot):
    co = api.new_company()
    configure(api, co, fake_sms, fake_robot)
    customer = api.ok("POST", "/customers", co["admin"], json=CUSTOMER)
    fake_robot.fail_always = True  # DingTalk answers 130101 "send too fast" to everything
    try:
        order = assigned_order(api, co, customer["id"])
        failed = eventually(lambda: of_order(deliveries(api, co, status="failed", channel="robot"), order, "robot"))
    finally:
        fake_robot.fail_always = False
    assert failed[0]["attempts"] == 3 and "130101" in failed[0]["error"]
    assert api.request("POST", f"/notification-deliveries/{failed[0]['id']}/resend", co["dispatcher"]).status_code == 403
    resent = api.ok("POST", f"/notification-deliveries/{failed[0]['id']}/resend", co["admin"])
    assert (resent["status"], resent["attempts"], resent["error"]) == ("sent", 4, None)
    assert robot_posts(fake_robot, order)
    # the SMS of the same event was not affected
    assert of_order(deliveries(api, co, status="sent"), order, "sms")


def test_configuration_is_validated_over_http(api):
    co = api.new_company()
    admin = co["admin"]
    r = api.request("PUT", "/notification-templates/ticket.assigned/sms/zh-CN", admin,
                    json={"parts": {"text": "{{ number }} {{ password }}"}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "parts.text"
    r = api.request("PUT", "/notification-templates/ticket.assigned/sms/zh-CN", admin, json={"parts": {"text": "{% for %}"}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "parts.text"
    saved = api.ok("PUT", "/notification-templates/ticket.assigned/sms/zh-CN", admin,
                   json={"parts": {"text": "【申能】新工单{{ number }}"}})
    assert saved["custom"] is True
    r = api.request("PUT", "/notification-rules/ticket.assigned", admin, json={"channels": ["pigeon"], "recipients": []})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "channels.0"
    r = api.request("PUT", "/notification-settings", admin, json={"timezone": "Mars/Olympus"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "timezone"
    rules = api.ok("GET", "/notification-rules", admin)["items"]
    assert {"ticket.assigned", "ticket.overdue", "stock.low", "equipment.maintenance_due",
            "customer.change_requested", "requisition.requested"} <= {r["event_type"] for r in rules}
    assert api.request("PUT", "/notification-providers/sms", co["tech"],
                       json={"kind": "file"}).status_code == 403
    lists = api.ok("POST", "/notification-lists/pool/subscribe", co["tech"])
    assert lists["subscribed"] is True and lists["user_ids"] == [co["ids"]["tech"]]
    assert api.request("POST", f"/notification-deliveries/{uuid.uuid4()}/resend", admin).status_code == 404


def test_demo_notification_settings_seed_once(api, stack):
    from devstack import demo, demo_notify
    demo.seed(stack.gateway_url)
    assert demo_notify.seed(stack.gateway_url) is True
    assert demo_notify.seed(stack.gateway_url) is False  # safe to run twice
    token = api.ok("POST", "/auth/login", json={"tenant": demo.DEMO_TENANT, "username": "dispatcher",
                                                "password": demo.DEMO_PASSWORD})["access_token"]
    lists = {item["name"]: item for item in api.ok("GET", "/notification-lists", token)["items"]}
    assert lists["pending_dispatch"]["subscribed"] is True


def mails_to(folder, address):
    found = [email.message_from_bytes(p.read_bytes(), policy=email_policy.default) for p in sorted(folder.glob("*.eml"))]
    return [m for m in found if m["To"] == address]


def test_desk_events_announcements_reports_by_email_and_back_filled_orders(api, stack, smtp_server):
    port, folder = smtp_server
    co = api.new_company()
    admin, dispatcher, tech = co["admin"], co["dispatcher"], co["tech"]
    api.ok("PUT", "/notification-providers/email", admin, json={"kind": "smtp", "settings": {
        "host": "127.0.0.1", "port": port, "from_address": "service@shenneng.example", "from_name": "申能售后",
        "username": "mailer"}, "secrets": {"password": "mail-pass"}})
    api.ok("PUT", "/notification-settings", admin, json={"portal_url": "https://portal.shenneng.example"})

    # 1. an announcement to the technicians: in their inbox, not the warehouse manager's
    notice = api.ok("POST", "/announcements", admin, json={"title": "春节值班安排", "body": "2月10日至17日每天两人值班。",
                                                           "audience": "roles", "roles": ["technician"]})
    received = eventually(lambda: [m for m in api.ok("GET", "/notifications", tech)["items"]
                                   if m["ref_id"] == notice["id"]])
    assert (received[0]["title"], received[0]["category"]) == ("【公告】春节值班安排", "announcement")
    assert received[0]["body"].startswith("2月10日至17日每天两人值班")
    assert not [m for m in api.ok("GET", "/notifications", co["keeper"])["items"] if m["ref_id"] == notice["id"]]

    # 2. a completed order's service report, e-mailed with the PDF from tickets and the portal link
    customer = api.ok("POST", "/customers", admin, json=CUSTOMER)
    order = assigned_order(api, co, customer["id"])
    api.ok("POST", f"/work-orders/{order['id']}/accept", tech)
    api.ok("POST", f"/work-orders/{order['id']}/check-in", tech, json={"latitude": "31.2360", "longitude": "121.5061"})
    api.ok("POST", f"/work-orders/{order['id']}/complete", tech, json={"summary": "更换启动电容，试机正常"})
    sent = api.ok("POST", f"/work-orders/{order['id']}/service-report/send", dispatcher,
                  json={"channel": "email", "to": "wang@shenneng.example"})
    [mail] = eventually(lambda: mails_to(folder, "wang@shenneng.example"), timeout=30)
    assert str(mail["Subject"]) == f"工单 {order['number']} 服务报告"
    assert "https://portal.shenneng.example" + sent["report_path"] in mail.get_body(("plain",)).get_content()
    [pdf] = list(mail.iter_attachments())
    assert pdf.get_filename() == f"{order['number']}.pdf" and pdf.get_content().startswith(b"%PDF")
    delivery = eventually(lambda: [d for d in deliveries(api, co, event_type="service_report.sent")
                                   if d["status"] == "sent"])
    assert delivery[0]["recipient"] == "wang@shenneng.example" and delivery[0]["provider"] == "smtp"

    # 3. a back-filled record (补录), verified: the office hears of the completion, the customer nothing
    api.ok("POST", "/notification-lists/pending_settlement/subscribe", admin)
    record = eventually(lambda: _submitted(api, tech, {
        "ticket_type": "repair", "customer_id": customer["id"], "done_at": "2026-11-01T10:00:00+08:00",
        "summary": "电话指导复位"}))
    api.ok("POST", f"/service-records/{record['id']}/verify", dispatcher)
    eventually(lambda: [m for m in api.ok("GET", "/notifications", admin)["items"]
                        if m["ref_id"] == record["ticket_id"] and m["event_type"] == "ticket.completed"])
    about_it = [d for d in deliveries(api, co) if record["ticket_number"] in d["text"]]
    assert {d["channel"] for d in about_it} == {"in_app"}  # no SMS to the contact, no dispatch robot post


def _submitted(api, tech, body):
    """tickets learns the technician from user.created: None until it has."""
    r = api.request("POST", "/service-records", tech, json=body)
    if r.status_code == 422 and "technician_id" in r.text:
        return None
    assert r.status_code == 201, r.text
    return r.json()

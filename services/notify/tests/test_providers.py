"""Every provider's real code against a local server that checks it as the provider would:
Aliyun and Tencent SMS signatures, WeCom / DingTalk / Feishu robots, SMTP (a real aiosmtpd
process). Also the sender's retry policy on their transient errors."""
import email
import json
import socket
import uuid
from email import policy as email_policy

import pytest
from conftest import FAST, add_user, completed, envelope, service
from fake_providers import FakeAliyunSms, FakeDingTalk, FakeFeishu, FakeTencentSms, FakeWeCom

from notify import handlers
from notify.providers import AliyunSms, OutgoingMessage, ProviderError, Registry
from svc_common.testing import context

SMS = OutgoingMessage(channel="sms", recipient="13800138000", event_type="ticket.assigned", subject=None,
                      text="【售后服务】您有新工单WO1，请及时接单。", variables={"number": "WO1", "customer_name": "申能 & 合作*方~"})
ROBOT = OutgoingMessage(channel="robot", recipient="robot", event_type="ticket.created", subject="新工单待分配",
                        text="工单 WO1（申能）已创建，等待派单。")


def build(kind, channel, settings, secrets):
    return Registry().build(channel, kind, settings, secrets)


def test_aliyun_signature_matches_the_documented_example():
    """The worked example of Alibaba Cloud's RPC signature documentation (DescribeRegions, AccessKey
    secret "testsecret", GET) — checks the encoding and the string to sign byte for byte."""
    params = {"AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML", "SignatureMethod": "HMAC-SHA1",
              "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf", "SignatureVersion": "1.0",
              "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26"}
    assert AliyunSms.sign(params, "testsecret", method="GET") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    assert AliyunSms.percent_encode("a b*c~d/é") == "a%20b%2Ac~d%2F%C3%A9"


def test_aliyun_sms_is_signed_and_accepted():
    with FakeAliyunSms("LTAI-test", "aliyun-secret") as server:
        provider = build("aliyun", "sms", {"access_key_id": "LTAI-test", "sign_name": "申能售后", "endpoint": server.url,
                                           "templates": {"ticket.assigned": {"code": "SMS_1001", "params": ["number", "customer_name"]}}},
                         {"access_key_secret": "aliyun-secret"})
        sent = provider.send(SMS)
        [request] = server.requests
        assert sent.message_id == "biz-1"
        assert (request["PhoneNumbers"], request["SignName"], request["TemplateCode"]) == ("13800138000", "申能售后", "SMS_1001")
        assert json.loads(request["TemplateParam"]) == {"number": "WO1", "customer_name": "申能 & 合作*方~"}

        wrong = build("aliyun", "sms", {**provider.settings}, {"access_key_secret": "not-the-secret"})
        with pytest.raises(ProviderError) as err:
            wrong.send(SMS)
        assert "SignatureDoesNotMatch" in str(err.value) and not err.value.transient
        assert "not-the-secret" not in str(err.value) and "not-the-secret" not in (err.value.response or "")

        server.fail_next = 1
        with pytest.raises(ProviderError) as err:
            provider.send(SMS)
        assert err.value.transient  # isv.BUSINESS_LIMIT_CONTROL: throttled, try later

        no_template = build("aliyun", "sms", {**provider.settings, "templates": {"stock.low": {"code": "SMS_2"}}},
                            provider.secrets)
        with pytest.raises(ProviderError, match="no SMS template code") as err:
            no_template.send(SMS)
        assert not err.value.transient


def test_tencent_sms_is_signed_and_accepted():
    with FakeTencentSms("AKID-test", "tencent-key") as server:
        provider = build("tencent", "sms", {"secret_id": "AKID-test", "sdk_app_id": "1400006666", "sign_name": "申能售后",
                                            "endpoint": server.url + "/",
                                            "templates": {"*": {"code": "449739", "params": ["number"]}}},
                         {"secret_key": "tencent-key"})
        sent = provider.send(SMS)
        [request] = server.requests
        assert sent.message_id == "serial-1"
        assert request == {"PhoneNumberSet": ["+8613800138000"], "SmsSdkAppId": "1400006666", "SignName": "申能售后",
                           "TemplateId": "449739", "TemplateParamSet": ["WO1"]}
        with pytest.raises(ProviderError) as err:
            build("tencent", "sms", provider.settings, {"secret_key": "wrong"}).send(SMS)
        assert "AuthFailure.SignatureFailure" in str(err.value) and not err.value.transient
        server.fail_next = 1
        with pytest.raises(ProviderError) as err:
            provider.send(SMS)
        assert err.value.transient


def test_wecom_robot():
    with FakeWeCom("wecom-key") as server:
        provider = build("wecom", "robot", {"endpoint": server.url + "/cgi-bin/webhook/send"}, {"key": "wecom-key"})
        provider.send(ROBOT)
        assert server.requests == [{"msgtype": "text", "text": {"content": "新工单待分配\n工单 WO1（申能）已创建，等待派单。"}}]
        with pytest.raises(ProviderError) as err:
            build("wecom", "robot", provider.settings, {"key": "other"}).send(ROBOT)
        assert "93000" in str(err.value) and not err.value.transient


def test_dingtalk_robot_signs_the_timestamp():
    with FakeDingTalk("ding-token", "SEC-ding-secret") as server:
        provider = build("dingtalk", "robot", {"endpoint": server.url + "/robot/send"},
                         {"access_token": "ding-token", "secret": "SEC-ding-secret"})
        provider.send(ROBOT)
        assert server.requests[0]["text"]["content"].startswith("新工单待分配")
        with pytest.raises(ProviderError) as err:
            build("dingtalk", "robot", provider.settings, {"access_token": "ding-token", "secret": "SEC-wrong"}).send(ROBOT)
        assert "310000" in str(err.value) and not err.value.transient
        server.fail_next = 1
        with pytest.raises(ProviderError) as err:
            provider.send(ROBOT)
        assert err.value.transient  # 130101 send too fast


def test_feishu_robot_signs_the_timestamp():
    with FakeFeishu("hook-123", "feishu-secret") as server:
        provider = build("feishu", "robot", {"endpoint": server.url + "/open-apis/bot/v2/hook/"},
                         {"hook_id": "hook-123", "secret": "feishu-secret"})
        provider.send(ROBOT)
        assert server.requests[0]["msg_type"] == "text"
        assert server.requests[0]["content"] == {"text": "新工单待分配\n工单 WO1（申能）已创建，等待派单。"}
        with pytest.raises(ProviderError) as err:
            build("feishu", "robot", provider.settings, {"hook_id": "hook-123", "secret": "nope"}).send(ROBOT)
        assert "19021" in str(err.value)


def test_unreachable_provider_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = build("wecom", "robot", {"endpoint": f"http://127.0.0.1:{port}/send"}, {"key": "k"})
    with pytest.raises(ProviderError) as err:
        provider.send(ROBOT)
    assert err.value.transient


def test_event_to_tencent_sms_and_dingtalk_robot_with_retries(db, tmp_path):
    """Through the service: a tenant's real providers, a transient error retried, the log filled in."""
    tenant = uuid.uuid4()
    registry = Registry(sms_log_path=str(tmp_path / "sms.log"))
    admin = service(db, registry, context(tenant))
    tech = add_user(db, registry, tenant, phone="13900000001")
    with FakeTencentSms("AKID", "key") as sms, FakeDingTalk("tok", "SEC") as robot:
        admin.configure_provider("sms", {"kind": "tencent", "settings": {
            "secret_id": "AKID", "sdk_app_id": "1400", "sign_name": "申能", "endpoint": sms.url,
            "templates": {"ticket.assigned": {"code": "777", "params": ["number", "customer_name"]}}},
            "secrets": {"secret_key": "key"}})
        admin.configure_provider("robot", {"kind": "dingtalk", "settings": {"endpoint": robot.url + "/robot/send"},
                                           "secrets": {"access_token": "tok", "secret": "SEC"}})
        admin.save_rule("ticket.assigned", {"channels": ["in_app", "sms", "robot"], "recipients": [{"kind": "assignee"}]})
        sms.fail_next = 2  # two transient errors, then success (FAST policy allows 3 attempts)
        service(db, registry).on_notifiable_event([envelope(
            "ticket.assigned", tenant, ticket_id=str(uuid.uuid4()), number="WO5", customer_name="申能",
            technician_id=str(tech))])
        assert sms.requests[0]["TemplateParamSet"] == ["WO5", "申能"]
        assert robot.requests[0]["text"]["content"] == "您有新的工单\n工单 WO5（申能）已派给您，请及时接单。"
    log = {d["channel"]: d for d in admin.list_deliveries()["items"]}
    assert (log["sms"]["status"], log["sms"]["attempts"], log["sms"]["provider"]) == ("sent", 3, "tencent")
    assert (log["robot"]["status"], log["robot"]["recipient"]) == ("sent", "dingtalk")
    assert log["in_app"]["status"] == "sent"
    assert FAST.attempts == 3


def test_email_over_smtp_to_a_real_server(db, tmp_path, smtp_server):
    port, folder = smtp_server
    settings = {"host": "127.0.0.1", "port": port, "from_address": "service@shenneng.example", "from_name": "申能售后",
                "username": "mailer", "security": "none"}
    provider = build("smtp", "email", settings, {"password": "mail-pass"})
    message = OutgoingMessage(channel="email", recipient="keeper@example.com", event_type="stock.low",
                              subject="备件库存不足", text="备件 P-1 启动电容 库存 1，低于下限 5。")
    assert provider.send(message).message_id
    [eml] = sorted(folder.glob("*.eml"))
    mail = email.message_from_bytes(eml.read_bytes(), policy=email_policy.default)
    assert (mail["To"], str(mail["Subject"])) == ("keeper@example.com", "备件库存不足")
    assert "申能售后" in str(mail["From"]) and mail.get_content().strip() == "备件 P-1 启动电容 库存 1，低于下限 5。"

    with pytest.raises(ProviderError) as err:
        build("smtp", "email", settings, {"password": "wrong"}).send(message)
    assert "535" in str(err.value) and not err.value.transient
    refused = OutgoingMessage(**{**message.__dict__, "recipient": "nobody@refused.example"})
    with pytest.raises(ProviderError) as err:
        provider.send(refused)
    assert not err.value.transient

    # through the service: stock.low → the keeper's inbox and email (default rule), from the user replica
    tenant = uuid.uuid4()
    registry = Registry(sms_log_path=str(tmp_path / "sms.log"))
    keeper = add_user(db, registry, tenant, role="warehouse_manager", email="Keeper@Example.com", phone=None)
    service(db, registry, context(tenant)).configure_provider("email", {"kind": "smtp", "settings": settings,
                                                                        "secrets": {"password": "mail-pass"}})
    service(db, registry).on_notifiable_event([envelope(
        "stock.low", tenant, part_id=str(uuid.uuid4()), part_code="P-9", part_name="压缩机", location_id=str(uuid.uuid4()),
        quantity="1", minimum="3", manager_ids=[str(keeper)])])
    log = {d["channel"]: d for d in service(db, registry, context(tenant)).list_deliveries()["items"]}
    assert (log["email"]["status"], log["email"]["recipient"]) == ("sent", "Keeper@example.com")
    mails = [email.message_from_bytes(p.read_bytes(), policy=email_policy.default) for p in sorted(folder.glob("*.eml"))]
    assert str(mails[-1]["Subject"]) == "备件库存不足" and "P-9 压缩机" in mails[-1].get_content()


def test_send_with_retries_backs_off_between_transient_attempts():
    waits = []

    class Failing:
        def send(self, message):
            raise ProviderError("HTTP 503", transient=True)

    registry = Registry(extra={("sms", "failing"): lambda settings, secrets: Failing()})
    job = handlers.Job(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), None, "failing", SMS, kind="failing")
    sent, error, attempts = handlers.send_with_retries(
        registry, job, handlers.SendPolicy(attempts=4, backoff_seconds=1, backoff_max_seconds=8), sleep=waits.append)
    assert sent is None and attempts == 4 and str(error) == "HTTP 503"
    # exponential with full jitter: the n-th wait is within [0, min(8, 2**n)]
    assert len(waits) == 3 and all(0 <= w <= min(8, 2 ** (i + 1)) for i, w in enumerate(waits))


def test_completion_still_goes_to_the_file_provider_without_config(db, registry):
    tenant = uuid.uuid4()
    service(db, registry).on_notifiable_event([completed(tenant)])
    [sms] = service(db, registry, context(tenant)).list_deliveries(channel="sms")["items"]
    assert sms["provider"] == "file" and sms["status"] == "sent"

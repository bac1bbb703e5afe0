"""Provider plug-ins: one class per (channel, kind), built per send from the tenant's config.

Each provider turns an `OutgoingMessage` into the provider's real request and raises
`ProviderError` (transient or not) when the provider refuses or cannot be reached, so the
sender retries only what may succeed later. Secrets never appear in errors or logs.
Endpoints are settings so a private endpoint (or a test server) can stand in for the public one.
"""
import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

import urllib3

from .sms import FileSmsProvider

HTTP_TIMEOUT = urllib3.Timeout(connect=5.0, read=10.0)
# urllib3 logs every request URL at DEBUG, and robot webhooks carry their key or token in the
# query string: keep those out of the logs.
logging.getLogger("urllib3").setLevel(logging.WARNING)


@dataclass
class Attachment:
    filename: str
    content_type: str  # e.g. application/pdf
    content: bytes


@dataclass
class OutgoingMessage:
    channel: str
    recipient: str  # phone, email address, or the robot's kind
    event_type: str
    subject: str | None
    text: str
    variables: dict = field(default_factory=dict)
    # What to attach, as sources to fetch at send time (e.g. {"source": "service_report", ...}), and the
    # fetched files: a failed fetch is a failed attempt of the send, retried like one.
    attachments: list[dict] = field(default_factory=list)
    files: list[Attachment] = field(default_factory=list)


class ProviderError(Exception):
    """The provider did not take the message. `transient`: worth retrying (network, 5xx, throttling)."""

    def __init__(self, message: str, transient: bool, response: str | None = None):
        super().__init__(message)
        self.transient = transient
        self.response = response


@dataclass
class Sent:
    message_id: str | None
    response: str | None = None


class Provider:
    channel = ""
    kind = ""
    secret_fields: tuple[str, ...] = ()
    required_secrets: tuple[str, ...] = ()  # e.g. a robot's signing secret is optional (加签 off)
    required_settings: tuple[str, ...] = ()

    def __init__(self, settings: dict, secrets: dict):
        self.settings = settings
        self.secrets = secrets

    def send(self, message: OutgoingMessage) -> Sent:
        raise NotImplementedError


@dataclass
class HttpAnswer:
    status_code: int
    text: str

    def json(self):
        return json.loads(self.text)


_pool: urllib3.PoolManager | None = None


def http() -> urllib3.PoolManager:
    """One pool per process: kept-alive connections, and the TLS context built once per host
    (building it loads the CA bundle, far dearer than a request). urllib3 rather than httpx: under
    eventlet it takes about half the CPU per request (0.8 ms against 1.4 ms, bench/notify_fanout.py's
    robot), and every robot message and cloud SMS is a request. No retries here: the sender retries
    what is transient (handlers.send_with_retries)."""
    global _pool
    if _pool is None:
        _pool = urllib3.PoolManager(maxsize=50, retries=False, timeout=HTTP_TIMEOUT)
    return _pool


def _post(url: str, body: bytes, content_type: str, headers: dict | None = None,
          provider: str = "the provider") -> HttpAnswer:
    try:
        response = http().request("POST", url, body=body, headers={"Content-Type": content_type, **(headers or {})})
    except urllib3.exceptions.HTTPError as exc:
        raise ProviderError(f"{type(exc).__name__}: cannot reach {provider}", transient=True) from None
    return HttpAnswer(response.status, response.data.decode("utf-8", errors="replace"))


def _post_json(url: str, body: dict | bytes, headers: dict | None = None) -> HttpAnswer:
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    response = _post(url, content, "application/json; charset=utf-8", headers)
    if response.status_code >= 500 or response.status_code == 429:
        raise ProviderError(f"HTTP {response.status_code}", transient=True, response=response.text[:2000])
    return response


def _json_of(response: HttpAnswer) -> dict:
    try:
        return response.json()
    except ValueError:
        raise ProviderError(f"HTTP {response.status_code}: not JSON", transient=False,
                            response=response.text[:2000]) from None


# -- SMS ------------------------------------------------------------------------------------

class FileSms(Provider):
    """Development provider: one JSON line per message in a file (SMS_LOG_PATH), nothing sent."""
    channel, kind = "sms", "file"

    def __init__(self, settings: dict, secrets: dict, path: str = "data/sms.log"):
        super().__init__(settings, secrets)
        self.file = FileSmsProvider(path)

    def send(self, message: OutgoingMessage) -> Sent:
        return Sent(self.file.send(message.recipient, message.text))


def sms_template(settings: dict, message: OutgoingMessage) -> tuple[str, list[tuple[str, str]]]:
    """(template code, [(param name, value)]) for template-based SMS providers.

    Aliyun and Tencent send an approved template (code) with parameters, not free text. The
    tenant maps each event type (or "*" for any) to {code, params: [variable names]}; the
    variable "text" is the message rendered from notify's own template.
    """
    mapping = (settings.get("templates") or {})
    entry = mapping.get(message.event_type) or mapping.get("*")
    if not entry:
        raise ProviderError(f"no SMS template code configured for {message.event_type}", transient=False)
    values = {**message.variables, "text": message.text}
    params = [(name, "" if values.get(name) is None else str(values.get(name))) for name in entry.get("params", [])]
    return entry["code"], params


class AliyunSms(Provider):
    """Aliyun SMS (Dysmsapi 2017-05-25, SendSms) with the RPC-style signature, HMAC-SHA1.

    Signature per https://help.aliyun.com/document_detail/28839.html (签名机制, RPC API):
    sort every parameter except Signature by name; percent-encode names and values with UTF-8
    (unreserved A-Z a-z 0-9 - _ . ~ kept; space → %20, * → %2A, %7E → ~); join name=value with &;
    StringToSign = METHOD & percentEncode("/") & percentEncode(canonicalized query);
    Signature = Base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign)).
    SendSms: https://help.aliyun.com/document_detail/419273.html (PhoneNumbers, SignName,
    TemplateCode, TemplateParam JSON; answer {"Code": "OK", "BizId", "RequestId"}).
    """
    channel, kind = "sms", "aliyun"
    secret_fields = ("access_key_secret",)
    required_secrets = ("access_key_secret",)
    required_settings = ("access_key_id", "sign_name", "templates")
    ENDPOINT = "https://dysmsapi.aliyuncs.com/"
    # Throttling and server-side trouble are worth a retry; anything else (bad template, bad
    # signature, unapproved sign name, invalid number) will fail the same way again.
    TRANSIENT = ("isv.BUSINESS_LIMIT_CONTROL", "Throttling", "ServiceUnavailable", "InternalError",
                 "isp.SYSTEM_ERROR", "isp.RAM_PERMISSION_DENY_TEMP")

    @staticmethod
    def percent_encode(value: str) -> str:
        return urllib.parse.quote(value, safe="~", encoding="utf-8")

    @classmethod
    def sign(cls, params: dict[str, str], secret: str, method: str = "POST") -> str:
        canonical = "&".join(f"{cls.percent_encode(k)}={cls.percent_encode(v)}" for k, v in sorted(params.items()))
        string_to_sign = f"{method}&{cls.percent_encode('/')}&{cls.percent_encode(canonical)}"
        digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def request_params(self, message: OutgoingMessage, now: dt.datetime | None = None,
                       nonce: str | None = None) -> dict[str, str]:
        code, params = sms_template(self.settings, message)
        now = now or dt.datetime.now(dt.timezone.utc)
        query = {
            "AccessKeyId": self.settings["access_key_id"],
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": self.settings.get("region", "cn-hangzhou"),
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": nonce or uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
            "PhoneNumbers": message.recipient,
            "SignName": self.settings["sign_name"],
            "TemplateCode": code,
            "TemplateParam": json.dumps(dict(params), ensure_ascii=False, separators=(",", ":")),
        }
        query["Signature"] = self.sign(query, self.secrets["access_key_secret"])
        return query

    def send(self, message: OutgoingMessage) -> Sent:
        params = self.request_params(message)
        # POST with the parameters form-encoded in the body, as the SDKs do.
        body = "&".join(f"{self.percent_encode(k)}={self.percent_encode(v)}" for k, v in params.items())
        response = _post(self.settings.get("endpoint") or self.ENDPOINT, body.encode(),
                         "application/x-www-form-urlencoded", provider="Aliyun SMS")
        if response.status_code >= 500:
            raise ProviderError(f"HTTP {response.status_code}", transient=True, response=response.text[:2000])
        answer = _json_of(response)
        if answer.get("Code") != "OK":
            code = str(answer.get("Code"))
            raise ProviderError(f"Aliyun {code}: {answer.get('Message')}",
                                transient=code.startswith(self.TRANSIENT), response=response.text[:2000])
        return Sent(answer.get("BizId"), response.text[:2000])


class TencentSms(Provider):
    """Tencent Cloud SMS (SendSms, version 2021-01-11) signed with TC3-HMAC-SHA256.

    Signature v3 per https://cloud.tencent.com/document/api/382/52072 (签名方法 v3):
    CanonicalRequest = POST \\n / \\n (empty query) \\n "content-type:...\\nhost:...\\n" \\n
    "content-type;host" \\n hex(SHA256(payload)); CredentialScope = date/sms/tc3_request;
    StringToSign = "TC3-HMAC-SHA256\\n" + timestamp + "\\n" + scope + "\\n" + hex(SHA256(CanonicalRequest));
    key chain HMAC("TC3"+SecretKey, date) → "sms" → "tc3_request"; Signature = hex(HMAC(key, StringToSign)).
    SendSms: https://cloud.tencent.com/document/api/382/55981 (PhoneNumberSet in E.164, SmsSdkAppId,
    SignName, TemplateId, TemplateParamSet; per-number SendStatusSet[].Code == "Ok").
    """
    channel, kind = "sms", "tencent"
    secret_fields = ("secret_key",)
    required_secrets = ("secret_key",)
    required_settings = ("secret_id", "sdk_app_id", "sign_name", "templates")
    ENDPOINT = "https://sms.tencentcloudapi.com/"
    ACTION, VERSION, SERVICE = "SendSms", "2021-01-11", "sms"
    CONTENT_TYPE = "application/json; charset=utf-8"
    TRANSIENT = ("InternalError", "RequestLimitExceeded", "ResourceUnavailable")

    @classmethod
    def authorization(cls, secret_id: str, secret_key: str, host: str, payload: bytes, timestamp: int) -> str:
        date = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d")
        canonical_request = "\n".join([
            "POST", "/", "", f"content-type:{cls.CONTENT_TYPE}\nhost:{host}\n", "content-type;host",
            hashlib.sha256(payload).hexdigest()])
        scope = f"{date}/{cls.SERVICE}/tc3_request"
        string_to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope,
                                    hashlib.sha256(canonical_request.encode()).hexdigest()])

        def _hmac(key: bytes, msg: str) -> bytes:
            return hmac.new(key, msg.encode(), hashlib.sha256).digest()

        signing_key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode(), date), cls.SERVICE), "tc3_request")
        signature = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        return (f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders=content-type;host, "
                f"Signature={signature}")

    @staticmethod
    def e164(phone: str) -> str:
        return phone if phone.startswith("+") else f"+86{phone}"

    def send(self, message: OutgoingMessage) -> Sent:
        code, params = sms_template(self.settings, message)
        payload = json.dumps({
            "PhoneNumberSet": [self.e164(message.recipient)],
            "SmsSdkAppId": self.settings["sdk_app_id"],
            "SignName": self.settings["sign_name"],
            "TemplateId": code,
            "TemplateParamSet": [value for _, value in params],
        }, ensure_ascii=False, separators=(",", ":")).encode()
        url = self.settings.get("endpoint") or self.ENDPOINT
        host = urllib.parse.urlsplit(url).netloc
        timestamp = int(time.time())
        headers = {
            "Authorization": self.authorization(self.settings["secret_id"], self.secrets["secret_key"], host,
                                                payload, timestamp),
            "Content-Type": self.CONTENT_TYPE, "Host": host,
            "X-TC-Action": self.ACTION, "X-TC-Version": self.VERSION, "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self.settings.get("region", "ap-guangzhou"),
        }
        answer = _json_of(_post_json(url, payload, headers)).get("Response", {})
        if "Error" in answer:
            code = str(answer["Error"].get("Code"))
            raise ProviderError(f"Tencent {code}: {answer['Error'].get('Message')}",
                                transient=code.startswith(self.TRANSIENT), response=json.dumps(answer)[:2000])
        statuses = answer.get("SendStatusSet") or [{}]
        if statuses[0].get("Code") != "Ok":
            code = str(statuses[0].get("Code"))
            raise ProviderError(f"Tencent {code}: {statuses[0].get('Message')}",
                                transient=code.startswith(self.TRANSIENT), response=json.dumps(answer)[:2000])
        return Sent(statuses[0].get("SerialNo"), json.dumps(answer, ensure_ascii=False)[:2000])


# -- chat robots ----------------------------------------------------------------------------

def robot_text(message: OutgoingMessage) -> str:
    return f"{message.subject}\n{message.text}" if message.subject else message.text


class WeComRobot(Provider):
    """WeCom (企业微信) group robot: POST {"msgtype": "text", "text": {"content"}} to the webhook
    with ?key=...; answer {"errcode": 0}. https://developer.work.weixin.qq.com/document/path/91770
    The key in the webhook URL is the secret (whoever has it can post)."""
    channel, kind = "robot", "wecom"
    secret_fields = ("key",)
    required_secrets = ("key",)
    ENDPOINT = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    TRANSIENT_CODES = (-1, 45009, 45033)  # system busy, frequency limits

    def send(self, message: OutgoingMessage) -> Sent:
        url = f"{self.settings.get('endpoint') or self.ENDPOINT}?key={urllib.parse.quote(self.secrets['key'])}"
        answer = _json_of(_post_json(url, {"msgtype": "text", "text": {"content": robot_text(message)}}))
        if answer.get("errcode") != 0:
            raise ProviderError(f"WeCom {answer.get('errcode')}: {answer.get('errmsg')}",
                                transient=answer.get("errcode") in self.TRANSIENT_CODES, response=json.dumps(answer))
        return Sent(None, json.dumps(answer))


class DingTalkRobot(Provider):
    """DingTalk custom robot with the 加签 security setting.

    https://open.dingtalk.com/document/robots/customize-robot-security-settings :
    timestamp in ms; string_to_sign = timestamp + "\\n" + secret; sign = urlencode(base64(
    HMAC-SHA256(key=secret, msg=string_to_sign))); POST to
    .../robot/send?access_token=...&timestamp=...&sign=... with {"msgtype": "text", "text": {"content"}}.
    Answer {"errcode": 0, "errmsg": "ok"}; 130101 = sending too fast (retry later)."""
    channel, kind = "robot", "dingtalk"
    secret_fields = ("access_token", "secret")
    required_secrets = ("access_token",)
    ENDPOINT = "https://oapi.dingtalk.com/robot/send"
    TRANSIENT_CODES = (-1, 130101, 130102)

    @staticmethod
    def sign(secret: str, timestamp_ms: int) -> str:
        string_to_sign = f"{timestamp_ms}\n{secret}"
        digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).digest()
        return urllib.parse.quote_plus(base64.b64encode(digest).decode())

    def send(self, message: OutgoingMessage) -> Sent:
        timestamp = int(time.time() * 1000)
        query = f"access_token={urllib.parse.quote(self.secrets['access_token'])}"
        if self.secrets.get("secret"):
            query += f"&timestamp={timestamp}&sign={self.sign(self.secrets['secret'], timestamp)}"
        url = f"{self.settings.get('endpoint') or self.ENDPOINT}?{query}"
        answer = _json_of(_post_json(url, {"msgtype": "text", "text": {"content": robot_text(message)}}))
        if answer.get("errcode") != 0:
            raise ProviderError(f"DingTalk {answer.get('errcode')}: {answer.get('errmsg')}",
                                transient=answer.get("errcode") in self.TRANSIENT_CODES, response=json.dumps(answer))
        return Sent(None, json.dumps(answer, ensure_ascii=False))


class FeishuRobot(Provider):
    """Feishu (飞书) custom bot with signature verification.

    https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot : timestamp in seconds;
    string_to_sign = timestamp + "\\n" + secret used as the HMAC-SHA256 *key* over an empty message;
    sign = base64(digest); both go in the JSON body with {"msg_type": "text", "content": {"text"}}.
    POST https://open.feishu.cn/open-apis/bot/v2/hook/<hook id>; answer {"code": 0}; 9499/11232 =
    frequency limited."""
    channel, kind = "robot", "feishu"
    secret_fields = ("hook_id", "secret")
    required_secrets = ("hook_id",)
    ENDPOINT = "https://open.feishu.cn/open-apis/bot/v2/hook/"
    TRANSIENT_CODES = (9499, 11232)

    @staticmethod
    def sign(secret: str, timestamp: int) -> str:
        key = f"{timestamp}\n{secret}".encode()
        return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()

    def send(self, message: OutgoingMessage) -> Sent:
        body: dict = {"msg_type": "text", "content": {"text": robot_text(message)}}
        if self.secrets.get("secret"):
            timestamp = int(time.time())
            body = {"timestamp": str(timestamp), "sign": self.sign(self.secrets["secret"], timestamp), **body}
        url = (self.settings.get("endpoint") or self.ENDPOINT).rstrip("/") + "/" + self.secrets["hook_id"]
        answer = _json_of(_post_json(url, body))
        code = answer.get("code", answer.get("StatusCode"))
        if code != 0:
            raise ProviderError(f"Feishu {code}: {answer.get('msg')}", transient=code in self.TRANSIENT_CODES,
                                response=json.dumps(answer, ensure_ascii=False))
        return Sent(None, json.dumps(answer, ensure_ascii=False))


# -- email ----------------------------------------------------------------------------------

class SmtpEmail(Provider):
    """Email over SMTP (smtplib): STARTTLS or implicit TLS when configured, AUTH when a user is set."""
    channel, kind = "email", "smtp"
    secret_fields = ("password",)
    required_settings = ("host", "port", "from_address")
    # 4xx replies are temporary by RFC 5321; 5xx are permanent.

    def send(self, message: OutgoingMessage) -> Sent:
        s = self.settings
        mail = EmailMessage()
        mail["From"] = formataddr((s.get("from_name") or "", s["from_address"]))
        mail["To"] = message.recipient
        mail["Subject"] = message.subject or message.event_type
        mail["Message-ID"] = make_msgid(domain=s["from_address"].rsplit("@", 1)[-1])
        mail.set_content(message.text)
        for file in message.files:
            maintype, _, subtype = file.content_type.partition("/")
            mail.add_attachment(file.content, maintype=maintype, subtype=subtype or "octet-stream",
                                filename=file.filename)
        security = s.get("security", "none")  # none | starttls | ssl
        try:
            if security == "ssl":
                client = smtplib.SMTP_SSL(s["host"], int(s["port"]), timeout=15,
                                          context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(s["host"], int(s["port"]), timeout=15)
            with client:
                if security == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if s.get("username"):
                    client.login(s["username"], self.secrets.get("password", ""))
                refused = client.send_message(mail)
        except smtplib.SMTPResponseException as exc:
            raise ProviderError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", transient=400 <= exc.smtp_code < 500,
                                response=str(exc.smtp_error)[:2000]) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise ProviderError(f"SMTP recipient refused {codes}", transient=all(400 <= c < 500 for c in codes)) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise ProviderError(f"{type(exc).__name__}: cannot reach the SMTP server", transient=True) from None
        if refused:
            raise ProviderError(f"SMTP refused {list(refused)}", transient=False)
        return Sent(mail["Message-ID"])


PROVIDERS: dict[tuple[str, str], type[Provider]] = {
    (cls.channel, cls.kind): cls
    for cls in (FileSms, AliyunSms, TencentSms, WeComRobot, DingTalkRobot, FeishuRobot, SmtpEmail)
}


class Registry:
    """Builds a provider from a tenant's config; `extra` lets tests plug in their own kinds."""

    def __init__(self, sms_log_path: str = "data/sms.log", extra: dict | None = None):
        self.sms_log_path = sms_log_path
        self.kinds = {**PROVIDERS, **(extra or {})}

    def build(self, channel: str, kind: str, settings: dict | None = None, secrets: dict | None = None) -> Provider:
        cls = self.kinds[(channel, kind)]
        if cls is FileSms:
            return FileSms(settings or {}, secrets or {}, self.sms_log_path)
        return cls(settings or {}, secrets or {})

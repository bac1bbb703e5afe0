"""Local stand-ins of the providers' HTTP APIs that check requests the way the providers do.

Each verifies the signature with its own implementation of the published algorithm (not the
production code), the request format (method, content type, required fields), and answers
like the provider: success bodies, signature errors, throttling. Tests switch a server to
failing mode to exercise retries. Used by the unit tests and the end-to-end tests.
"""
import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer:
    """One provider endpoint on 127.0.0.1:<free port> in a thread."""

    def __init__(self):
        self.requests: list[dict] = []  # accepted messages, in order
        self.rejected: list[dict] = []
        self.fail_next = 0  # answer this many requests with a transient error
        self.fail_always = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, answer = server.handle(self.path, dict(self.headers), body)
                data = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def failing(self) -> bool:
        if self.fail_always:
            return True
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return False

    def handle(self, path: str, headers: dict, body: bytes) -> tuple[int, dict]:
        raise NotImplementedError


class FakeAliyunSms(FakeServer):
    """dysmsapi SendSms, RPC signature (help.aliyun.com/document_detail/28839.html)."""

    def __init__(self, access_key_id: str, secret: str):
        super().__init__()
        self.access_key_id, self.secret = access_key_id, secret

    @staticmethod
    def _enc(value: str) -> str:
        # java.net.URLEncoder then + → %20, * → %2A, %7E → ~ (the doc's recipe, done its way)
        return urllib.parse.quote_plus(value, encoding="utf-8").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")

    def handle(self, path, headers, body):
        params = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        if not headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return 400, {"Code": "InvalidParameter", "Message": "form body expected"}
        given = params.pop("Signature", "")
        canonical = "&".join(f"{self._enc(k)}={self._enc(v)}" for k, v in sorted(params.items()))
        to_sign = "POST&%2F&" + self._enc(canonical)
        expected = base64.b64encode(hmac.new((self.secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
        required = {"AccessKeyId", "Action", "Format", "SignatureMethod", "SignatureNonce", "SignatureVersion",
                    "Timestamp", "Version", "PhoneNumbers", "SignName", "TemplateCode"}
        if missing := required - params.keys():
            return 400, {"Code": "MissingParameter", "Message": f"missing {sorted(missing)}"}
        if given != expected or params["AccessKeyId"] != self.access_key_id:
            self.rejected.append(params)
            return 400, {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched"}
        if (params["Action"], params["Version"], params["SignatureMethod"], params["SignatureVersion"]) != \
                ("SendSms", "2017-05-25", "HMAC-SHA1", "1.0"):
            return 400, {"Code": "InvalidParameter", "Message": "bad common parameters"}
        if self.failing():
            return 200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发流控", "RequestId": "r"}
        json.loads(params.get("TemplateParam") or "{}")
        self.requests.append(params)
        return 200, {"Code": "OK", "Message": "OK", "BizId": f"biz-{len(self.requests)}", "RequestId": "req"}


class FakeTencentSms(FakeServer):
    """SendSms 2021-01-11 with TC3-HMAC-SHA256 (cloud.tencent.com/document/api/382/52072)."""

    def __init__(self, secret_id: str, secret_key: str):
        super().__init__()
        self.secret_id, self.secret_key = secret_id, secret_key

    def handle(self, path, headers, body):
        def error(code, message):
            return 200, {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "req"}}

        h = {k.lower(): v for k, v in headers.items()}
        auth = h.get("authorization", "")
        try:
            algorithm, rest = auth.split(" ", 1)
            fields = dict(part.strip().split("=", 1) for part in rest.split(","))
            secret_id, date, service, terminator = fields["Credential"].split("/")
        except ValueError:
            return error("AuthFailure.InvalidAuthorization", "bad Authorization header")
        timestamp = int(h.get("x-tc-timestamp", "0"))
        if abs(time.time() - timestamp) > 300:
            return error("AuthFailure.SignatureExpire", "timestamp too far from now")
        if (algorithm, service, terminator, fields["SignedHeaders"]) != ("TC3-HMAC-SHA256", "sms", "tc3_request", "content-type;host"):
            return error("AuthFailure.InvalidAuthorization", "bad Authorization header")
        if secret_id != self.secret_id:
            return error("AuthFailure.SecretIdNotFound", "unknown SecretId")
        canonical = (f"POST\n/\n\ncontent-type:{h['content-type']}\nhost:{h['host']}\n\ncontent-type;host\n"
                     + hashlib.sha256(body).hexdigest())
        scope = f"{date}/sms/tc3_request"
        to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        key = ("TC3" + self.secret_key).encode()
        for part in (date, "sms", "tc3_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        if hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest() != fields["Signature"]:
            self.rejected.append(json.loads(body))
            return error("AuthFailure.SignatureFailure", "signature does not match")
        if (h.get("x-tc-action"), h.get("x-tc-version")) != ("SendSms", "2021-01-11"):
            return error("InvalidAction", "bad action or version")
        request = json.loads(body)
        if not {"PhoneNumberSet", "SmsSdkAppId", "SignName", "TemplateId"} <= request.keys():
            return error("MissingParameter", "missing parameters")
        if self.failing():
            return error("InternalError.RequestTimeException", "try again")
        self.requests.append(request)
        phone = request["PhoneNumberSet"][0]
        return 200, {"Response": {"SendStatusSet": [{"SerialNo": f"serial-{len(self.requests)}", "PhoneNumber": phone,
                                                     "Fee": 1, "Code": "Ok", "Message": "send success"}],
                                  "RequestId": "req"}}


class FakeWeCom(FakeServer):
    """Group robot webhook (developer.work.weixin.qq.com/document/path/91770)."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def handle(self, path, headers, body):
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
        if query.get("key") != self.key:
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
        message = json.loads(body)
        if message.get("msgtype") != "text" or not message.get("text", {}).get("content"):
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        if self.failing():
            return 200, {"errcode": 45009, "errmsg": "api freq out of limit"}
        self.requests.append(message)
        return 200, {"errcode": 0, "errmsg": "ok"}


class FakeDingTalk(FakeServer):
    """Custom robot with 加签 (open.dingtalk.com/document/robots/customize-robot-security-settings)."""

    def __init__(self, access_token: str, secret: str):
        super().__init__()
        self.access_token, self.secret = access_token, secret

    def handle(self, path, headers, body):
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))  # sign arrives url-decoded
        if query.get("access_token") != self.access_token:
            return 200, {"errcode": 300001, "errmsg": "token is not exist"}
        timestamp = query.get("timestamp", "0")
        if abs(time.time() * 1000 - int(timestamp)) > 3600 * 1000:
            return 200, {"errcode": 310000, "errmsg": "sign not match, more: timestamp expired"}
        expected = base64.b64encode(hmac.new(self.secret.encode(), f"{timestamp}\n{self.secret}".encode(),
                                             hashlib.sha256).digest()).decode()
        if query.get("sign") != expected:
            self.rejected.append(query)
            return 200, {"errcode": 310000, "errmsg": "sign not match"}
        message = json.loads(body)
        if message.get("msgtype") != "text" or not message.get("text", {}).get("content"):
            return 200, {"errcode": 40035, "errmsg": "缺少参数 json"}
        if self.failing():
            return 200, {"errcode": 130101, "errmsg": "send too fast"}
        self.requests.append(message)
        return 200, {"errcode": 0, "errmsg": "ok"}


class FakeFeishu(FakeServer):
    """Custom bot with signature check (open.feishu.cn/document/client-docs/bot-v3/add-custom-bot)."""

    def __init__(self, hook_id: str, secret: str):
        super().__init__()
        self.hook_id, self.secret = hook_id, secret

    def handle(self, path, headers, body):
        if urllib.parse.urlsplit(path).path != f"/open-apis/bot/v2/hook/{self.hook_id}":
            return 404, {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}
        message = json.loads(body)
        timestamp = message.get("timestamp", "0")
        if abs(time.time() - int(timestamp)) > 3600:
            return 200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}
        expected = base64.b64encode(hmac.new(f"{timestamp}\n{self.secret}".encode(), b"", hashlib.sha256).digest()).decode()
        if message.get("sign") != expected:
            self.rejected.append(message)
            return 200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}
        if message.get("msg_type") != "text" or not message.get("content", {}).get("text"):
            return 200, {"code": 19002, "msg": "params error, msg_type need"}
        if self.failing():
            return 200, {"code": 11232, "msg": "frequency limited"}
        self.requests.append(message)
        return 200, {"code": 0, "msg": "success", "data": {}}

"""SMS providers: the interface handlers use, a development provider, and the nameko dependency."""
import json
import threading
import uuid
from pathlib import Path

from nameko.extensions import DependencyProvider

from svc_common.db import utcnow
from svc_common.settings import get_settings


class SmsProvider:
    """Sends one text; raises on failure so the caller can record it and retry."""
    name = "base"

    def send(self, phone: str, text: str) -> str:  # provider message id
        raise NotImplementedError


class FileSmsProvider(SmsProvider):
    """Development provider: appends one JSON line per message to a file instead of sending it."""
    name = "file"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def send(self, phone: str, text: str) -> str:
        message_id = uuid.uuid4().hex
        line = json.dumps({"time": utcnow().isoformat(), "phone": phone, "text": text, "message_id": message_id},
                          ensure_ascii=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
        return message_id


class Sms(DependencyProvider):
    """`sms = Sms()` on the service: the configured provider (only the file one so far)."""

    def setup(self):
        self.provider = FileSmsProvider(get_settings().sms_log_path)

    def get_dependency(self, worker_ctx) -> SmsProvider:
        return self.provider

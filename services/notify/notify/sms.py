"""The development SMS sink: one JSON line per message in a file (used by providers.FileSms)."""
import json
import threading
import uuid
from pathlib import Path

from svc_common.db import utcnow


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

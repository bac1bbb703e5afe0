"""Fixtures of notify's unit tests: a real SQLite database per test, the real service class
(worker_factory) over it, the file SMS provider in tmp_path, and envelope builders."""
import datetime as dt
import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from nameko.testing.services import worker_factory

from notify import handlers
from notify.handlers import SendPolicy
from notify.models import PLATFORM, Base
from notify.providers import Registry
from notify.service import NotifyService
from svc_common.context import system_context
from svc_common.nameko_deps import WorkerPlatform
from svc_common.testing import sqlite_database
from svc_common.uow import UnitOfWork

# Retries without waiting, so a test of three attempts takes milliseconds.
FAST = SendPolicy(attempts=3, backoff_seconds=0.001, backoff_max_seconds=0.002)


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


@pytest.fixture
def registry(tmp_path):
    return Registry(sms_log_path=str(tmp_path / "sms" / "sms.log"))  # parent folder does not exist yet


class InlineSender:
    """The background sender's job, done at once: a test sees the messages when the handler returns."""

    def __init__(self, db, registry):
        self.db, self.registry = db, registry

    def submit(self, jobs):
        handlers.send_jobs(lambda tenant_id: UnitOfWork(self.db, system_context(tenant_id)), self.registry, jobs, FAST)


def service(db, registry, ctx=None, method="on_notifiable_event", tickets=None):
    """The nameko service with a real platform over `db`, called as `ctx` (RPC) or as a consumer;
    `tickets` stands in for the tickets service's RPC."""
    worker_ctx = SimpleNamespace(data=ctx.to_context_data() if ctx else {},
                                 entrypoint=SimpleNamespace(method_name=method))
    worker = worker_factory(NotifyService, platform=WorkerPlatform(db, worker_ctx, "notify"), providers=registry,
                            sender=InlineSender(db, registry), **({"tickets": tickets} if tickets else {}))
    worker.send_policy = FAST
    NotifyService._next_digest_check.clear()  # tests move the clock back and forth
    return worker


def envelope(event_type, tenant_id, occurred_at=None, **data):
    return {"event_id": str(uuid.uuid4()), "type": event_type, "schema_version": 1,
            "occurred_at": (occurred_at or dt.datetime.now(dt.timezone.utc)).isoformat(),
            "tenant_id": str(tenant_id), "correlation_id": "corr-1", "actor": None, "data": data}


def completed(tenant_id, **data):
    payload = {
        "ticket_id": str(uuid.uuid4()), "number": "WO000042", "type": "repair",
        "technician_id": str(uuid.uuid4()), "dispatcher_id": str(uuid.uuid4()),
        "customer_id": str(uuid.uuid4()), "customer_name": "上海申能空调",
        "contact_name": "王经理", "contact_phone": "13800138000",
        "completed_at": "2026-11-21T17:00:00+00:00", "summary": "更换压缩机电容，试机正常",
    }
    payload.update(data)
    return envelope("ticket.completed", tenant_id, **payload)


def add_user(db, registry, tenant_id, role="technician", name="张工", phone="13900000001", email=None,
             user_id=None, **extra):
    user_id = user_id or uuid.uuid4()
    service(db, registry, method="on_user_event").on_user_event(envelope(
        "user.created", tenant_id, user_id=str(user_id), name=name, username=name, role=role, phone=phone,
        email=email, active=True, **extra))
    return user_id


def sms_lines(registry):
    path = registry.build("sms", "file").file.path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def smtp_server(tmp_path):
    """aiosmtpd in its own process, as a real mail server would be."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path / "mail"
    script = Path(__file__).with_name("smtp_server.py")
    proc = subprocess.Popen([sys.executable, str(script), str(port), str(folder), "mailer", "mail-pass"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"SMTP server did not start: {proc.stderr.read()}")
                time.sleep(0.1)
        else:
            pytest.fail("SMTP server did not start within 15s")
        yield port, folder
    finally:
        proc.terminate()
        proc.wait(10)

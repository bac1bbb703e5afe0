"""Fixtures of notify's unit tests: a real SQLite database per test, the real service class
(worker_factory) over it, the file SMS provider in tmp_path, and envelope builders."""
import datetime as dt
import json
import uuid
from types import SimpleNamespace

import pytest
from nameko.testing.services import worker_factory

from notify.handlers import SendPolicy
from notify.models import PLATFORM, Base
from notify.providers import Registry
from notify.service import NotifyService
from svc_common.nameko_deps import WorkerPlatform
from svc_common.testing import sqlite_database

# Retries without waiting, so a test of three attempts takes milliseconds.
FAST = SendPolicy(attempts=3, backoff_seconds=0.001, backoff_max_seconds=0.002)


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


@pytest.fixture
def registry(tmp_path):
    return Registry(sms_log_path=str(tmp_path / "sms" / "sms.log"))  # parent folder does not exist yet


def service(db, registry, ctx=None, method="on_notifiable_event"):
    """The nameko service with a real platform over `db`, called as `ctx` (RPC) or as a consumer."""
    worker_ctx = SimpleNamespace(data=ctx.to_context_data() if ctx else {},
                                 entrypoint=SimpleNamespace(method_name=method))
    worker = worker_factory(NotifyService, platform=WorkerPlatform(db, worker_ctx, "notify"), providers=registry)
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

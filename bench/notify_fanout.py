"""Notification fan-out throughput and delay, on PostgreSQL and RabbitMQ.

    .venv/bin/python bench/notify_fanout.py --events 10000 [--instances 1]

Starts only the notify service (fresh databases, fresh vhost), gives a tenant a rule that
sends `ticket.assigned` to the assignee on 3 channels — inbox, SMS through the file provider,
a WeCom robot on a local HTTP server — then publishes N events onto `tickets.events` (at --rate events/s) and waits
for every delivery record to be final. Prints messages/s (final delivery records per second,
from the first publish to the last record), p50/p99 of the delay from the event's occurred_at to
its delivery record being final (sent), the SMS lines and robot posts (each = events: sent once),
and the CPU time per message of the notify process(es) and of PostgreSQL, read from /proc — the
figure to compare on a loaded machine, where messages/s depends on what else runs.
Targets: ≥ 500 messages/s, p99 ≤ 2 s.
"""
import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kombu
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services" / "notify"), str(ROOT / "bench")]

from devstack.ephemeral import create_databases, drop_databases, free_port_block, isolated_vhost  # noqa: E402
from devstack.broker import delete_vhost  # noqa: E402
from devstack.stack import COMPONENTS, Stack, StackConfig  # noqa: E402
from notify import handlers  # noqa: E402
from notify.models import PLATFORM, Delivery, UserReplica  # noqa: E402
from notify.providers import Registry  # noqa: E402
from notify.schemas import ProviderIn, RuleIn, SettingsIn  # noqa: E402
from create_cost import command_of, cpu_seconds  # noqa: E402
from svc_common.context import RequestContext  # noqa: E402
from svc_common.db import Database  # noqa: E402
from svc_common.uow import UnitOfWork  # noqa: E402


class Robot(BaseHTTPRequestHandler):
    """A group robot's webhook: keeps connections alive (HTTP/1.1) as the real ones do."""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    count = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Robot.count += 1
        body = b'{"errcode":0,"errmsg":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def cpu_snapshot(stack: Stack, database: str) -> dict[str, dict[int, float]]:
    """CPU seconds used so far by the notify instances and by the PostgreSQL backends serving their
    database (robust on a loaded machine, unlike messages/s): the difference over a run, divided by
    its messages, is CPU per message. Per process, so that backends of other databases coming and
    going on a shared machine do not count."""
    notify = [stack.processes[name].pid for name in stack.instances("notify")]
    backends = [int(p) for p in os.listdir("/proc") if p.isdigit() and command_of(int(p)) == "postgres"
                and database in _cmdline(int(p))]
    return {"notify": {p: cpu_seconds(p) for p in notify}, "postgresql": {p: cpu_seconds(p) for p in backends}}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """Seconds per group between two snapshots (a backend that started since counts from zero)."""
    return {group: sum(max(0.0, seconds - before[group].get(pid, 0.0)) for pid, seconds in after[group].items())
            for group in after}


def seed(db: Database, tenant: uuid.UUID, robot_url: str, users: int) -> list[uuid.UUID]:
    ctx = RequestContext(tenant_id=tenant, actor_id=uuid.uuid4(), actor_role="admin")
    with UnitOfWork(db, ctx) as uow:
        handlers.save_settings(uow, SettingsIn(per_recipient_per_hour={"sms": 100000, "robot": 100000},
                                               per_tenant_per_minute={"sms": 1000000, "robot": 1000000},
                                               digest_time=None))
        handlers.configure_provider(uow, "robot", ProviderIn(kind="wecom", settings={"endpoint": robot_url},
                                                             secrets={"key": "bench"}), Registry())
        handlers.save_rule(uow, "ticket.assigned", RuleIn(channels=["in_app", "sms", "robot"],
                                                          recipients=[{"kind": "assignee"}]))
        ids = [uuid.uuid4() for _ in range(users)]
        for i, user_id in enumerate(ids):
            uow.session.add(UserReplica(user_id=user_id, name=f"工程师{i}", role="technician",
                                        phone=f"139{i:08d}", active=True, team_ids=[]))
    return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--instances", type=int, default=1)
    # Events per second offered: 200 → 600 messages/s. 0 = as fast as the publisher can (a burst:
    # then the delay measures the backlog, not the pipeline).
    parser.add_argument("--rate", type=float, default=200)
    args = parser.parse_args()

    robot = ThreadingHTTPServer(("127.0.0.1", 0), Robot)
    threading.Thread(target=robot.serve_forever, daemon=True).start()
    dbs = create_databases(COMPONENTS)
    vhost, amqp_uri = isolated_vhost()
    data_dir = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    stack = Stack(StackConfig(amqp_uri=amqp_uri, database_url=dbs.url, data_dir=data_dir,
                              jwt_secret=secrets.token_urlsafe(32), gateway_port=free_port_block(7),
                              metrics_base_port=free_port_block(7), extra_env={"OUTBOX_POLL_SECONDS": "0.2"}))
    try:
        stack.migrate()
        stack.scale("notify", args.instances)
        db = Database(dbs.url("notify"), PLATFORM)
        tenant = uuid.uuid4()
        users = seed(db, tenant, f"http://127.0.0.1:{robot.server_address[1]}/send", args.users)

        exchange = kombu.Exchange("tickets.events", type="topic", durable=True)
        database = dbs.url("notify").rsplit("/", 1)[1]
        cpu_before = cpu_snapshot(stack, database)
        started = time.perf_counter()
        started_at = dt.datetime.now(dt.timezone.utc)
        with kombu.Connection(amqp_uri, transport_options={"confirm_publish": True}) as conn:
            producer = kombu.Producer(conn.channel())
            for i in range(args.events):
                if args.rate:
                    ahead = started + i / args.rate - time.perf_counter()
                    if ahead > 0:
                        time.sleep(ahead)
                envelope = {"event_id": str(uuid.uuid4()), "type": "ticket.assigned", "schema_version": 1,
                            "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(), "tenant_id": str(tenant),
                            "correlation_id": None, "actor": None,
                            "data": {"ticket_id": str(uuid.uuid4()), "number": f"WO{i:06d}", "type": "repair",
                                     "customer_name": "申能", "technician_id": str(users[i % len(users)])}}
                producer.publish(envelope, exchange=exchange, routing_key="ticket.assigned", serializer="json",
                                 delivery_mode=2, declare=[exchange] if i == 0 else [])
        published = time.perf_counter() - started
        expected = args.events * 3
        final = ("sent", "failed", "muted", "rate_limited")
        with db.session(None) as session:
            while True:
                done = session.scalar(sa.select(sa.func.count()).select_from(Delivery).where(Delivery.status.in_(final)))
                session.rollback()
                if done >= expected:
                    break
                if time.perf_counter() - started > 1800:
                    raise SystemExit(f"only {done} of {expected} deliveries final after 30 min")
                time.sleep(0.5)
            cpu_after = cpu_snapshot(stack, database)
            rows = session.execute(sa.select(Delivery.status, Delivery.event_occurred_at, Delivery.updated_at)).all()
        ends = [r.updated_at for r in rows]
        elapsed = (max(ends) - started_at).total_seconds()
        delays = sorted((r.updated_at - r.event_occurred_at).total_seconds() for r in rows)
        statuses = {s: sum(r.status == s for r in rows) for s in final}

        def pct(p):
            return delays[min(len(delays) - 1, int(round(p / 100 * (len(delays) - 1))))]

        sms_log = data_dir / "sms.log"
        sms_sent = len(sms_log.read_text(encoding="utf-8").splitlines()) if sms_log.exists() else 0
        # robot_posts and sms_lines = events: each message went out once (several instances, redeliveries)
        print(json.dumps({"events": args.events, "messages": len(rows), "instances": args.instances,
                          "statuses": statuses, "robot_posts": Robot.count, "sms_lines": sms_sent,
                          "publish_seconds": round(published, 2), "elapsed_seconds": round(elapsed, 2),
                          "messages_per_second": round(len(rows) / elapsed, 1),
                          "delay_p50_s": round(pct(50), 3), "delay_p99_s": round(pct(99), 3),
                          # PostgreSQL's figure includes the bench's own count query every 0.5 s (small).
                          "cpu_ms_per_message": {name: round(seconds * 1000 / len(rows), 3)
                                                 for name, seconds in cpu_used(cpu_before, cpu_after).items()}},
                         indent=2))
        db.dispose()
    finally:
        stack.stop_all()
        delete_vhost(vhost)
        drop_databases(dbs)
        robot.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Pool-grab contention (抢单): 50 technicians grab the same order at the same moment, on PostgreSQL.

    .venv/bin/python bench/pool_grab.py [--grabbers 50] [--rounds 20]

Each round publishes one order to the pool and releases all grabbers at once (a barrier), each
in its own thread with its own transaction, as concurrent RPC workers would. Prints the winners
per round (must always be 1), and the latency of a grab (winner and losers) p50/p99.
"""
import argparse
import statistics
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services" / "tickets")]

from sqlalchemy.orm.exc import StaleDataError  # noqa: E402

from devstack.ephemeral import create_databases, drop_databases  # noqa: E402
from svc_common.contracts import UserV1  # noqa: E402
from svc_common.context import RequestContext  # noqa: E402
from svc_common.db import Database  # noqa: E402
from svc_common.errors import Conflict  # noqa: E402
from svc_common.migrate import upgrade  # noqa: E402
from svc_common.uow import UnitOfWork  # noqa: E402
from svc_common.validation import parse  # noqa: E402
from tickets import handlers  # noqa: E402
from tickets.models import PLATFORM  # noqa: E402
from tickets.schemas import PublishIn, TicketIn  # noqa: E402

SNAPSHOT = {"customer_name": "云维保客户", "contact_name": "张", "contact_phone": "13800000000", "address": "上海",
            "latitude": Decimal("31.2"), "longitude": Decimal("121.5"), "equipment_id": None,
            "equipment_model": None, "serial_number": None, "under_warranty": None}


def seed(db: Database, tenant: uuid.UUID, grabbers: int) -> tuple[RequestContext, list[RequestContext]]:
    office = RequestContext(tenant_id=tenant, actor_id=uuid.uuid4(), actor_role="dispatcher")
    techs = []
    with UnitOfWork(db, office) as uow:
        for i in range(grabbers):
            user_id = uuid.uuid4()
            handlers.apply_user_event(uow, "user.created", UserV1(user_id=user_id, name=f"师傅{i}",
                                                                  username=f"t{i}", role="technician"))
            techs.append(RequestContext(tenant_id=tenant, actor_id=user_id, actor_role="technician"))
    return office, techs


def pooled_order(db: Database, office: RequestContext) -> uuid.UUID:
    data = parse(TicketIn, {"type": "maintenance", "customer_id": str(uuid.uuid4()), "description": "季度保养"})
    with UnitOfWork(db, office) as uow:
        ticket = handlers.create_ticket(uow, data, {"customer_id": data.customer_id, **SNAPSHOT})
        handlers.publish_to_pool(uow, ticket.id, PublishIn())
        return ticket.id


def grab_round(db: Database, ticket_id: uuid.UUID, techs: list[RequestContext]) -> tuple[list, list[float]]:
    """All grabbers at once; returns (winners, latencies)."""
    barrier = threading.Barrier(len(techs))
    winners, latencies, lock = [], [], threading.Lock()

    def grab(ctx):
        barrier.wait()
        started = time.perf_counter()
        try:
            with UnitOfWork(db, ctx) as uow:
                handlers.grab_ticket(uow, ticket_id)
            won = True
        except (Conflict, StaleDataError):
            won = False
        with lock:
            latencies.append(time.perf_counter() - started)
            if won:
                winners.append(ctx.actor_id)

    threads = [threading.Thread(target=grab, args=(c,)) for c in techs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return winners, latencies


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grabbers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    dbs = create_databases(["tickets"])
    try:
        url = dbs.url("tickets")
        upgrade("tickets", url)
        import os
        os.environ.setdefault("DB_POOL_SIZE", str(args.grabbers))
        db = Database(url, PLATFORM)
        office, techs = seed(db, uuid.uuid4(), args.grabbers)
        all_latencies, winner_counts = [], []
        started = time.perf_counter()
        for _ in range(args.rounds):
            ticket_id = pooled_order(db, office)
            winners, latencies = grab_round(db, ticket_id, techs)
            winner_counts.append(len(winners))
            all_latencies += latencies
        elapsed = time.perf_counter() - started
        db.dispose()
    finally:
        drop_databases(dbs)
    all_latencies.sort()
    p99 = all_latencies[min(len(all_latencies) - 1, int(len(all_latencies) * 0.99))]
    print(f"pool grab on PostgreSQL: {args.rounds} rounds × {args.grabbers} concurrent grabbers")
    print(f"  winners per round: {sorted(set(winner_counts))} (must be [1])")
    print(f"  grab latency p50 {statistics.median(all_latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; "
          f"{args.rounds * args.grabbers / elapsed:.0f} grab attempts/s")
    return 0 if set(winner_counts) == {1} else 1


if __name__ == "__main__":
    sys.exit(main())

"""Outbox relay: publishes committed outbox rows to `<service>.events` with publisher confirms.

A row is marked published only after the broker confirmed it, so a crash between the two
republishes it (consumers are idempotent). Several relays may run (one per instance): on
PostgreSQL each claims its batch with FOR UPDATE SKIP LOCKED.
"""
import logging
import threading
import time

import kombu
import sqlalchemy as sa

from .db import Database, utcnow
from .metrics import OUTBOX_BACKLOG, OUTBOX_PUBLISHED

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, db: Database, amqp_uri: str, service: str, batch_size: int = 200,
                 poll_seconds: float = 0.5):
        self.db = db
        self.amqp_uri = amqp_uri
        self.service = service
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self._connection: kombu.Connection | None = None
        self._producer: kombu.Producer | None = None
        self._exchanges: dict[str, kombu.Exchange] = {}

    def _get_producer(self) -> kombu.Producer:
        if self._producer is None:
            # confirm_publish: basic_publish returns only once the broker has the message.
            self._connection = kombu.Connection(self.amqp_uri, transport_options={"confirm_publish": True})
            self._producer = kombu.Producer(self._connection.channel())
        return self._producer

    def _reset(self) -> None:
        try:
            if self._connection is not None:
                self._connection.release()
        except Exception:  # the connection is already broken; drop it
            pass
        self._connection = self._producer = None

    def _exchange(self, name: str) -> kombu.Exchange:
        if name not in self._exchanges:
            self._exchanges[name] = kombu.Exchange(name, type="topic", durable=True)
        return self._exchanges[name]

    def publish_pending(self) -> int:
        """Publish one batch; return how many rows were published."""
        if self.db.engine.dialect.name == "sqlite":
            return self._publish_pending_sqlite()
        with self.db.session(None) as session, session.begin():
            # Row locks claim the batch: another relay skips these rows, writers are not blocked.
            rows = session.execute(self._pending_query().with_for_update(skip_locked=True)).all()
            if not rows:
                return 0
            self._publish(rows)  # on failure the transaction rolls back: the rows stay unpublished
            session.execute(self._mark_published([r.id for r in rows]))
        OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    def _publish_pending_sqlite(self) -> int:
        """SQLite (one process, one writer): never hold its write lock across network I/O."""
        with self.db.session(None) as session:
            rows = session.execute(self._pending_query()).all()
            session.rollback()
        if not rows:
            return 0
        self._publish(rows)
        with self.db.session(None) as session, session.begin():
            session.execute(self._mark_published([r.id for r in rows]))
        OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    def _pending_query(self):
        outbox = self.db.tables.outbox
        return (sa.select(outbox.c.id, outbox.c.type, outbox.c.exchange, outbox.c.envelope)
                .where(outbox.c.published_at.is_(None)).order_by(outbox.c.id).limit(self.batch_size))

    def _mark_published(self, ids: list[int]):
        outbox = self.db.tables.outbox
        return sa.update(outbox).where(outbox.c.id.in_(ids)).values(published_at=utcnow())

    def _publish(self, rows) -> None:
        producer = self._get_producer()
        try:
            for row in rows:
                envelope = row.envelope
                exchange = self._exchange(row.exchange)
                producer.publish(
                    envelope,
                    exchange=exchange,
                    routing_key=row.type,
                    serializer="json",
                    delivery_mode=2,  # persistent
                    message_id=envelope["event_id"],
                    headers={
                        "nameko.correlation_id": envelope.get("correlation_id") or envelope["event_id"],
                        "nameko.tenant_id": envelope["tenant_id"],
                        "nameko.actor_role": "system",
                    },
                    declare=[exchange],
                    retry=True,
                    retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
                )
        except Exception:
            self._reset()
            raise

    def backlog(self) -> int:
        outbox = self.db.tables.outbox
        with self.db.session(None) as session:
            return session.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            ).scalar_one()

    def run_forever(self, stopping: threading.Event | None = None, sleep=time.sleep) -> None:
        """Publish as rows appear; woken by commits that wrote to the outbox, else polls."""
        stopping = stopping or threading.Event()
        last_backlog_check = 0.0
        while not stopping.is_set():
            try:
                published = self.publish_pending()
                if time.monotonic() - last_backlog_check > 5:
                    OUTBOX_BACKLOG.labels(self.service).set(self.backlog())
                    last_backlog_check = time.monotonic()
            except Exception:
                log.exception("outbox relay: publish failed; retrying")
                published = 0
                sleep(1.0)
            if published < self.batch_size:
                self.db.outbox_written.wait(self.poll_seconds)
                self.db.outbox_written.clear()

    def close(self) -> None:
        self._reset()

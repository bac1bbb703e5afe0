"""Outbox relay: publishes committed outbox rows to `<service>.events` with publisher confirms.

A row is marked published only after the broker confirmed it, so a crash between the two
republishes it (consumers are idempotent). Several relays may run (one per instance): on
PostgreSQL each claims its batch with FOR UPDATE SKIP LOCKED.

A batch is published in outbox order on one channel and its confirms are awaited once, together
(RabbitMQ confirms many messages with one `multiple` ack): waiting for each message's confirm
before sending the next cost a round trip per event. A nack or a timeout fails the whole batch,
which stays unpublished and is sent again (at least once; a channel keeps the order).
"""
import functools
import logging
import threading
import time

import kombu
import sqlalchemy as sa

from .db import Database, utcnow
from .metrics import OUTBOX_BACKLOG, OUTBOX_PUBLISHED

log = logging.getLogger(__name__)


class PublishNotConfirmed(Exception):
    """The broker nacked a message of the batch, or did not confirm it in time."""


class OutboxRelay:
    CONFIRM_TIMEOUT_SECONDS = 30

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
        self._unconfirmed: set[int] = set()  # delivery tags of this channel the broker has not acked
        self._nacked = False
        self._last_tag = 0

    @functools.cached_property
    def _claim(self):
        """Built once: the statement runs on every poll, and SQLAlchemy keys its cache by the object."""
        outbox = self.db.tables.outbox
        batch = (sa.select(outbox.c.id).where(outbox.c.published_at.is_(None)).order_by(outbox.c.id)
                 .limit(self.batch_size).with_for_update(skip_locked=True))
        return (sa.update(outbox).where(outbox.c.id.in_(batch.scalar_subquery()))
                .values(published_at=sa.bindparam("now", type_=outbox.c.published_at.type))
                .returning(outbox.c.id, outbox.c.type, outbox.c.exchange, outbox.c.envelope))

    def _get_producer(self) -> kombu.Producer:
        if self._producer is None:
            self._connection = kombu.Connection(self.amqp_uri)
            channel = self._connection.channel()
            channel.confirm_select()  # the broker now acks (or nacks) every publish on this channel
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            self._unconfirmed, self._nacked, self._last_tag = set(), False, 0
            self._producer = kombu.Producer(channel)
        return self._producer

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._unconfirmed = {t for t in self._unconfirmed if t > delivery_tag}
        else:
            self._unconfirmed.discard(delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked = True
        self._on_ack(delivery_tag, multiple)

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
            # One statement claims and marks the batch. Its row locks make another relay skip these rows
            # (writers are not blocked); if publishing fails, the transaction rolls back and they stay unpublished.
            rows = session.execute(self._claim, {"now": utcnow()}).all()
            if not rows:
                return 0
            self._publish(sorted(rows, key=lambda r: r.id))
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
        """Send every row, then wait for the broker to confirm them all. A connection that broke while
        idle (broker restart) is replaced once at once; the batch is sent again whole (at least once)."""
        for attempt in (1, 2):
            try:
                self._send(rows)
                self._wait_for_confirms()
                return
            except PublishNotConfirmed:
                self._reset()
                raise
            except Exception:
                self._reset()  # a broken channel: confirms can no longer be matched to messages
                if attempt == 2:
                    raise
                log.warning("outbox relay: broker connection lost; reconnecting", exc_info=True)

    def _send(self, rows) -> None:
        producer = self._get_producer()
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
                declare=[exchange],  # once per connection (kombu remembers what it declared)
            )
            self._last_tag += 1
            self._unconfirmed.add(self._last_tag)

    def _wait_for_confirms(self) -> None:
        deadline = time.monotonic() + self.CONFIRM_TIMEOUT_SECONDS
        while self._unconfirmed and not self._nacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishNotConfirmed(f"{len(self._unconfirmed)} messages not confirmed in time")
            self._connection.drain_events(timeout=remaining)
        if self._nacked:
            raise PublishNotConfirmed("the broker refused (nacked) a message of the batch")

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

"""Batching event handlers: many events per transaction, the reliability of `svc_common.consumer`.

    from svc_common.batch_consumer import handle_batch, on_events

    class ReportsService:
        platform = Platform(PLATFORM)

        @on_events("tickets", "ticket.completed")
        def on_ticket_completed(self, envelopes):          # a list, not one envelope
            handle_batch(self.platform, envelopes, handlers.consume_batch)

`on_events` takes the messages of its queue into a batch until it holds `EVENT_BATCH_SIZE` of them
or the oldest has waited `EVENT_BATCH_WAIT_MS`, then runs the method once on the whole list.
`handle_batch` turns the list into one unit of work per tenant: the event ids are claimed for this
consumer in one statement (INSERT … ON CONFLICT DO NOTHING RETURNING), the handler gets only the
events not handled before, and the claims commit with its effect. The messages are acked only after
every unit of work of the batch has committed.

If the batch fails (one bad event, a deadlock, a lost connection …) its messages are run again one
at a time, each in a worker of its own; a message that fails alone takes the path of
`ReliableEventHandler` (retry with backoff, then `<queue>.dlq`), the others are acked after their own
commit (those a committed part of the batch already handled are duplicates by then: no-ops).
A message is never acked before its effect commits, never dropped: when the container is killed,
or the connection is lost, the unacked ones are redelivered by the broker.

Queue names are those of `ReliableEventHandler` (`evt-<producer>-<type>--<service>.<method>`), so
switching a handler to batches keeps its queue, its retry and dead-letter queues, its claims (same
consumer name) and the KEDA triggers on them. The event type may be a topic pattern (`ticket.*`): one
queue then takes all those events (named with `any` / `all` for `*` / `#`).

Each handler has a channel of its own (on one connection shared by the service's batch handlers),
with a prefetch of twice the batch size, so the next batch fills while one runs (nameko's shared
consumer prefetches `MAX_WORKERS` messages, fewer than a batch). At most one batch per handler runs at
a time, so batches of one queue never compete for the same rows (the handlers of the other queues run
beside it), and a batch is acked with one frame (`multiple`: its last delivery tag).
"""
import logging
import time
import uuid
from collections import OrderedDict
from functools import partial
from typing import Callable

import eventlet
from eventlet.event import Event
from kombu import Consumer, Queue
from nameko.exceptions import ContainerBeingKilled
from nameko.messaging import QueueConsumer

from .consumer import ReliableEventHandler
from .context import system_context
from .contracts import EventEnvelope
from .db import utcnow
from .metrics import EVENT_LAG, EVENTS_CONSUMED
from .settings import get_settings
from .uow import UnitOfWork

log = logging.getLogger(__name__)



class BatchQueueConsumer(QueueConsumer):
    """nameko's queue consumer, with a channel of its own per batch handler (its prefetch, and delivery
    tags in the order of that one queue: a batch is acked with one frame) and no thread per message
    (a batch handler only appends the message to its batch, which never blocks)."""

    @property
    def prefetch_count(self):
        return max([p.prefetch_count for p in self._providers] or [self.container.max_workers])

    def get_consumers(self, consumer_cls, channel):
        # Called after every (re)connection, with a channel of that connection (`consumer_cls` is bound
        # to that one: kombu's Consumer is used with each handler's own channel instead).
        for provider in self._providers:
            own = channel.connection.channel()
            consumer = Consumer(own, queues=[provider.queue], callbacks=[partial(self.handle_message, provider)],
                                accept=self.accept)
            consumer.qos(prefetch_count=provider.prefetch_count)
            self._consumers[provider] = consumer
        return self._consumers.values()

    def handle_message(self, provider, body, message):
        provider.handle_message(body, message)

    def ack_batch(self, messages: list) -> None:
        """Ack a batch: the last delivery tag with `multiple` acks all before it on its channel, which
        are exactly the batch (one batch in flight per handler, taken in delivery order)."""
        last = messages[-1]
        if last.channel.connection:  # else the broker has taken them back already
            try:
                last.ack(multiple=True)
            except ConnectionError:  # pragma: no cover
                pass


class BatchEventHandler(ReliableEventHandler):
    queue_consumer = BatchQueueConsumer()

    def __init__(self, source_service: str, event_type: str, batch_size: int | None = None,
                 max_wait_ms: float | None = None, **kwargs):
        super().__init__(source_service, event_type, **kwargs)
        self._batch_size, self._max_wait_ms = batch_size, max_wait_ms

    def setup(self):
        super().setup()
        if any(c in self.event_type for c in "*#"):
            # A topic pattern ("ticket.*": every work-order event in one queue, so that the events of one
            # order meet in the same batches instead of locking the same rows from several queues). The
            # queue is named without the wildcards, which shells and tools would expand.
            name = self.queue.name.replace("*", "any").replace("#", "all")
            self.queue = Queue(name, exchange=self.queue.exchange, routing_key=self.event_type, durable=True,
                               auto_delete=False)
        self.batch_size = self._batch_size or get_settings().event_batch_size
        wait_ms = self._max_wait_ms if self._max_wait_ms is not None else get_settings().event_batch_wait_ms
        self.max_wait = wait_ms / 1000
        self.prefetch_count = 2 * self.batch_size
        self._pending: list[tuple[float, object, object]] = []  # (arrived, body, message)
        self._in_flight = False
        self._timer_armed = False

    # -- collecting ---------------------------------------------------------------------------
    def handle_message(self, body, message):
        self._pending.append((time.monotonic(), body, message))
        self._dispatch_ready()

    def _dispatch_ready(self, force: bool = False) -> None:
        """Start a batch if none runs and one is due: full, or its oldest message waited enough."""
        if self._in_flight or not self._pending:
            return
        due = force or len(self._pending) >= self.batch_size or \
            time.monotonic() - self._pending[0][0] >= self.max_wait
        if not due:
            if not self._timer_armed:
                self._timer_armed = True
                wait = self._pending[0][0] + self.max_wait - time.monotonic()
                self.container.spawn_managed_thread(partial(self._wake_after, wait), identifier="batch-timer")
            return
        batch, self._pending = self._pending[:self.batch_size], self._pending[self.batch_size:]
        self._in_flight = True
        self.container.spawn_managed_thread(partial(self._run_batch, [(b, m) for _, b, m in batch]),
                                            identifier=f"batch[{self.event_type}]")

    def _wake_after(self, seconds: float) -> None:
        eventlet.sleep(max(seconds, 0))
        self._timer_armed = False
        self._dispatch_ready()

    def _finished(self) -> None:
        self._in_flight = False
        self._dispatch_ready()

    # -- running ------------------------------------------------------------------------------
    def _run_batch(self, batch: list) -> None:
        messages = [m for _, m in batch]
        try:
            self.container.spawn_worker(self, ([b for b, _ in batch],), {},
                                        context_data=self.unpack_message_headers(messages[0]),
                                        handle_result=partial(self._batch_done, batch))
        except ContainerBeingKilled:
            for message in messages:
                self.queue_consumer.requeue_message(message)

    def _batch_done(self, batch, worker_ctx, result=None, exc_info=None):
        if exc_info is None:
            self.queue_consumer.ack_batch([message for _, message in batch])
            self._finished()
        elif len(batch) == 1:
            self.handle_message_processed(batch[0][1], result, exc_info)  # retry → dead-letter
            self._finished()
        else:
            log.warning("batch of %s %s events failed (%s); running them one by one", len(batch),
                        self.event_type, exc_info[1])
            self.container.spawn_managed_thread(partial(self._one_by_one, batch),
                                                identifier=f"batch-fallback[{self.event_type}]")
        return result, exc_info

    def _one_by_one(self, batch: list) -> None:
        try:
            for index, (body, message) in enumerate(batch):
                done = Event()
                try:
                    self.container.spawn_worker(self, ([body],), {},
                                                context_data=self.unpack_message_headers(message),
                                                handle_result=partial(self._single_done, message, done))
                except ContainerBeingKilled:
                    for _, rest in batch[index:]:
                        self.queue_consumer.requeue_message(rest)
                    return
                done.wait()
        finally:
            self._finished()

    def _single_done(self, message, done: Event, worker_ctx, result=None, exc_info=None):
        try:
            self.handle_message_processed(message, result, exc_info)  # ack, or retry → dead-letter
        finally:
            done.send(None)
        return result, exc_info

    def stop(self):
        # A graceful stop runs what was collected (the container waits for its worker) rather than
        # leaving it to be redelivered to the next instance.
        self._dispatch_ready(force=True)
        super().stop()


on_events = BatchEventHandler.decorator


# -- the unit of work of a batch ------------------------------------------------------------------

def claim(uow: UnitOfWork, consumer: str, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Claim these events for `consumer` in one statement; returns the ids not claimed before.
    The claims commit or roll back with the unit of work's effect."""
    if not event_ids:
        return set()
    table = uow.db.tables.processed_events
    if uow.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    now = utcnow()
    statement = insert(table).on_conflict_do_nothing().returning(table.c.event_id)
    # an executemany with RETURNING: SQLAlchemy sends it as multi-row INSERTs (one statement per
    # thousand rows), sorted so that two batches claiming the same events lock them in one order
    rows = [{"consumer": consumer, "event_id": event_id, "processed_at": now} for event_id in sorted(event_ids)]
    return set(uow.session.execute(statement, rows).scalars())


def handle_batch(platform, envelopes: list[dict], handler: Callable[[UnitOfWork, list[EventEnvelope]], object],
                 claims: Callable[[UnitOfWork, str, list[EventEnvelope]], set] | None = None,
                 partition: Callable[[EventEnvelope], object] | None = None, partitions: int = 1) -> int:
    """Run `handler(uow, events)` on the events of a batch this consumer has not handled yet: one
    unit of work per tenant (sessions are tenant-scoped), the claims of all its events in one
    statement. Raises if any part fails (the batch handler then goes one by one). Returns how many
    events were new.

    `platform` is the worker's `Platform` dependency (svc_common.nameko_deps.WorkerPlatform).
    `claims(uow, consumer, events)` → the ids not handled before: by default `claim` (processed_events);
    a service that keeps every event once anyway (an archive, INSERT … ON CONFLICT DO NOTHING
    RETURNING) can make that its claim and save a write per event.
    `partition(event)` → a key (e.g. the work order) and `partitions` > 1: a tenant's events are split
    by key into that many units of work run side by side (green threads, a connection each), which
    touch disjoint rows, so one waits on the database while another computes."""
    events = [EventEnvelope.model_validate(e) for e in envelopes]  # a malformed one fails the batch
    consumer = f"{platform.service_name}.{platform.worker_ctx.entrypoint.method_name}"
    groups: list[tuple[uuid.UUID, list[EventEnvelope]]] = []
    by_tenant: "OrderedDict[uuid.UUID, OrderedDict]" = OrderedDict()
    for event in events:  # a redelivered copy within the batch counts once
        by_tenant.setdefault(event.tenant_id, OrderedDict()).setdefault(event.event_id, event)
    for tenant_id, group in by_tenant.items():
        if partition is None or partitions < 2:
            groups.append((tenant_id, list(group.values())))
            continue
        split: dict[int, list] = {}
        for event in group.values():
            split.setdefault(hash(partition(event)) % partitions, []).append(event)
        groups += [(tenant_id, part) for _, part in sorted(split.items())]

    def run(tenant_id, group) -> set:
        with UnitOfWork(platform.db, system_context(tenant_id, group[0].correlation_id)) as uow:
            fresh_ids = claims(uow, consumer, group) if claims is not None else \
                claim(uow, consumer, [e.event_id for e in group])
            fresh = [e for e in group if e.event_id in fresh_ids]
            if fresh:
                handler(uow, fresh)
        return fresh_ids

    if len(groups) > 1 and partitions > 1:
        pile = eventlet.GreenPile(len(groups))
        for tenant_id, group in groups:
            pile.spawn(_outcome, run, tenant_id, group)
        outcomes = list(pile)
    else:
        outcomes = [_outcome(run, tenant_id, group) for tenant_id, group in groups]
    failed = [error for _, error in outcomes if error is not None]
    committed = [(group, fresh_ids) for (_, group), (fresh_ids, error) in zip(groups, outcomes) if error is None]
    fresh_all = set().union(*(fresh_ids for _, fresh_ids in committed))
    handled = {event.event_id for group, _ in committed for event in group}
    now, fresh_total, seen = utcnow(), 0, set()
    for event in events:  # every copy received, a repeated one (also within the batch) as a duplicate
        if event.event_id not in handled:
            continue  # its part failed: counted when the events are handled one by one
        outcome = "ok" if event.event_id in fresh_all and event.event_id not in seen else "duplicate"
        seen.add(event.event_id)
        EVENTS_CONSUMED.labels(platform.service_name, event.type, outcome).inc()
        if outcome == "ok":
            fresh_total += 1
            EVENT_LAG.labels(platform.service_name, event.type).observe(
                max((now - event.occurred_at).total_seconds(), 0.0))
    if failed:  # the committed parts are claimed: run one by one, they are duplicates
        raise failed[0]
    # The batch's line names every request that led to it, so a correlation id is found in the log.
    log.info("event batch consumed", extra={"consumer": consumer, "events": len(events), "new": fresh_total,
                                            "correlation_ids": sorted({e.correlation_id for e in events
                                                                       if e.correlation_id})})
    return fresh_total


def _outcome(fn, *args) -> tuple:
    try:
        return fn(*args), None
    except Exception as exc:  # every part runs to its end (commit or rollback) before the batch fails
        return None, exc

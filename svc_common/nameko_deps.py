"""The nameko side of the platform: one dependency every service declares.

`platform = Platform(tables)` gives each worker the caller's context and units of work,
runs the outbox relay beside the service, and records metrics and the correlation id
for every entrypoint. Services stay thin: validate → handler → DTO.
"""
import logging
import threading
import time
import uuid
import weakref
from typing import Callable

import eventlet
import sqlalchemy as sa
from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc

from .context import RequestContext, correlation_id_var, system_context
from .contracts import EventEnvelope
from .db import Database, PlatformTables, utcnow
from .metrics import ENTRYPOINT_ERRORS, ENTRYPOINT_LATENCY, EVENT_LAG, EVENTS_CONSUMED
from .outbox import OutboxRelay
from .settings import get_settings
from .uow import UnitOfWork

log = logging.getLogger("svc_common.events")


class WorkerPlatform:
    """What a worker sees as `self.platform`."""

    def __init__(self, db: Database, worker_ctx, service_name: str):
        self.db = db
        self.worker_ctx = worker_ctx
        self.service_name = service_name
        self.consumed: EventEnvelope | None = None  # the event this worker handles, for the lag metric

    @property
    def ctx(self) -> RequestContext:
        return RequestContext.from_context_data(self.worker_ctx.data)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.db, self.ctx)

    def handle_once(self, envelope: dict, handler: Callable[[UnitOfWork, EventEnvelope], object],
                    relevant: Callable[[UnitOfWork, EventEnvelope], bool] | None = None) -> None:
        """Run `handler(uow, event)` for a delivered event unless this consumer already has:
        the claim commits with the handler's effect (or neither does).

        `relevant(uow, event)`, if given, is asked first, in the same transaction: an event it turns
        down is acknowledged without a claim or any write (it has no effect, so a redelivery of it
        changes nothing either). A consumer that ignores most events it receives saves a write each."""
        event = EventEnvelope.model_validate(envelope)
        with self.event_uow(event, claim=relevant is None) as uow:
            if relevant is not None:
                if not relevant(uow, event):
                    self._consumed(event, "ignored")
                    return
                self.claim(uow, event)
            if not uow.duplicate:
                handler(uow, event)

    def event_uow(self, envelope: EventEnvelope, claim: bool = True) -> UnitOfWork:
        """A unit of work for an event handler that has claimed the event (see `duplicate`);
        claim=False leaves the claim to the caller (`claim`)."""
        ctx = system_context(envelope.tenant_id, envelope.correlation_id)
        self.consumed = envelope
        uow = UnitOfWork(self.db, ctx)
        if claim:
            self.claim(uow, envelope)
        return uow

    def claim(self, uow: UnitOfWork, envelope: EventEnvelope) -> bool:
        """Claim the event for this consumer in `uow`; False (and uow.duplicate) if already processed."""
        fresh = uow.consume(self._consumer, envelope.event_id)
        self._consumed(envelope, "ok" if fresh else "duplicate")
        return fresh

    @property
    def _consumer(self) -> str:
        return f"{self.service_name}.{self.worker_ctx.entrypoint.method_name}"

    def _consumed(self, envelope: EventEnvelope, outcome: str) -> None:
        # An ignored event counts as "ok" in the metric: consumed, nothing to do.
        EVENTS_CONSUMED.labels(self.service_name, envelope.type, "duplicate" if outcome == "duplicate" else "ok").inc()
        log.info("event consumed", extra={"event_type": envelope.type, "event_id": str(envelope.event_id),
                                          "consumer": self._consumer, "outcome": outcome})


class Platform(DependencyProvider):
    def __init__(self, tables: PlatformTables):
        self.tables = tables
        self._started_at: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
        self._workers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def setup(self):
        settings = get_settings()
        self.service_name = self.container.service_name
        self.db = Database(settings.database_url, self.tables)
        self.relay = OutboxRelay(self.db, self.container.config["AMQP_URI"], self.service_name,
                                 poll_seconds=settings.outbox_poll_seconds)
        self._relay_stop = threading.Event()

    def start(self):
        self.container.spawn_managed_thread(self._run_relay, identifier="outbox-relay")

    def _run_relay(self):
        self.relay.run_forever(self._relay_stop, sleep=eventlet.sleep)

    def stop(self):
        self._relay_stop.set()
        self.db.outbox_written.set()
        # One last pass so nothing committed before shutdown waits for the next start.
        try:
            self.relay.publish_pending()
        except Exception:
            pass
        self.relay.close()
        try:  # the workers have finished: no number is taken after this
            self.db.release_numbers()
        except Exception:
            log.warning("reserved document numbers not given back (a gap in the series)", exc_info=True)

    def kill(self):
        self._relay_stop.set()
        self.db.outbox_written.set()

    def get_dependency(self, worker_ctx):
        worker = WorkerPlatform(self.db, worker_ctx, self.service_name)
        self._workers[worker_ctx] = worker
        return worker

    def worker_setup(self, worker_ctx):
        self._started_at[worker_ctx] = time.perf_counter()
        correlation_id_var.set(worker_ctx.data.get("correlation_id") or str(uuid.uuid4()))

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self._started_at.pop(worker_ctx, None)
        entrypoint = worker_ctx.entrypoint
        kind = "event" if isinstance(entrypoint, EventHandler) else type(entrypoint).__name__.lower()
        if started is not None:
            ENTRYPOINT_LATENCY.labels(self.service_name, entrypoint.method_name, kind).observe(
                time.perf_counter() - started)
        if exc_info is not None:
            ENTRYPOINT_ERRORS.labels(self.service_name, entrypoint.method_name, exc_info[0].__name__).inc()
        worker = self._workers.pop(worker_ctx, None)
        if exc_info is None and worker is not None and worker.consumed is not None:
            # The handler has committed: its read model now shows the event.
            lag = (utcnow() - worker.consumed.occurred_at).total_seconds()
            EVENT_LAG.labels(self.service_name, worker.consumed.type).observe(max(lag, 0.0))

    def ready(self) -> bool:
        with self.db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True


class HealthRpc:
    """Mixin: every service answers `ping` (readiness from the gateway) and `echo` (benchmarks)."""

    @rpc
    def ping(self):
        return {"service": self.name, "status": "ok"}

    @rpc
    def echo(self, value=None):
        return value

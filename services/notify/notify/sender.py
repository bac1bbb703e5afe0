"""Sends the fan-out's queued deliveries in the background, many events' at a time (nameko glue).

An event handler commits its deliveries, hands their send jobs to `Sender.submit` and acks its
event: it does not wait for the providers. A loop takes whatever jobs are waiting (up to
NOTIFY_SEND_BATCH) as one batch; a batch claims its rows in one transaction, calls the providers on a
bounded pool of green threads (NOTIFY_SEND_CONCURRENCY) and records the outcomes in one more
transaction — two commits per batch instead of two per event. The queue is bounded: when the
providers lag, handlers wait in `submit` (back-pressure) rather than the process filling its memory.
Nothing is lost in a crash: rows not yet sent stay queued in the database and the timer sends them
(handlers.due_deliveries); a stop (SIGTERM) sends what is waiting first.
"""
import logging
import time

import eventlet
from eventlet.queue import Empty, LightQueue
from nameko.extensions import DependencyProvider

from svc_common.context import system_context
from svc_common.nameko_deps import Platform
from svc_common.settings import get_settings
from svc_common.uow import UnitOfWork

from . import handlers
from .providers import Registry
from .settings import notify_settings

log = logging.getLogger(__name__)

BATCHES_IN_FLIGHT = 4  # batches claimed and sending at once; each holds at most one DB connection at a time
STOP_SECONDS = 30.0  # how long a stop waits for the queue to drain


class Providers(DependencyProvider):
    """`providers = Providers()`: the registry that builds each tenant's provider plug-ins."""

    def setup(self):
        self.registry = Registry(sms_log_path=get_settings().sms_log_path)

    def get_dependency(self, worker_ctx) -> Registry:
        return self.registry


class Sender(DependencyProvider):
    """`sender = Sender()`: `self.sender.submit(jobs)` from any worker."""

    def setup(self):
        self.batch_size = notify_settings().send_batch
        self.policy = handlers.SendPolicy.configured()
        self.queue: LightQueue = LightQueue(maxsize=self.batch_size * BATCHES_IN_FLIGHT)
        self.sends = eventlet.GreenPool(notify_settings().send_concurrency)
        self.batches = eventlet.GreenPool(BATCHES_IN_FLIGHT)
        self.stopping = False
        self.unfinished = 0  # jobs submitted and not yet recorded (or given up to the timer)

    def start(self):
        # The service's own database and provider registry (every dependency is set up by now).
        self.db = next(d for d in self.container.dependencies if isinstance(d, Platform)).db
        self.registry = next(d for d in self.container.dependencies if isinstance(d, Providers)).registry
        self.container.spawn_managed_thread(self._run, identifier="notify-sender")

    def get_dependency(self, worker_ctx) -> "Sender":
        return self

    def submit(self, jobs: list[handlers.Job]) -> None:
        for job in jobs:
            self.unfinished += 1
            self.queue.put(job)  # waits while the queue is full

    def _run(self) -> None:
        while True:
            try:
                batch = [self.queue.get(timeout=0.5)]
            except Empty:
                if self.stopping:
                    return
                continue
            while len(batch) < self.batch_size:
                try:
                    batch.append(self.queue.get_nowait())
                except Empty:
                    break
            self.batches.spawn_n(self._send, batch)  # waits while BATCHES_IN_FLIGHT batches are busy

    def _send(self, batch: list[handlers.Job]) -> None:
        try:
            handlers.send_jobs(lambda tenant_id: UnitOfWork(self.db, system_context(tenant_id)), self.registry,
                               batch, self.policy, pmap=self.sends.imap)
        except Exception:  # the database, not a provider: the rows stay queued and the timer sends them
            log.exception("could not send %d deliveries; the timer will", len(batch))
        finally:
            self.unfinished -= len(batch)

    def stop(self):
        self.stopping = True
        deadline = time.monotonic() + STOP_SECONDS
        while self.unfinished > 0 and time.monotonic() < deadline:
            eventlet.sleep(0.05)

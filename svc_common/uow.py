"""Unit of work: one transaction holding a state change and the events it records.

Events go to the outbox table in the same transaction (never "commit, then publish");
the relay publishes them after commit. Event consumers also record the event id they
processed in the same transaction, which makes redelivery a no-op.
"""
import logging
import uuid

from pydantic import BaseModel
from sqlalchemy.orm import Session

from .context import RequestContext
from .contracts import Actor, EventEnvelope, contract_for, exchange_of
from .db import Database, insert_if_absent, next_document_number, utcnow
from .errors import NotFound

log = logging.getLogger("svc_common.events")


class UnitOfWork:
    def __init__(self, db: Database, ctx: RequestContext):
        self.db = db
        self.ctx = ctx
        self.session: Session = db.session(ctx.tenant_id)
        self.emitted: list[EventEnvelope] = []
        self.duplicate = False  # set by consume(): this event was already handled

    def __enter__(self) -> "UnitOfWork":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if not self.session.in_transaction():
                    return  # nothing was read or written (an event turned down at once): nothing to commit
                self.session.commit()
                if self.emitted:
                    self.db.outbox_written.set()  # wake the relay now, not at its next poll
                    log.info("events recorded", extra={"event_types": [e.type for e in self.emitted],
                                                       "event_ids": [str(e.event_id) for e in self.emitted]})
            else:
                self.session.rollback()
        finally:
            self.session.close()

    # -- events -------------------------------------------------------------------------
    def emit(self, event_type: str, data: BaseModel | dict, version: int = 1) -> EventEnvelope:
        """Record an event for publication when (and only if) this transaction commits."""
        return self.emit_many([(event_type, data)], version)[0]

    def emit_many(self, events: list[tuple[str, BaseModel | dict]], version: int = 1,
                  correlation_ids: list[str | None] | None = None) -> list[EventEnvelope]:
        """Record several events (type, data) in one executemany: a fan-out of hundreds per transaction.
        `correlation_ids`, one per event: the request each was caused by, when one transaction handles
        a batch of events of several requests (default: this unit of work's)."""
        causes = correlation_ids or [None] * len(events)
        envelopes = [self._envelope(event_type, data, version, cause)
                     for (event_type, data), cause in zip(events, causes, strict=True)]
        if envelopes:
            self.session.execute(self.db.tables.outbox_insert, [{
                "event_id": e.event_id,
                "tenant_id": e.tenant_id,
                "type": e.type,
                "exchange": exchange_of(e.type),
                "envelope": e.model_dump(mode="json"),
                "created_at": e.occurred_at,
            } for e in envelopes])
            self.emitted.extend(envelopes)
        return envelopes

    def _envelope(self, event_type: str, data: BaseModel | dict, version: int,
                  correlation_id: str | None = None) -> EventEnvelope:
        contract = contract_for(event_type, version)
        raw = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
        return EventEnvelope(
            event_id=uuid.uuid4(),
            type=event_type,
            schema_version=version,
            occurred_at=utcnow(),
            tenant_id=self.ctx.tenant_id,
            correlation_id=correlation_id or self.ctx.correlation_id,
            actor=Actor(id=self.ctx.actor_id, role=self.ctx.actor_role) if self.ctx.actor_role else None,
            data=contract.model_validate(raw).model_dump(mode="json"),
        )

    def consume(self, consumer: str, event_id: uuid.UUID) -> bool:
        """Claim an event for `consumer`; False (and `duplicate`) if it was already processed.

        The claim row commits or rolls back with the effect, so a crash mid-way leaves the
        event unclaimed and the redelivery does the work once.
        """
        claimed = insert_if_absent(self.session, self.db.tables.processed_events,
                                   {"consumer": consumer, "event_id": event_id, "processed_at": utcnow()})
        self.duplicate = not claimed
        return claimed

    def get_or_404(self, model, id_: uuid.UUID, field: str, noun: str):
        """The row of this tenant with this id, or NotFound naming `field`.

        The session already filters by tenant; the explicit check keeps a row the identity map
        held from elsewhere from ever crossing the boundary."""
        row = self.session.get(model, id_)
        if row is None or row.tenant_id != self.ctx.tenant_id:
            raise NotFound(f"{noun} {id_} not found", [{"field": field, "message": "not found"}])
        return row

    def next_number(self, kind: str, prefix: str) -> str:
        return next_document_number(self.session, self.db.tables, self.ctx.tenant_id, kind, prefix,
                                    blocks=self.db.numbers)

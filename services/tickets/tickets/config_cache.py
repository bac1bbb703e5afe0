"""A tenant's work-order configuration (types, settings, teams), cached per process.

Every create, assignment and check-in reads them; they change seldom. Reading them from the
database each time was a fifth of tickets' CPU per create.

Freshness:
- A change committed by this process (an RPC that edits a type or the settings, a team.updated
  event it consumed, any ORM or Core write of those tables) drops the tenant's entry right after
  its commit, so the next reader here sees it.
- A change committed by another tickets instance is seen here about TTL_SECONDS later at most (plus
  the time of one reload, during which the expired value still serves): a type
  disabled there can still be used here for that long, a team change reaches permission checks here
  that late. Team changes reach tickets asynchronously (events) anyway.
- A transaction that itself changed the configuration reads it from the database, not from here.

The cached values are read-only snapshots (views), never ORM rows: they outlive the session.
"""
import dataclasses
import time
import uuid
import weakref
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from svc_common.uow import UnitOfWork

from .domain import Flow, WorkingHours
from .models import TeamReplica, TenantSettings, TicketType

TTL_SECONDS = 2.0
CHANGED = "tickets.config_changed"  # session.info key: {(kind, tenant_id)} this transaction wrote

KIND_OF_MODEL = {TicketType: "types", TenantSettings: "settings", TeamReplica: "teams"}
KIND_OF_TABLE = {model.__table__: kind for model, kind in KIND_OF_MODEL.items()}


@dataclasses.dataclass(frozen=True)
class TypeView:
    code: str
    name: str
    name_en: str | None
    enabled: bool
    fields: list
    flow: dict
    team_ids: list
    rules: Flow  # `flow` parsed

    @classmethod
    def of(cls, row: TicketType) -> "TypeView":
        return cls(code=row.code, name=row.name, name_en=row.name_en, enabled=row.enabled, fields=row.fields or [],
                   flow=row.flow or {}, team_ids=row.team_ids or [], rules=Flow.from_dict(row.flow))


@dataclasses.dataclass(frozen=True)
class SettingsView:
    check_in_radius_m: int
    working_hours: dict | None
    sla_rules: dict
    dispatch_rules: list
    hours: WorkingHours  # `working_hours` parsed

    @classmethod
    def of(cls, row: TenantSettings) -> "SettingsView":
        return cls(check_in_radius_m=row.check_in_radius_m, working_hours=row.working_hours,
                   sla_rules=row.sla_rules or {}, dispatch_rules=list(row.dispatch_rules or []),
                   hours=WorkingHours.from_dict(row.working_hours))


@dataclasses.dataclass(frozen=True)
class TeamView:
    team_id: uuid.UUID
    name: str
    parent_id: uuid.UUID | None
    kind: str
    member_ids: tuple[str, ...]
    manager_ids: tuple[str, ...]

    @classmethod
    def of(cls, row: TeamReplica) -> "TeamView":
        return cls(team_id=row.team_id, name=row.name, parent_id=row.parent_id, kind=row.kind,
                   member_ids=tuple(row.member_ids or ()), manager_ids=tuple(row.manager_ids or ()))


class TenantCache:
    """(kind, tenant) → value, per database engine, for TTL_SECONDS or until a local change."""

    def __init__(self):
        self._entries: "weakref.WeakKeyDictionary[sa.Engine, dict]" = weakref.WeakKeyDictionary()
        # Bumped by every invalidation of a kind: a value loaded while one happened is not kept.
        self._generations: "weakref.WeakKeyDictionary[sa.Engine, dict]" = weakref.WeakKeyDictionary()
        self._loading: set = set()  # (engine id, kind, tenant) being reloaded by some worker

    def get(self, uow: UnitOfWork, kind: str, load: Callable[[UnitOfWork], Any]) -> Any:
        tenant_id = uow.ctx.tenant_id
        changed = uow.session.info.get(CHANGED)
        if changed and ((kind, tenant_id) in changed or (kind, None) in changed):
            return load(uow)
        engine = uow.db.engine
        entries = self._entries.get(engine)
        if entries is None:
            entries = self._entries.setdefault(engine, {})
        now = time.monotonic()
        key = (kind, tenant_id)
        hit = entries.get(key)
        if hit is not None and now - hit[0] < TTL_SECONDS:
            return hit[1]
        loading = (id(engine), kind, tenant_id)
        if hit is not None and loading in self._loading:
            # Expired, and another worker is reloading it: the value it replaces serves meanwhile, rather
            # than every worker in flight reloading at once. (An invalidation removes the entry: no hit.)
            return hit[1]
        generations = self._generations.setdefault(engine, {})
        generation = generations.get(kind, 0)
        self._loading.add(loading)
        try:
            value = load(uow)
        finally:
            self._loading.discard(loading)
        if generations.get(kind, 0) == generation:
            entries[key] = (now, value)
        return value

    def invalidate(self, engine: sa.Engine, kind: str, tenant_id: uuid.UUID | None) -> None:
        """Forget `kind` of the tenant (of every tenant if None)."""
        generations = self._generations.setdefault(engine, {})
        generations[kind] = generations.get(kind, 0) + 1
        entries = self._entries.get(engine, {})
        for key in [k for k in entries if k[0] == kind and (tenant_id is None or k[1] == tenant_id)]:
            entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
        self._generations.clear()


CACHE = TenantCache()


def _note(session: Session, kind: str, tenant_id: uuid.UUID | None) -> None:
    session.info.setdefault(CHANGED, set()).add((kind, tenant_id))


@event.listens_for(Session, "after_flush")
def _note_orm_changes(session: Session, flush_context) -> None:
    for objects in (session.new, session.dirty, session.deleted):
        for obj in objects:
            kind = KIND_OF_MODEL.get(type(obj))
            if kind is not None:
                _note(session, kind, getattr(obj, "tenant_id", None) or session.info.get("tenant_id"))


@event.listens_for(Session, "do_orm_execute")
def _note_statement_changes(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    kind = KIND_OF_TABLE.get(getattr(state.statement, "table", None))
    if kind is not None:
        _note(state.session, kind, state.session.info.get("tenant_id"))


@event.listens_for(Session, "after_commit")
def _invalidate_after_commit(session: Session) -> None:
    # After the commit, not at the change: a reader in between would cache the old rows again.
    changed = session.info.pop(CHANGED, None)
    if changed:
        engine = session.get_bind()
        for kind, tenant_id in changed:
            CACHE.invalidate(engine, kind, tenant_id)

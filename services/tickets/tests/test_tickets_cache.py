"""The per-process cache of a tenant's types, settings and teams (tickets.config_cache).

A change made through this process is seen by the very next call; a change made by another
instance (here: a second Database over the same file, as a second process would have) is seen
once the entry's time to live is over, never later."""
import pytest
import sqlalchemy as sa
from tickets_testkit import make_ticket

from svc_common.db import Database
from svc_common.errors import ValidationFailed
from svc_common.testing import uow
from tickets import config_cache, handlers
from tickets.models import PLATFORM, TicketType
from tickets.schemas import SettingsIn, TicketTypePatch


class Clock:
    """config_cache's monotonic clock, moved by hand: the TTL passes without waiting."""

    def __init__(self, monkeypatch):
        self.now = 1000.0
        monkeypatch.setattr(config_cache.time, "monotonic", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


def warm(db, ctx, clock, type="install"):
    """The tenant's first order creates the built-in types; once the entry that saw none has
    expired, the second order caches them."""
    make_ticket(db, ctx, type=type)
    clock.advance(config_cache.TTL_SECONDS)
    make_ticket(db, ctx, type=type)


@pytest.fixture
def other_instance(db):
    """The same database as another tickets process sees it: its own engine, hence its own cache."""
    other = Database(db.url, PLATFORM)
    yield other
    other.dispose()


def test_a_type_disabled_here_is_refused_by_the_next_create(db, office, clock):
    warm(db, office, clock)
    with uow(db, office) as u:
        handlers.update_type(u, "install", TicketTypePatch(enabled=False))
    with pytest.raises(ValidationFailed) as err:
        make_ticket(db, office, type="install")
    assert err.value.errors[0]["field"] == "type"


def test_a_type_disabled_by_another_instance_is_refused_once_the_ttl_is_over(db, office, clock, other_instance):
    warm(db, office, clock)
    with uow(other_instance, office) as u:
        handlers.update_type(u, "install", TicketTypePatch(enabled=False))
    clock.advance(config_cache.TTL_SECONDS / 2)
    make_ticket(db, office, type="install")  # the documented staleness: still allowed here, within the TTL
    clock.advance(config_cache.TTL_SECONDS / 2)
    with pytest.raises(ValidationFailed):
        make_ticket(db, office, type="install")


def test_settings_changed_here_apply_to_the_next_create(db, office, clock):
    make_ticket(db, office, priority="high")
    first = make_ticket(db, office, priority="high")
    assert first.complete_due_at is None
    with uow(db, office) as u:
        handlers.update_settings(u, SettingsIn.model_validate({"sla_rules": {"high": {"complete_minutes": 60}}}))
    second = make_ticket(db, office, priority="high")
    assert (second.complete_due_at - second.created_at).total_seconds() == 3600


def test_a_team_event_consumed_here_changes_where_the_next_order_goes(db, office, roster, clock):
    make_ticket(db, office)
    before = make_ticket(db, office)
    assert before.branch_id is None  # a centre dispatcher: the centre's queue
    branch = roster.team("浦东网点", managers=[office.actor_id])
    after = make_ticket(db, office)
    assert after.branch_id == branch  # now a manager of one branch: its queue


def test_a_transaction_that_changed_a_type_reads_it_back_itself(db, office, clock):
    warm(db, office, clock)
    with uow(db, office) as u:
        handlers.update_type(u, "install", TicketTypePatch(enabled=False))
        u.session.flush()
        assert handlers.type_view(u, "install").enabled is False


def test_a_core_statement_on_the_types_table_invalidates_too(db, office, clock):
    warm(db, office, clock)
    with uow(db, office) as u:
        u.session.execute(sa.update(TicketType).where(TicketType.code == "install").values(enabled=False))
    with pytest.raises(ValidationFailed):
        make_ticket(db, office, type="install")


def test_a_value_loaded_while_it_was_invalidated_is_not_kept(db, office, clock):
    """A reader that loaded the old rows before a concurrent commit must not cache them."""
    cache = config_cache.TenantCache()
    loads = []

    def load(u):
        loads.append(1)
        if len(loads) == 1:  # another worker's commit lands while this one is reading
            cache.invalidate(db.engine, "types", office.tenant_id)
        return f"value {len(loads)}"

    with uow(db, office) as u:
        assert cache.get(u, "types", load) == "value 1"
        assert cache.get(u, "types", load) == "value 2"  # not kept: loaded again
        assert cache.get(u, "types", load) == "value 2"  # kept
    assert len(loads) == 2


def test_the_cache_is_per_tenant(db, clock):
    from svc_common.testing import context
    a, b = context(role="dispatcher"), context(role="dispatcher")
    warm(db, a, clock)
    warm(db, b, clock)
    with uow(db, b) as u:
        handlers.update_type(u, "install", TicketTypePatch(enabled=False))
    make_ticket(db, a, type="install")  # tenant a's type is untouched
    with pytest.raises(ValidationFailed):
        make_ticket(db, b, type="install")


def test_an_expired_value_serves_while_another_worker_reloads_it(db, office, clock):
    """When the entry expires under load, one worker reloads; the others do not all reload at once."""
    cache = config_cache.TenantCache()
    with uow(db, office) as u:
        assert cache.get(u, "teams", lambda _: "old") == "old"
        clock.advance(config_cache.TTL_SECONDS)
        served_meanwhile = []

        def reload(_):
            served_meanwhile.append(cache.get(u, "teams", lambda _: pytest.fail("a second reload")))
            return "new"

        assert cache.get(u, "teams", reload) == "new"
        assert served_meanwhile == ["old"]
        assert cache.get(u, "teams", lambda _: pytest.fail("reloaded again")) == "new"

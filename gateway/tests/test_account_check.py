"""Old tokens stop working when their user is deactivated or changes role (within the recheck)."""
import os
import uuid

os.environ.setdefault("JWT_SECRET", "unit-test-secret-unit-test-secret-0123456789")

from gateway.auth import AccountCheck, Principal  # noqa: E402
from gateway.models import PLATFORM, Base, Tenant, User  # noqa: E402
from svc_common.testing import sqlite_database  # noqa: E402


def a_user(db) -> User:
    tenant_id = uuid.uuid4()
    with db.session(tenant_id) as session, session.begin():
        session.add(Tenant(id=tenant_id, code=f"c{tenant_id.hex[:6]}", name="某公司"))
        user = User(tenant_id=tenant_id, username="zhang", name="张工", role="technician", password_hash="x")
        session.add(user)
    return user


def set_user(db, user: User, **values) -> None:
    with db.session(user.tenant_id) as session, session.begin():
        for name, value in values.items():
            setattr(session.get(User, user.id), name, value)


def test_deactivation_and_role_change_end_old_tokens(tmp_path):
    db = sqlite_database(tmp_path, Base.metadata, PLATFORM)
    user = a_user(db)
    principal = Principal(user.id, user.tenant_id, "technician", "zhang")
    check = AccountCheck(recheck_seconds=0)
    assert check.still_valid(db, principal)

    set_user(db, user, role="dispatcher")
    assert not check.still_valid(db, principal)
    assert check.still_valid(db, Principal(user.id, user.tenant_id, "dispatcher", "zhang"))

    set_user(db, user, role="technician", active=False)
    assert not check.still_valid(db, principal)
    # a token naming a user of another tenant (or none) is refused too
    assert not check.still_valid(db, Principal(user.id, uuid.uuid4(), "technician", "zhang"))


def test_answers_are_cached_for_the_recheck_interval(tmp_path):
    db = sqlite_database(tmp_path, Base.metadata, PLATFORM)
    user = a_user(db)
    principal = Principal(user.id, user.tenant_id, "technician", "zhang")
    check = AccountCheck(recheck_seconds=3600)
    assert check.still_valid(db, principal)
    set_user(db, user, active=False)
    assert check.still_valid(db, principal)      # cached: the database was not asked again
    assert not AccountCheck(recheck_seconds=3600).still_valid(db, principal)


def test_a_new_token_after_a_role_change_is_not_refused_by_the_old_ones_answer(tmp_path):
    db = sqlite_database(tmp_path, Base.metadata, PLATFORM)
    user = a_user(db)
    check = AccountCheck(recheck_seconds=3600)
    set_user(db, user, role="dispatcher")
    assert not check.still_valid(db, Principal(user.id, user.tenant_id, "technician", "zhang"))  # the old token
    assert check.still_valid(db, Principal(user.id, user.tenant_id, "dispatcher", "zhang"))      # the new one


def test_the_cache_is_bounded(tmp_path, monkeypatch):
    db = sqlite_database(tmp_path, Base.metadata, PLATFORM)
    monkeypatch.setattr("gateway.auth.CACHED_ACCOUNTS", 3)
    check = AccountCheck(recheck_seconds=3600)
    for _ in range(10):
        user = a_user(db)
        check.still_valid(db, Principal(user.id, user.tenant_id, "technician", "zhang"))
    assert len(check._cache) == 3

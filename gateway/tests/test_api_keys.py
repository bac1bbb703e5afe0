"""API keys: shown once, stored as a digest, scoped to their company, revocable, expiring."""
import datetime as dt
import os
from types import SimpleNamespace

import pytest

os.environ.setdefault("JWT_SECRET", "unit-test-secret-unit-test-secret-0123456789")

from gateway import api_keys  # noqa: E402
from gateway.auth import principal_from_token  # noqa: E402
from gateway.models import PLATFORM, Base  # noqa: E402
from svc_common.errors import NotFound, ValidationFailed  # noqa: E402
from svc_common.testing import context, sqlite_database, uow  # noqa: E402


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


def issue(db, ctx, **kwargs):
    with uow(db, ctx) as work:
        key, token = api_keys.create_key(work, kwargs.pop("name", "ERP sync"), kwargs.pop("role", "dispatcher"),
                                         kwargs.pop("expires_at", None))
        return key.id, token


def state(db, recheck=0.0):
    return SimpleNamespace(db=db, api_keys=api_keys.ApiKeyCache(recheck, max_keys=100), account_check=None)


def test_a_key_acts_for_its_company_with_its_role_and_only_its_digest_is_stored(db):
    admin = context()
    key_id, token = issue(db, admin)
    assert token.startswith("fsp_")
    principal = principal_from_token(state(db), token)
    assert (principal.user_id, principal.tenant_id, principal.role) == (key_id, admin.tenant_id, "dispatcher")
    with uow(db, admin) as work:
        (stored,) = api_keys.list_keys(work)
        assert token.split("_", 2)[2] not in (stored.secret_sha256, stored.prefix)
    # another company's admin neither sees nor revokes it
    with uow(db, context()) as work:
        assert api_keys.list_keys(work) == []
        with pytest.raises(NotFound):
            api_keys.revoke_key(work, key_id)


def test_wrong_secret_unknown_prefix_and_garbage_are_refused(db):
    _, token = issue(db, context())
    prefix = token.split("_")[1]
    for bad in (f"fsp_{prefix}_not-the-secret", "fsp_000000000000_whatever", "fsp_", "fsp__x"):
        assert principal_from_token(state(db), bad) is None


def test_revoked_and_expired_keys_stop_working(db):
    admin = context()
    key_id, token = issue(db, admin)
    cache = state(db, recheck=0.0)
    assert principal_from_token(cache, token) is not None
    with uow(db, admin) as work:
        api_keys.revoke_key(work, key_id)
    assert principal_from_token(cache, token) is None

    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    _, expiring = issue(db, admin, expires_at=soon)
    assert principal_from_token(cache, expiring) is not None
    key = cache.api_keys.lookup(db, expiring)
    assert not key.usable(soon + dt.timedelta(seconds=1))


def test_bad_role_or_past_expiry_is_a_422_naming_the_field(db):
    with pytest.raises(ValidationFailed) as error:
        issue(db, context(), role="superuser")
    assert error.value.errors[0]["field"] == "role"
    with pytest.raises(ValidationFailed) as error:
        issue(db, context(), expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    assert error.value.errors[0]["field"] == "expires_at"


def test_a_cached_key_is_not_reread_until_the_recheck(db):
    admin = context()
    key_id, token = issue(db, admin)
    cache = state(db, recheck=3600)
    assert principal_from_token(cache, token) is not None
    with uow(db, admin) as work:
        api_keys.revoke_key(work, key_id)
    assert principal_from_token(cache, token) is not None      # within the recheck window
    assert principal_from_token(state(db), token) is None       # a fresh replica sees the revocation

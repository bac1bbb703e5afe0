"""Rotating JWT_SECRET: tokens of the previous secret stay valid while it is listed, and only then."""
import os
import uuid
from types import SimpleNamespace

import jwt
import pytest

os.environ.setdefault("JWT_SECRET", "unit-test-secret-unit-test-secret-0123456789")

from gateway.auth import decode_token, issue_token  # noqa: E402
from gateway.settings import GatewaySettings, get_gateway_settings, key_id  # noqa: E402

OLD = "old-secret-old-secret-old-secret-0123456789"
NEW = "new-secret-new-secret-new-secret-0123456789"


@pytest.fixture
def secrets_env(monkeypatch):
    def use(current: str, previous: str = ""):
        monkeypatch.setenv("JWT_SECRET", current)
        monkeypatch.setenv("JWT_PREVIOUS_SECRETS", previous)
        get_gateway_settings.cache_clear()
    yield use
    get_gateway_settings.cache_clear()


def a_user():
    return SimpleNamespace(id=uuid.uuid4(), tenant_id=uuid.uuid4(), role="dispatcher", username="wang")


def test_a_token_of_the_previous_secret_lives_through_the_rotation_window(secrets_env):
    user = a_user()
    secrets_env(OLD)
    old_token, _ = issue_token(user, "zh-CN")
    assert jwt.get_unverified_header(old_token)["kid"] == key_id(OLD)

    secrets_env(NEW, previous=OLD)                      # rotated; OLD still accepted
    assert decode_token(old_token).user_id == user.id
    new_token, _ = issue_token(user, "zh-CN")
    assert jwt.get_unverified_header(new_token)["kid"] == key_id(NEW)
    assert decode_token(new_token).user_id == user.id

    secrets_env(NEW)                                    # window over: OLD dropped
    assert decode_token(old_token) is None
    assert decode_token(new_token).user_id == user.id


def test_a_token_claiming_a_listed_kid_but_signed_otherwise_is_refused(secrets_env):
    secrets_env(NEW, previous=OLD)
    user = a_user()
    forged = jwt.encode({"sub": str(user.id), "tid": str(user.tenant_id), "role": "admin", "usr": "x",
                         "exp": 4102444800}, "attacker-secret-attacker-secret-012345",
                        headers={"kid": key_id(OLD)})
    assert decode_token(forged) is None


def test_short_previous_secrets_are_refused_at_start(monkeypatch):
    monkeypatch.setenv("JWT_SECRET", NEW)
    monkeypatch.setenv("JWT_PREVIOUS_SECRETS", f"{OLD}, too-short")
    with pytest.raises(ValueError, match="at least 32"):
        GatewaySettings()

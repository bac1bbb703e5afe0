"""Shared fixtures of the tickets unit tier: a SQLite database, an office, a roster, teams."""
import pytest
from tickets_testkit import Roster

from svc_common.testing import context, sqlite_database
from tickets import spatial
from tickets.models import PLATFORM, Base


@pytest.fixture(autouse=True)
def _fresh_indexes():
    spatial.forget_all()
    yield
    spatial.forget_all()


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


@pytest.fixture
def office():
    return context(role="dispatcher")


@pytest.fixture
def roster(db, office):
    return Roster(db, office)

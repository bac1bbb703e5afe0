"""Fixtures of the inventory unit tests: a SQLite database per test and a seeded tenant."""
import pytest

from inventory.models import PLATFORM, Base
from inventory_testkit import World, seed
from svc_common.testing import sqlite_database


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


@pytest.fixture
def world(db) -> World:
    return seed(db)

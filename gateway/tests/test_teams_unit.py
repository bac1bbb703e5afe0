"""Teams, branches and users' dispatch attributes in the gateway's accounts (SQLite, no broker):
the hierarchy stays a tree, and team.updated / user.updated carry what tickets replicates."""
import os
import uuid

import pytest

os.environ.setdefault("JWT_SECRET", "unit-test-secret-unit-test-secret-0123456789")

from gateway import accounts  # noqa: E402
from gateway.models import PLATFORM, Base  # noqa: E402
from gateway.schemas import TeamIn, TeamPatch, UserIn, UserPatch  # noqa: E402
from svc_common.errors import Conflict, NotFound, ValidationFailed  # noqa: E402
from svc_common.testing import context, outbox_events, sqlite_database, uow  # noqa: E402


@pytest.fixture
def db(tmp_path):
    return sqlite_database(tmp_path, Base.metadata, PLATFORM)


def test_teams_form_a_tree_and_every_change_is_a_team_updated_event(db):
    admin = context(role="admin")
    with uow(db, admin) as u:
        tech = accounts.create_user(u, UserIn(username="li", password="password-123", name="李工",
                                              role="technician", skills=["空调"], areas=["浦东"]))
        boss = accounts.create_user(u, UserIn(username="boss", password="password-123", name="经理",
                                              role="dispatcher"))
    with uow(db, admin) as u:
        center = accounts.create_team(u, TeamIn(name="服务中心", kind="center"))
        branch = accounts.create_team(u, TeamIn(name="浦东网点", kind="branch", parent_id=center.id,
                                                member_ids=[tech.id], manager_ids=[boss.id]))
    with pytest.raises(ValidationFailed) as err:
        with uow(db, admin) as u:
            accounts.update_team(u, center.id, TeamPatch(parent_id=branch.id))
    assert err.value.errors[0]["field"] == "parent_id"
    with pytest.raises(ValidationFailed) as err:
        with uow(db, admin) as u:
            accounts.create_team(u, TeamIn(name="X", member_ids=[uuid.uuid4()]))
    assert err.value.errors[0]["field"] == "member_ids.0"
    with pytest.raises(Conflict):
        with uow(db, admin) as u:
            accounts.create_team(u, TeamIn(name="浦东网点"))
    with uow(db, admin) as u:
        accounts.update_user(u, tech.id, UserPatch(skills=["空调", "冰箱"]))
    events = outbox_events(db)
    teams = [e["data"] for e in events if e["type"] == "team.updated"]
    assert [t["name"] for t in teams] == ["服务中心", "浦东网点"]
    assert teams[1]["parent_id"] == str(center.id)
    assert (teams[1]["kind"], teams[1]["member_ids"], teams[1]["manager_ids"]) == ("branch", [str(tech.id)],
                                                                                   [str(boss.id)])
    updated = [e["data"] for e in events if e["type"] == "user.updated"][-1]
    assert updated["skills"] == ["空调", "冰箱"] and updated["areas"] == ["浦东"]
    assert updated["team_ids"] == [str(branch.id)]
    # another tenant sees none of it
    with pytest.raises(NotFound):
        with uow(db, context(role="admin")) as u:
            accounts.get_team(u, branch.id)

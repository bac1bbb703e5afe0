"""Helpers of the tickets unit tests: people, teams and orders as the replicas would hold them."""
import uuid
from decimal import Decimal

from svc_common.contracts import TeamUpdatedV1, UserV1
from svc_common.testing import context, uow
from svc_common.validation import parse
from tickets import handlers
from tickets.schemas import TicketIn


class Roster:
    """Helpers to put people and teams into tickets' replicas, as the gateway's events would."""

    def __init__(self, db, office):
        self.db, self.office = db, office

    def user(self, name="李工", role="technician", skills=(), areas=(), lat=None, lng=None) -> uuid.UUID:
        user_id = uuid.uuid4()
        with uow(self.db, self.office) as u:
            handlers.apply_user_event(u, "user.created", UserV1(
                user_id=user_id, name=name, username=f"u{user_id.hex[:8]}", role=role, phone="13900000000",
                skills=list(skills), areas=list(areas)))
            if lat is not None:
                tech = u.session.get(handlers.Technician, user_id)
                tech.latitude, tech.longitude = lat, lng
        return user_id

    def team(self, name, kind="branch", parent=None, members=(), managers=()) -> uuid.UUID:
        team_id = uuid.uuid4()
        self.update_team(team_id, name, kind, parent, members, managers)
        return team_id

    def update_team(self, team_id, name, kind="branch", parent=None, members=(), managers=()):
        with uow(self.db, self.office) as u:
            handlers.apply_team_event(u, TeamUpdatedV1(team_id=team_id, name=name, kind=kind, parent_id=parent,
                                                       member_ids=list(members), manager_ids=list(managers)))

    def as_(self, user_id, role="technician"):
        return context(tenant_id=self.office.tenant_id, role=role, actor_id=user_id)


def snapshot(customer_id=None, name="申能", lat="31.235929", lng="121.506058"):
    return {"customer_id": str(customer_id or uuid.uuid4()), "customer_name": name, "contact_name": "王经理",
            "contact_phone": "13800138000", "address": "上海", "latitude": Decimal(lat) if lat else None,
            "longitude": Decimal(lng) if lng else None, "equipment_id": None, "equipment_model": None,
            "serial_number": None, "under_warranty": None}


def make_ticket(db, ctx, type="repair", customer_name="申能", lat="31.235929", lng="121.506058", **fields):
    data = parse(TicketIn, {"type": type, "customer_id": str(uuid.uuid4()), "description": "不制冷", **fields})
    with uow(db, ctx) as u:
        return handlers.create_ticket(u, data, snapshot(data.customer_id, customer_name, lat, lng))

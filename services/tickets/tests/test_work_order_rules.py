"""The work-order state machine, type flows, custom fields, SLA, field execution and lists
(handlers over SQLite, no broker)."""
import base64
import datetime as dt
import uuid
from decimal import Decimal

import pytest

from svc_common.errors import Conflict, Forbidden, ValidationFailed
from svc_common.testing import outbox_events, uow
from svc_common.validation import parse
from tickets import domain, handlers
from tickets.schemas import (
    AssignIn, BatchAssignIn, CheckInIn, FileIn, IncompleteIn, PublishIn, ReassignIn, ReceiptIn, SettingsIn, SettleIn,
    TicketTypeIn, TicketTypePatch, VisitIn,
)
from tickets.storage import LocalStorage
from tickets_testkit import make_ticket


def events(db, prefix="ticket."):
    return [e for e in outbox_events(db) if e["type"].startswith(prefix)]


def to_in_progress(db, office, roster, tech, **ticket_fields):
    ticket = make_ticket(db, office, **ticket_fields)
    with uow(db, office) as u:
        handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech))
    with uow(db, roster.as_(tech)) as u:
        handlers.accept_ticket(u, ticket.id)
    with uow(db, roster.as_(tech)) as u:
        handlers.check_in(u, ticket.id, CheckInIn(latitude=Decimal("31.236"), longitude=Decimal("121.506")))
    return ticket


# -- the state machine ------------------------------------------------------------------------------

def test_every_transition_table_entry_names_the_current_state_when_refused():
    for action, (allowed, _) in domain.TRANSITIONS.items():
        for state in domain.Status:
            if state in allowed:
                continue
            with pytest.raises(Conflict) as err:
                domain.next_status(state.value, action)
            assert err.value.errors == [{"field": "status", "message": f"work order is {state.value}"}]


def test_post_completion_steps_follow_the_type_flow():
    full = domain.Flow(approval_required=True, settlement=True, return_visit=True)
    assert domain.post_completion_status("completed", domain.Action.APPROVE, full) == "approved"
    assert domain.post_completion_status("approved", domain.Action.SETTLE, full) == "settled"
    assert domain.post_completion_status("settled", domain.Action.VISIT, full) == "visited"
    assert domain.post_completion_status("visited", domain.Action.CLOSE, full) == "closed"
    with pytest.raises(Conflict, match="completed"):  # settlement waits for approval
        domain.post_completion_status("completed", domain.Action.SETTLE, full)
    plain = domain.Flow()
    assert domain.post_completion_status("completed", domain.Action.CLOSE, plain) == "closed"
    with pytest.raises(Conflict, match="no settle step"):
        domain.post_completion_status("completed", domain.Action.SETTLE, plain)


def test_refuse_returns_to_the_queue_with_reason_and_the_timeline_says_who_when(db, office, roster):
    tech = roster.user()
    ticket = make_ticket(db, office)
    with uow(db, office) as u:
        handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech))
    with pytest.raises(Forbidden):
        with uow(db, roster.as_(roster.user("别人"))) as u:
            handlers.refuse_ticket(u, ticket.id, "不是我的")
    with uow(db, roster.as_(tech)) as u:
        t = handlers.refuse_ticket(u, ticket.id, "今天请假")
        assert (t.status, t.assignee_id) == ("pending_dispatch", None)
        last = t.timeline[-1]
        assert (last.action, last.note, last.actor_id, last.from_status) == ("refuse", "今天请假", tech, "assigned")
    refused = events(db)[-1]
    assert refused["type"] == "ticket.refused" and refused["data"]["reason"] == "今天请假"
    assert refused["data"]["technician_id"] == str(tech) and refused["data"]["number"] == ticket.number


def test_pause_stops_the_sla_clock_and_resume_returns_to_the_paused_state(db, office, roster):
    with uow(db, office) as u:
        handlers.update_settings(u, SettingsIn.model_validate({"sla_rules": {"high": {"complete_minutes": 60}}}))
    tech = roster.user()
    ticket = make_ticket(db, office, priority="high")
    due = ticket.complete_due_at
    assert due is not None and abs((due - ticket.created_at).total_seconds() - 3600) < 1
    with uow(db, office) as u:
        handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech))
    with uow(db, roster.as_(tech)) as u:
        handlers.pause_ticket(u, ticket.id, "等配件")
    with uow(db, office) as u:  # pretend it was paused for 30 minutes
        t = handlers.get_ticket(u, ticket.id)
        t.paused_at -= dt.timedelta(minutes=30)
    with pytest.raises(Conflict, match="paused"):
        with uow(db, roster.as_(tech)) as u:
            handlers.accept_ticket(u, ticket.id)
    with uow(db, roster.as_(tech)) as u:
        t = handlers.resume_ticket(u, ticket.id)
        assert t.status == "assigned"
        assert abs((t.complete_due_at - due).total_seconds() - 1800) < 2
    types = [e["type"] for e in events(db)]
    assert types[-2:] == ["ticket.paused", "ticket.resumed"]
    assert events(db)[-1]["data"]["paused_seconds"] >= 1800


def test_cancel_needs_a_reason_and_reopen_only_where_the_type_allows(db, office, roster):
    ticket = make_ticket(db, office)
    with uow(db, office) as u:
        handlers.cancel_ticket(u, ticket.id, "客户取消")
    with pytest.raises(Conflict, match="does not allow reopening"):
        with uow(db, office) as u:
            handlers.reopen_ticket(u, ticket.id, "客户又要修")
    with uow(db, office) as u:
        handlers.update_type(u, "repair", TicketTypePatch.model_validate({"flow": {"reopen_allowed": True}}))
    with uow(db, office) as u:
        t = handlers.reopen_ticket(u, ticket.id, "客户又要修")
        assert t.status == "pending_dispatch" and t.cancel_reason is None
    cancelled, reopened = events(db)[-2:]
    assert cancelled["data"]["from_status"] == "pending_dispatch"
    assert cancelled["data"]["reason"] == "客户取消"
    assert (reopened["type"], reopened["data"]["from_status"]) == ("ticket.reopened", "cancelled")
    with pytest.raises(Conflict, match="pending_dispatch"):
        with uow(db, office) as u:
            handlers.reopen_ticket(u, ticket.id, "again")


def test_full_flow_with_approval_settlement_visit_and_time_per_state(db, office, roster):
    with uow(db, office) as u:
        handlers.create_type(u, TicketTypeIn.model_validate({
            "code": "vip_repair", "name": "VIP 维修",
            "flow": {"approval_required": True, "settlement": True, "return_visit": True,
                     "close_roles": ["admin"]}}))
    tech = roster.user()
    ticket = to_in_progress(db, office, roster, tech, type="vip_repair")
    with uow(db, roster.as_(tech)) as u:
        handlers.complete_ticket(u, ticket.id, ReceiptIn(summary="修好了"))
    admin = roster.as_(uuid.uuid4(), "admin")
    with pytest.raises(Conflict, match="completed"):  # approval, settlement and the visit come first
        with uow(db, admin) as u:
            handlers.close_ticket(u, ticket.id, None)
    with uow(db, office) as u:
        handlers.approve_ticket(u, ticket.id, "ok")
    with uow(db, office) as u:
        t = handlers.settle_ticket(u, ticket.id, SettleIn.model_validate({
            "warranty": False,
            "fee_lines": [{"kind": "service_item", "description": "上门费", "quantity": "1", "unit_price": "80"},
                          {"kind": "part", "description": "电容", "quantity": "2", "unit_price": "25.5"}],
            "cost_lines": [{"kind": "labour", "description": "工时", "quantity": "1.5", "unit_price": "40"}]}))
        assert t.settlement["gross_profit"] == "71.00"
    with uow(db, office) as u:
        handlers.visit_ticket(u, ticket.id, VisitIn(satisfaction=5, comment="很满意"))
    with pytest.raises(Forbidden):  # this type: only admins close
        with uow(db, office) as u:
            handlers.close_ticket(u, ticket.id, None)
    with uow(db, admin) as u:
        t = handlers.close_ticket(u, ticket.id, "结单")
        assert t.status == "closed"
        assert set(t.state_seconds) >= {"pending_dispatch", "assigned", "accepted", "in_progress", "completed",
                                        "approved", "settled", "visited"}
    by_type = {e["type"]: e["data"] for e in events(db)}
    settled = by_type["ticket.settled"]
    assert (settled["fee_total"], settled["cost_total"], settled["gross_profit"], settled["currency"]) == \
        ("131.00", "60.00", "71.00", "CNY")
    assert settled["fee_lines"][1]["amount"] == "51.00" and settled["warranty"] is False
    assert by_type["ticket.visited"]["satisfaction"] == 5
    assert by_type["ticket.closed"]["ticket_id"] == str(ticket.id)


def test_a_type_without_acceptance_goes_straight_to_accepted(db, office, roster):
    with uow(db, office) as u:
        handlers.update_type(u, "delivery", TicketTypePatch.model_validate({"flow": {"acceptance_required": False}}))
    tech = roster.user()
    ticket = make_ticket(db, office, type="delivery")
    with uow(db, office) as u:
        assert handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech)).status == "accepted"


# -- types and custom fields ------------------------------------------------------------------------

def test_custom_fields_are_validated_on_every_write_naming_the_field(db, office, roster):
    with uow(db, office) as u:
        handlers.create_type(u, TicketTypeIn.model_validate({"code": "survey", "name": "勘察", "fields": [
            {"key": "rooms", "label": "房间数", "kind": "number", "required": True, "min": 1},
            {"key": "visit_date", "label": "日期", "kind": "date"},
            {"key": "brand", "label": "品牌", "kind": "select", "options": ["格力", "美的"]},
            {"key": "extras", "label": "附加", "kind": "multi_select", "options": ["清洗", "加氟"]}]}))
    with pytest.raises(ValidationFailed) as err:
        make_ticket(db, office, type="survey", custom_fields={"brand": "海尔", "visit_date": "tomorrow"})
    assert {e["field"] for e in err.value.errors} == {"custom_fields.rooms", "custom_fields.brand",
                                                      "custom_fields.visit_date"}
    with pytest.raises(ValidationFailed) as err:
        make_ticket(db, office, type="survey", custom_fields={"rooms": 0, "colour": "red"})
    assert {e["field"] for e in err.value.errors} == {"custom_fields.rooms", "custom_fields.colour"}
    ticket = make_ticket(db, office, type="survey", custom_fields={"rooms": 3, "extras": ["清洗"]})
    assert ticket.custom_fields == {"rooms": "3", "extras": ["清洗"]}
    with pytest.raises(ValidationFailed) as err:
        with uow(db, office) as u:
            handlers.update_fields(u, ticket.id, {"extras": ["打蜡"]})
    assert err.value.errors[0]["field"] == "custom_fields.extras"
    with uow(db, office) as u:
        assert handlers.update_fields(u, ticket.id, {"brand": "格力"}).custom_fields["brand"] == "格力"


def test_types_can_be_disabled_reordered_and_duplicate_field_keys_are_refused(db, office):
    with uow(db, office) as u:
        codes = [t.code for t in handlers.list_types(u)]
        assert codes == list(domain.TYPES)
        handlers.update_type(u, "training", TicketTypePatch(enabled=False))
    with pytest.raises(ValidationFailed, match="disabled"):
        make_ticket(db, office, type="training")
    with pytest.raises(ValidationFailed) as err:
        make_ticket(db, office, type="teleport")
    assert err.value.errors[0]["field"] == "type"
    with uow(db, office) as u:
        order = handlers.reorder_types(u, ["maintenance", "repair"])
        assert [t.code for t in order][:3] == ["maintenance", "repair", "install"]
        assert "training" not in [t.code for t in handlers.list_types(u, enabled_only=True)]
    with pytest.raises(ValidationFailed) as err:
        with uow(db, office) as u:
            handlers.create_type(u, TicketTypeIn.model_validate({"code": "x1", "name": "X", "fields": [
                {"key": "a", "label": "A", "kind": "text"}, {"key": "a", "label": "B", "kind": "text"}]}))
    assert err.value.errors[0]["field"] == "fields.1.key"


# -- dispatch modes ------------------------------------------------------------------------------------

def test_primary_plus_assistants_batch_and_reassign_with_reason(db, office, roster):
    li, wang, zhao = roster.user("李工"), roster.user("王工"), roster.user("赵工")
    a, b = make_ticket(db, office), make_ticket(db, office)
    with uow(db, office) as u:
        t = handlers.assign_ticket(u, a.id, AssignIn(technician_id=li, assistant_ids=[wang]))
        assert t.assistant_ids == [str(wang)]
    with pytest.raises(ValidationFailed) as err:
        with uow(db, office) as u:
            handlers.assign_ticket(u, b.id, AssignIn(technician_id=li, assistant_ids=[li]))
    assert err.value.errors[0]["field"] == "assistant_ids.0"
    c = make_ticket(db, office)
    # a batch is all or nothing: `a` is already assigned, so nothing changes
    with pytest.raises(Conflict) as err:
        with uow(db, office) as u:
            handlers.batch_assign(u, BatchAssignIn(ticket_ids=[b.id, a.id], technician_id=zhao))
    assert err.value.errors[0]["field"] == "ticket_ids.1"
    with uow(db, office) as u:
        assert handlers.get_ticket(u, b.id).status == "pending_dispatch"
        done = handlers.batch_assign(u, BatchAssignIn(ticket_ids=[b.id, c.id], technician_id=zhao))
        assert [t.status for t in done] == ["assigned", "assigned"]
    with uow(db, office) as u:
        t = handlers.reassign_ticket(u, a.id, ReassignIn(technician_id=zhao, reason="李工生病"))
        assert (t.assignee_id, t.assistant_ids) == (zhao, [str(wang)])
        assert (t.timeline[-1].action, t.timeline[-1].note) == ("reassign", "李工生病")
    reassigned = events(db)[-1]
    assert reassigned["type"] == "ticket.reassigned" and reassigned["data"]["from_technician_id"] == str(li)
    # collaborating / mine lists
    with uow(db, roster.as_(wang)) as u:
        assert [t.id for t in handlers.list_tickets(u, scope="collaborating")[0]] == [a.id]
        assert handlers.list_tickets(u, scope="mine")[1] == 0
    with uow(db, roster.as_(zhao)) as u:
        assert handlers.list_tickets(u, scope="mine")[1] == 3


def test_pool_grab_first_wins_and_team_pools_are_only_for_members(db, office, roster):
    li, wang = roster.user("李工"), roster.user("王工")
    team = roster.team("一组", kind="team", members=[wang])
    ticket = make_ticket(db, office)
    with pytest.raises(Conflict, match="pending_dispatch"):
        with uow(db, roster.as_(li)) as u:
            handlers.grab_ticket(u, ticket.id)
    with uow(db, office) as u:
        handlers.publish_to_pool(u, ticket.id, PublishIn(team_id=team))
    with uow(db, roster.as_(li)) as u:
        assert handlers.list_tickets(u, pool=True)[1] == 0
    with pytest.raises(Forbidden):
        with uow(db, roster.as_(li)) as u:
            handlers.grab_ticket(u, ticket.id)
    planned = dt.datetime(2030, 1, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    with uow(db, roster.as_(wang)) as u:
        assert handlers.list_tickets(u, pool=True)[1] == 1
        t = handlers.grab_ticket(u, ticket.id, handlers.GrabIn(planned_at=planned))
        assert (t.status, t.assignee_id, t.next_visit_at) == ("accepted", wang, planned)
    with pytest.raises(Conflict, match="accepted"):
        with uow(db, roster.as_(wang)) as u:
            handlers.grab_ticket(u, ticket.id)
    assert [e["type"] for e in events(db)][-2:] == ["ticket.published_to_pool", "ticket.grabbed"]


def test_automatic_dispatch_applies_rules_in_order_and_explains(db, office, roster):
    site = dict(lat="31.230000", lng="121.470000")
    near = roster.user("近", skills=["空调"], lat=31.231, lng=121.471)
    far = roster.user("远", skills=["空调"], lat=31.30, lng=121.60)
    roster.user("冰箱近", skills=["冰箱"], lat=31.2301, lng=121.4701)
    ticket = make_ticket(db, office, skill="空调", **site)
    with uow(db, office) as u:
        t = handlers.auto_dispatch(u, ticket.id)
        assert t.assignee_id == near
        explanation = t.timeline[-1].note
        assert "skill=空调: 2 candidates" in explanation and "nearest: 近 at" in explanation
        assert t.timeline[-1].data["mode"] == "auto"
    # the near one moves far away (a position ping); the index sees it on the next decision
    with uow(db, roster.as_(near)) as u:
        handlers.record_position(u, parse(handlers.PositionIn, {"latitude": "40.0", "longitude": "116.4"}))
    second = make_ticket(db, office, skill="空调", **site)
    with uow(db, office) as u:
        assert handlers.auto_dispatch(u, second.id).assignee_id == far
    # least open work first, then round robin
    with uow(db, office) as u:
        handlers.update_settings(u, SettingsIn(dispatch_rules=["skill", "least_open"]))
    third = make_ticket(db, office, skill="空调", **site)
    with uow(db, office) as u:
        t = handlers.auto_dispatch(u, third.id)
        assert t.assignee_id in (near, far) and "least_open" in t.timeline[-1].note
    # off duty technicians are not chosen
    for person in (near, far):
        with uow(db, roster.as_(person)) as u:
            handlers.record_position(u, parse(handlers.PositionIn, {"latitude": "31.2", "longitude": "121.4",
                                                                    "on_duty": False}))
    with uow(db, office) as u:
        handlers.update_settings(u, SettingsIn(dispatch_rules=["skill", "round_robin"]))
    fourth = make_ticket(db, office, skill="空调", **site)
    with uow(db, office) as u:
        t = handlers.auto_dispatch(u, fourth.id)
        assert t.timeline[-1].note.startswith("skill=空调: nobody matches")


def test_nearest_index_agrees_with_a_full_scan():
    import random

    from tickets.spatial import TechnicianIndex
    rng = random.Random(7)
    index = TechnicianIndex()
    people = [domain.Candidate(user_id=uuid.uuid4(), latitude=rng.uniform(30.5, 31.8),
                               longitude=rng.uniform(120.8, 122.0)) for _ in range(2000)]
    for p in people:
        index.upsert(p)
    for _ in range(200):
        site = (rng.uniform(30.4, 31.9), rng.uniform(120.7, 122.1))
        subset = people if rng.random() < 0.5 else rng.sample(people, 300)
        expected = min(((domain.distance_m(p.latitude, p.longitude, *site), str(p.user_id)) for p in subset))
        found = index.nearest(subset, site)
        assert (found[0], str(found[1].user_id)) == expected


# -- hierarchical networks --------------------------------------------------------------------------

def test_branch_queue_sub_branch_reassignment_request_and_outsourcing(db, office, roster):
    boss_a, boss_a1, boss_b = roster.user("网点A经理", "dispatcher"), roster.user("A1经理", "dispatcher"), \
        roster.user("B经理", "dispatcher")
    tech_a, tech_a1, tech_b = roster.user("A 师傅"), roster.user("A1 师傅"), roster.user("B 师傅")
    center = roster.team("服务中心", kind="center")
    a = roster.team("网点A", parent=center, members=[tech_a], managers=[boss_a])
    a1 = roster.team("网点A1", parent=a, members=[tech_a1], managers=[boss_a1])
    roster.team("网点B", parent=center, members=[tech_b], managers=[boss_b])
    ext = roster.team("外协公司", kind="external", managers=[boss_b])
    ticket = make_ticket(db, office)
    # centre → A; B's manager cannot touch it, A's can; A → A1
    with uow(db, office) as u:
        handlers.dispatch_to_branch(u, ticket.id, parse(handlers.BranchIn, {"branch_id": str(a)}))
    with pytest.raises(Forbidden):
        with uow(db, roster.as_(boss_b, "dispatcher")) as u:
            handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech_b))
    with pytest.raises(ValidationFailed) as err:  # not a member of A's network
        with uow(db, roster.as_(boss_a, "dispatcher")) as u:
            handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech_b))
    assert err.value.errors[0]["field"] == "technician_id"
    with uow(db, roster.as_(boss_a, "dispatcher")) as u:
        handlers.dispatch_to_branch(u, ticket.id, parse(handlers.BranchIn, {"branch_id": str(a1)}))
    # parents see their branches' orders; siblings do not
    with uow(db, roster.as_(boss_a, "dispatcher")) as u:
        assert handlers.list_tickets(u)[1] == 1
    with uow(db, roster.as_(boss_b, "dispatcher")) as u:
        assert handlers.list_tickets(u)[1] == 0
    # A1 asks to give it back; A rejects; A1 asks again; A approves: it is back in A's queue
    with uow(db, roster.as_(boss_a1, "dispatcher")) as u:
        handlers.request_reassignment(u, ticket.id, "人手不足")
    with pytest.raises(Forbidden):
        with uow(db, roster.as_(boss_a1, "dispatcher")) as u:
            handlers.approve_reassignment(u, ticket.id, None)
    with uow(db, roster.as_(boss_a, "dispatcher")) as u:
        handlers.reject_reassignment(u, ticket.id, "请先联系客户")
    with uow(db, roster.as_(boss_a1, "dispatcher")) as u:
        handlers.request_reassignment(u, ticket.id, "仍然人手不足")
    with uow(db, roster.as_(boss_a, "dispatcher")) as u:
        t = handlers.approve_reassignment(u, ticket.id, None)
        assert (t.branch_id, t.reassignment_request, t.status) == (a, None, "pending_dispatch")
    # A outsources to the external team, which declines (back to A), then accepts a second offer
    with uow(db, roster.as_(boss_a, "dispatcher")) as u:
        handlers.outsource_ticket(u, ticket.id, parse(handlers.OutsourceIn, {"team_id": str(ext)}))
    with pytest.raises(Conflict, match="not accepted"):
        with uow(db, roster.as_(boss_b, "dispatcher")) as u:
            handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech_b))
    with uow(db, roster.as_(boss_b, "dispatcher")) as u:
        t = handlers.answer_outsource(u, ticket.id, False, "排不开")
        assert (t.branch_id, t.outsource_status) == (a, "declined")
    with uow(db, roster.as_(boss_a, "dispatcher")) as u:
        handlers.outsource_ticket(u, ticket.id, parse(handlers.OutsourceIn, {"team_id": str(ext)}))
    with uow(db, roster.as_(boss_b, "dispatcher")) as u:
        assert handlers.answer_outsource(u, ticket.id, True, None).outsource_status == "accepted"
    types = [e["type"] for e in events(db)]
    assert types.count("ticket.reassignment_requested") == 2 and "ticket.reassignment_rejected" in types
    requested = next(e for e in events(db) if e["type"] == "ticket.reassignment_requested")["data"]
    assert requested["requested_by"] == str(boss_a1) and requested["parent_id"] == str(a)


# -- field execution ---------------------------------------------------------------------------------

def test_check_in_beyond_the_radius_is_flagged_and_listed_as_an_exception(db, office, roster):
    with uow(db, office) as u:
        handlers.update_settings(u, SettingsIn(check_in_radius_m=200))
    tech = roster.user()
    ticket = make_ticket(db, office)
    with uow(db, office) as u:
        handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech))
    with uow(db, roster.as_(tech)) as u:
        handlers.accept_ticket(u, ticket.id)
    with uow(db, roster.as_(tech)) as u:
        t = handlers.check_in(u, ticket.id, CheckInIn(latitude=Decimal("31.25"), longitude=Decimal("121.506058"),
                                                      accuracy_m=15))
        assert t.check_in_flagged and t.check_in_distance_m > 1500 and t.check_in_accuracy_m == 15
        assert t.timeline[-1].data["beyond_radius"] is True
    with uow(db, office) as u:
        assert [x.id for x in handlers.list_tickets(u, exceptions=True)[0]] == [ticket.id]
        tech_row = u.session.get(handlers.Technician, tech)
        assert tech_row.latitude == 31.25  # a check-in is also the last known position
    checked = events(db)[-1]["data"]
    assert checked["beyond_radius"] is True and checked["accuracy_m"] == 15


def test_receipt_with_files_signature_units_and_branch_side_completion(db, office, roster, tmp_path):
    storage = LocalStorage(tmp_path / "files")
    tech = roster.user()
    ticket = to_in_progress(db, office, roster, tech)
    png = base64.b64encode(b"\x89PNG fake").decode()
    with uow(db, roster.as_(tech)) as u:
        photo = handlers.upload_file(u, ticket.id, FileIn(kind="photo", filename="a.png", content_type="image/png",
                                                          content_base64=png), storage)
        sign = handlers.upload_file(u, ticket.id, FileIn(kind="signature", filename="s.png",
                                                         content_base64=png), storage)
    with pytest.raises(ValidationFailed) as err:
        with uow(db, roster.as_(tech)) as u:
            handlers.upload_file(u, ticket.id, FileIn(kind="photo", filename="x", content_base64="@@@"), storage)
    assert err.value.errors[0]["field"] == "content_base64"
    with uow(db, office) as u:
        row, content = handlers.get_file(u, ticket.id, photo.id, storage)
        assert content == b"\x89PNG fake" and row.content_type == "image/png"
    with pytest.raises(ValidationFailed) as err:  # the signature must be a signature
        with uow(db, roster.as_(tech)) as u:
            handlers.complete_ticket(u, ticket.id, ReceiptIn(summary="x", signature_id=photo.id))
    assert err.value.errors[0]["field"] == "signature_id"
    receipt = parse(ReceiptIn, {
        "summary": "安装两套", "notes": "外机加装支架", "photo_ids": [str(photo.id)], "signature_id": str(sign.id),
        "units": [{"barcode": "690001", "serial_number": "IN-1", "photo_ids": [str(photo.id)]},
                  {"barcode": "690002", "serial_number": "OUT-1"}],
        "service_items": [{"service_item_id": str(uuid.uuid4()), "quantity": "1"}],
        "old_parts": [{"part_id": str(uuid.uuid4()), "quantity": "1", "serial_number": "OLD-1"}]})
    with uow(db, office) as u:  # the technician's phone failed: the office completes, marked as such
        t = handlers.complete_ticket(u, ticket.id, receipt)
        assert t.completed_by_branch and t.receipt["units"][1]["serial_number"] == "OUT-1"
        assert t.receipt["signature_id"] == str(sign.id)
        assert t.status == "closed"  # what the branch reports complete itself is closed at once (Gree)
    assert [e["type"] for e in events(db)][-2:] == ["ticket.completed", "ticket.closed"]
    done = events(db)[-2]["data"]
    assert done["completed_by_branch"] is True and done["old_parts"][0]["serial_number"] == "OLD-1"
    assert done["service_items"][0]["quantity"] == "1" and done["on_site_seconds"] >= 0


def test_incomplete_visit_records_reason_and_next_visit_then_completes_later(db, office, roster):
    tech = roster.user()
    ticket = to_in_progress(db, office, roster, tech, type="maintenance")
    nxt = dt.datetime(2030, 1, 2, 9, 0, tzinfo=dt.timezone.utc)
    with uow(db, roster.as_(tech)) as u:
        t = handlers.report_incomplete(u, ticket.id, IncompleteIn(reason="缺滤网", next_visit_at=nxt))
        assert (t.status, t.incomplete_reason, t.next_visit_at) == ("accepted", "缺滤网", nxt)
    with uow(db, roster.as_(tech)) as u:
        handlers.check_in(u, ticket.id, CheckInIn(latitude=Decimal("31.236"), longitude=Decimal("121.506")))
    with uow(db, roster.as_(tech)) as u:
        assert handlers.complete_ticket(u, ticket.id, ReceiptIn(summary="保养完成")).status == "completed"
    assert "ticket.incomplete" in [e["type"] for e in events(db)]


# -- SLA ------------------------------------------------------------------------------------------------

def test_working_hours_deadlines():
    hours = domain.WorkingHours.from_dict({"timezone": "Asia/Shanghai", "days": [1, 2, 3, 4, 5],
                                           "start": "09:00", "end": "18:00"})
    friday_5pm = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.timezone.utc)  # 17:00 Shanghai, Friday
    due = domain.add_working_minutes(friday_5pm, 120, hours)
    assert due == dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.timezone.utc)  # Monday 10:00 Shanghai
    saturday = dt.datetime(2026, 11, 21, 3, 0, tzinfo=dt.timezone.utc)
    assert domain.add_working_minutes(saturday, 30, hours) == dt.datetime(2026, 11, 23, 1, 30, tzinfo=dt.timezone.utc)


def test_overdue_is_raised_once_per_deadline_and_not_while_paused(db, office, roster):
    with uow(db, office) as u:
        handlers.update_settings(u, SettingsIn.model_validate(
            {"sla_rules": {"urgent": {"respond_minutes": 10, "arrive_minutes": 60, "complete_minutes": 240}}}))
    ticket = make_ticket(db, office, priority="urgent")
    later = ticket.created_at + dt.timedelta(minutes=90)
    with db.session(None) as s:
        assert handlers.overdue_candidates(s, later) == [(office.tenant_id, ticket.id)]
    with uow(db, office) as u:
        assert handlers.raise_overdue(u, ticket.id, later) == ["respond", "arrive"]
    with uow(db, office) as u:
        assert handlers.raise_overdue(u, ticket.id, later) == []
    overdue = [e["data"] for e in events(db) if e["type"] == "ticket.overdue"]
    assert [o["deadline"] for o in overdue] == ["respond", "arrive"]
    with uow(db, office) as u:
        assert [t.id for t in handlers.list_tickets(u, exceptions=True)[0]] == [ticket.id]
    tech = roster.user()
    with uow(db, office) as u:
        handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech))
    with uow(db, roster.as_(tech)) as u:
        handlers.pause_ticket(u, ticket.id, None)
    with uow(db, office) as u:
        assert handlers.raise_overdue(u, ticket.id, later + dt.timedelta(hours=10)) == []


# -- lists -----------------------------------------------------------------------------------------------

def test_lists_filter_search_sort_and_paginate_with_total(db, office, roster):
    made = [make_ticket(db, office, customer_name=f"客户{i}", type="repair" if i % 2 else "install")
            for i in range(7)]
    with uow(db, office) as u:
        rows, total = handlers.list_tickets(u, limit=3, offset=0)
        rows2, _ = handlers.list_tickets(u, limit=3, offset=3)
        assert total == 7 and len({r.id for r in rows + rows2}) == 6
        assert handlers.list_tickets(u, type="install")[1] == 4
        assert [r.id for r in handlers.list_tickets(u, q="客户3")[0]] == [made[3].id]
        assert [r.id for r in handlers.list_tickets(u, q=made[5].number.lower())[0]] == [made[5].id]
        assert [r.number for r in handlers.list_tickets(u, sort="number", limit=2)[0]] == ["WO000001", "WO000002"]
        assert handlers.list_tickets(u, status="pending_dispatch,assigned")[1] == 7
        assert handlers.list_tickets(u, scope="created")[1] == 7
    with pytest.raises(ValidationFailed) as err:
        with uow(db, office) as u:
            handlers.list_tickets(u, status="bogus")
    assert err.value.errors[0]["field"] == "status"


def test_a_deadline_met_late_before_any_scan_is_still_overdue_once(db, office, roster):
    with uow(db, office) as u:
        handlers.update_settings(u, SettingsIn.model_validate({"sla_rules": {"normal": {"respond_minutes": 1}}}))
    tech = roster.user()
    ticket = make_ticket(db, office)
    with uow(db, office) as u:
        handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech))
        handlers.get_ticket(u, ticket.id).respond_due_at -= dt.timedelta(minutes=5)
    with uow(db, roster.as_(tech)) as u:
        assert handlers.accept_ticket(u, ticket.id).overdue == ["respond"]
    with uow(db, office) as u:
        assert handlers.raise_overdue(u, ticket.id, dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)) == []
    assert [e["data"]["deadline"] for e in events(db) if e["type"] == "ticket.overdue"] == ["respond"]


def test_types_open_to_some_teams_are_hidden_from_the_others(db, office, roster):
    boss_a, boss_b = roster.user("A经理", "dispatcher"), roster.user("B经理", "dispatcher")
    center = roster.team("中心", kind="center")
    a = roster.team("网点A", parent=center, managers=[boss_a])
    roster.team("网点B", parent=center, managers=[boss_b])
    with uow(db, office) as u:
        handlers.create_type(u, TicketTypeIn.model_validate({"code": "gree_install", "name": "格力安装",
                                                            "team_ids": [str(center)]}))
        handlers.create_type(u, TicketTypeIn.model_validate({"code": "a_only", "name": "A 专用",
                                                            "team_ids": [str(a)]}))
    with uow(db, roster.as_(boss_b, "dispatcher")) as u:
        codes = [t.code for t in handlers.list_types(u)]
        assert "gree_install" in codes and "a_only" not in codes  # open to the parent centre: visible
    with uow(db, roster.as_(boss_a, "dispatcher")) as u:
        assert "a_only" in [t.code for t in handlers.list_types(u)]
    with pytest.raises(ValidationFailed, match="not open to your team"):
        make_ticket(db, roster.as_(boss_b, "dispatcher"), type="a_only")
    assert make_ticket(db, roster.as_(boss_a, "dispatcher"), type="a_only").branch_id == a


def test_customer_and_equipment_updates_refresh_the_replica(db, office):
    from svc_common.contracts import CustomerUpdatedV1, EquipmentUpdatedV1
    customer_id, equipment_id = uuid.uuid4(), uuid.uuid4()
    with uow(db, office) as u:
        handlers.apply_customer_event(u, CustomerUpdatedV1(customer_id=customer_id, name="新名称"))
        handlers.apply_equipment_event(u, EquipmentUpdatedV1(equipment_id=equipment_id, customer_id=customer_id,
                                                             model="KFR-72", serial_number="S9", status="active"))
    with uow(db, office) as u:
        snap = handlers.snapshot_from_replica(u, customer_id, equipment_id, dt.date(2026, 1, 1))
        assert (snap["customer_name"], snap["serial_number"]) == ("新名称", "S9")


def test_a_branch_pool_is_for_its_own_technicians_and_auto_dispatch_at_creation(db, office, roster):
    boss = roster.user("经理", "dispatcher")
    inside, outside = roster.user("网点师傅", lat=31.3, lng=121.5), roster.user("外面师傅", lat=31.2359, lng=121.5060)
    branch = roster.team("网点", members=[inside], managers=[boss])
    sub_tech = roster.user("下级网点师傅")
    roster.team("下级网点", parent=branch, members=[sub_tech])
    ticket = make_ticket(db, roster.as_(boss, "dispatcher"))
    assert ticket.branch_id == branch
    with uow(db, roster.as_(boss, "dispatcher")) as u:
        assert handlers.publish_to_pool(u, ticket.id, PublishIn()).pool_team_id == branch
    for person, expected in ((sub_tech, 1), (outside, 0)):
        with uow(db, roster.as_(person)) as u:
            assert handlers.list_tickets(u, pool=True)[1] == expected
    with pytest.raises(Forbidden):
        with uow(db, roster.as_(outside)) as u:
            handlers.grab_ticket(u, ticket.id)
    with uow(db, roster.as_(inside)) as u:
        assert handlers.grab_ticket(u, ticket.id).assignee_id == inside
    # created with auto_dispatch in the branch: only its members are candidates, nearest or not
    auto = make_ticket(db, roster.as_(boss, "dispatcher"), auto_dispatch=True)
    assert (auto.status, auto.assignee_id) == ("assigned", inside)



def test_unit_data_saved_one_by_one_feedback_batch_to_branch_and_pending_requests(db, office, roster):
    tech = roster.user()
    boss = roster.user("经理", "dispatcher")
    branch = roster.team("网点", members=[tech], managers=[boss])
    ticket = to_in_progress(db, office, roster, tech, type="install")
    unit = handlers.UnitIn
    with uow(db, roster.as_(tech)) as u:
        handlers.save_unit(u, ticket.id, unit(barcode="IN-1", serial_number="S-IN-1"))
    with uow(db, roster.as_(tech)) as u:
        handlers.save_unit(u, ticket.id, unit(barcode="OUT-1", serial_number="S-OUT-1"))
    with uow(db, roster.as_(tech)) as u:
        handlers.add_feedback(u, ticket.id, "客户要求改天安装外机支架")
    with uow(db, roster.as_(tech)) as u:
        t = handlers.complete_ticket(u, ticket.id, ReceiptIn(summary="两台完成"))
        assert [x["barcode"] for x in t.receipt["units"]] == ["IN-1", "OUT-1"] and t.status == "completed"
        assert [e.action for e in t.timeline][-4:] == ["collect_unit", "collect_unit", "feedback", "complete"]
    with pytest.raises(Conflict, match="completed"):
        with uow(db, roster.as_(tech)) as u:
            handlers.save_unit(u, ticket.id, unit(barcode="X"))
    # 批量派工 to a sub-branch; its manager's request shows in the centre's pending list
    a, b = make_ticket(db, office), make_ticket(db, office)
    with uow(db, office) as u:
        moved = handlers.batch_assign(u, BatchAssignIn(ticket_ids=[a.id, b.id], branch_id=branch))
        assert [t.branch_id for t in moved] == [branch, branch]
    with uow(db, roster.as_(boss, "dispatcher")) as u:
        handlers.request_reassignment(u, a.id, "忙不过来")
    with uow(db, office) as u:
        assert [t.id for t in handlers.list_tickets(u, reassignment_pending=True)[0]] == [a.id]
    with uow(db, office) as u:
        handlers.reject_reassignment(u, a.id, "请安排")
    with uow(db, office) as u:
        assert handlers.list_tickets(u, reassignment_pending=True)[1] == 0
    with pytest.raises(ValidationFailed):
        parse(BatchAssignIn, {"ticket_ids": [str(a.id)], "technician_id": str(tech), "branch_id": str(branch)})


def test_a_technicians_action_records_from_where_by_their_last_position(db, office, roster):
    tech = roster.user()
    ticket = make_ticket(db, office)
    with uow(db, office) as u:
        handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech))
    with uow(db, roster.as_(tech)) as u:
        handlers.record_position(u, parse(handlers.PositionIn, {"latitude": "31.2", "longitude": "121.4"}))
    with uow(db, roster.as_(tech)) as u:
        t = handlers.accept_ticket(u, ticket.id)
        where = t.timeline[-1].data["where"]
        assert (where["latitude"], where["longitude"]) == (31.2, 121.4)
        assert "where" not in t.timeline[-2].data  # the office's assignment has no position


def test_reading_one_order_follows_the_same_data_scope_as_the_lists(db, office, roster):
    boss_a, boss_b = roster.user("A经理", "dispatcher"), roster.user("B经理", "dispatcher")
    tech, stranger = roster.user("李工"), roster.user("路人")
    a = roster.team("网点A", members=[tech], managers=[boss_a])
    roster.team("网点B", managers=[boss_b])
    ticket = make_ticket(db, office)
    with uow(db, office) as u:
        handlers.dispatch_to_branch(u, ticket.id, parse(handlers.BranchIn, {"branch_id": str(a)}))
        handlers.assign_ticket(u, ticket.id, AssignIn(technician_id=tech))
    for ctx, sees in ((office, True), (roster.as_(boss_a, "dispatcher"), True), (roster.as_(tech), True),
                      (roster.as_(boss_b, "dispatcher"), False), (roster.as_(stranger), False),
                      (roster.as_(uuid.uuid4(), "warehouse_manager"), True)):
        with uow(db, ctx) as u:
            t = handlers.get_ticket(u, ticket.id)
            if sees:
                assert handlers.require_visible(u, t) is t
            else:
                with pytest.raises(handlers.NotFound):
                    handlers.require_visible(u, t)

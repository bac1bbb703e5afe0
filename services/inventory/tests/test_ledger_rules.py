"""The ledger's rules as plain Python (inventory.domain): no database."""
import uuid
from decimal import Decimal

import pytest

from inventory import domain
from svc_common.errors import ValidationFailed

D = Decimal
HQ, EAST, SHANGHAI, WEST = (uuid.uuid4() for _ in range(4))
ALICE, BOB = uuid.uuid4(), uuid.uuid4()
TREE = {HQ: (None, [str(ALICE)]), EAST: (HQ, [str(BOB)]), SHANGHAI: (EAST, []), WEST: (HQ, [])}


def test_headquarters_manager_sees_all_and_regional_manager_sees_their_region():
    assert domain.visible_warehouses("warehouse_manager", ALICE, TREE) == {HQ, EAST, SHANGHAI, WEST}
    assert domain.visible_warehouses("warehouse_manager", BOB, TREE) == {EAST, SHANGHAI}
    assert domain.visible_warehouses("warehouse_manager", uuid.uuid4(), TREE) == set()
    assert domain.visible_warehouses("admin", BOB, TREE) is None  # everything
    assert domain.subtree([EAST], TREE) == {EAST, SHANGHAI}


def test_a_warehouse_cannot_be_nested_under_its_own_subtree():
    parents = {w: p for w, (p, _) in TREE.items()}
    with pytest.raises(ValidationFailed) as err:
        domain.ensure_no_cycle(EAST, SHANGHAI, parents)
    assert err.value.errors[0]["field"] == "parent_id"
    with pytest.raises(ValidationFailed):
        domain.ensure_no_cycle(EAST, EAST, parents)
    domain.ensure_no_cycle(SHANGHAI, WEST, parents)
    domain.ensure_no_cycle(EAST, None, parents)


def test_transfer_status_follows_what_was_received():
    assert domain.transfer_status([(D(5), D(0)), (D(2), D(0))]) == "in_transit"
    assert domain.transfer_status([(D(5), D(3)), (D(2), D(0))]) == "partially_received"
    assert domain.transfer_status([(D(5), D(5)), (D(2), D(2))]) == "received"


def test_receipt_never_exceeds_what_is_in_transit():
    a, b = uuid.uuid4(), uuid.uuid4()
    outstanding = {a: D(5), b: D(0)}
    assert domain.receipt_quantities(outstanding, None) == {a: D(5)}
    assert domain.receipt_quantities(outstanding, [(a, D(2))]) == {a: D(2)}
    with pytest.raises(ValidationFailed) as err:
        domain.receipt_quantities(outstanding, [(a, D(6)), (uuid.uuid4(), D(1))])
    assert [e["field"] for e in err.value.errors] == ["lines.0.quantity", "lines.1.part_id"]
    with pytest.raises(ValidationFailed):
        domain.receipt_quantities({a: D(0)}, None)  # nothing left to receive


def test_net_consumed_makes_reversal_idempotent():
    part, loc = uuid.uuid4(), uuid.uuid4()
    consumed = [("consumption", part, loc, D(2))]
    assert domain.net_consumed(consumed) == {(part, loc): D(2)}
    reversed_once = consumed + [("consumption_reversal", part, loc, D(2))]
    assert domain.net_consumed(reversed_once) == {}  # a second reversal books nothing
    recompleted = reversed_once + [("consumption", part, loc, D(1))]
    assert domain.net_consumed(recompleted) == {(part, loc): D(1)}


def test_stocktake_books_only_differences():
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert domain.stocktake_differences({a: D(5), b: D(3), c: D(1)}, {a: D(5), b: D(4)}) == {b: D(-1), c: D(1)}


def test_low_stock_alerts_once_per_crossing():
    assert domain.fell_below_minimum(D(3), D(2), D(3))
    assert not domain.fell_below_minimum(D(4), D(3), D(3))  # at the minimum is not below it
    assert not domain.fell_below_minimum(D(2), D(1), D(3))  # already below: no repeat
    assert not domain.fell_below_minimum(D(5), D(0), D(0))  # no minimum set


def test_partial_approval_rules():
    a, b = uuid.uuid4(), uuid.uuid4()
    requested = [(a, D(3)), (b, D(2))]
    assert domain.approved_quantities(requested, None) == [D(3), D(2)]
    assert domain.approved_quantities(requested, [(b, D(1))]) == [domain.ZERO, D(1)]
    with pytest.raises(ValidationFailed):
        domain.approved_quantities(requested, [(a, D(4))])
    with pytest.raises(ValidationFailed):
        domain.approved_quantities(requested, [(a, D(0))])

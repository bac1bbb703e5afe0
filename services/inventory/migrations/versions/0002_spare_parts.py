"""spare parts: catalog (categories, prices, service items), warehouse tree, settings, transfers,
returns, old parts, ledger cost/technician/customer; balances may go negative when a tenant allows it

Revision ID: 0002
Revises: 0001
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import svc_common.db  # noqa: F401 (UTCDateTime in column types)

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UTC = svc_common.db.UTCDateTime(timezone=True)
QTY = sa.Numeric(18, 3)
MONEY = sa.Numeric(18, 2)


# The ledger is append-only in the database too, not only through the ORM: a correction is a new
# (adjustment) line, never an edit of history. (A later SQLite batch alter of stock_moves recreates
# the table: such a migration must create these triggers again.)
IMMUTABLE_LEDGER = {
    "postgresql": [
        """CREATE FUNCTION stock_moves_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'stock moves are immutable'; END $$""",
        """CREATE TRIGGER stock_moves_immutable BEFORE UPDATE OR DELETE ON stock_moves
           FOR EACH ROW EXECUTE FUNCTION stock_moves_immutable()""",
    ],
    "sqlite": [
        """CREATE TRIGGER stock_moves_no_update BEFORE UPDATE ON stock_moves
           BEGIN SELECT RAISE(ABORT, 'stock moves are immutable'); END""",
        """CREATE TRIGGER stock_moves_no_delete BEFORE DELETE ON stock_moves
           BEGIN SELECT RAISE(ABORT, 'stock moves are immutable'); END""",
    ],
}
MUTABLE_AGAIN = {
    "postgresql": ["DROP TRIGGER IF EXISTS stock_moves_immutable ON stock_moves",
                   "DROP FUNCTION IF EXISTS stock_moves_immutable()"],
    "sqlite": ["DROP TRIGGER IF EXISTS stock_moves_no_update", "DROP TRIGGER IF EXISTS stock_moves_no_delete"],
}


def _tenant_index(table: str) -> None:
    op.create_index(f"ix_{table}_tenant_id", table, ["tenant_id"])


def upgrade() -> None:
    op.create_table(
        "part_categories",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("parent_id", sa.Uuid(), sa.ForeignKey("part_categories.id"), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.UniqueConstraint("tenant_id", "parent_id", "name", name="uq_part_categories_name"),
    )
    _tenant_index("part_categories")
    op.create_index("ix_part_categories_parent_id", "part_categories", ["parent_id"])

    op.create_table(
        "service_items",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("unit", sa.String(20), nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("cost_price", MONEY, nullable=True),
        sa.Column("category", sa.String(100), nullable=True),
        sa.Column("notes", sa.String(1000), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.UniqueConstraint("tenant_id", "code", name="uq_service_items_code"),
    )
    _tenant_index("service_items")

    op.create_table(
        "inventory_settings",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("allow_negative_stock", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("tenant_id", name="uq_inventory_settings_tenant"),
    )
    _tenant_index("inventory_settings")

    with op.batch_alter_table("parts") as batch:
        batch.add_column(sa.Column("category_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("model", sa.String(100), nullable=True))
        batch.add_column(sa.Column("sale_price", MONEY, nullable=True))
        batch.add_column(sa.Column("cost_price", MONEY, nullable=True))
        batch.add_column(sa.Column("barcode", sa.String(64), nullable=True))
        batch.add_column(sa.Column("image_ref", sa.String(500), nullable=True))
        batch.add_column(sa.Column("notes", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.create_foreign_key("fk_parts_category_id", "part_categories", ["category_id"], ["id"])
        batch.create_index("ix_parts_category_id", ["category_id"])
        batch.create_index("ix_parts_barcode", ["barcode"])

    with op.batch_alter_table("locations") as batch:
        batch.add_column(sa.Column("parent_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("level", sa.String(20), nullable=True))
        batch.add_column(sa.Column("code", sa.String(64), nullable=True))
        batch.add_column(sa.Column("notes", sa.String(500), nullable=True))
        batch.create_foreign_key("fk_locations_parent_id", "locations", ["parent_id"], ["id"])
        batch.create_index("ix_locations_parent_id", ["parent_id"])

    # Negative stock is a per-tenant choice now; the handlers' conditional decrement guards the rest.
    with op.batch_alter_table("balances", recreate="always") as batch:
        batch.drop_constraint("ck_balances_not_negative", type_="check")

    with op.batch_alter_table("stock_moves") as batch:
        batch.add_column(sa.Column("unit_cost", MONEY, nullable=True))
        batch.add_column(sa.Column("technician_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("customer_id", sa.Uuid(), nullable=True))
        batch.create_index("ix_stock_moves_technician_id", ["technician_id"])
        batch.create_index("ix_stock_moves_customer_id", ["customer_id"])
        batch.create_index("ix_stock_moves_kind", ["kind"])

    with op.batch_alter_table("requisitions") as batch:
        batch.add_column(sa.Column("kind", sa.String(20), nullable=False, server_default="issue"))

    with op.batch_alter_table("consumption_shortfalls") as batch:
        batch.add_column(sa.Column("customer_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("warehouse_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("manager_ids", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("status", sa.String(20), nullable=False, server_default="open"))
        batch.add_column(sa.Column("resolution", sa.String(500), nullable=True))
        batch.add_column(sa.Column("resolved_by", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("resolved_at", UTC, nullable=True))
        batch.create_index("ix_consumption_shortfalls_status", ["status"])

    op.create_table(
        "transfers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(40), nullable=False),
        sa.Column("from_warehouse_id", sa.Uuid(), sa.ForeignKey("locations.id"), nullable=False),
        sa.Column("to_warehouse_id", sa.Uuid(), sa.ForeignKey("locations.id"), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("received_at", UTC, nullable=True),
        sa.UniqueConstraint("tenant_id", "number", name="uq_transfers_number"),
    )
    _tenant_index("transfers")
    op.create_index("ix_transfers_from_warehouse_id", "transfers", ["from_warehouse_id"])
    op.create_index("ix_transfers_to_warehouse_id", "transfers", ["to_warehouse_id"])
    op.create_index("ix_transfers_status", "transfers", ["status"])

    op.create_table(
        "transfer_lines",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("transfer_id", sa.Uuid(), sa.ForeignKey("transfers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("part_id", sa.Uuid(), sa.ForeignKey("parts.id"), nullable=False),
        sa.Column("quantity", QTY, nullable=False),
        sa.Column("received_quantity", QTY, nullable=False),
    )
    _tenant_index("transfer_lines")
    op.create_index("ix_transfer_lines_transfer_id", "transfer_lines", ["transfer_id"])

    op.create_table(
        "old_parts",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("ticket_number", sa.String(40), nullable=False),
        sa.Column("technician_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=True),
        sa.Column("part_id", sa.Uuid(), nullable=False),
        sa.Column("quantity", QTY, nullable=False),
        sa.Column("serial_number", sa.String(100), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("warehouse_id", sa.Uuid(), nullable=True),
        sa.Column("move_id", sa.Uuid(), nullable=True),
        sa.Column("returned_by", sa.Uuid(), nullable=True),
        sa.Column("returned_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
    )
    _tenant_index("old_parts")
    op.create_index("ix_old_parts_ticket_id", "old_parts", ["ticket_id"])
    op.create_index("ix_old_parts_technician_id", "old_parts", ["technician_id"])
    op.create_index("ix_old_parts_status", "old_parts", ["status"])

    for statement in IMMUTABLE_LEDGER.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade() -> None:
    for statement in MUTABLE_AGAIN.get(op.get_bind().dialect.name, []):
        op.execute(statement)
    for table in ("old_parts", "transfer_lines", "transfers"):
        op.drop_table(table)
    with op.batch_alter_table("consumption_shortfalls") as batch:
        batch.drop_index("ix_consumption_shortfalls_status")
        for column in ("resolved_at", "resolved_by", "resolution", "status", "manager_ids", "warehouse_id",
                       "customer_id"):
            batch.drop_column(column)
    with op.batch_alter_table("requisitions") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("stock_moves") as batch:
        for index in ("ix_stock_moves_kind", "ix_stock_moves_customer_id", "ix_stock_moves_technician_id"):
            batch.drop_index(index)
        for column in ("customer_id", "technician_id", "unit_cost"):
            batch.drop_column(column)
    with op.batch_alter_table("balances", recreate="always") as batch:
        batch.create_check_constraint("ck_balances_not_negative", "quantity >= 0")
    with op.batch_alter_table("locations") as batch:
        batch.drop_index("ix_locations_parent_id")
        batch.drop_constraint("fk_locations_parent_id", type_="foreignkey")
        for column in ("notes", "code", "level", "parent_id"):
            batch.drop_column(column)
    with op.batch_alter_table("parts") as batch:
        batch.drop_index("ix_parts_barcode")
        batch.drop_index("ix_parts_category_id")
        batch.drop_constraint("fk_parts_category_id", type_="foreignkey")
        for column in ("active", "notes", "image_ref", "barcode", "cost_price", "sale_price", "model", "category_id"):
            batch.drop_column(column)
    for table in ("inventory_settings", "service_items", "part_categories"):
        op.drop_table(table)

"""back-filled records (补录) become work orders: tickets.backfilled, the record's work order

Existing orders are not back-filled; existing records keep no work order.

Revision ID: 0101_backfill
Revises: 0100_desk
Create Date: 2026-11-23 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import svc_common.db  # noqa: F401 (UTCDateTime in column types)


# revision identifiers, used by Alembic.
revision: str = '0101_backfill'
down_revision: Union[str, Sequence[str], None] = '0100_desk'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('backfilled', sa.Boolean(), nullable=False, server_default=sa.false()))

    with op.batch_alter_table('desk_service_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ticket_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('ticket_number', sa.String(length=30), nullable=True))
        batch_op.create_index(batch_op.f('ix_desk_service_records_ticket_id'), ['ticket_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('desk_service_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_desk_service_records_ticket_id'))
        batch_op.drop_column('ticket_number')
        batch_op.drop_column('ticket_id')

    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_column('backfilled')

"""the "served" rollup: customers served per day and per month

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 21:00:00

The customers report counted the customers served per day from the (day, customer) rows of the
"customers" rollup: at a million orders a year, about 93,000 rows for a month. The reports service
now keeps that count as a rollup of its own ("served", one row per company, grain and period; see
reports.rollups.Deltas._served). This fills it from the "customers" rows already there: a day's or
a month's count is its rows with an order completed (m0 > 0).

Stop the old reports instances before this runs (docs/operations.md, "Rolling restart"): a batch
they commit afterwards would not update the counts. If one did, a rebuild
(POST /api/v1/reports/rebuild) makes them right.
"""
from typing import Sequence, Union

from alembic import op

MEASURES = 14

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    measures = ", ".join(f"m{i}" for i in range(MEASURES))
    zeros = ", ".join("0" for _ in range(MEASURES - 1))
    op.execute("DELETE FROM report_rollups WHERE rollup = 'served'")
    op.execute(f"INSERT INTO report_rollups (tenant_id, rollup, grain, period, team, type, d1, d2, {measures}) "
               f"SELECT tenant_id, 'served', grain, period, '', '', '', '', COUNT(*), {zeros} "
               "FROM report_rollups WHERE rollup = 'customers' AND m0 > 0 GROUP BY tenant_id, grain, period")


def downgrade() -> None:
    op.execute("DELETE FROM report_rollups WHERE rollup = 'served'")

"""Dashboard indexes: open alerts per call, and alerts by state newest first

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 08:15:00.000000

Measured with benchmarks/dashboard.py (docs/service.md, "Speed with 10,000 calls").
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: name -> columns; the same as store/models.py DASHBOARD_INDEXES.
INDEXES = {
    "ix_alerts_call_id_state": ["call_id", "state"],
    "ix_alerts_state_created_at": ["state", "created_at"],
}


def upgrade() -> None:
    # Plain CREATE INDEX, never batch mode: a batch rebuild of a table on SQLite drops it,
    # and dropping calls would delete every alert and window by cascade.
    for name, columns in INDEXES.items():
        op.create_index(name, "alerts", columns, unique=False)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="alerts")

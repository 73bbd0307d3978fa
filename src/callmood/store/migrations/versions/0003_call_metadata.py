"""Calls: agent, queue, external call id and the time the call really started

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXED = ("agent", "queue", "external_call_id", "started_at")


def upgrade() -> None:
    # Only added columns and indexes: anything that rebuilds the table on SQLite (such as
    # NOT NULL) drops the old calls table, and with it, by cascade, every alert and window.
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agent", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("queue", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("external_call_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        for column in INDEXED:
            batch_op.create_index(f"ix_calls_{column}", [column], unique=False)
    # Calls stored before this revision started, as far as anyone knows, when they arrived.
    op.execute("UPDATE calls SET started_at = created_at")


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not batch mode: its table rebuild
    # would delete every alert by cascade. The indexes go first; SQLite refuses otherwise.
    for column in INDEXED:
        op.drop_index(f"ix_calls_{column}", table_name="calls")
    for column in reversed(INDEXED):
        op.drop_column("calls", column)

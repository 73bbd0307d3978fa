"""Scoped integration tokens, the audit trail, and who acknowledged or resolved an alert

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 08:00:00.000000

The alerts columns are added with ALTER TABLE ADD COLUMN, never a batch-mode rebuild
(on SQLite a rebuild of a table others reference cascade-deletes their rows).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("secret_hash", sa.String(length=71), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_api_tokens_name")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_api_tokens_secret_hash")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(length=20), nullable=False),
        sa.Column("actor_name", sa.String(length=200), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=True),
        sa.Column("client", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_at"), "audit_events", ["at"])
    op.create_index(op.f("ix_audit_events_actor_name"), "audit_events", ["actor_name"])
    op.create_index(op.f("ix_audit_events_action"), "audit_events", ["action"])
    op.add_column("alerts", sa.Column("acknowledged_by", sa.String(length=200), nullable=True))
    op.add_column("alerts", sa.Column("resolved_by", sa.String(length=200), nullable=True))


def downgrade() -> None:
    # Dropping columns would need a batch rebuild of alerts on SQLite (see above): only
    # PostgreSQL and other backends with DROP COLUMN give the columns back.
    if op.get_bind().dialect.name != "sqlite":
        op.drop_column("alerts", "resolved_by")
        op.drop_column("alerts", "acknowledged_by")
    op.drop_index(op.f("ix_audit_events_action"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_actor_name"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_at"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("api_tokens")

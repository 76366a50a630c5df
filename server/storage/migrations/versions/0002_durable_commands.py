"""Durable commands (the state machine's times and deliveries), replicas and session ownership.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("cancelled_by", sa.String(length=64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("deliveries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("delivered_session", sa.String(length=36), nullable=False, server_default="")
        )
        batch.drop_index("ix_commands_agent_id_state")
        batch.create_index(
            "ix_commands_agent_id_state_created_at", ["agent_id", "state", "created_at"]
        )
        batch.create_index("ix_commands_state_expires_at", ["state", "expires_at"])
    # The first release sent a command as it created it: pending meant delivered.
    op.execute(
        "UPDATE commands SET state = 'delivered', delivered_at = created_at, deliveries = 1 "
        "WHERE state = 'pending'"
    )
    op.execute("UPDATE commands SET state = 'succeeded' WHERE state = 'done'")
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("session_replica", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("session_id", sa.String(length=36), nullable=True))
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_address", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replicas")),
    )


def downgrade() -> None:
    op.drop_table("replicas")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("session_id")
        batch.drop_column("session_replica")
    op.execute("UPDATE commands SET state = 'done' WHERE state = 'succeeded'")
    op.execute(
        "UPDATE commands SET state = 'pending' WHERE state IN ('queued', 'delivered', 'running')"
    )
    op.execute(
        "UPDATE commands SET state = 'failed' WHERE state NOT IN ('pending', 'done', 'failed')"
    )
    with op.batch_alter_table("commands") as batch:
        batch.drop_index("ix_commands_state_expires_at")
        batch.drop_index("ix_commands_agent_id_state_created_at")
        batch.create_index("ix_commands_agent_id_state", ["agent_id", "state"])
        for column in ("delivered_session", "deliveries", "cancelled_by", "started_at"):
            batch.drop_column(column)
        batch.drop_column("delivered_at")

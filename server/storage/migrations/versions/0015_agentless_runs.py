"""Script runs on machines without an agent: how each is reached, and who claimed it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 16:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agentless_runs",
        sa.Column("command_id", sa.String(64), nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("login", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("credential_name", sa.String(64), nullable=False),
        sa.Column("claimed_by", sa.String(36)),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(
            ["command_id"], ["commands.id"], name=op.f("fk_agentless_runs_command_id_commands")
        ),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_agentless_runs")),
    )
    op.create_index(op.f("ix_agentless_runs_claimed_by"), "agentless_runs", ["claimed_by"])


def downgrade() -> None:
    op.drop_index(op.f("ix_agentless_runs_claimed_by"), table_name="agentless_runs")
    op.drop_table("agentless_runs")

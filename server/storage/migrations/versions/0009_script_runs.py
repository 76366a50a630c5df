"""Script runs: what a RunScript command runs, who approved it, and how it ended.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "script_runs",
        sa.Column("command_id", sa.String(64), nullable=False),
        sa.Column("script_id", sa.String(64), nullable=False),
        sa.Column("script_version", sa.String(20), nullable=False),
        sa.Column("risk", sa.String(8), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("parameters_shown", sa.Text(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("approval_due_at", sa.DateTime(timezone=True)),
        sa.Column("approved_by", sa.String(64), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True)),
        sa.Column("rejected_by", sa.String(64), nullable=False),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("timed_out", sa.Boolean(), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.Column("stdout", sa.LargeBinary(), nullable=False),
        sa.Column("stderr", sa.LargeBinary(), nullable=False),
        sa.Column("stdout_truncated", sa.Boolean(), nullable=False),
        sa.Column("stderr_truncated", sa.Boolean(), nullable=False),
        sa.Column("stdout_bytes", sa.BigInteger(), nullable=False),
        sa.Column("stderr_bytes", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger()),
        sa.Column("live_output", sa.LargeBinary(), nullable=False),
        sa.Column("live_dropped", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["command_id"], ["commands.id"], name=op.f("fk_script_runs_command_id_commands")
        ),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_script_runs")),
    )
    op.create_index(op.f("ix_script_runs_script_id"), "script_runs", ["script_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_script_runs_script_id"), table_name="script_runs")
    op.drop_table("script_runs")

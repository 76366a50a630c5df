"""The closed loop: the finding a run was asked to fix, whether its verify checks cleared, and
the collectors a diagnostic runs (a verification collects only what its checks read).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("collectors", sa.String(200), nullable=False, server_default=""))
    with op.batch_alter_table("script_runs") as batch:
        batch.add_column(sa.Column("finding", sa.String(64), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("resolve_if_cleared", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("snapshot_before_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"))
        )
        batch.add_column(
            sa.Column("verification", sa.String(16), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("verify_command_id", sa.String(64)))
        batch.add_column(sa.Column("verified_at", sa.DateTime(timezone=True)))
        batch.add_column(
            sa.Column("verification_detail", sa.Text(), nullable=False, server_default="")
        )
        batch.create_index("ix_script_runs_verify_command_id", ["verify_command_id"])
        batch.create_index("ix_script_runs_verification", ["verification"])
    with op.batch_alter_table("ticket_events") as batch:
        batch.add_column(sa.Column("command_id", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("ticket_events") as batch:
        batch.drop_column("command_id")
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("collectors")
    with op.batch_alter_table("script_runs") as batch:
        batch.drop_index("ix_script_runs_verification")
        batch.drop_index("ix_script_runs_verify_command_id")
        for column in (
            "verification_detail",
            "verified_at",
            "verify_command_id",
            "verification",
            "snapshot_before_id",
            "resolve_if_cleared",
            "finding",
        ):
            batch.drop_column(column)

"""How the server talks WinRM to each host: HTTPS or HTTP, the method, the CA file.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "winrm_hosts",
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("https", sa.Boolean(), nullable=False),
        sa.Column("auth", sa.String(16), nullable=False),
        sa.Column("ca_file", sa.String(4096), nullable=False),
        sa.Column("allow_basic", sa.Boolean(), nullable=False),
        sa.Column("allow_unencrypted", sa.Boolean(), nullable=False),
        sa.Column("operation_timeout_s", sa.Integer(), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("host", "port", name=op.f("pk_winrm_hosts")),
    )


def downgrade() -> None:
    op.drop_table("winrm_hosts")

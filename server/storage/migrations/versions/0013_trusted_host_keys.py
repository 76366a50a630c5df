"""SSH host keys the server trusts, and machines reached without an agent.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "trusted_host_keys",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("key_type", sa.String(40), nullable=False),
        sa.Column("key_base64", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("trusted_by", sa.String(64), nullable=False),
        sa.Column("trusted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trusted_host_keys")),
        sa.UniqueConstraint(
            "host", "port", "key_type", name=op.f("uq_trusted_host_keys_host_port_key_type")
        ),
    )
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("reached_by", sa.String(8), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("reach_address", sa.String(255), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("reach_address")
        batch.drop_column("reached_by")
    op.drop_table("trusted_host_keys")

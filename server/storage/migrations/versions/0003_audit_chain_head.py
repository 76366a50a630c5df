"""The audit chain's head in a row of its own, seeded from the log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain")),
    )
    # The head is the newest row of the log as it stands (none: the genesis hash).
    op.execute(
        sa.text(
            "INSERT INTO audit_chain (id, last_id, prev_hash, hash) "
            "SELECT 1, coalesce(max(id), 0), "
            "coalesce((SELECT prev_hash FROM audit_log WHERE id = "
            "(SELECT max(id) FROM audit_log)), :genesis), "
            "coalesce((SELECT hash FROM audit_log WHERE id = "
            "(SELECT max(id) FROM audit_log)), :genesis) FROM audit_log"
        ).bindparams(genesis="0" * 64)
    )


def downgrade() -> None:
    op.drop_table("audit_chain")
